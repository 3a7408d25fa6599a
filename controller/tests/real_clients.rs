//! Real clients unchanged (issue 15, the first eight wrong answers): each through the real
//! `openstack` CLI, as an operator would type it.

mod common;

use common::guide::{agent, ok, pods, register};
use common::{openstack, openstack_json, Controller, ADMIN};
use serde_json::Value;

fn os(c: &Controller, args: &[&str]) -> Value {
    openstack_json(c, ADMIN, args)
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Pods and nodes of the guide, an external network created as DevStack does (no hints), a
/// project network with a subnet: (public id, ext subnet id, net id, subnet id).
fn setup(c: &Controller) -> (String, String, String, String) {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    let public = os(
        c,
        &[
            "network",
            "create",
            "--external",
            "--provider-network-type",
            "vlan",
            "--provider-physical-network",
            "extern",
            "public",
        ],
    );
    let ext_sub = os(
        c,
        &[
            "subnet",
            "create",
            "--network",
            "public",
            "--subnet-range",
            "163.3.124.0/24",
            "--no-dhcp",
            "ext-sub",
        ],
    );
    let net = os(c, &["network", "create", "net1"]);
    let sub = os(
        c,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.0.1.0/24",
            "sub1",
        ],
    );
    (id(&public), id(&ext_sub), id(&net), id(&sub))
}

#[test]
fn an_external_network_without_hints_lives_in_the_default_region() {
    let c = Controller::start();
    setup(&c);
    // DevStack's `public` has no hints: the gateway is placed in RegionOne, not refused.
    let r = os(&c, &["router", "create", "r1"]);
    assert_eq!(r["status"], "ACTIVE", "Neutron's status on create: {r}");
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &["router", "set", "--external-gateway", "public", "r1"],
    );
    assert!(okay, "{err}");
    let shown = os(&c, &["router", "show", "r1"]);
    assert_eq!(shown["status"], "ACTIVE", "{shown}");
    let ips = shown["external_gateway_info"]["external_fixed_ips"].to_string();
    assert!(ips.contains("163.3.124."), "{shown}");
}

#[test]
fn a_gateway_fixed_ip_change_moves_the_gateway_address() {
    let c = Controller::start();
    setup(&c);
    os(&c, &["router", "create", "r1"]);
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "set",
            "--external-gateway",
            "public",
            "--fixed-ip",
            "subnet=ext-sub,ip-address=163.3.124.50",
            "r1",
        ],
    );
    assert!(okay, "{err}");
    let shown = os(&c, &["router", "show", "r1"]);
    assert!(shown.to_string().contains("163.3.124.50"), "{shown}");
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "set",
            "--external-gateway",
            "public",
            "--fixed-ip",
            "subnet=ext-sub,ip-address=163.3.124.60",
            "r1",
        ],
    );
    assert!(okay, "{err}");
    let shown = os(&c, &["router", "show", "r1"]);
    let text = shown.to_string();
    assert!(
        text.contains("163.3.124.60") && !text.contains("163.3.124.50"),
        "{shown}"
    );
    // Deleting the router frees the external subnet at once.
    let (okay, _, err) = openstack(&c, ADMIN, &["router", "delete", "r1"]);
    assert!(okay, "{err}");
    let (okay, _, err) = openstack(&c, ADMIN, &["subnet", "delete", "ext-sub"]);
    assert!(okay, "the gateway port outlived its router: {err}");
}

