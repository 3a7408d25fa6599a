//! DHCP in the lab with real clients (issue "DHCP for every VM"): on a stretched network each
//! pod's VM gets its own pod's router leg as default route, so its traffic to the outside leaves
//! its pod over the bridge network and never over the stretched VLAN; the subnet's DNS servers,
//! host routes and the network's MTU reach the VMs, and a changed DNS server reaches them at
//! their next renewal; a subnet without DHCP answers nobody; the host's /etc/resolv.conf is
//! never written. Real controller, agents, OVS, namespaces, udhcpc and openstack CLI. Needs root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::lab::{ping, wait_ping, Lab};

fn sh(ns: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn default_via(ns: &str) -> Option<String> {
    let r = sh(ns, &["ip", "-4", "route", "show", "default"]);
    r.split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .map(str::to_string)
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ICMP echo requests to `to` seen on `node`'s eth1 inside VLAN `vid` while `from` pings it.
fn echoes_on_vlan(lab: &Lab, node: &str, vid: &str, from: &str, to: &str) -> usize {
    let dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(node),
            "timeout",
            "6",
            "tcpdump",
            "-p",
            "-nei",
        ])
        .args([
            "eth1",
            "vlan",
            vid,
            "and",
            "icmp[icmptype] == icmp-echo",
            "and",
        ])
        .args(["dst", "host", to])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..4 {
        assert!(ping(from, to, "2"), "{from} cannot reach {to}");
    }
    let out = dump.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("ICMP echo request"))
        .count()
}

fn resolv_conf_hash() -> Vec<u8> {
    std::fs::read("/etc/resolv.conf").unwrap_or_default()
}

