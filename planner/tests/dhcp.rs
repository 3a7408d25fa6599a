//! DHCP servers: one per (network, pod) where the network is present with a DHCP subnet, on
//! the pod's node with the network's physnet (lowest name), holding the pod's DHCP port; the
//! router option is the pod's own leg of the gateway router on a stretched network; hosts are
//! split by pod (unbound ports: the primary pod); the server makes its node trunk the VLAN.

mod common;

use common::*;
use planner::*;

/// A stretched VLAN network `n` (2100, 10.0.1.0/24, DHCP on) with vm1 on node1 (RegionOne),
/// vm2 on node2 (RegionTwo) and vm3 unbound, settled.
fn stretched() -> Snapshot {
    let mut s = base();
    s.networks.push(Network {
        id: "n".into(),
        project_id: "demo".into(),
        network_type: NetworkType::Vlan,
        physnet: Some("bridge".into()),
        segmentation_id: Some(2100),
        mtu: Some(1450),
        ..Default::default()
    });
    add_subnet_dhcp(&mut s, "n", "10.0.1.0/24", true);
    add_vm(&mut s, "demo", "vm1", "n", "10.0.1.11", "node1");
    add_vm(&mut s, "demo", "vm2", "n", "10.0.1.12", "node2");
    add_vm(&mut s, "demo", "vm3", "n", "10.0.1.13", "node1");
    s.ports.last_mut().unwrap().binding_host = None;
    settle(&mut s);
    s
}

fn hosts(srv: &wire::DhcpServer) -> Vec<&str> {
    srv.hosts.iter().map(|h| h.port_id.as_str()).collect()
}

#[test]
fn each_pod_serves_its_own_ports_with_its_own_router() {
    let mut s = stretched();
    let plan = plan_all(&s);
    let a = &s.allocations;
    for (node, pod) in [("node1", "RegionOne"), ("node2", "RegionTwo")] {
        let srv = &plan[node].dhcp["n"];
        let port = a.dhcp_port("n", pod).expect("a DHCP port per pod");
        assert_eq!(srv.port_id, port.port_id);
        assert_eq!(srv.mac, port.mac);
        assert_eq!(srv.namespace, "qdhcp-n");
        assert_eq!(srv.bridge, "br-vlan");
        assert_eq!(srv.tag, Some(2100));
        assert_eq!(srv.mtu, Some(1450));
        assert_eq!(srv.lease_seconds, DEFAULT_DHCP_LEASE_SECONDS);
        assert_eq!(srv.ns_ifname, wire::names::ifname("ns-", &port.port_id));
        assert_eq!(srv.ovs_ifname, wire::names::ifname("tap", &port.port_id));
        assert_eq!(srv.subnets.len(), 1);
        assert_eq!(srv.subnets[0].server_address, port.ips["sub-n"]);
        assert_eq!(
            srv.subnets[0].router,
            Some(ip("10.0.1.1")),
            "no router: gateway_ip"
        );
    }
    assert_ne!(
        a.dhcp_ip("n", "RegionOne", "sub-n"),
        a.dhcp_ip("n", "RegionTwo", "sub-n")
    );
    // Unbound vm3 is the primary (lowest present) pod's.
    assert_eq!(hosts(&plan["node1"].dhcp["n"]), ["vm1", "vm3"]);
    assert_eq!(hosts(&plan["node2"].dhcp["n"]), ["vm2"]);

    // A distributed router on the subnet: the home pod hands out the interface, the other pod
    // its own leg IP.
    add_router(&mut s, "demo", "r", &[]);
    add_iface(&mut s, "r", "n");
    settle(&mut s);
    let plan = plan_all(&s);
    let leg = s
        .allocations
        .leg_ip("r", "RegionTwo", "sub-n")
        .expect("a leg IP in RegionTwo");
    assert_eq!(
        plan["node1"].dhcp["n"].subnets[0].router,
        Some(ip("10.0.1.1"))
    );
    assert_eq!(plan["node2"].dhcp["n"].subnets[0].router, Some(leg));
    assert_ne!(leg, ip("10.0.1.1"));

    // A local router in RegionOne: RegionTwo has no instance, so its VMs get the gateway.
    s.routers.iter_mut().find(|r| r.id == "r").unwrap().az_hints = vec!["RegionOne".into()];
    settle(&mut s);
    let plan = plan_all(&s);
    assert_eq!(
        plan["node2"].dhcp["n"].subnets[0].router,
        Some(ip("10.0.1.1"))
    );

    // No gateway: no router option, whatever the routers.
    s.subnets[0].gateway_ip = None;
    let plan = plan_all(&s);
    assert_eq!(plan["node1"].dhcp["n"].subnets[0].router, None);
    assert_eq!(plan["node2"].dhcp["n"].subnets[0].router, None);
}

