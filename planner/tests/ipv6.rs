//! IPv6 across pods (issue #21): the guide's topology made dual-stack (fd00:1::/64 on net1 in
//! RegionOne, fd00:2::/64 on net2 in RegionTwo, ext-net with 2001:db8:124::/64), a stretched
//! dual-stack network, DHCPv6 subnets and an IPv6-only network.

mod common;

use std::collections::BTreeSet;

use common::*;
use ipnet::IpNet;
use planner::*;
use wire::{Ipv6AddressMode as Mode, LegKind, ProbeKind, RouterInstance};

const SLAAC: Option<Mode> = Some(Mode::Slaac);
const STATELESS: Option<Mode> = Some(Mode::Dhcpv6Stateless);
const STATEFUL: Option<Mode> = Some(Mode::Dhcpv6Stateful);

/// Move the project's bridge network to 100.0.5.0/24 (its instances keep their host numbers),
/// as if four other projects had taken the first /24s: the derivation is then visible.
fn renumber_bridge(s: &mut Snapshot, project: &str) {
    let a = &mut s.allocations;
    a.bridge_networks.get_mut(project).unwrap().cidr = net("100.0.5.0/24");
    for ports in a.bridge_ips.values_mut() {
        for p in ports.values_mut() {
            if let std::net::IpAddr::V4(v4) = p.ip {
                let o = v4.octets();
                if o[..2] == [100, 0] {
                    p.ip = ip(&format!("100.0.5.{}", o[3]));
                }
            }
        }
    }
}

/// The guide dual-stack: both tenant networks get an IPv6 subnet attached to the router with
/// the given modes, ext-net an IPv6 subnet and the router's gateway an address on it. With
/// `pool`, `bridge_cidr_v6` is fd64::/48 and the bridge network is 100.0.5.0/24.
fn dual_guide(pool: bool, ra: Option<Mode>, addr: Option<Mode>) -> Snapshot {
    let mut s = base();
    if pool {
        s.bridge_cidr_v6 = Some("fd64::/48".parse().unwrap());
    }
    add_local_net(&mut s, "demo", "net1", "10.0.1.0/24");
    add_subnet_v6(&mut s, "net1", "fd00:1::/64", ra, addr, false);
    add_local_net(&mut s, "demo", "net2", "10.0.2.0/24");
    add_subnet_v6(&mut s, "net2", "fd00:2::/64", ra, addr, false);
    add_vm(&mut s, "demo", "vm1", "net1", "10.0.1.11", "node1");
    add_fixed_ip(&mut s, "vm1", "sub6-net1", "fd00:1::f816:3eff:fe00:1");
    add_vm(&mut s, "demo", "vm2", "net2", "10.0.2.12", "node2");
    add_fixed_ip(&mut s, "vm2", "sub6-net2", "fd00:2::f816:3eff:fe00:2");
    add_ext_net(&mut s);
    add_subnet_v6(&mut s, "ext-net", "2001:db8:124::/64", None, None, false);
    add_router(&mut s, "demo", "router", &[]);
    add_iface(&mut s, "router", "net1");
    add_iface_subnet(&mut s, "router", "sub6-net1");
    add_iface(&mut s, "router", "net2");
    add_iface_subnet(&mut s, "router", "sub6-net2");
    settle(&mut s);
    set_gateway(&mut s, "router", "163.3.124.10");
    add_gateway_v6(&mut s, "router", "2001:db8:124::10");
    add_fip(&mut s, "demo", "fip1", "163.3.124.20", "vm1");
    settle(&mut s);
    if pool {
        renumber_bridge(&mut s, "demo");
    }
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    assert!(required_allocations(&s).is_empty());
    s
}

fn instance<'a>(
    plans: &'a std::collections::BTreeMap<String, NodeDesiredState>,
    node: &str,
) -> &'a RouterInstance {
    &plans[node].routers["router"]
}

fn routes(r: &RouterInstance) -> Vec<(IpNet, std::net::IpAddr)> {
    r.routes
        .iter()
        .map(|x| (x.destination, x.nexthop))
        .collect()
}

fn leg_on<'a>(r: &'a RouterInstance, subnet: &str) -> &'a wire::RouterLeg {
    r.legs
        .iter()
        .find(|l| l.subnet_id.as_deref() == Some(subnet))
        .unwrap_or_else(|| panic!("no leg on {subnet}: {:?}", r.legs))
}

