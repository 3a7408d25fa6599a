//! The store suite, run against SQLite and PostgreSQL (CROSSPOD_TEST_PG_URL; fails if unset).
mod common;

use std::collections::HashSet;
use std::sync::Arc;

use controller::error::StoreError;
use controller::store::*;
use controller::vlan_pool::VlanRanges;

fn status(e: StoreError) -> u16 {
    match e {
        StoreError::Rule(a) => controller::api::error::status_of(a.class).as_u16(),
        other => panic!("expected an API error, got {other}"),
    }
}

fn net(project: &str, seg: SegmentRequest) -> NewNetwork {
    NewNetwork {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.into(),
        name: "n".into(),
        description: String::new(),
        admin_state_up: true,
        shared: false,
        external: false,
        mtu: 1500,
        port_security_enabled: true,
        segment: seg,
        az_hints: vec![],
    }
}

fn subnet(network_id: &str, cidr: &str) -> Subnet {
    let cidr: ipnet::IpNet = cidr.parse().unwrap();
    let gw = controller::ipam::default_gateway(&cidr);
    Subnet {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "p".into(),
        network_id: network_id.into(),
        name: String::new(),
        description: String::new(),
        ip_version: 4,
        cidr,
        gateway_ip: Some(gw),
        allocation_pools: controller::ipam::default_pools(&cidr, Some(gw)),
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        subnetpool_id: None,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 1,
    }
}

fn port(network_id: &str) -> NewPort {
    NewPort {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "p".into(),
        network_id: network_id.into(),
        name: String::new(),
        description: String::new(),
        admin_state_up: true,
        mac_address: None,
        device_id: String::new(),
        device_owner: String::new(),
        host_id: String::new(),
        port_security_enabled: None,
        fixed_ips: None,
    }
}

async fn pods_suite(s: &Store) {
    let mk = |r: &str, az: &str| Pod {
        pod_id: uuid::Uuid::new_v4().to_string(),
        region_name: r.into(),
        az_name: az.into(),
        pod_az_name: String::new(),
        dc_name: String::new(),
    };
    s.create_pod(&mk("Central", "")).await.unwrap();
    let one = s.create_pod(&mk("RegionOne", "az1")).await.unwrap();
    assert_eq!(
        status(s.create_pod(&mk("RegionOne", "az9")).await.unwrap_err()),
        409
    );
    assert_eq!(
        status(s.create_pod(&mk("Central2", "")).await.unwrap_err()),
        409
    );
    assert_eq!(s.list_pods().await.unwrap().len(), 2);
    let mut n = net("p", SegmentRequest::Local);
    n.az_hints = vec!["az1".into()];
    let n = s.create_network(&n, &VlanRanges::default()).await.unwrap();
    assert_eq!(status(s.delete_pod(&one.pod_id).await.unwrap_err()), 409);
    s.delete_network(&n.id).await.unwrap();
    s.delete_pod(&one.pod_id).await.unwrap();
    assert_eq!(status(s.get_pod(&one.pod_id).await.unwrap_err()), 404);
    assert_eq!(status(s.delete_pod(&one.pod_id).await.unwrap_err()), 404);
}

async fn vlan_suite(s: &Store) {
    let ranges = VlanRanges::parse("bridge:10:12,extern:20:20").unwrap();
    let any = || SegmentRequest::Vlan {
        physnet: Some("bridge".into()),
        id: None,
    };
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = s.create_network(&net("p", any()), &ranges).await.unwrap();
        match n.segment {
            Segment::Vlan { ref physnet, id } => {
                assert_eq!(physnet, "bridge");
                got.push(id)
            }
            ref other => panic!("not a VLAN: {other:?}"),
        }
    }
    assert_eq!(got, vec![10, 11, 12], "lowest free VLANs in order");
    let before = s.list_networks(&Scope::default()).await.unwrap().len();
    let e = s
        .create_network(&net("p", any()), &ranges)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(status(e), 409);
    assert!(
        msg.contains("bridge"),
        "exhaustion names the physnet: {msg}"
    );
    assert_eq!(
        s.list_networks(&Scope::default()).await.unwrap().len(),
        before,
        "nothing half-made"
    );
    // Default VLAN networks move on to the next physnet, then exhaust everything.
    let n = s
        .create_network(
            &net(
                "p",
                SegmentRequest::Vlan {
                    physnet: None,
                    id: None,
                },
            ),
            &ranges,
        )
        .await
        .unwrap();
    assert_eq!(
        n.segment,
        Segment::Vlan {
            physnet: "extern".into(),
            id: 20
        }
    );
    let e = s
        .create_network(
            &net(
                "p",
                SegmentRequest::Vlan {
                    physnet: None,
                    id: None,
                },
            ),
            &ranges,
        )
        .await
        .unwrap_err();
    assert_eq!(status(e), 409);
    // Explicit VLAN taken → 409; freed by delete → reusable.
    let explicit = SegmentRequest::Vlan {
        physnet: Some("bridge".into()),
        id: Some(11),
    };
    assert_eq!(
        status(
            s.create_network(&net("p", explicit.clone()), &ranges)
                .await
                .unwrap_err()
        ),
        409
    );
    let victim = s
        .list_networks(&Scope::default())
        .await
        .unwrap()
        .into_iter()
        .find(|n| {
            n.segment
                == Segment::Vlan {
                    physnet: "bridge".into(),
                    id: 11,
                }
        })
        .unwrap();
    s.delete_network(&victim.id).await.unwrap();
    s.create_network(&net("p", explicit), &ranges)
        .await
        .unwrap();
    // One flat network per physnet.
    let flat = || SegmentRequest::Flat {
        physnet: "extern".into(),
    };
    s.create_network(&net("p", flat()), &ranges).await.unwrap();
    assert_eq!(
        status(
            s.create_network(&net("p", flat()), &ranges)
                .await
                .unwrap_err()
        ),
        409
    );
}

