//! `crosspod vm` against the real controller: boot creates a Neutron port and a namespace
//! plugged into the node's br-vlan as os-vif does; two VMs on one node talk when tagged alike
//! by hand (the agent's job, not running here) and not otherwise; delete removes everything.

mod common;

use std::process::Command;

use common::*;

fn iface_external_ids(lab: &Lab, node: &str, tap: &str) -> String {
    lab.vsctl(node, &["get", "Interface", tap, "external_ids"])
}

fn vm_json(lab: &Lab) -> serde_json::Value {
    let out = ok(&mut lab.vm(&["list", "--json"]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn vm_boot_plugs_the_port_and_delete_removes_it_all() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    lab.up_with_controller();
    let net = lab.network("net1", "10.0.1.0/24");
    let name = format!("{}vm1", lab.prefix);
    let _guard = TestNs(name.clone()); // removes the VM namespace should the test fail

    let out = ok(&mut lab.vm(&[
        "boot",
        "--static",
        "--region",
        "RegionTwo",
        "--network",
        "net1",
        &name,
        "--json",
    ]));
    let rec: serde_json::Value = serde_json::from_str(&out).unwrap();
    let port_id = rec["port_id"].as_str().unwrap().to_string();
    let mac = rec["mac"].as_str().unwrap().to_string();
    let tap = rec["tap"].as_str().unwrap().to_string();
    assert_eq!(rec["node"], "node2");
    assert_eq!(rec["network_id"], net.as_str());

    // The port exists in Neutron with that MAC and address.
    let port = ok(&mut lab.openstack(None, &["port", "show", &port_id, "-f", "json"]));
    let port: serde_json::Value = serde_json::from_str(&port).unwrap();
    assert_eq!(port["mac_address"], mac.as_str());
    let ip = rec["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(port["fixed_ips"].to_string().contains(&ip), "{port}");

    // The VM namespace: eth0 with the port's MAC and address, default route via the gateway.
    let link = ok(Command::new("ip").args(["-n", &name, "-o", "link", "show", "eth0"]));
    assert!(link.contains(&mac) && link.contains("state UP"), "{link}");
    let addr = ok(Command::new("ip").args(["-n", &name, "-o", "addr", "show", "eth0"]));
    assert!(addr.contains(&format!("{ip}/24")), "{addr}");
    let route = ok(Command::new("ip").args(["-n", &name, "route", "show", "default"]));
    assert!(route.contains("via 10.0.1.1"), "{route}");

    // The node side: on node2's br-vlan, untagged, with the os-vif external ids.
    assert_eq!(lab.vsctl("node2", &["port-to-br", &tap]).trim(), "br-vlan");
    let ids = iface_external_ids(&lab, "node2", &tap);
    assert!(ids.contains(&format!("iface-id=\"{port_id}\"")), "{ids}");
    assert!(ids.contains(&format!("attached-mac=\"{mac}\"")), "{ids}");
    assert!(ids.contains("iface-status=active"), "{ids}");
    assert_eq!(
        lab.vsctl("node2", &["get", "Port", &tap, "tag"]).trim(),
        "[]"
    );

    // No agent runs in this lab: waiting for the port to become ACTIVE times out, saying so,
    // and leaves the VM as it is.
    let vw = format!("{}vw", lab.prefix);
    let _gw = TestNs(vw.clone());
    let out = output(&mut lab.vm(&[
        "boot",
        "--static",
        "--region",
        "RegionTwo",
        "--network",
        "net1",
        "--wait",
        "1",
        &vw,
    ]));
    assert!(!out.status.success(), "--wait succeeded without an agent");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has not bound it"),
        "{out:?}"
    );
    assert!(namespaces().contains(&vw));
    ok(&mut lab.vm(&["delete", &vw]));

    let list = vm_json(&lab);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], name.as_str());
    assert_eq!(list[0]["netns_present"], true);

    ok(&mut lab.vm(&["delete", &name]));
    assert!(!namespaces().contains(&name), "VM namespace left");
    assert!(
        !lab.vsctl("node2", &["list-ports", "br-vlan"])
            .contains(&tap),
        "OVS port left"
    );
    let links = ok(Command::new("ip").args(["-n", &lab.ns("node2"), "-o", "link"]));
    assert!(!links.contains(&tap), "veth left in node2: {links}");
    let gone = output(&mut lab.openstack(None, &["port", "show", &port_id]));
    assert!(!gone.status.success(), "port still exists");
    assert!(vm_json(&lab).as_array().unwrap().is_empty());
}

