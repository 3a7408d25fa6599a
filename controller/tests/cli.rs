//! The real `openstack` CLI against the real controller binary: networks, subnets and ports
//! created, listed, shown, updated and deleted by name and by id.
mod common;

use common::*;
use serde_json::Value;

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("list output")
        .iter()
        .map(|i| i["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn openstack_cli_networks_subnets_ports() {
    let c = Controller::start();
    // network create/show/set/list by name and id
    let net = openstack_json(
        &c,
        DEMO,
        &["network", "create", "--description", "first", "net1"],
    );
    let net_id = net["id"].as_str().expect("id").to_string();
    assert_eq!(net["name"], "net1");
    assert_eq!(net["project_id"], "demo");
    assert_eq!(net["status"], "ACTIVE");
    assert_eq!(net["mtu"], 1500);
    let shown = openstack_json(&c, DEMO, &["network", "show", "net1"]);
    assert_eq!(shown["id"], net_id.as_str());
    assert_eq!(shown["description"], "first");
    let (ok, _, err) = openstack(
        &c,
        DEMO,
        &[
            "network",
            "set",
            "--name",
            "net1b",
            "--description",
            "renamed",
            &net_id,
        ],
    );
    assert!(ok, "network set: {err}");
    let shown = openstack_json(&c, DEMO, &["network", "show", &net_id]);
    assert_eq!(shown["name"], "net1b");
    assert_eq!(shown["description"], "renamed");
    assert!(shown["revision_number"].as_i64().unwrap() > 1);

    // subnet create by network name, with a pool; show by name
    let sub = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--network",
            "net1b",
            "--subnet-range",
            "10.0.1.0/24",
            "--allocation-pool",
            "start=10.0.1.10,end=10.0.1.20",
            "sub1",
        ],
    );
    let sub_id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(sub["cidr"], "10.0.1.0/24");
    assert_eq!(sub["gateway_ip"], "10.0.1.1");
    assert_eq!(sub["allocation_pools"][0]["start"], "10.0.1.10");
    let (ok, _, err) = openstack(&c, DEMO, &["subnet", "set", "--name", "sub1b", "sub1"]);
    assert!(ok, "subnet set: {err}");
    let subs = openstack_json(&c, DEMO, &["subnet", "list", "--network", &net_id]);
    assert_eq!(names(&subs), ["sub1b"]);

    // ports: allocated and requested fixed IPs; list filtered by network
    let p1 = openstack_json(&c, DEMO, &["port", "create", "--network", "net1b", "port1"]);
    assert_eq!(p1["fixed_ips"][0]["ip_address"], "10.0.1.10");
    assert_eq!(p1["fixed_ips"][0]["subnet_id"], sub_id.as_str());
    assert!(p1["mac_address"].as_str().unwrap().starts_with("fa:16:3e:"));
    let p2 = openstack_json(
        &c,
        DEMO,
        &[
            "port",
            "create",
            "--network",
            &net_id,
            "--fixed-ip",
            "subnet=sub1b,ip-address=10.0.1.15",
            "port2",
        ],
    );
    assert_eq!(p2["fixed_ips"][0]["ip_address"], "10.0.1.15");
    let (ok, _, err) = openstack(
        &c,
        DEMO,
        &[
            "port",
            "create",
            "--network",
            &net_id,
            "--fixed-ip",
            "ip-address=10.0.1.15",
            "port3",
        ],
    );
    assert!(!ok, "a taken IP must be refused");
    assert!(
        err.contains("10.0.1.15") && err.contains("in use"),
        "CLI shows the conflict: {err}"
    );
    let (ok, _, err) = openstack(
        &c,
        DEMO,
        &[
            "port",
            "set",
            "--name",
            "port1b",
            "--description",
            "d",
            "port1",
        ],
    );
    assert!(ok, "port set: {err}");
    let ports = openstack_json(&c, DEMO, &["port", "list", "--network", "net1b"]);
    assert_eq!(names(&ports), ["port1b", "port2"]);
    let shown = openstack_json(&c, DEMO, &["port", "show", "port1b"]);
    assert_eq!(shown["description"], "d");

    // another project sees none of it; admin sees all
    assert_eq!(
        openstack_json(&c, OTHER, &["network", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        openstack_json(&c, OTHER, &["port", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let (ok, _, _) = openstack(&c, OTHER, &["network", "show", &net_id]);
    assert!(!ok, "another project's network is not found");
    assert_eq!(
        openstack_json(&c, ADMIN, &["port", "list"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // deletes, by name and id; network in use refused first
    let (ok, _, err) = openstack(&c, DEMO, &["network", "delete", "net1b"]);
    assert!(!ok, "network with ports cannot be deleted");
    assert!(err.contains("in use") || err.contains("ports"), "{err}");
    let (ok, _, err) = openstack(
        &c,
        DEMO,
        &["port", "delete", "port1b", p2["id"].as_str().unwrap()],
    );
    assert!(ok, "port delete: {err}");
    let (ok, _, err) = openstack(&c, DEMO, &["subnet", "delete", "sub1b"]);
    assert!(ok, "subnet delete: {err}");
    let (ok, _, err) = openstack(&c, DEMO, &["network", "delete", &net_id]);
    assert!(ok, "network delete: {err}");
    assert_eq!(
        openstack_json(&c, DEMO, &["network", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert!(!c.log_has_5xx(), "no 500s: {:?}", c.log.lock().unwrap());
}

#[test]
fn openstack_cli_provider_networks_as_admin() {
    let c = Controller::start();
    let n = openstack_json(
        &c,
        ADMIN,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vlan",
            "--provider-physical-network",
            "bridge",
            "--provider-segment",
            "2100",
            "--share",
            "pnet",
        ],
    );
    assert_eq!(n["provider:network_type"], "vlan");
    assert_eq!(n["provider:segmentation_id"], 2100);
    assert_eq!(n["shared"], true);
    let ext = openstack_json(
        &c,
        ADMIN,
        &[
            "network",
            "create",
            "--external",
            "--provider-network-type",
            "flat",
            "--provider-physical-network",
            "extern",
            "ext",
        ],
    );
    assert_eq!(ext["router:external"], true);
    // members see shared and external networks, but cannot set provider attributes
    let seen = openstack_json(&c, DEMO, &["network", "list"]);
    assert_eq!(names(&seen), ["ext", "pnet"]);
    let (ok, _, err) = openstack(
        &c,
        DEMO,
        &["network", "create", "--provider-network-type", "vlan", "x"],
    );
    assert!(!ok);
    assert!(
        err.contains("disallowed by policy") || err.contains("403"),
        "{err}"
    );
    // a member may put a port on the shared network
    let sub = openstack_json(
        &c,
        ADMIN,
        &[
            "subnet",
            "create",
            "--network",
            "pnet",
            "--subnet-range",
            "10.5.0.0/24",
            "psub",
        ],
    );
    assert_eq!(sub["ip_version"], 4);
    let p = openstack_json(&c, DEMO, &["port", "create", "--network", "pnet", "mine"]);
    assert_eq!(p["project_id"], "demo");
}
