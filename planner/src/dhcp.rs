//! DHCP: one server per (network, pod) where the network is present and has a served subnet
//! (IPv4 with `enable_dhcp`; IPv6 with `enable_dhcp` and `ipv6_address_mode`
//! `dhcpv6-stateless` or `dhcpv6-stateful`, served over DHCPv6; `slaac` and mode-less IPv6
//! subnets get nothing), as Neutron runs one per network per DHCP agent. Each server holds the
//! network's `network:dhcp` port of that pod (reserved by the controller: one address per
//! served subnet, see [`crate::AllocationKey::DhcpIp`]; on a `dhcpv6-stateless` subnet the
//! port's EUI-64 address stands in until the controller gives one) and answers only the ports
//! its pod serves (bound there; unbound ones: the network's primary pod), always with the
//! port's fixed IP, so two servers hearing one DISCOVER on a stretched network never disagree.
//! Its router option is the pod's own router leg when the subnet's gateway router has an
//! instance in the pod (Tricircle's per-pod gateway port), so a stretched network's VMs do not
//! hairpin through the primary pod. DHCPv6 has no router or routes options: IPv6 hosts learn
//! their router from the legs' advertisements (see `ipv6.rs`).
//!
//! External networks get no server: they carry router gateways and floating IPs, not VMs
//! (Tricircle's guide creates their subnets with DHCP disabled).

use std::collections::BTreeSet;
use std::net::IpAddr;

use wire::names::{dhcp_namespace, ifname};
use wire::{DhcpHost, DhcpServer, DhcpSubnet, Route};

use wire::Ipv6AddressMode;

use crate::plan::is_unicast_mac;
use crate::snapshot::{DhcpPort, Network, Node, Port, Subnet};
use crate::topology::{Placement, Topology};

/// The subnets of a network a DHCP server serves (see [`serves`]), sorted by id.
pub(crate) fn dhcp_subnets<'a>(t: &Topology<'a>, net: &str) -> Vec<&'a Subnet> {
    let mut v: Vec<&'a Subnet> = t
        .subnets_by_network
        .get(net)
        .into_iter()
        .flatten()
        .copied()
        .filter(|s| serves(s))
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Whether a subnet is served by DHCP: `enable_dhcp`, and IPv4 or an IPv6 subnet whose
/// address mode is `dhcpv6-stateless` or `dhcpv6-stateful`.
pub(crate) fn serves(s: &Subnet) -> bool {
    s.enable_dhcp
        && match s.ip_version {
            4 => s.cidr.addr().is_ipv4(),
            6 => s.cidr.addr().is_ipv6() && dhcpv6_mode(s).is_some(),
            _ => false,
        }
}

/// The DHCPv6 mode of an IPv6 subnet: its address mode when that is `dhcpv6-*`.
fn dhcpv6_mode(s: &Subnet) -> Option<Ipv6AddressMode> {
    s.ipv6_address_mode
        .filter(|m| *m != Ipv6AddressMode::Slaac && s.cidr.addr().is_ipv6())
}

/// The DHCP port's address on a served subnet: the one the controller reserved, or on a
/// `dhcpv6-stateless` subnet (whose addresses are the hosts' own SLAAC ones) the port's
/// EUI-64 address while the controller has given none.
fn server_address(port: &DhcpPort, s: &Subnet) -> Option<IpAddr> {
    if let Some(ip) = port.ips.get(&s.id) {
        return Some(*ip);
    }
    let ipnet::IpNet::V6(cidr) = s.cidr else {
        return None;
    };
    (dhcpv6_mode(s) == Some(Ipv6AddressMode::Dhcpv6Stateless))
        .then(|| wire::eui64::address(cidr, &port.mac))
        .flatten()
        .map(IpAddr::V6)
}

/// The pod whose DHCP server (and, on a stretched network, whose router instance's
/// advertisements) serves VM port `p` of network `net`: the pod it is bound in when the
/// network is present there, else the network's primary pod.
pub(crate) fn serving_pod<'a>(t: &Topology<'a>, p: &Port, net: &str) -> Option<&'a str> {
    p.binding_host
        .as_deref()
        .and_then(|h| t.node_pod(h))
        .filter(|bp| t.presence.get(net).is_some_and(|pr| pr.contains(bp)))
        .or_else(|| t.primary_pod(net))
}

/// The (network, pod) pairs that need a DHCP server, with the DHCP subnets: the network is
/// present in the pod, is not external, has a served subnet, and the pod has a
/// node to run the server.
pub(crate) fn needed<'a>(t: &Topology<'a>) -> Vec<(&'a Network, &'a str, Vec<&'a Subnet>)> {
    let mut out = Vec::new();
    for net in t.net_list.iter().copied() {
        let subnets = if net.external {
            Vec::new()
        } else {
            dhcp_subnets(t, &net.id)
        };
        let pods: Vec<&'a str> = if subnets.is_empty() {
            Vec::new()
        } else {
            t.presence
                .get(net.id.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| t.nodes_by_pod.get(p).is_some_and(|n| !n.is_empty()))
                .collect()
        };
        for p in pods {
            out.push((net, p, subnets.clone()));
        }
    }
    out
}

