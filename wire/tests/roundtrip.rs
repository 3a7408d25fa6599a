//! Serde round trips and the documented JSON shapes of the wire types.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use wire::*;

fn sample_state() -> NodeDesiredState {
    let mut s = NodeDesiredState {
        node: "node2".into(),
        pod: "RegionTwo".into(),
        revision: 3,
        ..Default::default()
    };
    s.bridges.insert(
        "br-vlan".into(),
        BridgeState {
            physnet: "bridge".into(),
            uplink: true,
            trunks: BTreeSet::from([2001]),
            untagged: false,
        },
    );
    s.ports.insert(
        "p-vm2".into(),
        PortBinding {
            bridge: "br-vlan".into(),
            tag: Some(1),
            network_id: "net2".into(),
            mac: "fa:16:3e:00:00:02".into(),
            fixed_ips: vec!["10.0.2.12".parse().unwrap()],
            security: None,
        },
    );
    s.routers.insert(
        "r1".into(),
        RouterInstance {
            router_id: "r1".into(),
            project_id: "demo".into(),
            namespace: names::router_namespace("r1"),
            legs: vec![RouterLeg {
                kind: LegKind::Gateway,
                bridge: "br-ext".into(),
                tag: Some(3001),
                address: "163.3.124.10/24".parse().unwrap(),
                mac: "fa:16:3e:00:00:10".into(),
                ns_ifname: "qg-r1".into(),
                ovs_ifname: "vg-r1".into(),
                network_id: Some("ext".into()),
                subnet_id: Some("ext-sub".into()),
                mtu: Some(1450),
                ipv6_ra: Some(RouterAdvertisement {
                    prefixes: vec![RaPrefix {
                        prefix: "fd00:1::/64".parse().unwrap(),
                        autonomous: true,
                        on_link: true,
                    }],
                    managed: false,
                    other_config: true,
                    router_lifetime: 1800,
                    mtu: Some(1450),
                    dns_servers: vec!["fd00::53".parse().unwrap()],
                    clients: Some(["fa:16:3e:00:00:21".to_string()].into()),
                }),
                extra_addresses: vec!["2001:db8:100::10/64".parse().unwrap()],
            }],
            routes: vec![Route {
                destination: "0.0.0.0/0".parse().unwrap(),
                nexthop: "163.3.124.1".parse().unwrap(),
            }],
            nat: Nat {
                snat: vec![SnatRule {
                    sources: vec!["10.0.1.0/24".parse().unwrap()],
                    out_ifname: "qg-r1".into(),
                    to: "163.3.124.10".parse().unwrap(),
                }],
                floating: vec![],
            },
            probe_targets: vec![ProbeTarget {
                address: "163.3.124.1".parse().unwrap(),
                kind: ProbeKind::ExternalGateway,
                label: "external:ext".into(),
            }],
        },
    );
    s.tunnels = Some(Tunnels {
        local_ip: "192.168.50.2".parse().unwrap(),
        bridge: "br-vlan".into(),
        segments: BTreeMap::from([(
            1001,
            TunnelSegment {
                tag: 7,
                network_id: Some("net2".into()),
                project_id: None,
                peers: BTreeSet::from(["192.168.50.1".parse().unwrap()]),
            },
        )]),
    });
    s
}