#[test]
fn floating_ips_show_port_details_and_routes_add_and_remove_atomically() {
    let c = Controller::start();
    setup(&c);
    os(&c, &["router", "create", "r1"]);
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &["router", "set", "--external-gateway", "public", "r1"],
    );
    assert!(okay, "{err}");
    let (okay, _, err) = openstack(&c, ADMIN, &["router", "add", "subnet", "r1", "sub1"]);
    assert!(okay, "{err}");
    let port = os(&c, &["port", "create", "--network", "net1", "vm1"]);
    let fip = os(
        &c,
        &["floating", "ip", "create", "--port", &id(&port), "public"],
    );
    let details = &fip["port_details"];
    assert_eq!(details["mac_address"], port["mac_address"], "{fip}");
    assert_eq!(details["network_id"], port["network_id"], "{fip}");
    // `router add route` is add_extraroutes (extraroute-atomic).
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "add",
            "route",
            "--route",
            "destination=192.168.7.0/24,gateway=10.0.1.5",
            "r1",
        ],
    );
    assert!(okay, "{err}");
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "add",
            "route",
            "--route",
            "destination=192.168.8.0/24,gateway=10.0.1.6",
            "r1",
        ],
    );
    assert!(okay, "{err}");
    let routes = os(&c, &["router", "show", "r1"])["routes"].to_string();
    assert!(
        routes.contains("192.168.7.0/24") && routes.contains("192.168.8.0/24"),
        "{routes}"
    );
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "remove",
            "route",
            "--route",
            "destination=192.168.7.0/24,gateway=10.0.1.5",
            "r1",
        ],
    );
    assert!(okay, "{err}");
    let routes = os(&c, &["router", "show", "r1"])["routes"].to_string();
    assert!(
        !routes.contains("192.168.7.0/24") && routes.contains("192.168.8.0/24"),
        "{routes}"
    );
    // A next hop on no connected subnet is refused, as Neutron does.
    let (okay, _, _) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "add",
            "route",
            "--route",
            "destination=192.168.9.0/24,gateway=10.77.0.1",
            "r1",
        ],
    );
    assert!(!okay, "an unconnected next hop was accepted");
}

#[test]
fn an_admin_changes_an_unbound_ports_mac_but_not_a_bound_ones() {
    let c = Controller::start();
    setup(&c);
    let port = os(&c, &["port", "create", "--network", "net1", "p1"]);
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &["port", "set", "--mac-address", "fa:16:3e:11:22:33", "p1"],
    );
    assert!(okay, "{err}");
    assert_eq!(
        os(&c, &["port", "show", "p1"])["mac_address"],
        "fa:16:3e:11:22:33"
    );
    let (okay, _, err) = openstack(&c, ADMIN, &["port", "set", "--host", "node1", "p1"]);
    assert!(okay, "{err}");
    let (okay, _, _) = openstack(
        &c,
        ADMIN,
        &["port", "set", "--mac-address", "fa:16:3e:11:22:44", "p1"],
    );
    assert!(!okay, "a bound port's MAC changed");
    let _ = port;
}

#[test]
fn a_subnet_gateway_outside_its_range_is_accepted_but_no_router_leg_takes_it() {
    let c = Controller::start();
    setup(&c);
    os(&c, &["network", "create", "net2"]);
    let s = os(
        &c,
        &[
            "subnet",
            "create",
            "--network",
            "net2",
            "--subnet-range",
            "10.98.0.0/24",
            "--gateway",
            "10.99.0.1",
            "off",
        ],
    );
    assert_eq!(s["gateway_ip"], "10.99.0.1", "{s}");
    let (okay, _, _) = openstack(
        &c,
        ADMIN,
        &[
            "subnet",
            "create",
            "--network",
            "net2",
            "--subnet-range",
            "10.97.0.0/24",
            "--gateway",
            "10.97.0.0",
            "bad",
        ],
    );
    assert!(!okay, "the network address was accepted as a gateway");
    os(&c, &["router", "create", "r1"]);
    let (okay, _, err) = openstack(&c, ADMIN, &["router", "add", "subnet", "r1", "off"]);
    assert!(!okay, "a router leg took an off-subnet gateway");
    assert!(err.contains("outside") || err.contains("400"), "{err}");
}