impl<'a> Topology<'a> {
    /// Place the DHCP servers: each needed (network, pod) whose DHCP port has an address on
    /// one of its DHCP subnets runs on the pod's node chosen as for router instances (the
    /// network's physnet mapped, its uplink, a `local_ip` for VxLAN, then the rendezvous
    /// order of the network id). The node joins the network's
    /// nodes (its uplink trunks the network's VLAN when others share it).
    pub(crate) fn place_dhcp(&mut self) {
        let mut placed: Vec<(&'a str, &'a str)> = Vec::new();
        for (net, pod, subnets) in needed(self) {
            let Some(port) = self.snap.allocations.dhcp_port(&net.id, pod) else {
                continue;
            };
            if !subnets.iter().any(|s| server_address(port, s).is_some()) {
                continue;
            }
            let physnet = self.physnet_of(net);
            let mut needs = crate::topology::Needs::default();
            needs.add_network(self, net);
            let held = self.snap.allocations.dhcp_node(&net.id, pod);
            let Some(node) = self.choose(pod, &net.id, &needs, held) else {
                continue;
            };
            let mapped = self
                .nodes
                .get(node)
                .is_some_and(|n| n.bridge_mappings.contains_key(physnet));
            if !mapped || self.net_tag(net, pod).is_none() {
                continue;
            }
            placed.push((node, &net.id));
        }
        for (node, net) in placed {
            self.dhcp_by_node.entry(node).or_default().push(net);
            self.network_nodes.entry(net).or_default().insert(node);
        }
    }

    /// The pod that serves a network's unbound ports: its lowest present pod.
    pub(crate) fn primary_pod(&self, net: &str) -> Option<&'a str> {
        self.presence.get(net)?.iter().next().copied()
    }
}

/// The DHCP servers `node` runs, with the segment each uses (physnet, tag, network id).
pub(crate) fn plan_servers<'a>(
    t: &Topology<'a>,
    node: &Node,
) -> Vec<(DhcpServer, &'a str, Option<u16>, &'a str)> {
    let pod = node.pod.as_str();
    let mut out = Vec::new();
    for net_id in t
        .dhcp_by_node
        .get(node.name.as_str())
        .into_iter()
        .flatten()
        .copied()
    {
        let Some(net) = t.networks.get(net_id).copied() else {
            continue;
        };
        let Some(port) = t.snap.allocations.dhcp_port(&net.id, pod) else {
            continue;
        };
        let physnet = t.physnet_of(net);
        let (Some(bridge), Some(tag)) = (node.bridge_mappings.get(physnet), t.net_tag(net, pod))
        else {
            continue;
        };
        let mut subnets = Vec::new();
        for s in dhcp_subnets(t, &net.id) {
            let Some(server_address) = server_address(port, s) else {
                continue;
            };
            let v6 = dhcpv6_mode(s);
            subnets.push(DhcpSubnet {
                subnet_id: s.id.clone(),
                cidr: s.cidr,
                server_address,
                router: if v6.is_some() {
                    None
                } else {
                    router_for(t, s, net, pod)
                },
                dns_nameservers: s.dns_nameservers.clone(),
                host_routes: if v6.is_some() {
                    Vec::new()
                } else {
                    host_routes(t, s, net, pod)
                },
                ipv6_address_mode: v6,
            });
        }
        if subnets.is_empty() {
            continue;
        }
        // Leases: IPv4 subnets and `dhcpv6-stateful` ones (stateless ones lease nothing).
        let served: BTreeSet<&str> = subnets
            .iter()
            .filter(|s| s.ipv6_address_mode != Some(Ipv6AddressMode::Dhcpv6Stateless))
            .map(|s| s.subnet_id.as_str())
            .collect();
        let mut hosts = Vec::new();
        for p in t
            .ports_by_network
            .get(net.id.as_str())
            .into_iter()
            .flatten()
        {
            if !is_unicast_mac(&p.mac) {
                continue;
            }
            if serving_pod(t, p, &net.id) != Some(pod) {
                continue;
            }
            for f in &p.fixed_ips {
                if served.contains(f.subnet_id.as_str()) {
                    hosts.push(DhcpHost {
                        mac: p.mac.clone(),
                        ip: f.ip_address,
                        subnet_id: f.subnet_id.clone(),
                        port_id: p.id.clone(),
                        hostname: p.hostname.clone(),
                    });
                }
            }
        }
        hosts.sort_by(|a, b| (&a.mac, a.ip).cmp(&(&b.mac, b.ip)));
        out.push((
            DhcpServer {
                network_id: net.id.clone(),
                port_id: port.port_id.clone(),
                namespace: dhcp_namespace(&net.id),
                bridge: bridge.clone(),
                tag,
                mac: port.mac.clone(),
                ns_ifname: ifname("ns-", &port.port_id),
                ovs_ifname: ifname("tap", &port.port_id),
                mtu: net.mtu,
                lease_seconds: t.snap.dhcp_lease_seconds,
                subnets,
                hosts,
            },
            physnet,
            tag,
            net_id,
        ));
    }
    out
}