#[test]
fn desired_state_round_trips_and_has_stable_shape() {
    let s = sample_state();
    let text = serde_json::to_string(&s).unwrap();
    let back: NodeDesiredState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        text,
        "bytes are stable"
    );
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["bridges"]["br-vlan"]["trunks"], json!([2001]));
    assert_eq!(v["ports"]["p-vm2"]["tag"], json!(1));
    assert_eq!(v["routers"]["r1"]["legs"][0]["kind"], json!("gateway"));
    assert_eq!(
        v["routers"]["r1"]["legs"][0]["address"],
        json!("163.3.124.10/24")
    );
    assert_eq!(
        v["routers"]["r1"]["routes"][0],
        json!({"destination": "0.0.0.0/0", "nexthop": "163.3.124.1"})
    );
    assert_eq!(
        v["routers"]["r1"]["probe_targets"][0]["kind"],
        json!("external_gateway")
    );
    assert_eq!(v["routers"]["r1"]["legs"][0]["mtu"], json!(1450));
    assert_eq!(
        v["routers"]["r1"]["legs"][0]["ipv6_ra"]["prefixes"][0]["prefix"],
        json!("fd00:1::/64")
    );
    assert_eq!(
        v["tunnels"]["segments"]["1001"],
        json!({"tag": 7, "network_id": "net2", "project_id": null, "peers": ["192.168.50.1"]})
    );
    assert_eq!(
        serde_json::to_value(Ipv6AddressMode::Dhcpv6Stateful).unwrap(),
        json!("dhcpv6-stateful")
    );
    assert_eq!(
        s.routers["r1"].default_route(),
        Some("163.3.124.1".parse().unwrap())
    );
}

#[test]
fn same_content_ignores_revision_only() {
    let a = sample_state();
    let mut b = a.clone();
    b.revision = 99;
    assert!(a.same_content(&b));
    b.ports.clear();
    assert!(!a.same_content(&b));
    let mut c = a.clone();
    c.tunnels = None;
    assert!(!a.same_content(&c), "tunnels are content");
}

#[test]
fn minimal_state_deserializes_with_defaults() {
    let s: NodeDesiredState =
        serde_json::from_value(json!({"node": "n1", "pod": "RegionOne"})).unwrap();
    assert_eq!(s.revision, 0);
    assert!(s.bridges.is_empty() && s.ports.is_empty() && s.routers.is_empty());
}

#[test]
fn agent_messages_round_trip() {
    let reg = NodeRegistration {
        pod: "RegionTwo".into(),
        node: "node2".into(),
        bridge_mappings: BTreeMap::from([
            ("bridge".into(), "br-vlan".into()),
            ("extern".into(), "br-ext".into()),
        ]),
        uplinks: BTreeSet::from(["bridge".into(), "extern".into()]),
        local_ip: Some("192.168.50.2".parse().unwrap()),
    };
    let v = serde_json::to_value(&reg).unwrap();
    assert_eq!(v["bridge_mappings"]["extern"], json!("br-ext"));
    assert_eq!(serde_json::from_value::<NodeRegistration>(v).unwrap(), reg);

    let report = StatusReport {
        node: "node2".into(),
        revision_applied: 3,
        ports: vec![PortStatus {
            port_id: "p-vm2".into(),
            status: PortState::Active,
            host: "node2".into(),
        }],
        routers: vec![
            RouterStatus {
                router_id: "r1".into(),
                state: RouterState::Ready,
                error: None,
            },
            RouterStatus {
                router_id: "r2".into(),
                state: RouterState::Failed,
                error: Some("veth qr-x: file exists".into()),
            },
        ],
        probes: vec![ProbeResult {
            router_id: "r1".into(),
            target: "100.0.0.2".parse().unwrap(),
            reachable: true,
            latency_us: Some(180),
        }],
        errors: vec!["bridge br-ext needs an uplink".into()],
        peers: vec![PeerLiveness {
            node: "node2-2".into(),
            up: false,
        }],
        fenced: true,
    };
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["peers"][0], json!({"node": "node2-2", "up": false}));
    assert_eq!(v["fenced"], json!(true));
    assert_eq!(v["ports"][0]["status"], json!("ACTIVE"));
    assert_eq!(v["routers"][0]["state"], json!("ready"));
    assert!(v["routers"][0].get("error").is_none());
    assert_eq!(v["routers"][1]["state"], json!("failed"));
    assert_eq!(serde_json::from_value::<StatusReport>(v).unwrap(), report);

    let w = WatchResponse {
        revision: 3,
        state: sample_state(),
    };
    let text = serde_json::to_string(&w).unwrap();
    assert_eq!(serde_json::from_str::<WatchResponse>(&text).unwrap(), w);
}