#[test]
fn dual_stack_guide_bridges_routes_gateway_and_probes() {
    let s = dual_guide(true, SLAAC, SLAAC);
    let plans = plan_all(&s);
    let (r1, r2) = (instance(&plans, "node1"), instance(&plans, "node2"));

    // Bridge legs: IPv4 address, the derived IPv6 one beside it.
    let b1 = r1.leg(LegKind::Bridge).unwrap();
    let b2 = r2.leg(LegKind::Bridge).unwrap();
    assert_eq!(b1.address, net("100.0.5.2/24"));
    assert_eq!(b1.extra_addresses, vec![net("fd64:0:0:5::2/64")]);
    assert_eq!(b2.address, net("100.0.5.3/24"));
    assert_eq!(b2.extra_addresses, vec![net("fd64:0:0:5::3/64")]);

    // East-west both ways, each family via the other instance's address of that family;
    // RegionOne leaves by RegionTwo for both families.
    assert_eq!(
        routes(r1),
        vec![
            (net("0.0.0.0/0"), ip("100.0.5.3")),
            (net("10.0.2.0/24"), ip("100.0.5.3")),
            (net("::/0"), ip("fd64:0:0:5::3")),
            (net("fd00:2::/64"), ip("fd64:0:0:5::3")),
        ]
    );
    // The gateway instance: IPv6 default to the external IPv6 subnet's gateway.
    assert_eq!(
        routes(r2),
        vec![
            (net("0.0.0.0/0"), ip("163.3.124.1")),
            (net("10.0.1.0/24"), ip("100.0.5.2")),
            (net("::/0"), ip("2001:db8:124::1")),
            (net("fd00:1::/64"), ip("fd64:0:0:5::2")),
        ]
    );

    // Internal legs on the IPv6 subnets, with their own interface addresses.
    assert_eq!(leg_on(r1, "sub6-net1").address, net("fd00:1::1/64"));
    assert_eq!(leg_on(r2, "sub6-net2").address, net("fd00:2::1/64"));
    assert!(r1
        .legs
        .iter()
        .all(|l| l.subnet_id.as_deref() != Some("sub6-net2")));

    // Gateway leg: IPv4 address, the IPv6 one beside it; NAT stays IPv4.
    let g = r2.leg(LegKind::Gateway).unwrap();
    assert_eq!(g.address, net("163.3.124.10/24"));
    assert_eq!(g.extra_addresses, vec![net("2001:db8:124::10/64")]);
    assert!(r1.leg(LegKind::Gateway).is_none());
    assert_eq!(r2.nat.snat.len(), 1);
    assert_eq!(
        r2.nat.snat[0].sources,
        vec![net("10.0.1.0/24"), net("10.0.2.0/24")],
        "no IPv6 source is NATed"
    );
    assert_eq!(r2.nat.snat[0].to, ip("163.3.124.10"));
    assert_eq!(r2.nat.floating.len(), 1);
    assert!(r1.nat.snat.is_empty() && r1.nat.floating.is_empty());

    // Probes: the other instance's bridge addresses of both families, both external gateways.
    let probes = |r: &RouterInstance| -> Vec<(std::net::IpAddr, ProbeKind)> {
        r.probe_targets
            .iter()
            .map(|p| (p.address, p.kind))
            .collect()
    };
    assert_eq!(
        probes(r1),
        vec![
            (ip("100.0.5.3"), ProbeKind::BridgeInstance),
            (ip("fd64:0:0:5::3"), ProbeKind::BridgeInstance),
        ]
    );
    assert_eq!(
        probes(r2),
        vec![
            (ip("100.0.5.2"), ProbeKind::BridgeInstance),
            (ip("163.3.124.1"), ProbeKind::ExternalGateway),
            (ip("2001:db8:124::1"), ProbeKind::ExternalGateway),
            (ip("fd64:0:0:5::2"), ProbeKind::BridgeInstance),
        ]
    );

    // The IPv4 side is exactly the guide's.
    let v4 = {
        let mut v4 = s.clone();
        v4.bridge_cidr_v6 = None;
        v4
    };
    let plans4 = plan_all(&v4);
    let (q1, q2) = (instance(&plans4, "node1"), instance(&plans4, "node2"));
    let v4_routes = |r: &RouterInstance| -> Vec<(IpNet, std::net::IpAddr)> {
        routes(r)
            .into_iter()
            .filter(|(d, _)| d.addr().is_ipv4())
            .collect()
    };
    assert_eq!(v4_routes(r1), v4_routes(q1));
    assert_eq!(v4_routes(r2), v4_routes(q2));
    assert_eq!(r2.nat, q2.nat);
}

