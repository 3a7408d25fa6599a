//! Firewall benchmark (not a timed test): `cargo bench -p agent --bench firewall`. Prints a
//! table. Needs root (a sandbox ovs-vswitchd, userspace datapath).
//!
//! One node, N secured ports (N = 1000, and 100 for the per-flow peer), all in group `g` with
//! 10 rules (9 plain ones, one ingress rule whose remote group `g` has N members):
//! 1. crosspod from scratch: compile + cookie-filtered dump + one bundle (`Firewall::reconcile`);
//! 2. crosspod with nothing changed (the restart case): flows written must be 0;
//! 3. one member added to `g`: flows touched (must be O(1), not members × rules × ports);
//! 4. the same flows as one `ovs-ofctl --bundle add-flows` (peer, same run);
//! 5. the same flows as one `ovs-ofctl add-flow` process per flow (peer; 100 ports only, it is
//!    too slow at 1000: one process and one connection per flow).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::firewall::{self, Firewall, COOKIE_BASE, COOKIE_MASK};
use agent::ovs_plan::{ObservedBridge, ObservedOvs, ObservedPort};
use ovs::openflow::OfctlBridge;
use ovs::sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use wire::NodeDesiredState;

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 1 + i / 60000, (i / 250) % 240, 2 + i % 250)
}

fn scenario(ports: usize, members: usize) -> (NodeDesiredState, ObservedOvs) {
    let mut p = serde_json::Map::new();
    let mut observed = ObservedOvs::default();
    observed.bridges.insert(
        "br-fw".into(),
        ObservedBridge {
            datapath_type: "netdev".into(),
        },
    );
    for i in 0..ports {
        let mac = format!("fa:16:3e:b0:{:02x}:{:02x}", i >> 8, i & 0xff);
        p.insert(
            format!("port-{i}"),
            json!({"bridge": "br-fw", "tag": 100 + (i % 10), "network_id": format!("n{}", i % 10),
                   "mac": mac, "fixed_ips": [ip(i)],
                   "security": {"allowed": [{"mac": mac, "ip": format!("{}/32", ip(i))}],
                                "security_groups": ["g"], "ct_zone": 1 + (i % 10)}}),
        );
        observed.ports.insert(
            format!("tap{i}"),
            ObservedPort {
                bridge: "br-fw".into(),
                tag: Some(100 + (i % 10) as u16),
                trunks: Default::default(),
                external_ids: Default::default(),
                iface_id: Some(format!("port-{i}")),
                iface_error: None,
                ofport: Some(1 + i as u32),
            },
        );
    }
    let r = |id: &str, dir: &str, proto: Option<u8>, lo: Option<u16>, hi: Option<u16>| {
        json!({"id": id, "direction": dir, "ethertype": "IPv4", "protocol": proto,
               "port_range_min": lo, "port_range_max": hi})
    };
    let mut remote = r("r10", "ingress", None, None, None);
    remote["remote_group_id"] = json!("g");
    let mut pfx = r("r9", "ingress", Some(6), Some(5432), Some(5432));
    pfx["remote_ip_prefix"] = json!("192.168.0.0/16");
    let rules = vec![
        r("r1", "egress", None, None, None),
        r("r2", "ingress", Some(6), Some(22), Some(22)),
        r("r3", "ingress", Some(6), Some(80), Some(80)),
        r("r4", "ingress", Some(6), Some(443), Some(443)),
        r("r5", "ingress", Some(6), Some(8000), Some(8080)),
        r("r6", "ingress", Some(17), Some(53), Some(53)),
        r("r7", "ingress", Some(1), Some(8), None),
        r("r8", "ingress", Some(17), Some(5000), Some(5100)),
        pfx,
        remote,
    ];
    let members: Vec<String> = (0..members).map(|i| format!("{}/32", ip(i))).collect();
    let state = json!({"node": "n1", "pod": "RegionOne", "revision": 1,
        "bridges": {"br-fw": {"physnet": "p", "uplink": false, "trunks": []}},
        "ports": p, "routers": {},
        "security_groups": {"g": {"rules": rules, "members": members}}});
    (serde_json::from_value(state).unwrap(), observed)
}

fn clear(of: &OfctlBridge) {
    let st = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "del-flows"])
        .arg(of.target())
        .arg(format!("cookie={COOKIE_BASE:#x}/{COOKIE_MASK:#x}"))
        .status()
        .unwrap();
    assert!(st.success());
}

