//! The agent refuses an invalid desired state before it changes anything (issue 14): on a real
//! node (own ovsdb-server and ovs-vswitchd in a namespace), a valid state is applied first; then,
//! for each validation rule, an invalid variant leaves zero OVSDB writes and zero kernel changes
//! (counted as the restart test counts them, and checked against a snapshot of the node), is
//! reported with its reason, and the valid state stays in force. Needs root and Open vSwitch.

mod common;

use std::time::{Duration, Instant};

use common::{desired, router_ns, Node, ROUTER};
use plumbing::netns;
use serde_json::{json, Value};

/// The common state plus a gateway leg with a default route, SNAT and a floating IP, so the NAT
/// rules have something to break.
fn valid(tag: &str) -> Value {
    let mut s = desired(tag, true);
    let r = &mut s["routers"][ROUTER];
    r["legs"].as_array_mut().unwrap().push(json!(
        {"kind": "gateway", "bridge": "br-vlan", "tag": 3001, "address": "163.3.124.5/24",
         "mac": "fa:16:3e:00:01:03", "ns_ifname": format!("qg-{tag}"),
         "ovs_ifname": format!("vg-{tag}"), "network_id": "ext", "subnet_id": "ext-s"}));
    r["routes"].as_array_mut().unwrap().insert(
        0,
        json!({"destination": "0.0.0.0/0", "nexthop": "163.3.124.1"}),
    );
    r["nat"] = json!({
        "snat": [{"sources": ["10.0.1.0/24"], "out_ifname": format!("qg-{tag}"),
                  "to": "163.3.124.5"}],
        "floating": [{"floating_ip": "163.3.124.7", "fixed_ip": "10.0.1.11",
                      "out_ifname": format!("qg-{tag}"), "floatingip_id": "f1",
                      "port_id": "port-vm1"}]
    });
    s
}

type Edit = fn(&mut Value, &str, &str);

/// (rule, edit of the valid state given the name tag and the uplink, text the reason contains).
fn invalid_variants() -> Vec<(&'static str, Edit, &'static str)> {
    fn r(s: &mut Value) -> &mut Value {
        &mut s["routers"][ROUTER]
    }
    vec![
        (
            "node is the agent's own",
            |s, _, _| s["node"] = json!("n2"),
            "for node \"n2\"",
        ),
        (
            "pod is the agent's own",
            |s, _, _| s["pod"] = json!("RegionTwo"),
            "pod \"RegionTwo\"",
        ),
        (
            // The cable's far end lives in `<prefix>far`: the document tries to take it over.
            "namespace is qrouter-<router id>",
            |s, _, _| r(s)["namespace"] = json!("far"),
            "namespace \"far\"",
        ),
        (
            "router id is a UUID",
            |s, _, _| {
                let mut router = s["routers"]
                    .as_object_mut()
                    .unwrap()
                    .remove(ROUTER)
                    .unwrap();
                router["router_id"] = json!("r1");
                router["namespace"] = json!("qrouter-r1");
                s["routers"]["r1"] = router;
            },
            "must be a UUID",
        ),
        (
            "port VLAN not the dead VLAN",
            |s, _, _| s["ports"]["port-vm1"]["tag"] = json!(4095),
            "VLAN 4095",
        ),
        (
            "leg VLAN not 0",
            |s, _, _| r(s)["legs"][0]["tag"] = json!(0),
            "VLAN 0",
        ),
        (
            "trunk VLAN within 1-4094",
            |s, _, _| s["bridges"]["br-vlan"]["trunks"] = json!([2001, 4095]),
            "VLAN 4095",
        ),
        (
            "interface name at most 15 bytes",
            |s, _, _| r(s)["legs"][0]["ns_ifname"] = json!("qr-0123456789abc"),
            "longer than 15 bytes",
        ),
        (
            "interface name a valid Linux name",
            |s, _, _| r(s)["legs"][0]["ovs_ifname"] = json!("vr/1"),
            "contains '/'",
        ),
        (
            "node-side interface names unique",
            |s, tag, _| r(s)["legs"][1]["ovs_ifname"] = json!(format!("vr-{tag}")),
            "is also used by",
        ),
        (
            "namespace-side interface names unique",
            |s, tag, _| r(s)["legs"][1]["ns_ifname"] = json!(format!("qr-{tag}")),
            "is also used by",
        ),
        (
            "no leg takes the uplink's name",
            |s, _, uplink| r(s)["legs"][0]["ovs_ifname"] = json!(uplink),
            "uplink device",
        ),
        (
            "legs on the document's bridges",
            |s, _, _| r(s)["legs"][0]["bridge"] = json!("br-int"),
            "bridge \"br-int\"",
        ),
        (
            "route next hop on a connected leg",
            |s, _, _| r(s)["routes"][1]["nexthop"] = json!("100.0.1.3"),
            "not on a connected leg",
        ),
        (
            "leg address inside its subnet",
            |s, _, _| r(s)["legs"][0]["address"] = json!("10.0.1.0/24"),
            "network address",
        ),
        (
            "SNAT to the gateway leg's address",
            |s, _, _| r(s)["nat"]["snat"][0]["to"] = json!("163.3.124.6"),
            "gateway leg's address",
        ),
        (
            "floating IP not the gateway's own address",
            |s, _, _| r(s)["nat"]["floating"][0]["floating_ip"] = json!("163.3.124.5"),
            "own address",
        ),
        (
            "no two legs with one MAC",
            |s, _, _| r(s)["legs"][1]["mac"] = json!("fa:16:3e:00:01:01"),
            "MAC fa:16:3e:00:01:01 is also used by",
        ),
        (
            "no leg and port with one MAC",
            |s, _, _| s["ports"]["port-vm1"]["mac"] = json!("fa:16:3e:00:01:02"),
            "is also used by",
        ),
    ]
}