#[test]
fn router_advertisements_per_mode() {
    // (ra mode, A, M, O)
    for (mode, autonomous, managed, other) in [
        (Mode::Slaac, true, false, false),
        (Mode::Dhcpv6Stateless, true, false, true),
        (Mode::Dhcpv6Stateful, false, true, true),
    ] {
        let mut s = dual_guide(true, Some(mode), Some(mode));
        let sub = s.subnets.iter_mut().find(|x| x.id == "sub6-net1").unwrap();
        sub.dns_nameservers = vec![ip("fd00::53"), ip("10.0.0.53"), ip("fd00::54")];
        s.networks.iter_mut().find(|n| n.id == "net1").unwrap().mtu = Some(1400);
        let plans = plan_all(&s);
        let r1 = instance(&plans, "node1");
        let ra = leg_on(r1, "sub6-net1")
            .ipv6_ra
            .as_ref()
            .unwrap_or_else(|| panic!("{mode:?}: an RA"));
        assert_eq!(ra.prefixes.len(), 1, "{mode:?}");
        assert_eq!(ra.prefixes[0].prefix, "fd00:1::/64".parse().unwrap());
        assert_eq!(
            (ra.prefixes[0].autonomous, ra.managed, ra.other_config),
            (autonomous, managed, other),
            "{mode:?}"
        );
        assert!(ra.prefixes[0].on_link);
        assert_eq!(
            ra.router_lifetime, RA_ROUTER_LIFETIME,
            "{mode:?}: the pod's router"
        );
        assert_eq!(ra.mtu, Some(1400));
        assert_eq!(
            ra.dns_servers,
            vec![
                "fd00::53".parse::<std::net::Ipv6Addr>().unwrap(),
                "fd00::54".parse().unwrap()
            ],
            "IPv6 DNS servers only, in order"
        );
        assert_eq!(ra.clients, None, "net1 lives in one pod: multicast");
        // net2's leg: its own subnet, no MTU known.
        let ra2 = leg_on(instance(&plans, "node2"), "sub6-net2")
            .ipv6_ra
            .as_ref()
            .unwrap();
        assert_eq!(ra2.prefixes[0].prefix, "fd00:2::/64".parse().unwrap());
        assert_eq!(ra2.mtu, None);
        assert!(ra2.dns_servers.is_empty());
        // IPv4 legs and the bridge/gateway legs never advertise.
        for p in plans.values() {
            for r in p.routers.values() {
                for l in &r.legs {
                    let v6_internal = l.kind == LegKind::Internal && l.address.addr().is_ipv6();
                    assert_eq!(l.ipv6_ra.is_some(), v6_internal, "{:?}", l);
                }
            }
        }
    }
    // An address mode without an RA mode: an external router advertises, the legs stay silent;
    // no modes at all: the same.
    for (ra, addr) in [(None, SLAAC), (None, STATEFUL), (None, None)] {
        let s = dual_guide(true, ra, addr);
        let plans = plan_all(&s);
        assert!(leg_on(instance(&plans, "node1"), "sub6-net1")
            .ipv6_ra
            .is_none());
        assert!(leg_on(instance(&plans, "node2"), "sub6-net2")
            .ipv6_ra
            .is_none());
    }
}