async fn ipam_suite(s: &Store) {
    let ranges = VlanRanges::default();
    let n = s
        .create_network(&net("p", SegmentRequest::Local), &ranges)
        .await
        .unwrap();
    let sub = s
        .create_subnet(&subnet(&n.id, "10.9.0.0/29"))
        .await
        .unwrap();
    assert_eq!(
        status(
            s.create_subnet(&subnet(&n.id, "10.9.0.0/24"))
                .await
                .unwrap_err()
        ),
        400,
        "overlap refused"
    );
    assert_eq!(
        s.get_network(&n.id).await.unwrap().subnets,
        vec![sub.id.clone()]
    );
    // /29: .1 gateway, .2-.6 allocatable.
    let p1 = s.create_port(&port(&n.id)).await.unwrap();
    assert_eq!(p1.fixed_ips[0].ip_address.to_string(), "10.9.0.2");
    assert!(p1.mac_address.starts_with("fa:16:3e:"));
    let mut explicit = port(&n.id);
    explicit.fixed_ips = Some(vec![FixedIpRequest {
        subnet_id: None,
        ip_address: Some("10.9.0.6".parse().unwrap()),
    }]);
    s.create_port(&explicit).await.unwrap();
    let mut dup = port(&n.id);
    dup.fixed_ips = explicit.fixed_ips.clone();
    assert_eq!(
        status(s.create_port(&dup).await.unwrap_err()),
        409,
        "IP has one owner"
    );
    let mut mac_dup = port(&n.id);
    mac_dup.mac_address = Some(p1.mac_address.clone());
    assert_eq!(
        status(s.create_port(&mac_dup).await.unwrap_err()),
        409,
        "MAC has one owner"
    );
    for want in ["10.9.0.3", "10.9.0.4", "10.9.0.5"] {
        let p = s.create_port(&port(&n.id)).await.unwrap();
        assert_eq!(p.fixed_ips[0].ip_address.to_string(), want);
    }
    let before = s
        .list_ports(&Scope::default(), Some(&n.id))
        .await
        .unwrap()
        .len();
    assert_eq!(
        status(s.create_port(&port(&n.id)).await.unwrap_err()),
        409,
        "pool exhausted"
    );
    assert_eq!(
        s.list_ports(&Scope::default(), Some(&n.id))
            .await
            .unwrap()
            .len(),
        before,
        "no half-made port"
    );
    // Release on delete, then reuse.
    s.delete_port(&p1.id).await.unwrap();
    let again = s.create_port(&port(&n.id)).await.unwrap();
    assert_eq!(again.fixed_ips[0].ip_address.to_string(), "10.9.0.2");
    // Update fixed IPs swaps the allocation.
    let moved = s
        .update_port(
            &again,
            Some(&[FixedIpRequest {
                subnet_id: None,
                ip_address: Some("10.9.0.6".parse().unwrap()),
            }]),
        )
        .await;
    assert_eq!(status(moved.unwrap_err()), 409, "target address is taken");
    let kept = s.get_port(&again.id).await.unwrap();
    assert_eq!(
        kept.fixed_ips, again.fixed_ips,
        "failed update changed nothing"
    );
    let moved = s
        .update_port(
            &again,
            Some(&[FixedIpRequest {
                subnet_id: None,
                ip_address: Some("10.9.0.2".parse().unwrap()),
            }]),
        )
        .await
        .unwrap();
    assert_eq!(moved.fixed_ips, again.fixed_ips);
    assert_eq!(status(s.delete_subnet(&sub.id).await.unwrap_err()), 409);
    assert_eq!(status(s.delete_network(&n.id).await.unwrap_err()), 409);
    for p in s.list_ports(&Scope::default(), Some(&n.id)).await.unwrap() {
        s.delete_port(&p.id).await.unwrap();
    }
    s.delete_network(&n.id).await.unwrap();
    assert_eq!(
        status(s.get_subnet(&sub.id).await.unwrap_err()),
        404,
        "subnets go with the network"
    );
}