#[test]
fn stretched_network_each_pod_uses_its_own_router_and_options_reach_the_vms() {
    let host_resolv = resolv_conf_hash();
    let lab = Lab::up("dh");
    lab.create_pods();
    let admin = lab.admin.clone();
    let os = |args: &[&str]| lab.os(&admin, args);

    lab.external_network(
        "ext-net",
        "RegionTwo",
        "3001",
        "163.3.124.0/24",
        None,
        "ext-subnet",
    );
    // A network stretched over both pods, with DNS, a host route and a smaller MTU.
    os(&[
        "network",
        "create",
        "--provider-network-type",
        "vlan",
        "--provider-physical-network",
        "bridge",
        "--mtu",
        "1400",
        "sn",
    ]);
    let vid = os(&[
        "network",
        "show",
        "sn",
        "-f",
        "value",
        "-c",
        "provider:segmentation_id",
    ])
    .trim()
    .to_string();
    os(&[
        "subnet",
        "create",
        "--network",
        "sn",
        "--subnet-range",
        "10.7.0.0/24",
        "--dns-nameserver",
        "10.7.0.53",
        "--host-route",
        "destination=192.0.2.0/24,gateway=10.7.0.254",
        "sn-sub",
    ]);
    os(&["router", "create", "r"]);
    os(&["router", "add", "subnet", "r", "sn-sub"]);
    os(&["router", "set", "--external-gateway", "ext-net", "r"]);

    let (vm1, vm2) = (lab.ns("vm1"), lab.ns("vm2"));
    for (vm, region) in [(&vm1, "RegionOne"), (&vm2, "RegionTwo")] {
        let out = lab.crosspod(
            &["vm", "boot", "--region", region, "--network", "sn", vm],
            Some(&admin),
        );
        assert!(out.contains("DHCP"), "{vm} was not booted by DHCP: {out}");
    }

    // Each pod's VM has its own pod's router leg as default route.
    let gw1 = until("vm1's default route", || default_via(&vm1));
    let gw2 = until("vm2's default route", || default_via(&vm2));
    assert_ne!(
        gw1, gw2,
        "both pods' VMs use one router address: traffic hairpins across pods"
    );
    assert!(
        gw1 == "10.7.0.1" || gw2 == "10.7.0.1",
        "neither VM uses the subnet's gateway_ip: {gw1} {gw2}"
    );
    let router_ips = os(&[
        "port",
        "list",
        "--router",
        "r",
        "-f",
        "value",
        "-c",
        "Fixed IP Addresses",
    ]);
    for gw in [&gw1, &gw2] {
        assert!(
            router_ips.contains(&format!("'{gw}'")),
            "{gw} is not one of the router's addresses: {router_ips}"
        );
    }

    // One DHCP port per pod, each ACTIVE once its agent serves it.
    let statuses = until("both DHCP ports ACTIVE", || {
        let s = os(&[
            "port",
            "list",
            "--device-owner",
            "network:dhcp",
            "--network",
            "sn",
            "-f",
            "value",
            "-c",
            "Status",
        ]);
        (s.lines().filter(|l| l.trim() == "ACTIVE").count() == 2).then_some(s)
    });
    assert_eq!(statuses.lines().count(), 2, "{statuses}");

    // Options: host route, MTU, DNS (in the VM's own resolv.conf).
    for vm in [&vm1, &vm2] {
        let routes = sh(vm, &["ip", "-4", "route"]);
        assert!(
            routes.contains("192.0.2.0/24 via 10.7.0.254"),
            "{vm}: {routes}"
        );
        let link = sh(vm, &["ip", "link", "show", "eth0"]);
        assert!(link.contains("mtu 1400"), "{vm}: {link}");
        let resolv = std::fs::read_to_string(format!("/etc/netns/{vm}/resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 10.7.0.53"), "{vm}: {resolv}");
    }

    // Out to the upstream: from both pods, and the non-gateway pod's echoes never ride the
    // stretched VLAN between the nodes (they cross on the bridge network instead).
    assert!(
        wait_ping(&vm1, "163.3.124.1", true, Duration::from_secs(60)),
        "vm1 cannot reach the upstream\n{}",
        lab.logs()
    );
    assert!(wait_ping(
        &vm2,
        "163.3.124.1",
        true,
        Duration::from_secs(30)
    ));
    assert_eq!(
        echoes_on_vlan(&lab, "node1", &vid, &vm1, "163.3.124.1"),
        0,
        "vm1's traffic to the outside crossed pods on the stretched VLAN {vid}"
    );
    // Cross-pod L2 on the stretched network still works.
    let a2 = sh(&vm2, &["ip", "-4", "-o", "addr", "show", "eth0"]);
    let a2 = a2
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(ping(&vm1, &a2, "2"), "vm1 cannot reach vm2 at {a2}");

    // A changed DNS server reaches the VMs at their next renewal (forced with SIGUSR1).
    os(&["subnet", "set", "--dns-nameserver", "10.7.0.54", "sn-sub"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    for vm in [&vm1, &vm2] {
        let pidfile = lab.dir.join("vms").join(format!("{vm}.udhcpc.pid"));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        loop {
            Command::new("kill")
                .args(["-USR1", pid.trim()])
                .status()
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let resolv = std::fs::read_to_string(format!("/etc/netns/{vm}/resolv.conf")).unwrap();
            if resolv.contains("nameserver 10.7.0.54") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{vm} did not get the new DNS server on renewal: {resolv}"
            );
        }
    }

    // A subnet without DHCP answers nobody: a client asking anyway gets no lease.
    os(&["network", "create", "nodhcp"]);
    os(&[
        "subnet",
        "create",
        "--network",
        "nodhcp",
        "--no-dhcp",
        "--subnet-range",
        "10.8.0.0/24",
        "nodhcp-sub",
    ]);
    let vm3 = lab.ns("vm3");
    let o = Command::new(&lab.crosspod)
        .args([
            "vm",
            "boot",
            "--dhcp",
            "--region",
            "RegionOne",
            "--network",
            "nodhcp",
            &vm3,
        ])
        .arg("--dir")
        .arg(&lab.dir)
        .env("OS_ENDPOINT", format!("http://127.0.0.1:{}", lab.neutron))
        .env("OS_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a VM got a lease on a subnet without DHCP: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no DHCP lease"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Static addressing still works there.
    let out = lab.crosspod(
        &[
            "vm",
            "boot",
            "--region",
            "RegionOne",
            "--network",
            "nodhcp",
            &vm3,
        ],
        Some(&admin),
    );
    assert!(!out.contains("DHCP"), "{out}");

    for vm in [&vm1, &vm2, &vm3] {
        lab.crosspod(&["vm", "delete", vm], Some(&admin));
        assert!(!Path::new(&format!("/etc/netns/{vm}")).exists());
    }
    assert_eq!(
        resolv_conf_hash(),
        host_resolv,
        "the host's /etc/resolv.conf was written"
    );
}