/// The host routes (option 121) a pod's server hands out on a subnet: the subnet's own, then
/// those crosspod adds for east-west routers (Tricircle's `configure_route`, the
/// multi-gateway topology): a router attached to the subnet at an address other than its
/// gateway (R3 joining two pods' networks whose gateways are R1 and R2) is the way to every
/// other subnet it joins, so each of those CIDRs goes via the router's address on this subnet
/// (the pod's own leg on a stretched network). Tricircle wrote them into each pod's bottom
/// subnet; here they exist only in what the servers hand out, so the subnet's `host_routes`
/// (what the API shows and the user set) are never clobbered, a user route to the same
/// destination wins, and a route the topology no longer implies simply goes.
pub(crate) fn host_routes(t: &Topology<'_>, s: &Subnet, net: &Network, pod: &str) -> Vec<Route> {
    let mut out: Vec<Route> = s
        .host_routes
        .iter()
        .map(|r| Route {
            destination: r.destination,
            nexthop: r.nexthop,
        })
        .collect();
    let mut added: BTreeSet<(ipnet::IpNet, IpAddr)> = BTreeSet::new();
    for rid in t.routers_by_subnet.get(s.id.as_str()).into_iter().flatten() {
        let ifaces = t
            .interfaces_by_router
            .get(rid)
            .map(|v| v.as_slice())
            .unwrap_or_default();
        let Some(iface) = ifaces.iter().find(|i| i.subnet_id == s.id) else {
            continue;
        };
        if Some(iface.ip_address) == s.gateway_ip {
            continue;
        }
        let Some(nexthop) = address_in_pod(t, rid, iface.ip_address, s, net, pod) else {
            continue;
        };
        for other in ifaces {
            let Some(os) = t.subnets.get(other.subnet_id.as_str()) else {
                continue;
            };
            if os.id == s.id
                || os.network_id == s.network_id
                || os.cidr.addr().is_ipv4() != nexthop.is_ipv4()
            {
                continue;
            }
            let destination = os.cidr.trunc();
            if out.iter().any(|r| r.destination.trunc() == destination) {
                continue; // the user's route (or an earlier router's) wins
            }
            added.insert((destination, nexthop));
        }
    }
    let mut seen: BTreeSet<ipnet::IpNet> = BTreeSet::new();
    for (destination, nexthop) in added {
        if seen.insert(destination) {
            out.push(Route {
                destination,
                nexthop,
            });
        }
    }
    out
}

/// A router's address on subnet `s` in `pod`: its interface address in the network's home
/// pod (or on a network that does not stretch), the leg IP reserved for `pod` elsewhere;
/// `None` when the router has no instance in `pod` (or its leg IP is not reserved yet).
fn address_in_pod(
    t: &Topology<'_>,
    rid: &str,
    iface_ip: IpAddr,
    s: &Subnet,
    net: &Network,
    pod: &str,
) -> Option<IpAddr> {
    if !t.instances.get(rid).is_some_and(|m| m.contains_key(pod)) {
        return None;
    }
    let stretched = matches!(
        t.placement.get(net.id.as_str()),
        Some(Placement::Stretched(_))
    );
    if !stretched || t.home_pod_for(rid, &net.id) == Some(pod) {
        return Some(iface_ip);
    }
    t.snap.allocations.leg_ip(rid, pod, &s.id)
}

/// The router (option 3) a pod's server hands out on a subnet: none without a `gateway_ip`;
/// the pod's own leg of the subnet's gateway router when that router has an instance here
/// (its interface address in the network's home pod, the leg IP reserved for this pod
/// elsewhere on a stretched network); else the subnet's `gateway_ip`.
pub(crate) fn router_for(t: &Topology<'_>, s: &Subnet, net: &Network, pod: &str) -> Option<IpAddr> {
    let gw = s.gateway_ip?;
    for rid in t.routers_by_subnet.get(s.id.as_str()).into_iter().flatten() {
        let Some(iface) = t
            .interfaces_by_router
            .get(rid)
            .into_iter()
            .flatten()
            .find(|i| i.subnet_id == s.id)
        else {
            continue;
        };
        if iface.ip_address != gw {
            continue;
        }
        if let Some(ip) = address_in_pod(t, rid, iface.ip_address, s, net, pod) {
            return Some(ip);
        }
    }
    Some(gw)
}