async fn visibility_suite(s: &Store) {
    let ranges = VlanRanges::default();
    let mut a = net("alice", SegmentRequest::Local);
    a.name = "mine".into();
    s.create_network(&a, &ranges).await.unwrap();
    let mut shared = net("bob", SegmentRequest::Local);
    shared.shared = true;
    s.create_network(&shared, &ranges).await.unwrap();
    s.create_network(&net("bob", SegmentRequest::Local), &ranges)
        .await
        .unwrap();
    let seen = s
        .list_networks(&Scope {
            project_id: Some("alice".into()),
        })
        .await
        .unwrap();
    let ids: HashSet<_> = seen.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids, [a.id.clone(), shared.id.clone()].into_iter().collect());
}

/// Many concurrent port creations through several stores on one database (as several
/// controllers): every address and MAC distinct, none lost.
async fn concurrency_suite(stores: Vec<Arc<Store>>) {
    let s0 = stores[0].clone();
    let n = s0
        .create_network(&net("p", SegmentRequest::Local), &VlanRanges::default())
        .await
        .unwrap();
    s0.create_subnet(&subnet(&n.id, "10.7.0.0/24"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = stores[i % stores.len()].clone();
        let nid = n.id.clone();
        tasks.push(tokio::spawn(
            async move { s.create_port(&port(&nid)).await },
        ));
    }
    let mut ips = HashSet::new();
    let mut macs = HashSet::new();
    for t in tasks {
        let p = t.await.unwrap().expect("concurrent create succeeds");
        assert!(
            ips.insert(p.fixed_ips[0].ip_address),
            "duplicate IP {:?}",
            p.fixed_ips
        );
        assert!(macs.insert(p.mac_address.clone()));
    }
    assert_eq!(ips.len(), 40);
    let ranges = VlanRanges::parse("bridge:100:129").unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = stores[i % stores.len()].clone();
        let r = ranges.clone();
        tasks.push(tokio::spawn(async move {
            s.create_network(
                &net(
                    "p",
                    SegmentRequest::Vlan {
                        physnet: None,
                        id: None,
                    },
                ),
                &r,
            )
            .await
        }));
    }
    let mut vlans = HashSet::new();
    for t in tasks {
        let n = t
            .await
            .unwrap()
            .expect("concurrent network create succeeds");
        let Segment::Vlan { id, .. } = n.segment else {
            panic!("not vlan")
        };
        assert!(vlans.insert(id), "duplicate VLAN {id}");
    }
    assert_eq!(vlans.len(), 30);
    // Bridge /24s: ten projects, each asked for twice at once.
    let pool: ipnet::Ipv4Net = "100.0.0.0/16".parse().unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            (
                i % 10,
                s.bridge_subnet(&format!("proj{}", i % 10), pool).await,
            )
        }));
    }
    let mut by_project = std::collections::HashMap::new();
    for t in tasks {
        let (p, r) = t.await.unwrap();
        let c = r.expect("bridge subnet");
        if let Some(prev) = by_project.insert(p, c) {
            assert_eq!(prev, c, "one /24 per project");
        }
    }
    let distinct: HashSet<_> = by_project.values().collect();
    assert_eq!(distinct.len(), 10, "no /24 shared by two projects");
}

async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let s = Store::connect(&url).await.unwrap();
    (dir, s)
}

macro_rules! both {
    ($suite:ident, $sqlite:ident, $pg:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let (_dir, s) = sqlite_store().await;
            $suite(&s).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            let db = common::PgDb::create();
            let s = Store::connect(&db.url).await.unwrap();
            assert_eq!(s.backend(), Backend::Postgres);
            $suite(&s).await;
            s.close().await;
        }
    };
}

