//! Planner speed on a synthetic cloud: 100 pods x 5 nodes, 1000 projects x 5 networks,
//! 10,000 VM ports, one non-local router per project (every 10th with a gateway and a floating
//! IP), every 5th network a stretched VLAN. Prints a table; `cargo bench -p planner`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use planner::*;

const PODS: usize = 100;
const NODES_PER_POD: usize = 5;
const PROJECTS: usize = 1000;
const NETS_PER_PROJECT: usize = 5;
const PORTS_PER_NET: usize = 2;

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn build() -> Snapshot {
    let mut s = Snapshot::default();
    for p in 0..PODS {
        s.pods.push(Pod {
            region_name: format!("pod{p:03}"),
            az_name: Some(format!("az{p:03}")),
        });
        for n in 0..NODES_PER_POD {
            let mut maps = vec![("bridge".to_string(), "br-vlan".to_string())];
            if p == 0 {
                maps.push(("extern".to_string(), "br-ext".to_string()));
            }
            s.nodes.push(Node {
                name: format!("pod{p:03}-node{n}"),
                pod: format!("pod{p:03}"),
                uplinks: maps.iter().map(|m| m.0.clone()).collect(),
                bridge_mappings: maps.into_iter().collect(),
                local_ip: None,
                lost: false,
            });
        }
    }
    s.networks.push(Network {
        id: "ext".into(),
        project_id: "admin".into(),
        network_type: NetworkType::Vlan,
        physnet: Some("extern".into()),
        segmentation_id: Some(3001),
        external: true,
        az_hints: vec!["pod000".into()],
        shared: false,
        mtu: None,
        vni: None,
    });
    s.subnets.push(Subnet {
        id: "ext-sub".into(),
        network_id: "ext".into(),
        cidr: "163.3.0.0/16".parse().unwrap(),
        gateway_ip: Some("163.3.0.1".parse().unwrap()),
        ..Default::default()
    });
    let mut vlan = 1u16;
    for pr in 0..PROJECTS {
        let project = format!("proj{pr:04}");
        let router = format!("router-{pr:04}");
        let gateway = pr.is_multiple_of(10);
        s.routers.push(Router {
            id: router.clone(),
            project_id: project.clone(),
            az_hints: vec![],
            external_gateway: gateway.then(|| ExternalGateway {
                network_id: "ext".into(),
                enable_snat: true,
                external_fixed_ips: vec![FixedIp {
                    subnet_id: "ext-sub".into(),
                    ip_address: v4(0xa303_0000 + 10 + pr as u32),
                }],
            }),
            routes: vec![],
        });
        for k in 0..NETS_PER_PROJECT {
            let id = format!("net-{pr:04}-{k}");
            let stretched = k == 4;
            s.networks.push(Network {
                id: id.clone(),
                project_id: project.clone(),
                network_type: if stretched {
                    NetworkType::Vlan
                } else {
                    NetworkType::Local
                },
                physnet: stretched.then(|| "bridge".into()),
                segmentation_id: stretched.then(|| {
                    vlan += 1;
                    vlan
                }),
                ..Default::default()
            });
            let cidr = Ipv4Net::new(Ipv4Addr::new(10, k as u8, 0, 0), 24).unwrap();
            let sub = format!("sub-{id}");
            s.subnets.push(Subnet {
                id: sub.clone(),
                network_id: id.clone(),
                cidr: IpNet::V4(cidr),
                gateway_ip: Some(v4(u32::from(cidr.network()) + 1)),
                ..Default::default()
            });
            s.router_interfaces.push(RouterInterface {
                router_id: router.clone(),
                subnet_id: sub.clone(),
                port_id: format!("rif-{pr:04}-{k}"),
                ip_address: v4(u32::from(cidr.network()) + 1),
                mac: "fa:16:3e:00:00:01".into(),
            });
            for j in 0..PORTS_PER_NET {
                // Each project spreads over a few pods; a stretched network reaches two.
                let pod = (pr * 7 + k + if stretched { j * 13 } else { 0 }) % PODS;
                let node = (pr + j) % NODES_PER_POD;
                let pid = format!("port-{pr:04}-{k}-{j}");
                s.ports.push(Port {
                    id: pid.clone(),
                    network_id: id.clone(),
                    project_id: project.clone(),
                    mac: "fa:16:3e:00:00:02".into(),
                    fixed_ips: vec![FixedIp {
                        subnet_id: sub.clone(),
                        ip_address: v4(u32::from(cidr.network()) + 10 + j as u32),
                    }],
                    device_owner: "compute:nova".into(),
                    device_id: String::new(),
                    binding_host: Some(format!("pod{pod:03}-node{node}")),
                    hostname: None,
                });
            }
        }
        if gateway {
            s.ports.push(Port {
                id: format!("gw-{pr:04}"),
                network_id: "ext".into(),
                project_id: String::new(),
                mac: mac(0x01_0000 + pr as u32),
                fixed_ips: vec![FixedIp {
                    subnet_id: "ext-sub".into(),
                    ip_address: v4(0xa303_0000 + 10 + pr as u32),
                }],
                device_owner: OWNER_ROUTER_GATEWAY.into(),
                device_id: router.clone(),
                binding_host: None,
                hostname: None,
            });
            s.floating_ips.push(FloatingIp {
                id: format!("fip-{pr:04}"),
                project_id: project.clone(),
                floating_network_id: "ext".into(),
                floating_ip_address: v4(0xa303_8000 + pr as u32),
                port_id: Some(format!("port-{pr:04}-0-0")),
                fixed_ip_address: None,
            });
        }
    }
    // CROSSPOD_BENCH_DHCP=1: DHCP on every tenant subnet (a server per network and pod).
    if std::env::var("CROSSPOD_BENCH_DHCP").is_ok_and(|v| v == "1") {
        for x in s.subnets.iter_mut().filter(|x| x.network_id != "ext") {
            x.enable_dhcp = true;
        }
    }
    allocate(&mut s);
    s
}