#[test]
fn two_vms_on_one_node_ping_on_the_same_tag_and_not_on_different_tags() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    lab.up_with_controller();
    lab.network("net1", "10.0.1.0/24");
    let a = format!("{}va", lab.prefix);
    let b = format!("{}vb", lab.prefix);
    let _ga = TestNs(a.clone());
    let _gb = TestNs(b.clone());
    let boot = |n: &str| -> serde_json::Value {
        let out = ok(&mut lab.vm(&[
            "boot",
            "--static",
            "--region",
            "RegionOne",
            "--network",
            "net1",
            n,
            "--json",
        ]));
        serde_json::from_str(&out).unwrap()
    };
    let (ra, rb) = (boot(&a), boot(&b));
    let (ta, tb) = (ra["tap"].as_str().unwrap(), rb["tap"].as_str().unwrap());
    let ip_b = rb["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();

    lab.vsctl(
        "node1",
        &[
            "set", "Port", ta, "tag=101", "--", "set", "Port", tb, "tag=101",
        ],
    );
    ok(&mut in_ns(&a, &["ping", "-c", "2", "-W", "3", &ip_b]));

    lab.vsctl("node1", &["set", "Port", tb, "tag=102"]);
    ok(Command::new("ip").args(["-n", &a, "neigh", "flush", "all"]));
    let st = output(&mut in_ns(&a, &["ping", "-c", "2", "-W", "1", &ip_b]));
    assert!(
        !st.status.success(),
        "VMs on different VLANs reached each other"
    );

    // lab down takes the VMs with it.
    ok(&mut lab.cmd(&["down"]));
    assert!(!namespaces().contains(&a) && !namespaces().contains(&b));
}

