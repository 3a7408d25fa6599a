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