/// What the agent could have changed, read independently of it: the OVS rows and columns it
/// writes, and every namespace of this node with its links (name, MAC, owner alias, admin state),
/// addresses, routes, forwarding sysctl and nftables rules. What the kernel changes on its own
/// (carrier, IPv6 link-local addresses and routes once a cable comes up) is left out.
fn snapshot(node: &Node) -> String {
    let mut out = String::new();
    for (table, columns) in [
        ("bridge", "name,datapath_type,ports"),
        ("port", "name,tag,trunks,external_ids,interfaces"),
        ("interface", "name,type,external_ids"),
    ] {
        let cols = format!("--columns={columns}");
        out += &node.vsctl(&["--format=json", &cols, "list", table]);
        out.push('\n');
    }
    let mut all: Vec<String> = netns::list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&node.prefix))
        .collect();
    all.sort();
    out += &format!("namespaces {all:?}\n");
    for ns in &all {
        out += &format!("== {ns}\n");
        for l in ip_json(&["-n", ns, "-d", "link", "show"]) {
            let admin_up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            out += &format!(
                "link {} {} alias={} up={admin_up} mtu={}\n",
                l["ifname"], l["address"], l["ifalias"], l["mtu"]
            );
        }
        for l in ip_json(&["-n", ns, "addr", "show"]) {
            for a in l["addr_info"].as_array().into_iter().flatten() {
                if a["scope"] != "link" {
                    out += &format!("addr {} {}/{}\n", l["ifname"], a["local"], a["prefixlen"]);
                }
            }
        }
        for family in ["-4", "-6"] {
            for r in ip_json(&["-n", ns, family, "route", "show", "table", "all"]) {
                let dst = r["dst"].as_str().unwrap_or_default();
                if !(dst.starts_with("fe80") || dst.starts_with("ff00")) {
                    out += &format!("route {r}\n");
                }
            }
        }
        for args in [
            vec!["netns", "exec", ns, "nft", "list", "ruleset"],
            vec!["netns", "exec", ns, "sysctl", "net.ipv4.ip_forward"],
        ] {
            out += &String::from_utf8_lossy(&run_ip(&args));
        }
    }
    out
}

/// A snapshot once ovs-vswitchd and the kernel have finished reacting to the last pass: the
/// bridge's own device exists (the userspace datapath makes it some time after the bridge row)
/// and three reads 300 ms apart agree.
fn settled_snapshot(node: &Node) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = snapshot(node);
    let mut same = 0;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = snapshot(node);
        let bridge_dev = now.contains("link \"br-vlan\"");
        same = if now == last && bridge_dev {
            same + 1
        } else {
            0
        };
        if same >= 2 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the node does not settle:\n{}",
            diff(&last, &now)
        );
        last = now;
    }
}