/// A stretched dual-stack VLAN network `sn` (10.0.5.0/24 + fd00:5::/64, slaac) attached to
/// `router` at its gateways, vm1 in RegionOne, vm2 in RegionTwo, vm3 unbound (served by the
/// primary pod, RegionOne); `r3` attached on the IPv6 subnet at fd00:5::99 (not the gateway).
fn stretched_dual() -> Snapshot {
    let mut s = base();
    s.bridge_cidr_v6 = Some("fd64::/48".parse().unwrap());
    add_vlan_net(&mut s, "demo", "sn", 2100, &[], "10.0.5.0/24");
    add_subnet_v6(&mut s, "sn", "fd00:5::/64", SLAAC, SLAAC, false);
    add_vm(&mut s, "demo", "vm1", "sn", "10.0.5.11", "node1");
    add_vm(&mut s, "demo", "vm2", "sn", "10.0.5.12", "node2");
    add_vm(&mut s, "demo", "vm3", "sn", "10.0.5.13", "node1");
    s.ports.last_mut().unwrap().binding_host = None;
    add_router(&mut s, "demo", "router", &[]);
    add_iface(&mut s, "router", "sn");
    add_iface_subnet(&mut s, "router", "sub6-sn");
    add_router(&mut s, "demo", "r3", &[]);
    add_iface_subnet(&mut s, "r3", "sub6-sn");
    s.router_interfaces.last_mut().unwrap().ip_address = ip("fd00:5::99");
    settle(&mut s);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    s
}

#[test]
fn stretched_network_each_pod_advertises_its_own_router_to_its_own_hosts() {
    let s = stretched_dual();
    let plans = plan_all(&s);
    let mac = |id: &str| s.ports.iter().find(|p| p.id == id).unwrap().mac.clone();
    for (node, pod, clients) in [
        ("node1", "RegionOne", vec![mac("vm1"), mac("vm3")]),
        ("node2", "RegionTwo", vec![mac("vm2")]),
    ] {
        let r = &plans[node].routers["router"];
        let leg = leg_on(r, "sub6-sn");
        let ra = leg.ipv6_ra.as_ref().unwrap();
        assert_eq!(
            ra.router_lifetime, RA_ROUTER_LIFETIME,
            "{pod}: its own router"
        );
        assert_eq!(
            ra.clients,
            Some(clients.into_iter().collect::<BTreeSet<_>>()),
            "{pod}: unicast to the hosts it serves"
        );
        // The pod's DHCPv4 router is this instance's IPv4 leg on the same network.
        let v4leg = leg_on(r, "sub-sn");
        let want = if pod == "RegionOne" {
            ip("fd00:5::1")
        } else {
            s.allocations
                .leg_ip("router", "RegionTwo", "sub6-sn")
                .expect("a leg IP on the IPv6 subnet")
        };
        assert_eq!(leg.address.addr(), want);
        let want4 = if pod == "RegionOne" {
            ip("10.0.5.1")
        } else {
            s.allocations
                .leg_ip("router", "RegionTwo", "sub-sn")
                .unwrap()
        };
        assert_eq!(v4leg.address.addr(), want4);
        // r3 is on the link at another address: never a default router, same audience.
        let r3 = &plans[node].routers["r3"];
        let ra3 = leg_on(r3, "sub6-sn").ipv6_ra.as_ref().unwrap();
        assert_eq!(ra3.router_lifetime, 0, "{pod}: r3 is not the gateway");
        assert_eq!(ra3.clients, ra.clients);
        // No route over the bridge to a network the instance has a leg on.
        assert!(r.route_to(&net("fd00:5::/64")).is_none());
        assert!(r3.route_to(&net("fd00:5::/64")).is_none());
    }

    // A VM binding in a pod joins that pod's audience, and replan agrees with a full plan.
    let mut moved = s.clone();
    moved
        .ports
        .iter_mut()
        .find(|p| p.id == "vm3")
        .unwrap()
        .binding_host = Some("node2".into());
    settle(&mut moved);
    let after = plan_all(&moved);
    let clients = |n: &str| {
        leg_on(&after[n].routers["router"], "sub6-sn")
            .ipv6_ra
            .as_ref()
            .unwrap()
            .clients
            .clone()
            .unwrap()
    };
    assert_eq!(clients("node1"), BTreeSet::from([mac("vm1")]));
    assert_eq!(clients("node2"), BTreeSet::from([mac("vm2"), mac("vm3")]));
    let got = replan(&s, &moved, &plans, &Change::Port("vm3".into()));
    for (node, state) in &after {
        assert_eq!(got.get(node).unwrap_or(&plans[node]), state, "{node}");
    }
}