/// The cloud made dual-stack: an IPv6 bridge pool, a slaac IPv6 subnet on every tenant network
/// attached to the project's router, an IPv6 address on every VM port (stretched networks'
/// other-pod legs lack their IPv6 leg IP: those legs are left out, as while the controller
/// has not allocated them).
fn dual_stack(s: &Snapshot) -> Snapshot {
    let mut d = s.clone();
    d.bridge_cidr_v6 = Some("fd64::/32".parse().unwrap());
    let mode = Some(wire::Ipv6AddressMode::Slaac);
    let mut ifaces = Vec::new();
    for (i, x) in s.subnets.iter().enumerate() {
        if x.network_id == "ext" {
            continue;
        }
        let cidr: IpNet = format!("fd00:{:x}::/64", i).parse().unwrap();
        let id = format!("v6-{}", x.id);
        d.subnets.push(Subnet {
            id: id.clone(),
            network_id: x.network_id.clone(),
            cidr,
            gateway_ip: Some(format!("fd00:{:x}::1", i).parse().unwrap()),
            ip_version: 6,
            ipv6_ra_mode: mode,
            ipv6_address_mode: mode,
            ..Default::default()
        });
        if let Some(rif) = s.router_interfaces.iter().find(|r| r.subnet_id == x.id) {
            ifaces.push(RouterInterface {
                subnet_id: id.clone(),
                port_id: format!("v6-{}", rif.port_id),
                ip_address: format!("fd00:{:x}::1", i).parse().unwrap(),
                ..rif.clone()
            });
        }
        for (n, p) in d
            .ports
            .iter_mut()
            .filter(|p| p.network_id == x.network_id)
            .enumerate()
        {
            p.fixed_ips.push(FixedIp {
                subnet_id: id.clone(),
                ip_address: format!("fd00:{:x}::{:x}", i, 0x10 + n).parse().unwrap(),
            });
        }
    }
    d.router_interfaces.extend(ifaces);
    d
}