#[test]
fn network_agent_list_shows_the_nodes_and_their_liveness() {
    let c = Controller::start();
    setup(&c);
    let alive = |host: &str| -> Value {
        let list = os(&c, &["network", "agent", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["Host"] == host)
            .unwrap_or_else(|| panic!("{host} not listed: {list}"))["Alive"]
            .clone()
    };
    assert_eq!(alive("node1"), false, "no report yet");
    let rev = common::guide::desired(&c, "node1")["revision"]
        .as_u64()
        .unwrap();
    let report = serde_json::json!({"node": "node1", "revision_applied": rev, "ports": [],
        "routers": [], "probes": [], "errors": []});
    let (s, _) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&agent("node1")),
        Some(&report),
    );
    assert_eq!(s, 204);
    assert_eq!(alive("node1"), true);
    assert_eq!(alive("node2"), false);
    // A member sees no agents (Neutron's get_agent is admin-only, and a collection is
    // filtered by policy, not refused), and one by id is 404.
    let listed = openstack_json(&c, common::DEMO, &["network", "agent", "list"]);
    assert_eq!(listed, serde_json::json!([]), "a member listed the agents");
    let node1 = list_agent(&c, "node1");
    let (okay, _, err) = openstack(&c, common::DEMO, &["network", "agent", "show", &node1]);
    assert!(
        !okay && err.contains("could not be found"),
        "a member read an agent: {err}"
    );
}

/// The id of `host`'s agent, as the admin lists it.
fn list_agent(c: &Controller, host: &str) -> String {
    let list = os(c, &["network", "agent", "list"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["Host"] == host)
        .unwrap_or_else(|| panic!("{host} not listed: {list}"))["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `openstack network agent set --disable` drains a node: no new port binds there (409), the
/// ports bound before stay; `--enable` takes bindings again; the description is kept across
/// the agent's re-registration. A member can neither see nor change an agent.
#[test]
fn network_agent_set_disables_new_bindings_on_its_node() {
    let c = Controller::start();
    setup(&c);
    let node1 = list_agent(&c, "node1");
    let before = os(
        &c,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--host",
            "node1",
            "bound",
        ],
    );
    let (okay, out, err) = openstack(
        &c,
        ADMIN,
        &[
            "network",
            "agent",
            "set",
            "--disable",
            "--description",
            "draining",
            &node1,
        ],
    );
    assert!(okay, "{out}{err}");
    let shown = os(&c, &["network", "agent", "show", &node1]);
    assert_eq!(shown["admin_state_up"], false, "{shown}");
    assert_eq!(shown["description"], "draining", "{shown}");
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--host",
            "node1",
            "refused",
        ],
    );
    assert!(
        !okay && err.contains("disabled"),
        "bound to a disabled node: {err}"
    );
    let (okay, _, err) = openstack(&c, ADMIN, &["port", "set", "--host", "node1", "refused"]);
    assert!(!okay, "the refused port exists: {err}");
    let p = os(&c, &["port", "show", &id(&before)]);
    assert_eq!(p["binding_host_id"], "node1", "{p}");
    // Other nodes still bind.
    os(
        &c,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--host",
            "node2",
            "elsewhere",
        ],
    );
    // The agent re-registers (as at every start): its admin state and description stay.
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    let shown = os(&c, &["network", "agent", "show", &node1]);
    assert_eq!(shown["admin_state_up"], false, "{shown}");
    assert_eq!(shown["description"], "draining", "{shown}");
    // A member cannot change it (it cannot see it: 404), nor a read-only field as admin (400).
    let (okay, _, err) = openstack(
        &c,
        common::DEMO,
        &["network", "agent", "set", "--enable", &node1],
    );
    assert!(
        !okay && err.contains("could not be found"),
        "a member enabled an agent: {err}"
    );
    let (s, body) = c.n(
        "PUT",
        &format!("/v2.0/agents/{node1}"),
        Some(ADMIN),
        Some(&serde_json::json!({"agent": {"host": "elsewhere"}})),
    );
    assert_eq!(s, 400, "{body}");
    let (okay, out, err) = openstack(&c, ADMIN, &["network", "agent", "set", "--enable", &node1]);
    assert!(okay, "{out}{err}");
    os(
        &c,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--host",
            "node1",
            "after",
        ],
    );
}

