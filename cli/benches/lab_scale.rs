//! A big lab on this machine: `lab up` of PODS pods × NODES nodes (default 10 × 2, env
//! CROSSPOD_BENCH_PODS / CROSSPOD_BENCH_NODES) without daemons and with them (controller and
//! one agent per node, the pods created so every agent registers), `lab down`, and the memory
//! of each node (RSS of its ovsdb-server, ovs-vswitchd and agent) and of the switches. Prints
//! tables. Root only. `cargo bench -p crosspod-cli --bench lab_scale`, or in the debug profile
//! `cargo test -p crosspod-cli --bench lab_scale` (the time is OVS's and the kernel's either way).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn crosspod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crosspod"))
}

fn run(cmd: &mut Command) -> (Duration, String) {
    let t = Instant::now();
    let out = cmd.output().expect("crosspod runs");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Down(PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = crosspod()
            .args(["lab", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of the process in `pidfile`, in KiB.
fn rss_kib(pidfile: &Path) -> Option<u64> {
    let pid = std::fs::read_to_string(pidfile).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn env_u32(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the lab benchmark needs root (namespaces, OVS); nothing measured");
        std::process::exit(1);
    }
    let pods = env_u32("CROSSPOD_BENCH_PODS", 10);
    let nodes = env_u32("CROSSPOD_BENCH_NODES", 2);
    let prefix = format!("s{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("crosspod-bench-{prefix}"));
    let _down = Down(dir.clone());
    let lab = |args: &[&str]| {
        let mut c = crosspod();
        c.arg("lab").args(args).arg("--dir").arg(&dir);
        c
    };
    // VxLAN between the pods by default (the issue's benchmark); CROSSPOD_BENCH_BRIDGE=vlan
    // for the VLAN core instead.
    let bridge = std::env::var("CROSSPOD_BENCH_BRIDGE").unwrap_or_else(|_| "vxlan".into());
    let shape = [
        "--bridge-network-type",
        &bridge,
        "--prefix",
        &prefix,
        "--pods",
        &pods.to_string(),
        "--nodes-per-pod",
        &nodes.to_string(),
    ]
    .map(String::from);
    let (tp, np) = (free_port(), free_port());
    let up = |daemons: bool| {
        let mut c = lab(&["up"]);
        c.args(&shape);
        c.args(["--tricircle-port", &tp.to_string()]);
        c.args(["--neutron-port", &np.to_string()]);
        if !daemons {
            c.arg("--no-daemons");
        }
        c
    };

    let (up_net, _) = run(&mut up(false));
    let (up_again, _) = run(&mut up(false));
    let (down_net, _) = run(&mut lab(&["down"]));

    let here = Path::new(env!("CARGO_BIN_EXE_crosspod")).parent().unwrap();
    let have_daemons = ["crosspod-controller", "crosspod-agent"]
        .iter()
        .all(|b| here.join(b).exists() || here.join("../debug").join(b).exists());
    let bin = |b: &str| {
        let p = here.join(b);
        if p.exists() {
            p
        } else {
            here.join("../debug").join(b)
        }
    };
    let mut with = None;
    let mut mem: Vec<(String, u64, u64, u64)> = Vec::new();
    let mut switches: Vec<(String, u64)> = Vec::new();
    let mut controller_rss = None;
    let mut registered = 0;
    let mut green: Option<(Duration, Duration)> = None;
    if have_daemons {
        let mut c = up(true);
        c.arg("--controller-bin").arg(bin("crosspod-controller"));
        c.arg("--agent-bin").arg(bin("crosspod-agent"));
        let up_start = Instant::now();
        let (took, out) = run(&mut c);
        assert!(!out.contains("WARNING"), "{out}");
        with = Some(took);
        // Create the pods so each agent registers and runs its loop, then let it settle.
        let env = String::from_utf8(lab(&["env"]).output().unwrap().stdout).unwrap();
        let token = env
            .lines()
            .find_map(|l| l.strip_prefix("export OS_TOKEN="))
            .unwrap()
            .to_string();
        let curl = |method: &str, path: &str, body: Option<String>| {
            let mut c = Command::new("curl");
            c.args(["-sS", "-X", method, &format!("http://127.0.0.1:{tp}{path}")])
                .args(["-H", "Content-Type: application/json"])
                .args(["-H", &format!("X-Auth-Token: {token}")]);
            if let Some(b) = body {
                c.args(["-d", &b]);
            }
            String::from_utf8(c.output().expect("curl").stdout).unwrap()
        };
        curl(
            "POST",
            "/v1.0/pods",
            Some(r#"{"pod": {"region_name": "CentralRegion"}}"#.into()),
        );
        // The pods as the lab names them (`lab env`: node:region:az ...).
        let listed = env
            .lines()
            .find_map(|l| l.strip_prefix("export CROSSPOD_LAB_NODES="))
            .unwrap()
            .trim_matches('\'')
            .to_string();
        let mut made: Vec<&str> = Vec::new();
        for n in listed.split(' ') {
            let mut f = n.split(':').skip(1);
            let (region, az) = (f.next().unwrap(), f.next().unwrap());
            if made.contains(&region) {
                continue;
            }
            made.push(region);
            curl(
                "POST",
                "/v1.0/pods",
                Some(format!(
                    r#"{{"pod": {{"region_name": "{region}", "az_name": "{az}"}}}}"#
                )),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let v: serde_json::Value =
                serde_json::from_str(&curl("GET", "/v1.0/agents", None)).unwrap_or_default();
            registered = v["agents"].as_array().map_or(0, |a| a.len());
            if registered as u32 >= pods * nodes {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // The probe matrix: one distributed router with its gateway in RegionTwo, one network
        // and one VM per pod (each on the pod's last node, so a pod's router instance and its VM
        // are apart half the time), then `crosspod probe` until every pair and the upstream
        // answer.
        let neutron = |method: &str, path: &str, body: String| -> serde_json::Value {
            let o = Command::new("curl")
                .args(["-sS", "-X", method, &format!("http://127.0.0.1:{np}{path}")])
                .args(["-H", "Content-Type: application/json"])
                .args(["-H", &format!("X-Auth-Token: {token}")])
                .args(["-d", &body])
                .output()
                .expect("curl");
            serde_json::from_slice(&o.stdout).unwrap_or_default()
        };
        let topo_start = Instant::now();
        let router = neutron(
            "POST",
            "/v2.0/routers",
            r#"{"router": {"name": "r"}}"#.into(),
        )["router"]["id"]
            .as_str()
            .expect("router created")
            .to_string();
        // North-south as in the guide: the external network in RegionTwo, the router's gateway.
        let ext = neutron(
            "POST",
            "/v2.0/networks",
            r#"{"network": {"name": "ext-net", "router:external": true, "provider:network_type": "vlan", "provider:physical_network": "extern", "provider:segmentation_id": 3001, "availability_zone_hints": ["RegionTwo"]}}"#.into(),
        )["network"]["id"]
            .as_str()
            .expect("external network created")
            .to_string();
        neutron(
            "POST",
            "/v2.0/subnets",
            format!(
                r#"{{"subnet": {{"network_id": "{ext}", "ip_version": 4, "cidr": "163.3.124.0/24", "gateway_ip": "163.3.124.1", "enable_dhcp": false}}}}"#
            ),
        );
        neutron(
            "PUT",
            &format!("/v2.0/routers/{router}"),
            format!(r#"{{"router": {{"external_gateway_info": {{"network_id": "{ext}"}}}}}}"#),
        );
        let last_nodes: Vec<(String, String)> = made
            .iter()
            .map(|r| {
                let node = listed
                    .split(' ')
                    .rfind(|n| n.split(':').nth(1) == Some(*r))
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string();
                (r.to_string(), node)
            })
            .collect();
        for (k, (region, node)) in last_nodes.iter().enumerate() {
            let net = neutron(
                "POST",
                "/v2.0/networks",
                format!(
                    r#"{{"network": {{"name": "net{k}", "availability_zone_hints": ["{region}"]}}}}"#
                ),
            )["network"]["id"]
                .as_str()
                .expect("network created")
                .to_string();
            let sub = neutron(
                "POST",
                "/v2.0/subnets",
                format!(
                    r#"{{"subnet": {{"network_id": "{net}", "ip_version": 4, "cidr": "10.{}.{}.0/24"}}}}"#,
                    k / 256,
                    k % 256
                ),
            )["subnet"]["id"]
                .as_str()
                .expect("subnet created")
                .to_string();
            neutron(
                "PUT",
                &format!("/v2.0/routers/{router}/add_router_interface"),
                format!(r#"{{"subnet_id": "{sub}"}}"#),
            );
            let o = crosspod()
                .args(["vm", "boot", "--dir"])
                .arg(&dir)
                .args(["--region", region, "--node", node, "--network"])
                .arg(format!("net{k}"))
                .arg(format!("{prefix}vm{k}"))
                .env("OS_ENDPOINT", format!("http://127.0.0.1:{np}"))
                .env("OS_TOKEN", &token)
                .output()
                .expect("crosspod vm boot");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let o = crosspod()
                .args(["probe", "--dir"])
                .arg(&dir)
                .output()
                .expect("crosspod probe");
            if o.status.success() {
                green = Some((up_start.elapsed(), topo_start.elapsed()));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the probe matrix is not green after 180 s:\n{}",
                String::from_utf8_lossy(&o.stdout)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(2));
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap())
                .unwrap();
        for n in state["nodes"].as_array().unwrap() {
            let name = n["name"].as_str().unwrap();
            let d = dir.join(name);
            mem.push((
                name.to_string(),
                rss_kib(&d.join("ovsdb-server.pid")).unwrap_or(0),
                rss_kib(&d.join("ovs-vswitchd.pid")).unwrap_or(0),
                rss_kib(&dir.join("agents").join(format!("{name}.pid"))).unwrap_or(0),
            ));
        }
        for s in state["switches"].as_array().unwrap() {
            let s = s.as_str().unwrap();
            if mem.iter().any(|m| m.0 == s) {
                continue;
            }
            let d = dir.join(s);
            switches.push((
                s.to_string(),
                rss_kib(&d.join("ovsdb-server.pid")).unwrap_or(0)
                    + rss_kib(&d.join("ovs-vswitchd.pid")).unwrap_or(0),
            ));
        }
        controller_rss = rss_kib(&dir.join("controller").join("controller.pid"));
    }
    let (down_all, _) = run(&mut lab(&["down"]));

    let s = |d: Duration| format!("{:.2}", d.as_secs_f64());
    println!("\ncrosspod lab at scale: {pods} pods × {nodes} nodes\n");
    println!("| {:<46} | {:>9} |", "operation", "seconds");
    println!("|{:-<48}|{:-<11}|", "", "");
    println!(
        "| {:<46} | {:>9} |",
        "lab up, network only (cold)",
        s(up_net)
    );
    println!(
        "| {:<46} | {:>9} |",
        "lab up again (nothing to change)",
        s(up_again)
    );
    println!("| {:<46} | {:>9} |", "lab down (network only)", s(down_net));
    match with {
        Some(t) => println!(
            "| {:<46} | {:>9} |",
            "lab up with controller and agents (cold)",
            s(t)
        ),
        None => println!(
            "| {:<46} | {:>9} |",
            "lab up with daemons (no controller/agent built)", "-"
        ),
    }
    if let Some((from_up, from_topology)) = green {
        println!(
            "| {:<46} | {:>9} |",
            "lab up -> probe matrix green (VMs + upstream)",
            s(from_up)
        );
        println!(
            "| {:<46} | {:>9} |",
            "  of which topology created -> green",
            s(from_topology)
        );
    }
    println!("| {:<46} | {:>9} |", "lab down (with daemons)", s(down_all));
    if mem.is_empty() {
        return;
    }
    println!("\nagents registered: {registered} of {}\n", pods * nodes);
    println!(
        "| {:<10} | {:>12} | {:>12} | {:>9} | {:>9} |",
        "node", "ovsdb MiB", "vswitchd MiB", "agent MiB", "total MiB"
    );
    println!(
        "|{:-<12}|{:-<14}|{:-<14}|{:-<11}|{:-<11}|",
        "", "", "", "", ""
    );
    let mut sum = 0;
    for (n, a, b, c) in &mem {
        sum += a + b + c;
        println!(
            "| {n:<10} | {:>12} | {:>12} | {:>9} | {:>9} |",
            mib(*a),
            mib(*b),
            mib(*c),
            mib(a + b + c)
        );
    }
    println!(
        "\nper node (mean): {} MiB; switches (ovsdb + vswitchd): {}; controller: {} MiB",
        mib(sum / mem.len() as u64),
        switches
            .iter()
            .map(|(n, k)| format!("{n} {}", mib(*k)))
            .collect::<Vec<_>>()
            .join(", "),
        controller_rss.map(mib).unwrap_or_else(|| "-".into())
    );
}