/// A distinct MAC per `n`, as the store would give each port.
fn mac(n: u32) -> String {
    format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// Fill every required allocation with distinct values (the controller's job).
fn allocate(s: &mut Snapshot) {
    let plan = required_allocations(s);
    let project_of: std::collections::HashMap<String, String> = s
        .routers
        .iter()
        .map(|r| (r.id.clone(), r.project_id.clone()))
        .collect();
    let mut next_bn = 0u32;
    let mut next_ip = std::collections::HashMap::<String, u32>::new();
    let mut next_tag = 100u16;
    let mut next_mac = 0x02_0000u32;
    for k in plan.allocate {
        next_mac += 1;
        match k {
            AllocationKey::BridgeNetwork { project_id } => {
                let base = 0x6400_0000 + (next_bn << 8);
                next_bn += 1;
                s.allocations.bridge_networks.insert(
                    project_id,
                    BridgeNetwork {
                        vlan: 2001 + (next_bn % 1000) as u16,
                        cidr: IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base), 24).unwrap()),
                        vni: None,
                    },
                );
            }
            AllocationKey::BridgeIp { router_id, pod } => {
                let project = &project_of[&router_id];
                let base = match s.allocations.bridge_networks[project].cidr {
                    IpNet::V4(n) => u32::from(n.network()),
                    IpNet::V6(_) => unreachable!(),
                };
                let n = next_ip.entry(project.clone()).or_insert(2);
                s.allocations
                    .set_bridge_ip(&router_id, &pod, v4(base + *n), &mac(next_mac));
                *n += 1;
            }
            AllocationKey::LegIp {
                router_id,
                pod,
                subnet_id,
            } => {
                s.allocations.set_leg_ip(
                    &router_id,
                    &pod,
                    &subnet_id,
                    v4(0x0a04_00fa),
                    &mac(next_mac),
                );
            }
            AllocationKey::LocalTag { network_id, pod } => {
                s.allocations.set_local_tag(&network_id, &pod, next_tag);
                next_tag = if next_tag >= 2000 { 100 } else { next_tag + 1 };
            }
            AllocationKey::BridgeTag { project_id, pod } => {
                s.allocations.set_bridge_tag(&project_id, &pod, next_tag);
                next_tag = if next_tag >= 2000 { 100 } else { next_tag + 1 };
            }
            AllocationKey::DhcpIp {
                network_id,
                pod,
                subnet_id,
            } => {
                let mut p = s
                    .allocations
                    .dhcp_port(&network_id, &pod)
                    .cloned()
                    .unwrap_or_else(|| planner::DhcpPort {
                        port_id: format!("dhcp-{pod}-{network_id}"),
                        mac: mac(next_mac),
                        ips: Default::default(),
                    });
                p.ips.insert(subnet_id, v4(0x0a04_00f0));
                s.allocations.set_dhcp_port(&network_id, &pod, Some(p));
            }
            AllocationKey::RouterNode {
                router_id,
                pod,
                node,
            } => s.allocations.set_router_node(&router_id, &pod, Some(&node)),
            AllocationKey::DhcpNode {
                network_id,
                pod,
                node,
            } => s.allocations.set_dhcp_node(&network_id, &pod, Some(&node)),
        }
    }
    // DHCP servers are placed once their ports have addresses: record those placements too.
    for k in required_allocations(s).allocate {
        if let AllocationKey::DhcpNode {
            network_id,
            pod,
            node,
        } = k
        {
            s.allocations.set_dhcp_node(&network_id, &pod, Some(&node));
        }
    }
    assert!(required_allocations(s).allocate.is_empty());
}