#[test]
fn a_vm_name_that_clashes_with_a_namespace_changes_nothing() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    lab.up_with_controller();
    lab.network("net1", "10.0.1.0/24");
    let squatter = TestNs::create(&format!("{}sq", lab.prefix));
    let out = output(&mut lab.vm(&[
        "boot",
        "--region",
        "RegionOne",
        "--network",
        "net1",
        &squatter.0,
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists already"), "{err}");
    let ports = ok(&mut lab.openstack(None, &["port", "list", "-f", "value", "-c", "ID"]));
    assert!(ports.trim().is_empty(), "a port was created: {ports}");
    assert!(lab.vsctl("node1", &["list-ports", "br-vlan"]).trim() == "eth1");

    // An unknown region and an unknown network are refused with what exists.
    let out = output(&mut lab.vm(&["boot", "--region", "RegionNine", "--network", "net1", "x"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RegionOne"),
        "{out:?}"
    );
    let out = output(&mut lab.vm(&[
        "boot",
        "--region",
        "RegionOne",
        "--network",
        "nonet",
        &format!("{}vx", lab.prefix),
    ]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nonet"),
        "{out:?}"
    );
    assert!(!namespaces().contains(&format!("{}vx", lab.prefix)));

    // A network without a subnet gives a port without an address: boot fails and rolls back
    // (no namespace, no port, no record).
    ok(&mut lab.openstack(None, &["network", "create", "bare"]));
    let vy = format!("{}vy", lab.prefix);
    let _gy = TestNs(vy.clone());
    let out = output(&mut lab.vm(&["boot", "--region", "RegionOne", "--network", "bare", &vy]));
    assert!(
        !out.status.success(),
        "boot on a subnet-less network succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("subnet"),
        "{out:?}"
    );
    assert!(
        !namespaces().contains(&vy),
        "namespace left by a failed boot"
    );
    let ports = ok(&mut lab.openstack(None, &["port", "list", "-f", "value", "-c", "ID"]));
    assert!(ports.trim().is_empty(), "failed boot left a port: {ports}");
    assert!(vm_json(&lab).as_array().unwrap().is_empty());
}

/// A DHCP server by hand on node2's br-vlan (dnsmasq in a test namespace, untagged like the VM
/// ports of this agent-less lab), serving only the subnet's one-address pool.
struct Dnsmasq(std::process::Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dnsmasq(ns: &str, leases: &std::path::Path) -> Dnsmasq {
    let _ = std::fs::remove_file(leases);
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .args([
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--no-ping",
        ])
        .arg("--dhcp-range=10.0.1.50,10.0.1.50,255.255.255.0,120")
        .args(["--dhcp-option=3,10.0.1.1", "--dhcp-option=6,10.0.0.53"])
        .arg("--dhcp-option=121,10.0.2.0/24,10.0.1.254,0.0.0.0/0,10.0.1.1")
        .arg("--dhcp-option=26,1400")
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (scripts/install-deps.sh installs dnsmasq-base)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    Dnsmasq(child)
}

fn client_pid(lab: &Lab, vm: &str) -> Option<i32> {
    std::fs::read_to_string(lab.dir.join("vms").join(format!("{vm}.udhcpc.pid")))
        .ok()
        .and_then(|p| p.trim().parse().ok())
}

/// A live (not zombie) udhcpc.
fn alive_udhcpc(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.contains("(udhcpc)")
        && stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
}

fn dhcp_files_of(lab: &Lab, vm: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(lab.dir.join("vms"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(&format!("{vm}.")))
                .collect()
        })
        .unwrap_or_default();
    if std::path::Path::new(&format!("/etc/netns/{vm}")).exists() {
        v.push(format!("/etc/netns/{vm}"));
    }
    v
}

#[test]
fn vm_boot_by_dhcp_takes_its_lease_and_delete_and_lab_down_stop_the_client() {
    require_root_and_tools();
    require_openstack();
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let lab = Lab::new();
    lab.up_with_controller();
    ok(&mut lab.openstack(None, &["network", "create", "net1"]));
    // One address in the pool: the port's fixed IP is known (10.0.1.50) and so is dnsmasq's.
    ok(&mut lab.openstack(
        None,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.0.1.0/24",
            "--allocation-pool",
            "start=10.0.1.50,end=10.0.1.50",
            "net1-subnet",
        ],
    ));
    let srv = TestNs::create(&format!("{}dsrv", lab.prefix));
    let peer = format!("{}ds", lab.prefix);
    ok(Command::new("ip").args([
        "-n",
        &lab.ns("node2"),
        "link",
        "add",
        &peer,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &srv.0,
    ]));
    ok(Command::new("ip").args(["-n", &lab.ns("node2"), "link", "set", &peer, "up"]));
    ok(Command::new("ip").args(["-n", &srv.0, "link", "set", "eth0", "up"]));
    ok(Command::new("ip").args(["-n", &srv.0, "addr", "add", "10.0.1.2/24", "dev", "eth0"]));
    // Behind the lab's userspace datapath an offloaded UDP checksum is never filled in, and
    // udhcpc drops such replies: dnsmasq's side computes it (Neutron does it with an iptables
    // CHECKSUM rule; the agent's own server sends checksum 0).
    ok(&mut in_ns(&srv.0, &["ethtool", "-K", "eth0", "tx", "off"]));
    lab.vsctl("node2", &["add-port", "br-vlan", &peer]);
    let leases = std::env::temp_dir().join(format!("{}-dnsmasq.leases", lab.prefix));
    let server = dnsmasq(&srv.0, &leases);

    // vm1 by DHCP: the port's address, the routes (option 121 with the default), MTU, and DNS
    // in its own resolv.conf; the client stays to renew.
    let vm1 = format!("{}vd1", lab.prefix);
    let _g1 = TestNs(vm1.clone());
    let out = ok(&mut lab.vm(&[
        "boot",
        "--region",
        "RegionTwo",
        "--network",
        "net1",
        "--dhcp",
        &vm1,
        "--json",
    ]));
    let rec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["dhcp"], true, "{rec}");
    assert_eq!(rec["address"], "10.0.1.50/24", "{rec}");
    let addr = ok(Command::new("ip").args(["-n", &vm1, "-o", "addr", "show", "eth0"]));
    assert!(addr.contains("10.0.1.50/24"), "{addr}");
    let link = ok(Command::new("ip").args(["-n", &vm1, "-o", "link", "show", "eth0"]));
    assert!(link.contains("mtu 1400"), "{link}");
    let routes = ok(Command::new("ip").args(["-n", &vm1, "route"]));
    assert!(routes.contains("default via 10.0.1.1"), "{routes}");
    assert!(routes.contains("10.0.2.0/24 via 10.0.1.254"), "{routes}");
    assert_eq!(
        std::fs::read_to_string(format!("/etc/netns/{vm1}/resolv.conf")).unwrap(),
        "nameserver 10.0.0.53\n"
    );
    let pid = client_pid(&lab, &vm1).expect("pid file");
    assert!(alive_udhcpc(pid), "the DHCP client is not running to renew");

    // vm delete stops the client and removes its files and /etc/netns/<vm>.
    ok(&mut lab.vm(&["delete", &vm1]));
    assert!(!alive_udhcpc(pid));
    assert_eq!(dhcp_files_of(&lab, &vm1), Vec::<String>::new());
    assert!(!namespaces().contains(&vm1));

    // No server: --dhcp fails, saying so, and leaves nothing (namespace, port, files).
    drop(server);
    let vm2 = format!("{}vd2", lab.prefix);
    let _g2 = TestNs(vm2.clone());
    let out = output(&mut lab.vm(&[
        "boot",
        "--region",
        "RegionTwo",
        "--network",
        "net1",
        "--dhcp",
        &vm2,
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no DHCP lease"), "{err}");
    assert!(!namespaces().contains(&vm2));
    assert_eq!(dhcp_files_of(&lab, &vm2), Vec::<String>::new());
    let ports = ok(&mut lab.openstack(None, &["port", "list", "-f", "value", "-c", "Name"]));
    assert!(!ports.contains(&vm2), "{ports}");

    // lab down stops the client of a VM still booted.
    let _server = dnsmasq(&srv.0, &leases);
    let vm3 = format!("{}vd3", lab.prefix);
    let _g3 = TestNs(vm3.clone());
    ok(&mut lab.vm(&[
        "boot",
        "--region",
        "RegionTwo",
        "--network",
        "net1",
        "--dhcp",
        &vm3,
    ]));
    let pid = client_pid(&lab, &vm3).expect("pid file");
    assert!(alive_udhcpc(pid));
    ok(&mut lab.cmd(&["down"]));
    assert!(!alive_udhcpc(pid));
    assert!(!std::path::Path::new(&format!("/etc/netns/{vm3}")).exists());
    let _ = std::fs::remove_file(&leases);
    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        host_resolv,
        "the host's /etc/resolv.conf changed"
    );
}