#[test]
fn options_and_what_is_not_served() {
    let mut s = stretched();
    s.subnets[0].dns_nameservers = vec![ip("10.9.9.9"), ip("10.9.9.8")];
    s.subnets[0].host_routes = vec![UserRoute {
        destination: net("192.168.0.0/16"),
        nexthop: ip("10.0.1.254"),
    }];
    s.dhcp_lease_seconds = 600;
    // A subnet without DHCP and an IPv6 one get no address and are not served.
    add_subnet(&mut s, "n", "10.0.2.0/24");
    s.subnets.last_mut().unwrap().id = "sub-off".into();
    s.subnets.push(Subnet {
        id: "sub-v6".into(),
        network_id: "n".into(),
        cidr: net("fd00::/64"),
        gateway_ip: Some(ip("fd00::1")),
        ip_version: 6,
        enable_dhcp: true,
        ..Default::default()
    });
    assert!(
        required_allocations(&s).is_empty(),
        "{:?}",
        required_allocations(&s)
    );
    let plan = plan_all(&s);
    let srv = &plan["node1"].dhcp["n"];
    assert_eq!(srv.lease_seconds, 600);
    assert_eq!(srv.subnets.len(), 1);
    assert_eq!(srv.subnets[0].dns_nameservers, s.subnets[0].dns_nameservers);
    assert_eq!(
        srv.subnets[0].host_routes,
        vec![wire::Route {
            destination: net("192.168.0.0/16"),
            nexthop: ip("10.0.1.254"),
        }]
    );

    // DHCP off on the last subnet: every address is released, the servers go.
    s.subnets[0].enable_dhcp = false;
    let p = required_allocations(&s);
    assert!(p.allocate.is_empty());
    assert_eq!(
        p.release
            .iter()
            .filter(|k| matches!(k, AllocationKey::DhcpIp { .. }))
            .count(),
        2,
        "{p:?}"
    );
    // The servers' sticky placements go with them.
    assert_eq!(p.release.len(), 4, "{p:?}");
    settle(&mut s);
    assert!(s.allocations.dhcp_ports.is_empty());
    assert!(plan_all(&s).values().all(|st| st.dhcp.is_empty()));

    // An external network gets no server.
    let mut s = base();
    add_ext_net(&mut s);
    s.subnets[0].enable_dhcp = true;
    assert!(needed_allocations(&s).is_empty());
}

#[test]
fn the_server_runs_on_the_pods_node_with_the_physnet_and_trunks_the_vlan() {
    let mut s = base();
    // "a-ext" sorts first but lacks `bridge`; "node0" has it and sorts before node1.
    s.nodes
        .push(node("a-ext", "RegionOne", &[("extern", "br-ext")]));
    s.nodes
        .push(node("node0", "RegionOne", &[("bridge", "br-vlan")]));
    s.networks.push(Network {
        id: "l".into(),
        project_id: "demo".into(),
        network_type: NetworkType::Local,
        ..Default::default()
    });
    add_subnet_dhcp(&mut s, "l", "10.0.5.0/24", true);
    add_vm(&mut s, "demo", "vm", "l", "10.0.5.10", "node1");
    settle(&mut s);
    let plan = plan_all(&s);
    let tag = s.allocations.local_tag("l", "RegionOne").unwrap();
    assert!(plan["a-ext"].dhcp.is_empty());
    assert!(plan["node1"].dhcp.is_empty());
    let srv = &plan["node0"].dhcp["l"];
    assert_eq!(srv.tag, Some(tag));
    assert_eq!(hosts(srv), ["vm"]);
    for n in ["node0", "node1"] {
        assert!(
            plan[n].bridges["br-vlan"].trunks.contains(&tag),
            "{n} must trunk {tag}: {:?}",
            plan[n].bridges
        );
    }
    // The same from the incremental path: binding the VM is what placed the network.
    let mut before = s.clone();
    before.ports.clear();
    before.allocations = Allocations::default();
    settle(&mut before);
    let prev = plan_all(&before);
    let got = replan(&before, &s, &prev, &Change::Port("vm".into()));
    for (n, st) in &plan {
        assert_eq!(got.get(n).unwrap_or(&prev[n]), st, "{n}");
    }
}

