//! Install 10,000 routes in a fresh namespace: crosspod's pipelined netlink vs `ip route add`
//! per route (a timed sample of 1,000) vs `ip -batch` (all 10,000 in one batch). Also the cost
//! of a no-op `sync_routes` over 10,000 routes and of removing them all. Needs root.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use plumbing::{netns, Handle, Netns, Route, VethEnd, VethSpec};

const N: usize = 10_000;
const IP_SAMPLE: usize = 1_000;

/// A fresh namespace with an owned, addressed veth; deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("cpb{}{tag}", std::process::id() % 100_000);
        netns::create(&name).expect("create namespace (run as root)");
        let ns = Ns(name);
        plumbing::link::create_veth(&VethSpec {
            a: VethEnd::new("e0", ns.ns()),
            b: VethEnd::new("e1", ns.ns()),
            owner: "bench".into(),
        })
        .expect("veth");
        Handle::new(&ns.ns())
            .unwrap()
            .add_address("e0", "10.255.0.1/16".parse().unwrap())
            .unwrap();
        ns
    }
    fn ns(&self) -> Netns {
        Netns::named(&self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn dst(i: usize) -> IpNet {
    let base = u32::from(Ipv4Addr::new(11, 0, 0, 0)) + ((i as u32) << 8);
    IpNet::new(IpAddr::V4(Ipv4Addr::from(base)), 24).unwrap()
}

fn routes() -> Vec<Route> {
    (0..N)
        .map(|i| Route::new(dst(i)).via("10.255.0.2".parse().unwrap()))
        .collect()
}

fn count_routes(ns: &Netns) -> usize {
    Handle::new(ns)
        .unwrap()
        .routes()
        .unwrap()
        .iter()
        .filter(|r| r.via == Some("10.255.0.2".parse().unwrap()))
        .count()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("routes bench: needs root (creates network namespaces)");
        std::process::exit(1);
    }
    let want = routes();
    let mut rows: Vec<(String, usize, Duration)> = Vec::new();

    // crosspod: one socket, requests pipelined.
    {
        let ns = Ns::new("a");
        let mut h = Handle::new(&ns.ns()).unwrap();
        let t = Instant::now();
        h.add_routes(&want).expect("add routes");
        rows.push(("crosspod add_routes (pipelined)".into(), N, t.elapsed()));
        assert_eq!(count_routes(&ns.ns()), N);

        let t = Instant::now();
        let s = h.sync_routes(&want).unwrap();
        assert!(!s.changed());
        rows.push((
            "crosspod sync_routes, no change (dump+diff)".into(),
            N,
            t.elapsed(),
        ));

        let t = Instant::now();
        let s = h.sync_routes(&[]).unwrap();
        assert_eq!(s.removed.len(), N);
        rows.push((
            "crosspod sync_routes to empty (delete all)".into(),
            N,
            t.elapsed(),
        ));
    }
    {
        let ns = Ns::new("s");
        let mut h = Handle::new(&ns.ns()).unwrap();
        let t = Instant::now();
        let s = h.sync_routes(&want).unwrap();
        assert_eq!(s.added.len(), N);
        rows.push(("crosspod sync_routes from empty".into(), N, t.elapsed()));
    }

    // `ip route add` per route: a sample.
    {
        let ns = Ns::new("i");
        let t = Instant::now();
        for r in want.iter().take(IP_SAMPLE) {
            let st = Command::new("ip")
                .args([
                    "-n",
                    &ns.0,
                    "route",
                    "add",
                    &r.dst.to_string(),
                    "via",
                    "10.255.0.2",
                ])
                .status()
                .unwrap();
            assert!(st.success());
        }
        rows.push((
            format!("ip route add per route (sample of {IP_SAMPLE})"),
            IP_SAMPLE,
            t.elapsed(),
        ));
        assert_eq!(count_routes(&ns.ns()), IP_SAMPLE);
    }

    // `ip -batch`: all routes in one run.
    {
        let ns = Ns::new("b");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for r in &want {
            writeln!(f, "route add {} via 10.255.0.2", r.dst).unwrap();
        }
        f.flush().unwrap();
        let t = Instant::now();
        let st = Command::new("ip")
            .args(["-n", &ns.0, "-batch"])
            .arg(f.path())
            .status()
            .unwrap();
        let d = t.elapsed();
        assert!(st.success());
        rows.push((format!("ip -batch ({N} in one batch)"), N, d));
        assert_eq!(count_routes(&ns.ns()), N);
    }

    println!();
    println!(
        "{:<48} {:>8} {:>12} {:>14}",
        "method", "routes", "time (ms)", "routes/s"
    );
    println!("{}", "-".repeat(85));
    for (name, n, d) in &rows {
        println!(
            "{:<48} {:>8} {:>12.1} {:>14.0}",
            name,
            n,
            d.as_secs_f64() * 1000.0,
            rate(*n, *d)
        );
    }
}
