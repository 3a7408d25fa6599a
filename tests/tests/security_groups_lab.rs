//! Security groups in the lab, across pods, with real packets (issue "Security groups and port
//! security"): after the guide (both VMs in their project's default group, which admits its own
//! members from any pod), a group of its own for vm2 closes it; a TCP rule whose remote group is
//! the default group opens exactly one port to vm1 in the other pod; moving vm1 out of the
//! default group closes that port again. Real controller, agents, OVS flows with conntrack,
//! namespaces and the openstack CLI. Needs root.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::lab::{ping, Lab};

/// A TCP listener in a namespace, killed on drop.
struct Listener(Child);

impl Listener {
    fn start(ns: &str, port: u16) -> Listener {
        let code = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', {port}))\ns.listen(16)\nwhile True:\n    c, _ = s.accept()\n    c.close()\n"
        );
        let child = Command::new("ip")
            // The venv's Python, which Lab::up already requires (the openstack CLI's).
            .args([
                "netns",
                "exec",
                ns,
                "/var/lib/crosspod/venv/bin/python3",
                "-c",
                &code,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcp_connects(ns: &str, ip: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "2", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Waits until `check` returns `want` (flows follow API changes asynchronously).
fn eventually(what: &str, want: bool, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while check() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: still {} after 30 s",
            !want
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn groups_rules_and_remote_groups_across_pods() {
    let lab = Lab::up("sg");
    let played = lab.play_guide("guide");
    let admin = lab.admin.clone();
    let os = |args: &[&str]| lab.os(&admin, args).trim().to_string();
    let (vm1, vm2) = (lab.ns("vm1"), lab.ns("vm2"));
    let vm2_ip = played.vm2_ip.clone();
    let list: serde_json::Value =
        serde_json::from_str(&lab.crosspod(&["--json", "vm", "list"], None)).unwrap();
    let port_of = |name: &str| -> String {
        list.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()["port_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (p1, p2) = (port_of(&vm1), port_of(&vm2));
    let default_sg = os(&["port", "show", &p1, "-f", "json"]);
    let default_sg: serde_json::Value = serde_json::from_str(&default_sg).unwrap();
    let default_sg = default_sg["security_group_ids"][0]
        .as_str()
        .unwrap()
        .to_string();

    let _l1 = Listener::start(&vm2, 8080);
    let _l2 = Listener::start(&vm2, 9090);

    // The default group admits its members, whatever the pod and the protocol.
    eventually("vm1 -> vm2:8080 in the default group", true, || {
        tcp_connects(&vm1, &vm2_ip, 8080)
    });
    assert!(tcp_connects(&vm1, &vm2_ip, 9090));
    assert!(ping(&vm1, &vm2_ip, "2"));

    // vm2 alone in a new group (egress only, as Neutron creates it): closed to vm1.
    let web = os(&[
        "security", "group", "create", "web", "-f", "value", "-c", "id",
    ]);
    os(&[
        "port",
        "set",
        "--no-security-group",
        "--security-group",
        &web,
        &p2,
    ]);
    eventually("vm1 -> vm2 ping once vm2 is only in 'web'", false, || {
        ping(&vm1, &vm2_ip, "1")
    });
    assert!(!tcp_connects(&vm1, &vm2_ip, 8080));

    // One TCP port from the default group's members (vm1, in the other pod).
    os(&[
        "security",
        "group",
        "rule",
        "create",
        "--ingress",
        "--protocol",
        "tcp",
        "--dst-port",
        "8080",
        "--remote-group",
        &default_sg,
        &web,
    ]);
    eventually("vm1 -> vm2:8080 by the remote-group rule", true, || {
        tcp_connects(&vm1, &vm2_ip, 8080)
    });
    assert!(
        !tcp_connects(&vm1, &vm2_ip, 9090),
        "a port no rule opens is open"
    );
    assert!(!ping(&vm1, &vm2_ip, "1"), "ICMP passes without a rule");

    // vm1 leaves the default group: the remote-group rule no longer matches it.
    os(&[
        "port",
        "set",
        "--no-security-group",
        "--security-group",
        &web,
        &p1,
    ]);
    eventually(
        "vm1 -> vm2:8080 once vm1 left the default group",
        false,
        || tcp_connects(&vm1, &vm2_ip, 8080),
    );
}