#[test]
fn ip_availability_counts_pools_and_allocations() {
    let c = Controller::start();
    setup(&c);
    for name in ["a", "b"] {
        os(&c, &["port", "create", "--network", "net1", name]);
    }
    let shown = os(&c, &["ip", "availability", "show", "net1"]);
    assert_eq!(shown["total_ips"], 253, "{shown}");
    assert_eq!(shown["used_ips"], 2, "{shown}");
    let subnet = &shown["subnet_ip_availability"];
    assert!(subnet.to_string().contains("10.0.1.0/24"), "{shown}");
    let list = os(&c, &["ip", "availability", "list"]);
    assert!(list.to_string().contains("net1"), "{list}");
    // A member sees none (filtered by policy, as Neutron's collections are); one is 404.
    let listed = openstack_json(&c, common::DEMO, &["ip", "availability", "list"]);
    assert_eq!(
        listed,
        serde_json::json!([]),
        "a member read the availability"
    );
    let (okay, _, err) = openstack(&c, common::DEMO, &["ip", "availability", "show", "net1"]);
    assert!(!okay, "a member read one network's availability: {err}");
}

/// An extra route may go via a hop on the router's gateway subnet (an upstream router), as
/// Neutron allows; a hop on no subnet of the router is still 400.
#[test]
fn an_extra_route_may_go_via_the_gateway_subnet() {
    let c = Controller::start();
    setup(&c);
    os(&c, &["router", "create", "r1"]);
    let (okay, out, err) = openstack(
        &c,
        ADMIN,
        &["router", "set", "--external-gateway", "public", "r1"],
    );
    assert!(okay, "{out}{err}");
    let (okay, out, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "set",
            "--route",
            "destination=10.7.7.0/24,gateway=163.3.124.99",
            "r1",
        ],
    );
    assert!(
        okay,
        "a route via the gateway subnet was refused: {out}{err}"
    );
    let r = os(&c, &["router", "show", "r1"]);
    assert!(r["routes"].to_string().contains("163.3.124.99"), "{r}");
    let (okay, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "router",
            "set",
            "--route",
            "destination=10.8.8.0/24,gateway=10.250.0.1",
            "r1",
        ],
    );
    assert!(
        !okay && err.contains("not connected"),
        "an unconnected hop: {err}"
    );
}

/// A multicast MAC is accepted on a port as Neutron does (python-openstackclient's port test
/// sets 11:22:33:44:55:66); no NIC can take it, so the bound port stays out of its node's
/// desired state (the agent would refuse the whole state) and no router leg takes it.
/// All-zero and broadcast MACs are refused.
#[test]
fn a_multicast_mac_is_accepted_but_kept_out_of_the_data_plane() {
    let c = Controller::start();
    setup(&c);
    os(
        &c,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--host",
            "node1",
            "fine",
        ],
    );
    let mc = os(
        &c,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--mac-address",
            "11:22:33:44:55:66",
            "mc",
        ],
    );
    assert_eq!(mc["mac_address"], "11:22:33:44:55:66", "{mc}");
    let (okay, _, err) = openstack(&c, ADMIN, &["port", "set", "--host", "node1", "mc"]);
    assert!(okay, "{err}");
    let fine = os(&c, &["port", "show", "fine"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let d = common::guide::desired(&c, "node1");
        let ports = d["state"]["ports"].clone();
        if ports.get(id(&fine)).is_some() {
            assert!(
                ports.get(id(&mc)).is_none(),
                "the multicast port was published: {d}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node1's state never had its port: {d}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    os(&c, &["router", "create", "r1"]);
    os(
        &c,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--mac-address",
            "13:00:00:00:00:01",
            "leg",
        ],
    );
    let (okay, _, err) = openstack(&c, ADMIN, &["router", "add", "port", "r1", "leg"]);
    assert!(
        !okay && err.contains("multicast"),
        "a router leg took a multicast MAC: {err}"
    );
    for bad in ["00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"] {
        let (okay, _, _) = openstack(
            &c,
            ADMIN,
            &[
                "port",
                "create",
                "--network",
                "net1",
                "--mac-address",
                bad,
                "bad",
            ],
        );
        assert!(!okay, "{bad} was accepted");
    }
}
