//! Tricircle's multi-gateway topology ("multiple north-south networking with east-west"), end to
//! end in the lab: an external network in each pod, a local router with its own gateway in each
//! pod (R1 in RegionOne, R2 in RegionTwo), and a third router R3 joining the two pods' networks
//! for east-west. The controller routes each pod's subnet to the other through R3 (Tricircle's
//! `configure_route`, in what the DHCP servers hand out), the VMs learn the routes by DHCP, each VM leaves through its own pod's upstream (tcpdump on each
//! upstream leg shows that pod's SNAT address) and the VMs reach each other through R3.
//! Real controller, agents, OVS, namespaces, DHCP clients and the openstack CLI. Needs root.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::lab::{ping, wait_ping, Lab};

fn field(lab: &Lab, what: &[&str], column: &str) -> String {
    let mut args = what.to_vec();
    args.extend(["-f", "value", "-c", column]);
    lab.os(&lab.admin, &args).trim().to_string()
}

/// The first source address of an ICMP echo request seen on `ifname` in `netns` while `from`
/// pings `to`.
fn icmp_source_on(netns: &str, ifname: &str, from: &str, to: &str) -> Option<String> {
    let dump = Command::new("ip")
        .args([
            "netns", "exec", netns, "timeout", "8", "tcpdump", "-p", "-c1", "-ni",
        ])
        .arg(ifname)
        .args(["icmp[icmptype] == icmp-echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..5 {
        ping(from, to, "1");
    }
    let out = dump.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // "12:00:00.000000 IP 163.3.125.5 > 163.3.125.1: ICMP echo request, ..."
    let after = text.split(" IP ").nth(1)?;
    Some(after.split_whitespace().next()?.to_string())
}

fn routes(ns: &str) -> String {
    let o = Command::new("ip")
        .args(["-n", ns, "-4", "route", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `ip route` in `ns` until it contains `want` (the DHCP client installs routes once bound).
fn wait_route(ns: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = routes(ns);
        if r.contains(want) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn each_pod_leaves_by_its_own_gateway_and_east_west_goes_through_r3() {
    let lab = Lab::up("mg");
    lab.create_pods();
    let admin = lab.admin.clone();
    let os = |args: &[&str]| lab.os(&admin, args);

    // One external network per pod, on the VLANs the lab's two upstream legs use.
    for (name, region, vlan, cidr, gw) in [
        (
            "ext-net1",
            "RegionOne",
            "3002",
            "163.3.125.0/24",
            "163.3.125.1",
        ),
        (
            "ext-net2",
            "RegionTwo",
            "3001",
            "163.3.124.0/24",
            "163.3.124.1",
        ),
    ] {
        lab.external_network(name, region, vlan, cidr, Some(gw), &format!("{name}-sub"));
    }
    // A local network per pod, each with its own local router and gateway.
    for (i, region, cidr) in [
        ("1", "RegionOne", "10.0.1.0/24"),
        ("2", "RegionTwo", "10.0.2.0/24"),
    ] {
        os(&[
            "network",
            "create",
            "--availability-zone-hint",
            region,
            &format!("net{i}"),
        ]);
        os(&[
            "subnet",
            "create",
            "--network",
            &format!("net{i}"),
            "--subnet-range",
            cidr,
            &format!("subnet{i}"),
        ]);
        os(&[
            "router",
            "create",
            "--availability-zone-hint",
            region,
            &format!("R{i}"),
        ]);
        os(&[
            "router",
            "set",
            "--external-gateway",
            &format!("ext-net{i}"),
            &format!("R{i}"),
        ]);
        os(&[
            "router",
            "add",
            "subnet",
            &format!("R{i}"),
            &format!("subnet{i}"),
        ]);
    }
    // R3 joins the two pods' networks for east-west, by ports (the subnets' gateways are R1's
    // and R2's).
    os(&["router", "create", "R3"]);
    let mut r3_ip = Vec::new();
    for i in ["1", "2"] {
        os(&[
            "port",
            "create",
            "--network",
            &format!("net{i}"),
            &format!("r3-p{i}"),
        ]);
        os(&["router", "add", "port", "R3", &format!("r3-p{i}")]);
        let fixed = field(&lab, &["port", "show", &format!("r3-p{i}")], "fixed_ips");
        let ip = fixed
            .split("ip_address': '")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap_or_else(|| panic!("no address in {fixed}"))
            .to_string();
        r3_ip.push(ip);
    }

    // VMs get address, default route and the host route by DHCP.
    let vm1 = lab.ns("vm1");
    let vm2 = lab.ns("vm2");
    lab.crosspod(
        &[
            "vm",
            "boot",
            "--region",
            "RegionOne",
            "--network",
            "net1",
            &vm1,
        ],
        Some(&admin),
    );
    lab.crosspod(
        &[
            "vm",
            "boot",
            "--region",
            "RegionTwo",
            "--network",
            "net2",
            &vm2,
        ],
        Some(&admin),
    );
    let r = wait_route(&vm1, "10.0.2.0/24");
    assert!(r.contains("default via 10.0.1.1"), "vm1 routes: {r}");
    assert!(
        r.contains(&format!("10.0.2.0/24 via {}", r3_ip[0])),
        "vm1 routes: {r}"
    );
    let r = wait_route(&vm2, "10.0.1.0/24");
    assert!(r.contains("default via 10.0.2.1"), "vm2 routes: {r}");
    assert!(
        r.contains(&format!("10.0.1.0/24 via {}", r3_ip[1])),
        "vm2 routes: {r}"
    );

    let list: serde_json::Value =
        serde_json::from_str(&lab.crosspod(&["--json", "vm", "list"], Some(&admin))).unwrap();
    let addr = |name: &str| -> String {
        list.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let (a1, a2) = (addr(&vm1), addr(&vm2));

    // East-west through R3, both ways.
    assert!(
        wait_ping(&vm1, &a2, true, Duration::from_secs(60)),
        "vm1 -> vm2 through R3 failed\n{}",
        lab.logs()
    );
    assert!(wait_ping(&vm2, &a1, true, Duration::from_secs(30)));

    // North-south: each VM leaves through its own pod's upstream, SNATed to its own router's
    // gateway address.
    let gw_ip = |router: &str| -> String {
        let info = field(&lab, &["router", "show", router], "external_gateway_info");
        info.split("ip_address\": \"")
            .nth(1)
            .or_else(|| info.split("ip_address': '").nth(1))
            .and_then(|s| s.split(['"', '\'']).next())
            .unwrap_or_else(|| panic!("no gateway address in {info}"))
            .to_string()
    };
    let (g1, g2) = (gw_ip("R1"), gw_ip("R2"));
    assert!(
        wait_ping(&vm1, "163.3.125.1", true, Duration::from_secs(60)),
        "vm1 cannot reach RegionOne's upstream\n{}",
        lab.logs()
    );
    assert!(
        wait_ping(&vm2, "163.3.124.1", true, Duration::from_secs(60)),
        "vm2 cannot reach RegionTwo's upstream\n{}",
        lab.logs()
    );
    let ext = lab.ns("ext");
    assert_eq!(
        icmp_source_on(&ext, "gw1", &vm1, "163.3.125.1").as_deref(),
        Some(g1.as_str()),
        "RegionOne's upstream must see R1's address"
    );
    assert_eq!(
        icmp_source_on(&ext, "gw0", &vm2, "163.3.124.1").as_deref(),
        Some(g2.as_str()),
        "RegionTwo's upstream must see R2's address"
    );
}