#[test]
fn dhcpv6_subnets_are_served_by_mode() {
    let mut s = base();
    s.networks.push(Network {
        id: "n".into(),
        project_id: "demo".into(),
        network_type: NetworkType::Vlan,
        physnet: Some("bridge".into()),
        segmentation_id: Some(2100),
        ..Default::default()
    });
    add_subnet_dhcp(&mut s, "n", "10.0.1.0/24", true);
    for (id, cidr, mode) in [
        ("stateful", "fd00:a::/64", STATEFUL),
        ("stateless", "fd00:b::/64", STATELESS),
        ("slaac", "fd00:c::/64", SLAAC),
        ("nomode", "fd00:d::/64", None),
    ] {
        add_subnet_v6(&mut s, "n", cidr, mode, mode, true);
        s.subnets.last_mut().unwrap().id = format!("sub6-{id}");
        s.subnets.last_mut().unwrap().dns_nameservers = vec![ip("fd00::53")];
    }
    add_vm(&mut s, "demo", "vm1", "n", "10.0.1.11", "node1");
    add_fixed_ip(&mut s, "vm1", "sub6-stateful", "fd00:a::11");
    add_fixed_ip(&mut s, "vm1", "sub6-stateless", "fd00:b::f816:3eff:fe00:1");
    add_fixed_ip(&mut s, "vm1", "sub6-slaac", "fd00:c::f816:3eff:fe00:1");
    add_vm(&mut s, "demo", "vm2", "n", "10.0.1.12", "node2");
    add_fixed_ip(&mut s, "vm2", "sub6-stateful", "fd00:a::12");
    let applied = settle(&mut s);
    // The controller reserves the DHCP port an address on the IPv4 and both DHCPv6 subnets.
    let dhcp_subnets: BTreeSet<String> = applied
        .allocate
        .iter()
        .filter_map(|k| match k {
            AllocationKey::DhcpIp { subnet_id, pod, .. } if pod == "RegionOne" => {
                Some(subnet_id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        dhcp_subnets,
        BTreeSet::from([
            "sub-n".into(),
            "sub6-stateful".into(),
            "sub6-stateless".into()
        ])
    );
    let plans = plan_all(&s);
    let srv = &plans["node1"].dhcp["n"];
    let port = s.allocations.dhcp_port("n", "RegionOne").unwrap();
    let subnets: Vec<(&str, Option<Mode>)> = srv
        .subnets
        .iter()
        .map(|x| (x.subnet_id.as_str(), x.ipv6_address_mode))
        .collect();
    assert_eq!(
        subnets,
        vec![
            ("sub-n", None),
            ("sub6-stateful", STATEFUL),
            ("sub6-stateless", STATELESS),
        ]
    );
    for sn in &srv.subnets[1..] {
        assert_eq!(sn.server_address, port.ips[&sn.subnet_id]);
        assert!(sn.cidr.contains(&sn.server_address));
        assert_eq!(sn.router, None, "DHCPv6 has no router option");
        assert!(sn.host_routes.is_empty());
        assert_eq!(sn.dns_nameservers, vec![ip("fd00::53")]);
    }
    assert_eq!(srv.subnets[0].router, Some(ip("10.0.1.1")));
    // Leases: IPv4 and stateful IPv6, the pod's own ports only.
    let hosts: Vec<(&str, std::net::IpAddr)> = srv
        .hosts
        .iter()
        .map(|h| (h.port_id.as_str(), h.ip))
        .collect();
    assert_eq!(
        hosts,
        vec![("vm1", ip("10.0.1.11")), ("vm1", ip("fd00:a::11"))]
    );
    let hosts2: Vec<_> = plans["node2"].dhcp["n"]
        .hosts
        .iter()
        .map(|h| (h.port_id.as_str(), h.ip))
        .collect();
    assert_eq!(
        hosts2,
        vec![("vm2", ip("10.0.1.12")), ("vm2", ip("fd00:a::12"))]
    );

    // A stateless subnet the controller has not given the port an address on: the port's
    // EUI-64 address stands in. A stateful one without an address is not served.
    let mut t = s.clone();
    for pods in t.allocations.dhcp_ports.values_mut() {
        for p in pods.values_mut() {
            p.ips.remove("sub6-stateless");
            p.ips.remove("sub6-stateful");
        }
    }
    let plans = plan_all(&t);
    let srv = &plans["node1"].dhcp["n"];
    let port = t.allocations.dhcp_port("n", "RegionOne").unwrap();
    let ids: Vec<&str> = srv.subnets.iter().map(|x| x.subnet_id.as_str()).collect();
    assert_eq!(ids, vec!["sub-n", "sub6-stateless"]);
    assert_eq!(
        srv.subnets[1].server_address,
        std::net::IpAddr::V6(
            wire::eui64::address("fd00:b::/64".parse().unwrap(), &port.mac).unwrap()
        )
    );
    assert!(srv.hosts.iter().all(|h| h.ip.is_ipv4()));

    // An IPv6-only slaac network has no DHCP at all; an IPv6-only stateful one is served.
    let mut u = base();
    for (id, seg, mode) in [("v6slaac", 2200, SLAAC), ("v6full", 2201, STATEFUL)] {
        u.networks.push(Network {
            id: id.into(),
            project_id: "demo".into(),
            network_type: NetworkType::Vlan,
            physnet: Some("bridge".into()),
            segmentation_id: Some(seg),
            ..Default::default()
        });
        add_subnet_v6(&mut u, id, "fd00:e::/64", mode, mode, true);
        add_vm(
            &mut u,
            "demo",
            &format!("{id}-vm"),
            id,
            "fd00:e::20",
            "node1",
        );
        u.ports.last_mut().unwrap().fixed_ips[0].subnet_id = format!("sub6-{id}");
    }
    settle(&mut u);
    let plans = plan_all(&u);
    assert!(!plans["node1"].dhcp.contains_key("v6slaac"));
    assert!(!u.allocations.dhcp_ports.contains_key("v6slaac"));
    let srv = &plans["node1"].dhcp["v6full"];
    assert_eq!(srv.subnets.len(), 1);
    assert_eq!(srv.subnets[0].ipv6_address_mode, STATEFUL);
    assert_eq!(srv.hosts.len(), 1);
    assert_eq!(srv.hosts[0].ip, ip("fd00:e::20"));
}

#[test]
fn removing_an_interface_withdraws_the_v6_route() {
    let s = dual_guide(true, SLAAC, SLAAC);
    let prev = plan_all(&s);
    let mut t = s.clone();
    t.router_interfaces.retain(|i| i.subnet_id != "sub6-net2");
    settle(&mut t);
    let want = plan_all(&t);
    let r1 = instance(&want, "node1");
    assert_eq!(r1.route_to(&net("fd00:2::/64")), None);
    assert_eq!(r1.route_to(&net("10.0.2.0/24")), Some(ip("100.0.5.3")));
    assert_eq!(r1.route_to(&net("::/0")), Some(ip("fd64:0:0:5::3")));
    let r2 = instance(&want, "node2");
    assert!(r2
        .legs
        .iter()
        .all(|l| l.subnet_id.as_deref() != Some("sub6-net2")));
    assert_eq!(r2.route_to(&net("fd00:1::/64")), Some(ip("fd64:0:0:5::2")));
    let got = replan(&s, &t, &prev, &Change::Router("router".into()));
    for (node, state) in &want {
        assert_eq!(got.get(node).unwrap_or(&prev[node]), state, "{node}");
    }
}

#[test]
fn ipv6_only_network_is_routed_across_pods() {
    let mut s = dual_guide(true, SLAAC, SLAAC);
    s.networks.push(Network {
        id: "net3".into(),
        project_id: "demo".into(),
        network_type: NetworkType::Local,
        ..Default::default()
    });
    add_subnet_v6(&mut s, "net3", "fd00:3::/64", SLAAC, SLAAC, false);
    add_vm(
        &mut s,
        "demo",
        "vm3",
        "net3",
        "fd00:3::f816:3eff:fe00:3",
        "node2",
    );
    s.ports.last_mut().unwrap().fixed_ips[0].subnet_id = "sub6-net3".into();
    add_iface_subnet(&mut s, "router", "sub6-net3");
    settle(&mut s);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    let plans = plan_all(&s);
    let r1 = instance(&plans, "node1");
    let r2 = instance(&plans, "node2");
    assert_eq!(r1.route_to(&net("fd00:3::/64")), Some(ip("fd64:0:0:5::3")));
    assert_eq!(leg_on(r2, "sub6-net3").address, net("fd00:3::1/64"));
    assert!(leg_on(r2, "sub6-net3").ipv6_ra.is_some());
    assert!(r1
        .legs
        .iter()
        .all(|l| l.network_id.as_deref() != Some("net3")));
    assert_eq!(
        plans["node2"].ports["vm3"].fixed_ips,
        vec![ip("fd00:3::f816:3eff:fe00:3")]
    );
}

#[test]
fn without_a_v6_bridge_pool_ipv6_stays_in_its_pod() {
    let s = dual_guide(false, SLAAC, SLAAC);
    let plans = plan_all(&s);
    let (r1, r2) = (instance(&plans, "node1"), instance(&plans, "node2"));
    for r in [r1, r2] {
        assert!(r.leg(LegKind::Bridge).unwrap().extra_addresses.is_empty());
        assert!(r
            .probe_targets
            .iter()
            .all(|p| p.kind != ProbeKind::BridgeInstance || p.address.is_ipv4()));
    }
    // No IPv6 route over the bridge, no IPv6 default on the non-gateway instance.
    assert_eq!(
        routes(r1),
        vec![
            (net("0.0.0.0/0"), ip("100.0.0.3")),
            (net("10.0.2.0/24"), ip("100.0.0.3")),
        ]
    );
    // The gateway instance still reaches the outside over IPv6 from its own pod's subnets.
    assert_eq!(
        routes(r2),
        vec![
            (net("0.0.0.0/0"), ip("163.3.124.1")),
            (net("10.0.1.0/24"), ip("100.0.0.2")),
            (net("::/0"), ip("2001:db8:124::1")),
        ]
    );
    // The IPv6 subnets' legs and advertisements are there: IPv6 within each pod works.
    assert!(leg_on(r1, "sub6-net1").ipv6_ra.is_some());

    // Without any IPv6 subnet, the plan is the dual-stack one's IPv4 part, byte for byte.
    let mut v4 = s.clone();
    v4.subnets.retain(|x| x.ip_version == 4);
    v4.router_interfaces
        .retain(|i| !i.subnet_id.starts_with("sub6-"));
    for p in &mut v4.ports {
        p.fixed_ips.retain(|f| f.ip_address.is_ipv4());
    }
    for r in &mut v4.routers {
        if let Some(g) = &mut r.external_gateway {
            g.external_fixed_ips.retain(|f| f.ip_address.is_ipv4());
        }
    }
    let mut stripped = plans.clone();
    for state in stripped.values_mut() {
        for p in state.ports.values_mut() {
            p.fixed_ips.retain(|a| a.is_ipv4());
        }
        for r in state.routers.values_mut() {
            r.legs.retain(|l| l.address.addr().is_ipv4());
            for l in &mut r.legs {
                l.extra_addresses.clear();
            }
            r.routes.retain(|x| x.destination.addr().is_ipv4());
            r.probe_targets.retain(|x| x.address.is_ipv4());
        }
    }
    assert_eq!(
        serde_json::to_string(&plan_all(&v4)).unwrap(),
        serde_json::to_string(&stripped).unwrap()
    );
}

#[test]
fn ipv6_only_gateway_routes_out_without_nat() {
    let mut s = dual_guide(true, SLAAC, SLAAC);
    // The gateway keeps only its IPv6 address.
    for p in &mut s.ports {
        if p.device_owner == OWNER_ROUTER_GATEWAY {
            p.fixed_ips.retain(|f| f.ip_address.is_ipv6());
        }
    }
    s.floating_ips.clear();
    s.routers[0]
        .external_gateway
        .as_mut()
        .unwrap()
        .external_fixed_ips
        .retain(|f| f.ip_address.is_ipv6());
    let plans = plan_all(&s);
    let r2 = instance(&plans, "node2");
    let g = r2.leg(LegKind::Gateway).unwrap();
    assert_eq!(g.address, net("2001:db8:124::10/64"));
    assert!(g.extra_addresses.is_empty());
    assert!(r2.nat.snat.is_empty() && r2.nat.floating.is_empty());
    assert_eq!(r2.route_to(&net("::/0")), Some(ip("2001:db8:124::1")));
    assert_eq!(r2.route_to(&net("0.0.0.0/0")), None);
    let r1 = instance(&plans, "node1");
    assert_eq!(r1.route_to(&net("::/0")), Some(ip("fd64:0:0:5::3")));
}