/// Median wall time of `f` over `iters` runs.
fn time<T>(iters: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut v: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn row(what: &str, d: Duration, note: &str) {
    println!(
        "| {what:<52} | {:>10.3} ms | {note:<30} |",
        d.as_secs_f64() * 1e3
    );
}

fn main() {
    let t0 = Instant::now();
    let s = build();
    let build_time = t0.elapsed();
    println!(
        "synthetic cloud: {} pods, {} nodes, {} projects, {} networks, {} ports, {} routers, {} FIPs (built in {:.0} ms)",
        s.pods.len(),
        s.nodes.len(),
        PROJECTS,
        s.networks.len(),
        s.ports.len(),
        s.routers.len(),
        s.floating_ips.len(),
        build_time.as_secs_f64() * 1e3
    );
    println!(
        "| {:<52} | {:>13} | {:<30} |",
        "operation", "median", "note"
    );
    println!("|{:-<54}|{:-<15}|{:-<32}|", "", "", "");

    let all = plan_all(&s);
    let instances: usize = all.values().map(|n| n.routers.len()).sum();
    row(
        "plan_all (every node)",
        time(5, || plan_all(&s)),
        &format!("{} nodes, {} instances", all.len(), instances),
    );
    let d = dual_stack(&s);
    let dual = plan_all(&d);
    let ras: usize = dual
        .values()
        .flat_map(|n| n.routers.values())
        .flat_map(|r| r.legs.iter())
        .filter(|l| l.ipv6_ra.is_some())
        .count();
    row(
        "plan_all dual-stack (IPv6 on every network)",
        time(5, || plan_all(&d)),
        &format!("{ras} advertising legs"),
    );
    row(
        "required_allocations",
        time(5, || required_allocations(&s)),
        "",
    );
    row("validate (whole snapshot)", time(5, || validate(&s)), "");
    row("Snapshot clone", time(9, || s.clone()), "");
    row(
        "Planner::new (index only)",
        time(9, || Planner::new(&s)),
        "",
    );

    // One interface change: router-0500 loses its stretched network.
    let mut s2 = s.clone();
    s2.router_interfaces
        .retain(|i| !(i.router_id == "router-0500" && i.subnet_id == "sub-net-0500-4"));
    let change = Change::Router("router-0500".into());
    let replan = || {
        let mut nodes: BTreeSet<String> = affected_nodes(&s, &change);
        nodes.extend(affected_nodes(&s2, &change));
        plan_nodes(&s2, nodes.iter().map(String::as_str))
    };
    let n = replan().len();
    row(
        "interface change: affected (old+new) + plan_nodes",
        time(21, replan),
        &format!("{n} of {} nodes re-planned", s.nodes.len()),
    );
    row(
        "  of which affected_nodes (old+new)",
        time(21, || {
            let mut nodes = affected_nodes(&s, &change);
            nodes.extend(affected_nodes(&s2, &change));
            nodes
        }),
        "",
    );
    let full_new = plan_all(&s2);
    let changed = full_new
        .iter()
        .filter(|(k, v)| !v.same_content(&all[*k]))
        .count();
    row(
        "  nodes whose state really changed",
        Duration::ZERO,
        &format!("{changed} (re-planned {n})"),
    );
    let part = replan();
    assert!(
        part.iter().all(|(k, v)| &full_new[k] == v),
        "scoped plan differs from full plan"
    );
    row(
        "interface change: required_allocations_for_change",
        time(21, || required_allocations_for_change(&s, &s2, &change)),
        &format!(
            "{} to release",
            required_allocations_for_change(&s, &s2, &change)
                .release
                .len()
        ),
    );
    let (ix, ix2) = (ScopeIndex::build(&s), ScopeIndex::build(&s2));
    assert_eq!(
        required_allocations_for_change_indexed((&s, &ix), (&s2, &ix2), &change),
        required_allocations_for_change(&s, &s2, &change),
        "indexed allocations differ"
    );
    row(
        "interface change: required_allocations_for_change_indexed",
        time(21, || {
            required_allocations_for_change_indexed((&s, &ix), (&s2, &ix2), &change)
        }),
        "what the controller's realizer runs",
    );
    let patched = || planner::replan(&s, &s2, &all, &change);
    let got = patched();
    assert!(
        got.iter().all(|(k, v)| &full_new[k] == v),
        "replan differs from full plan"
    );
    row(
        "interface change: replan(old, new, previous states)",
        time(21, patched),
        &format!("{} nodes returned", got.len()),
    );
    let indexed = || planner::replan_indexed((&s, &ix), (&s2, &ix2), &all, &change);
    assert_eq!(indexed(), got, "replan_indexed differs from replan");
    row(
        "interface change: replan_indexed (kept ScopeIndex)",
        time(21, indexed),
        "what the controller's realizer runs",
    );
    let old_p = Planner::new(&s);
    let new_p = Planner::new(&s2);
    row(
        "same with a full index already built (Planner)",
        time(21, || {
            let mut nodes: BTreeSet<String> = old_p.affected_nodes(&change);
            nodes.extend(new_p.affected_nodes(&change));
            new_p.plan_nodes(nodes.iter().map(String::as_str))
        }),
        "",
    );

    // One port change on a 500-node, 10,000-port cloud.
    let mut s3 = s.clone();
    s3.ports
        .iter_mut()
        .find(|p| p.id == "port-0333-1-1")
        .unwrap()
        .binding_host = Some("pod042-node3".into());
    let pchange = Change::Port("port-0333-1-1".into());
    let port_replan = || {
        let mut nodes: BTreeSet<String> = affected_nodes(&s, &pchange);
        nodes.extend(affected_nodes(&s3, &pchange));
        plan_nodes(&s3, nodes.iter().map(String::as_str))
    };
    let pn = port_replan().len();
    row(
        "port move: affected (old+new) + plan_nodes",
        time(21, port_replan),
        &format!("{pn} of {} nodes affected", s.nodes.len()),
    );
    let full3 = plan_all(&s3);
    let pchanged = full3
        .iter()
        .filter(|(k, v)| !v.same_content(&all[*k]))
        .count();
    row(
        "  nodes whose state really changed",
        Duration::ZERO,
        &format!("{pchanged} (re-planned {pn})"),
    );
    let part = port_replan();
    assert!(
        part.iter().all(|(k, v)| &full3[k] == v),
        "scoped plan differs from full plan"
    );
    let patched = || planner::replan(&s, &s3, &all, &pchange);
    let got = patched();
    assert!(
        got.iter().all(|(k, v)| &full3[k] == v),
        "replan differs from full plan"
    );
    row(
        "port move: replan(old, new, previous states)",
        time(21, patched),
        &format!("{} nodes returned", got.len()),
    );
    let ix3 = ScopeIndex::build(&s3);
    {
        // Keeping the index: a port removed from the middle and put back (every position
        // after it moves, twice), and building it whole for comparison.
        let mut ks = s.clone();
        let mut kix = ScopeIndex::build(&ks);
        let mid = ks.ports.len() / 2;
        let id = ks.ports[mid].id.clone();
        row(
            "ScopeIndex: a port removed and inserted (mid-list)",
            time(21, || {
                let p = ks.ports[mid].clone();
                kix.remove_port(&mut ks, &id);
                kix.insert_port(&mut ks, mid, p);
            }),
            "a port created or deleted mid-list (each once)",
        );
        assert_eq!(kix, ScopeIndex::build(&ks), "the kept index drifted");
        row(
            "ScopeIndex: a port replaced in place (mid-list)",
            time(21, || {
                let mut p = ks.ports[mid].clone();
                p.binding_host = Some("pod042-node3".into());
                kix.replace_port(&mut ks, mid, p);
            }),
            "what the controller's intent does per port update",
        );
        assert_eq!(kix, ScopeIndex::build(&ks), "the kept index drifted");
        row(
            "ScopeIndex::build (whole snapshot)",
            time(9, || ScopeIndex::build(&s)),
            "at load and every full pass",
        );
    }
    let indexed = || planner::replan_indexed((&s, &ix), (&s3, &ix3), &all, &pchange);
    assert_eq!(indexed(), got, "replan_indexed differs from replan");
    row(
        "port move: replan_indexed (kept ScopeIndex)",
        time(21, indexed),
        "what the controller's realizer runs",
    );
    row(
        "port move: required_allocations_for_change",
        time(21, || required_allocations_for_change(&s, &s3, &pchange)),
        "the same, scanning the snapshot for the scope",
    );
    assert_eq!(
        required_allocations_for_change_indexed((&s, &ix), (&s3, &ix3), &pchange),
        required_allocations_for_change(&s, &s3, &pchange),
        "indexed allocations differ"
    );
    row(
        "port move: required_allocations_for_change_indexed",
        time(21, || {
            required_allocations_for_change_indexed((&s, &ix), (&s3, &ix3), &pchange)
        }),
        "what the controller's realizer runs",
    );
    vxlan();
}

/// The VxLAN count: 100 VxLAN networks over 20 nodes (10 pods x 2), each network with
/// VMs on 3 nodes, one router per 10 networks over a VxLAN bridge: how many tunnel ports the
/// agents need (one per distinct peer) against a full mesh.
fn vxlan() {
    let mut s = Snapshot {
        bridge_vxlan: true,
        ..Default::default()
    };
    let nodes: Vec<String> = (0..20)
        .map(|n| format!("vx{:02}-{}", n / 2, n % 2))
        .collect();
    for p in 0..10 {
        s.pods.push(Pod {
            region_name: format!("vx{p:02}"),
            az_name: None,
        });
    }
    for (n, name) in nodes.iter().enumerate() {
        s.nodes.push(Node {
            name: name.clone(),
            pod: format!("vx{:02}", n / 2),
            bridge_mappings: [("bridge".to_string(), "br-vlan".to_string())].into(),
            uplinks: ["bridge".to_string()].into(),
            local_ip: Some(v4(0xc0a8_3200 + n as u32 + 1)),
            lost: false,
        });
    }
    for k in 0..100u32 {
        let id = format!("vxnet-{k:03}");
        let project = format!("vxp-{}", k / 10);
        s.networks.push(Network {
            id: id.clone(),
            project_id: project.clone(),
            network_type: NetworkType::Vxlan,
            vni: Some(1001 + k),
            mtu: Some(1450),
            ..Default::default()
        });
        let sub = format!("sub-{id}");
        s.subnets.push(Subnet {
            id: sub.clone(),
            network_id: id.clone(),
            cidr: "10.9.0.0/24".parse().unwrap(),
            gateway_ip: Some(v4(0x0a09_0001)),
            ..Default::default()
        });
        // Three nodes per network, spread deterministically.
        for j in 0..3u32 {
            let host = &nodes[((k * 7 + j * 5) % 20) as usize];
            s.ports.push(Port {
                id: format!("{id}-vm{j}"),
                network_id: id.clone(),
                project_id: project.clone(),
                mac: mac(0x30_0000 + k * 4 + j),
                fixed_ips: vec![FixedIp {
                    subnet_id: sub.clone(),
                    ip_address: v4(0x0a09_0010 + j),
                }],
                device_owner: "compute:nova".into(),
                binding_host: Some(host.clone()),
                ..Default::default()
            });
        }
        let router = format!("vxr-{}", k / 10);
        if k % 10 == 0 {
            s.routers.push(Router {
                id: router.clone(),
                project_id: project.clone(),
                ..Default::default()
            });
        }
        s.router_interfaces.push(RouterInterface {
            router_id: router,
            subnet_id: sub,
            port_id: format!("{id}-rif"),
            ip_address: v4(0x0a09_0001),
            mac: mac(0x40_0000 + k),
        });
    }
    allocate(&mut s);
    let all = plan_all(&s);
    let mut ports = 0usize;
    let mut entries = 0usize;
    let mut segments = 0usize;
    for st in all.values() {
        if let Some(t) = &st.tunnels {
            let peers: BTreeSet<IpAddr> = t
                .segments
                .values()
                .flat_map(|g| g.peers.iter().copied())
                .collect();
            ports += peers.len();
            segments += t.segments.len();
            entries += t.segments.values().map(|g| g.peers.len()).sum::<usize>();
        }
    }
    row(
        "VxLAN: plan_all, 100 networks x 20 nodes",
        time(9, || plan_all(&s)),
        &format!("{segments} node segments"),
    );
    row(
        "  tunnel ports (distinct peers per node)",
        Duration::ZERO,
        &format!("{ports} (full mesh 380)"),
    );
    row(
        "  per-segment peer entries (flood lists)",
        Duration::ZERO,
        &format!("{entries}"),
    );
}