async fn bridge_suite(s: &Store) {
    let pool: ipnet::Ipv4Net = "100.0.0.0/23".parse().unwrap();
    let a = s.bridge_subnet("a", pool).await.unwrap();
    assert_eq!(a.to_string(), "100.0.0.0/24");
    assert_eq!(
        s.bridge_subnet("a", pool).await.unwrap(),
        a,
        "idempotent per project"
    );
    let b = s.bridge_subnet("b", pool).await.unwrap();
    assert_eq!(b.to_string(), "100.0.1.0/24");
    let e = s.bridge_subnet("c", pool).await.unwrap_err();
    assert!(e.to_string().contains("100.0.0.0/23"), "{e}");
    assert_eq!(status(e), 409);
    s.release_bridge_subnet("a").await.unwrap();
    assert_eq!(s.bridge_subnet_of("a").await.unwrap(), None);
    assert_eq!(
        s.bridge_subnet("c", pool).await.unwrap(),
        a,
        "released /24 reused"
    );
}

both!(pods_suite, sqlite_pods, pg_pods);
both!(bridge_suite, sqlite_bridge, pg_bridge);
both!(vlan_suite, sqlite_vlans, pg_vlans);
both!(ipam_suite, sqlite_ipam, pg_ipam);
both!(visibility_suite, sqlite_visibility, pg_visibility);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrency() {
    let (_dir, s) = sqlite_store().await;
    concurrency_suite(vec![Arc::new(s)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrency_two_stores() {
    let db = common::PgDb::create();
    let a = Arc::new(Store::connect(&db.url).await.unwrap());
    let b = Arc::new(Store::connect(&db.url).await.unwrap());
    concurrency_suite(vec![a.clone(), b.clone()]).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    let (dir, s) = sqlite_store().await;
    s.create_network(&net("p", SegmentRequest::Local), &VlanRanges::default())
        .await
        .unwrap();
    s.close().await;
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let s = Store::connect(&url).await.unwrap();
    assert_eq!(s.list_networks(&Scope::default()).await.unwrap().len(), 1);
    assert!(Store::connect("mysql://x").await.is_err());
    let mem = Store::connect("sqlite::memory:").await.unwrap();
    mem.create_network(&net("p", SegmentRequest::Local), &VlanRanges::default())
        .await
        .unwrap();
    assert_eq!(
        mem.list_networks(&Scope::default()).await.unwrap().len(),
        1,
        "in-memory store keeps its data"
    );
}

/// A constraint violation no handler anticipated (a race with a concurrent delete) is a 409,
/// not a 500; checked with a real foreign-key violation on both backends.
async fn constraint_race_suite(s: &Store) {
    let r = sqlx::query("INSERT INTO ip_allocations (network_id, ip_address, subnet_id, port_id) VALUES ('n', '10.0.0.1', 'gone', 'gone')")
        .execute(s.pool())
        .await;
    let e = StoreError::db("claiming an address")(r.expect_err("foreign keys are enforced"));
    assert!(e.is_foreign_key_violation(), "{e}");
    let api: controller::error::DomainError = e.into();
    assert_eq!(api.class, controller::error::ErrorClass::Conflict, "{api}");
}

both!(
    constraint_race_suite,
    sqlite_constraint_race,
    pg_constraint_race
);

/// A router's gateway port goes with the router in one transaction, and the realizer's
/// mending create of a "missing" gateway port happens only while the router row still names
/// a gateway on that port's network: a pass working from an intent a moment old cannot
/// re-create the port of a router just deleted (which left the external subnet undeletable).
async fn gateway_port_suite(s: &Store) {
    let n = s
        .create_network(
            &NewNetwork {
                external: true,
                ..net("admin", SegmentRequest::Local)
            },
            &VlanRanges::default(),
        )
        .await
        .unwrap();
    let sub = s
        .create_subnet(&subnet(&n.id, "10.9.9.0/24"))
        .await
        .unwrap();
    let other = s
        .create_network(&net("admin", SegmentRequest::Local), &VlanRanges::default())
        .await
        .unwrap();
    let router = controller::store::l3::Router {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "admin".into(),
        name: "r".into(),
        description: String::new(),
        admin_state_up: true,
        az_hints: vec![],
        gateway: Some(controller::store::l3::GatewayInfo {
            network_id: n.id.clone(),
            enable_snat: true,
            requested_ips: vec![],
        }),
        routes: vec![],
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 0,
    };
    let gw_port = |net: &str| NewPort {
        device_id: router.id.clone(),
        device_owner: "network:router_gateway".into(),
        ..port(net)
    };
    s.create_router_with_gateway(&router, None).await.unwrap();
    // On another network than the row names: not created.
    assert!(s
        .create_gateway_port(&router.id, &gw_port(&other.id))
        .await
        .unwrap()
        .is_none());
    let made = s
        .create_gateway_port(&router.id, &gw_port(&n.id))
        .await
        .unwrap()
        .expect("the router names this gateway");
    s.delete_router(&router.id).await.unwrap();
    assert!(
        s.get_port(&made.id).await.is_err(),
        "the gateway port outlived its router"
    );
    // A late mend for the deleted router creates nothing, and the subnet can go.
    assert!(s
        .create_gateway_port(&router.id, &gw_port(&n.id))
        .await
        .unwrap()
        .is_none());
    s.delete_subnet(&sub.id).await.unwrap();
}

both!(gateway_port_suite, sqlite_gateway_port, pg_gateway_port);

/// Publishing node states: the nodes whose revision the caller knows go in one statement
/// (batched beyond 1000 nodes), the rest are read back; compare-and-set on the revision and
/// the change-log position either way.
async fn publish_suite(s: &Store) {
    let n = 1203; // more than one batched statement
    let nodes: Vec<String> = (0..n).map(|i| format!("pub-node-{i:04}")).collect();
    // New nodes: nothing known, each inserted at revision 1.
    let first: Vec<(String, String, Option<i64>)> = nodes
        .iter()
        .map(|x| (x.clone(), format!("{{\"v\":1,\"n\":\"{x}\"}}"), None))
        .collect();
    let done = s.publish_node_states(&first, 10).await.unwrap();
    assert_eq!(done.len(), n);
    assert!(done.iter().all(|p| p.moved && p.revision == 1));
    // Known revisions: all moved by one, in one call, content stored.
    let second: Vec<(String, String, Option<i64>)> = nodes
        .iter()
        .map(|x| (x.clone(), format!("{{\"v\":2,\"n\":\"{x}\"}}"), Some(1)))
        .collect();
    let done = s.publish_node_states(&second, 11).await.unwrap();
    assert!(done.iter().all(|p| p.moved && p.revision == 2), "{done:?}");
    for i in [0, 999, 1000, n - 1] {
        let (rev, content) = s.node_state(&nodes[i]).await.unwrap().unwrap();
        assert_eq!((rev, content), (2, second[i].1.clone()), "node {i}");
    }
    // A stale belief (revision 1, published is 2) falls back to reading and still moves it
    // once; a state from an earlier log position never overwrites a later one; the same
    // content read back (nothing known) moves nothing.
    let mixed = vec![
        (nodes[0].clone(), "{\"v\":3}".to_string(), Some(1)),
        (nodes[1].clone(), "{\"v\":3}".to_string(), Some(2)),
        (nodes[2].clone(), second[2].1.clone(), None),
    ];
    let done = s.publish_node_states(&mixed, 12).await.unwrap();
    let by: std::collections::HashMap<&str, &controller::store::l3::Published> =
        done.iter().map(|p| (p.node.as_str(), p)).collect();
    assert!(by[nodes[0].as_str()].moved && by[nodes[0].as_str()].revision == 3);
    assert!(by[nodes[1].as_str()].moved && by[nodes[1].as_str()].revision == 3);
    assert!(!by[nodes[2].as_str()].moved && by[nodes[2].as_str()].revision == 2);
    let older = vec![(nodes[3].clone(), "{\"v\":\"old\"}".to_string(), Some(2))];
    let done = s.publish_node_states(&older, 5).await.unwrap();
    assert!(
        !done[0].moved,
        "an earlier log position overwrote a later state"
    );
    assert_eq!(done[0].revision, 2);
    assert_eq!(
        done[0].content, second[3].1,
        "the stored content is what it answers"
    );
    assert_eq!(
        s.node_state(&nodes[3]).await.unwrap().unwrap(),
        (2, second[3].1.clone())
    );
}

both!(publish_suite, sqlite_publish, pg_publish);

/// `agents_of` reads exactly the registered nodes it is asked about, ordered by node (what a
/// router's realization is judged on), and nothing for no nodes.
async fn agents_of_suite(s: &Store) {
    for node in ["ag-c", "ag-a", "ag-b", "ag-d"] {
        let reg = wire::NodeRegistration {
            pod: "RegionOne".into(),
            node: node.into(),
            ..Default::default()
        };
        s.register_agent(&reg, "admin").await.unwrap();
    }
    let ask = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let got: Vec<String> = s
        .agents_of(&ask(&["ag-d", "ag-b", "ag-missing"]))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.node)
        .collect();
    assert_eq!(got, ["ag-b", "ag-d"]);
    assert!(s.agents_of(&[]).await.unwrap().is_empty());
    assert_eq!(
        s.agents_of(&ask(&["ag-a"])).await.unwrap()[0].pod,
        "RegionOne"
    );
}

both!(agents_of_suite, sqlite_agents_of, pg_agents_of);