fn count(of: &OfctlBridge) -> usize {
    of.dump_flows(COOKIE_BASE, COOKIE_MASK).unwrap().len()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn run(sb: &Sandbox, ports: usize, per_flow_peer: bool, rows: &mut Vec<[String; 5]>) {
    let rundir = sb.dir().to_path_buf();
    let of = OfctlBridge::new(&rundir, "br-fw");
    let fw = Firewall::new(&rundir);
    let (state, observed) = scenario(ports, ports);
    let label = format!("{ports} ports × 10 rules, {ports} members");

    let t = Instant::now();
    let (flows, _) = firewall::desired_flows(&state, &observed);
    let compile = t.elapsed();
    let n = flows["br-fw"].len();
    rows.push([
        label.clone(),
        "compile only (pure)".into(),
        secs(compile),
        n.to_string(),
        "-".into(),
    ]);

    clear(&of);
    let t = Instant::now();
    let first = fw.reconcile(&state, &observed);
    let scratch = t.elapsed();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(count(&of), n);
    rows.push([
        label.clone(),
        "crosspod from scratch".into(),
        secs(scratch),
        n.to_string(),
        first.changes().to_string(),
    ]);

    let t = Instant::now();
    let again = fw.reconcile(&state, &observed);
    rows.push([
        label.clone(),
        "crosspod, nothing changed".into(),
        secs(t.elapsed()),
        n.to_string(),
        again.changes().to_string(),
    ]);
    assert_eq!(again.changes(), 0);

    let (mut grown, _) = scenario(ports, ports + 1);
    grown.revision = 2;
    let t = Instant::now();
    let add = fw.reconcile(&grown, &observed);
    rows.push([
        label.clone(),
        "crosspod, +1 group member".into(),
        secs(t.elapsed()),
        count(&of).to_string(),
        add.changes().to_string(),
    ]);
    let t = Instant::now();
    let del = fw.reconcile(&state, &observed);
    rows.push([
        label.clone(),
        "crosspod, -1 group member".into(),
        secs(t.elapsed()),
        count(&of).to_string(),
        del.changes().to_string(),
    ]);

    // Peers: the same flow texts, written by ovs-ofctl itself.
    let texts: Vec<String> = flows["br-fw"]
        .with_cookies()
        .into_iter()
        .map(|(c, f)| format!("cookie={c:#x},{f}"))
        .collect();
    clear(&of);
    let t = Instant::now();
    let mut child = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "--bundle", "add-flows"])
        .arg(of.target())
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(texts.join("\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    rows.push([
        label.clone(),
        "ovs-ofctl --bundle add-flows (all)".into(),
        secs(t.elapsed()),
        count(&of).to_string(),
        n.to_string(),
    ]);

    if per_flow_peer {
        clear(&of);
        let t = Instant::now();
        for f in &texts {
            let st = Command::new("ovs-ofctl")
                .args(["-O", "OpenFlow14", "add-flow"])
                .arg(of.target())
                .arg(f)
                .status()
                .unwrap();
            assert!(st.success(), "{f}");
        }
        rows.push([
            label.clone(),
            "ovs-ofctl add-flow per flow".into(),
            secs(t.elapsed()),
            count(&of).to_string(),
            n.to_string(),
        ]);
    }
    // What expanding the remote group per (port, rule) would need instead of conjunctions.
    rows.push([
        label,
        "(remote group expanded per port and rule, no conjunction: flows needed, approx.)".into(),
        "-".into(),
        (n - 2 * ports - ports + ports * ports * 2).to_string(),
        "-".into(),
    ]);
}

fn main() {
    let sb = Sandbox::start(SandboxOptions {
        vswitchd: true,
        netns: None,
        clustered: false,
    })
    .expect("sandbox with ovs-vswitchd (needs root)");
    sb.vsctl(&[
        "add-br",
        "br-fw",
        "--",
        "set",
        "bridge",
        "br-fw",
        "datapath_type=netdev",
    ])
    .unwrap();
    let sock = sb.dir().join("br-fw.mgmt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&sock).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rows: Vec<[String; 5]> = Vec::new();
    run(&sb, 100, true, &mut rows);
    run(&sb, 1000, false, &mut rows);
    let head = [
        "scenario",
        "method",
        "time",
        "flows on bridge",
        "flows written",
    ];
    let mut w = [0usize; 5];
    for r in rows.iter().cloned().chain([head.map(String::from)]) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |r: &[String; 5]| {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("| {} |", cells.join(" | "));
    };
    line(&head.map(String::from));
    println!(
        "|{}|",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in &rows {
        line(r);
    }
}