fn run_ip(args: &[&str]) -> Vec<u8> {
    let o = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("running ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn ip_json(args: &[&str]) -> Vec<Value> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = run_ip(&full);
    let mut v: Vec<Value> = serde_json::from_slice::<Value>(&out)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    v.sort_by_key(Value::to_string);
    v
}

#[test]
fn every_invalid_document_changes_nothing_and_the_valid_state_stays_in_force() {
    let node = Node::start();
    let tag = format!("i{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let good = valid(&tag);
    let (first, ok) = node.agent_once(&good, &uplink);
    assert!(ok, "the valid state must apply: {first}");
    assert_eq!(first["refused"], false, "{first}");
    // As the restart test: the valid state again is zero changes and zero OVSDB writes.
    let (again, ok) = node.agent_once(&good, &uplink);
    assert!(ok, "{again}");
    assert_eq!(again["ovsdb_write_transactions"], 0, "{again}");
    assert_eq!(again["linux_changes"], 0, "{again}");
    let before = settled_snapshot(&node);
    assert!(
        before.contains("163.3.124.7"),
        "floating IP in place: {before}"
    );

    let cases = invalid_variants();
    for (rule, edit, reason) in &cases {
        let mut bad = good.clone();
        edit(&mut bad, &tag, &uplink);
        let (summary, ok) = node.agent_once(&bad, &uplink);
        assert!(
            !ok,
            "{rule}: an invalid document must fail the run: {summary}"
        );
        assert_eq!(summary["refused"], true, "{rule}: {summary}");
        assert_eq!(summary["ovsdb_write_transactions"], 0, "{rule}: {summary}");
        assert_eq!(summary["ovs_changes"], 0, "{rule}: {summary}");
        assert_eq!(summary["linux_changes"], 0, "{rule}: {summary}");
        let errors: Vec<&str> = summary["report"]["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let errors = errors.join("\n");
        assert!(
            errors.contains("refused") && errors.contains(reason),
            "{rule}: the report must give the reason ({reason}): {errors}"
        );
        assert_eq!(
            summary["report"]["revision_applied"], 0,
            "{rule}: nothing applied"
        );
        let after = snapshot(&node);
        assert!(
            after == before,
            "{rule}: the node changed:\n{}",
            diff(&before, &after)
        );
    }

    // The valid state is still the one in force: applying it changes nothing.
    let (last, ok) = node.agent_once(&good, &uplink);
    assert!(ok, "{last}");
    assert_eq!(last["ovsdb_write_transactions"], 0, "{last}");
    assert_eq!(last["ovs_changes"], 0, "{last}");
    assert_eq!(last["linux_changes"], 0, "{last}");
    assert!(netns::exists(&router_ns(&node)));
    assert_eq!(cases.len(), 19);
}

#[test]
fn the_daemon_refuses_an_invalid_file_and_keeps_reconciling_to_the_last_valid_state() {
    let node = Node::start();
    let tag = format!("d{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let good = valid(&tag);
    let port = common::free_port();
    let bind = format!("127.0.0.1:{port}");
    let agent = node.agent_daemon(&good, &uplink, &["--metrics-bind", &bind]);
    let leg = format!("vr-{tag}");
    let wait = Duration::from_secs(20);
    assert_eq!(
        node.wait_vsctl(&["get", "port", &format!("vg-{tag}"), "tag"], "3001", wait),
        "3001",
        "agent log:\n{}",
        agent.log()
    );
    // Let the first pass finish (the router namespace with its NAT) before the snapshot.
    let deadline = Instant::now() + wait;
    while !snapshot(&node).contains("163.3.124.7") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = settled_snapshot(&node);

    // Invalid in several ways at once, each of which would be visible if applied.
    let mut bad = good.clone();
    bad["revision"] = json!(4);
    bad["routers"][ROUTER]["legs"][0]["tag"] = json!(4095);
    bad["routers"][ROUTER]["namespace"] = json!("far");
    bad["bridges"]["br-vlan"]["trunks"] = json!([2001, 2002]);
    node.write_desired(&bad);
    let deadline = Instant::now() + wait;
    while !agent.log().contains("desired state refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = agent.log();
    assert!(
        log.contains("desired state refused") && log.contains("VLAN 4095"),
        "the refusal and its reason are logged:\n{log}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let after = snapshot(&node);
    assert!(
        after == before,
        "the node changed:\n{}",
        diff(&before, &after)
    );
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("crosspod_agent_desired_states_refused_total 1"),
        "{metrics}"
    );

    // Someone changes an owned port: the agent puts back the last valid state, not the refused one.
    node.vsctl(&["set", "port", &leg, "tag=999"]);
    assert_eq!(
        node.wait_vsctl(&["get", "port", &leg, "tag"], "101", wait),
        "101",
        "agent log:\n{}",
        agent.log()
    );
    assert_eq!(node.vsctl(&["get", "port", &uplink, "trunks"]), "[2001]");

    // A valid document is taken again.
    let mut next = good.clone();
    next["revision"] = json!(5);
    next["bridges"]["br-vlan"]["trunks"] = json!([2001, 2002]);
    node.write_desired(&next);
    assert_eq!(
        node.wait_vsctl(&["get", "port", &uplink, "trunks"], "[2001, 2002]", wait),
        "[2001, 2002]",
        "agent log:\n{}",
        agent.log()
    );
}

/// The lines of two snapshots that differ, for assertion messages.
fn diff(before: &str, after: &str) -> String {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let mut out = String::new();
    for i in 0..b.len().max(a.len()) {
        let (x, y) = (b.get(i).copied(), a.get(i).copied());
        if x != y {
            out += &format!("line {i}:\n- {}\n+ {}\n", x.unwrap_or(""), y.unwrap_or(""));
        }
    }
    out
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}