/// Tricircle's multi-gateway topology: net1 in RegionOne behind local router R1 (its gateway),
/// net2 in RegionTwo behind R2, and R3 joining both at other addresses for east-west.
fn multi_gw() -> Snapshot {
    let mut s = base();
    for (n, cidr, host, r, pod) in [
        ("net1", "10.0.1.0/24", "node1", "r1", "RegionOne"),
        ("net2", "10.0.2.0/24", "node2", "r2", "RegionTwo"),
    ] {
        s.networks.push(Network {
            id: n.into(),
            project_id: "demo".into(),
            network_type: NetworkType::Local,
            ..Default::default()
        });
        add_subnet_dhcp(&mut s, n, cidr, true);
        add_vm(
            &mut s,
            "demo",
            &format!("vm-{n}"),
            n,
            &cidr.replace("0/24", "5"),
            host,
        );
        add_router(&mut s, "demo", r, &[pod]);
        add_iface(&mut s, r, n);
    }
    add_router(&mut s, "demo", "r3", &[]);
    for (n, addr) in [("net1", "10.0.1.10"), ("net2", "10.0.2.10")] {
        let mac = fresh_mac(&s, 0xdd);
        s.router_interfaces.push(RouterInterface {
            router_id: "r3".into(),
            subnet_id: format!("sub-{n}"),
            port_id: format!("r3-{n}"),
            ip_address: ip(addr),
            mac,
        });
    }
    settle(&mut s);
    s
}

fn routes(
    plan: &std::collections::BTreeMap<String, wire::NodeDesiredState>,
    node: &str,
    net: &str,
) -> Vec<(String, String)> {
    plan[node].dhcp[net].subnets[0]
        .host_routes
        .iter()
        .map(|r| (r.destination.to_string(), r.nexthop.to_string()))
        .collect()
}

fn pair(d: &str, n: &str) -> (String, String) {
    (d.to_string(), n.to_string())
}

#[test]
fn an_east_west_router_steers_each_pods_subnet_to_the_others_by_host_routes() {
    let mut s = multi_gw();
    let plan = plan_all(&s);
    assert_eq!(
        routes(&plan, "node1", "net1"),
        [pair("10.0.2.0/24", "10.0.1.10")]
    );
    assert_eq!(
        routes(&plan, "node2", "net2"),
        [pair("10.0.1.0/24", "10.0.2.10")]
    );
    // The router option stays each pod's own gateway router.
    assert_eq!(
        plan["node1"].dhcp["net1"].subnets[0].router,
        Some(ip("10.0.1.1"))
    );

    // The user's routes are kept, first, and win on the same destination (one subnet change
    // at a time, as the controller replays them, each re-planned like the full plan).
    for (sub, dest, hop) in [
        ("sub-net1", "192.168.0.0/16", "10.0.1.254"),
        ("sub-net2", "10.0.1.0/24", "10.0.2.99"),
    ] {
        let old = s.clone();
        s.subnets
            .iter_mut()
            .find(|x| x.id == sub)
            .unwrap()
            .host_routes = vec![UserRoute {
            destination: net(dest),
            nexthop: ip(hop),
        }];
        let prev = plan_all(&old);
        let got = replan(&old, &s, &prev, &Change::Subnet(sub.into()));
        for (n, st) in &plan_all(&s) {
            assert_eq!(got.get(n).unwrap_or(&prev[n]), st, "{sub}: {n}");
        }
    }
    let plan = plan_all(&s);
    assert_eq!(
        routes(&plan, "node1", "net1"),
        [
            pair("192.168.0.0/16", "10.0.1.254"),
            pair("10.0.2.0/24", "10.0.1.10")
        ]
    );
    assert_eq!(
        routes(&plan, "node2", "net2"),
        [pair("10.0.1.0/24", "10.0.2.99")]
    );

    // R3 leaves net2: the added routes go (the user's stay), the same incrementally.
    let old = s.clone();
    s.router_interfaces.retain(|i| i.port_id != "r3-net2");
    settle(&mut s);
    let plan = plan_all(&s);
    assert_eq!(
        routes(&plan, "node1", "net1"),
        [pair("192.168.0.0/16", "10.0.1.254")]
    );
    let prev = plan_all(&old);
    let got = replan(&old, &s, &prev, &Change::Router("r3".into()));
    for (n, st) in &plan {
        assert_eq!(got.get(n).unwrap_or(&prev[n]), st, "{n}");
    }
}
