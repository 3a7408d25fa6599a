//! Addresses and routes in a real namespace: every operation, IPv4 and IPv6, metrics,
//! idempotency checked by a netlink dump before/after, and routes of others left alone.

mod common;

use std::net::IpAddr;
use std::process::Command;

use common::NsGuard;
use ipnet::IpNet;
use plumbing::{Error, Handle, Route, VethEnd, VethSpec, CROSSPOD_PROTO};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace with an owned veth `e0` (peer `e1` in the same namespace), up.
fn ns_with_link(tag: &str) -> (NsGuard, Handle) {
    let g = NsGuard::new(tag);
    plumbing::link::create_veth(&VethSpec {
        a: VethEnd::new("e0", g.ns()),
        b: VethEnd::new("e1", g.ns()),
        owner: "test".into(),
    })
    .unwrap();
    let h = Handle::new(&g.ns()).unwrap();
    (g, h)
}

#[test]
fn addresses_add_replace_delete_list_sync() {
    let (_g, mut h) = ns_with_link("ad");
    h.add_address("e0", net("10.9.0.1/24")).unwrap();
    h.add_address("e0", net("fd00:9::1/64")).unwrap();
    let err = h.add_address("e0", net("10.9.0.1/24")).unwrap_err();
    assert!(err.to_string().contains("10.9.0.1/24 on e0"), "{err}");
    h.replace_address("e0", net("10.9.0.1/24")).unwrap();
    let got = h.link_addresses("e0").unwrap();
    assert!(got.contains(&net("10.9.0.1/24")), "{got:?}");
    assert!(got.contains(&net("fd00:9::1/64")), "{got:?}");

    assert!(h.del_address("e0", net("10.9.0.1/24")).unwrap());
    assert!(!h.del_address("e0", net("10.9.0.1/24")).unwrap());

    let want = [net("10.9.1.1/24"), net("10.9.2.1/32"), net("fd00:9::1/64")];
    assert!(h.sync_addresses("e0", &want).unwrap().changed());
    let before = h.addresses().unwrap();
    assert!(!h.sync_addresses("e0", &want).unwrap().changed());
    assert_eq!(
        before,
        h.addresses().unwrap(),
        "second sync changed the dump"
    );
    let mine: Vec<IpNet> = h.link_addresses("e0").unwrap();
    for w in &want {
        assert!(mine.contains(w), "{w} missing from {mine:?}");
    }
    // Loopback is not crosspod's.
    assert!(matches!(
        h.add_address("lo", net("10.99.0.1/32")),
        Err(Error::NotOwned { .. })
    ));
}

#[test]
fn routes_add_replace_delete_with_metrics() {
    let (_g, mut h) = ns_with_link("rt");
    h.add_address("e0", net("10.8.0.1/24")).unwrap();
    h.add_address("e0", net("fd00:8::1/64")).unwrap();
    let r4 = Route::new(net("10.20.0.0/16"))
        .via(ip("10.8.0.2"))
        .metric(10);
    let r4b = Route::new(net("10.20.0.0/16"))
        .via(ip("10.8.0.3"))
        .metric(20);
    let r6 = Route::new(net("fd00:20::/48")).via(ip("fd00:8::2"));
    let rdev = Route::new(net("10.30.0.0/24")).dev("e0");
    h.add_route(&r4).unwrap();
    h.add_route(&r4b).unwrap();
    h.add_route(&r6).unwrap();
    h.add_route(&rdev).unwrap();
    assert!(h.add_route(&r4).is_err(), "duplicate add must fail");
    let owned = h.owned_routes().unwrap();
    assert_eq!(owned.len(), 4, "{owned:?}");
    assert!(owned.iter().all(|e| e.proto == CROSSPOD_PROTO));
    let e6 = owned.iter().find(|e| e.dst == net("fd00:20::/48")).unwrap();
    assert_eq!((e6.via, e6.metric), (Some(ip("fd00:8::2")), 1024));
    let e4: Vec<_> = owned
        .iter()
        .filter(|e| e.dst == net("10.20.0.0/16"))
        .collect();
    assert_eq!(e4.len(), 2, "two metrics, two routes");

    // Replace changes the next hop of the metric-10 route only.
    h.replace_route(
        &Route::new(net("10.20.0.0/16"))
            .via(ip("10.8.0.9"))
            .metric(10),
    )
    .unwrap();
    let owned = h.owned_routes().unwrap();
    let m10 = owned.iter().find(|e| e.metric == 10).unwrap();
    assert_eq!(m10.via, Some(ip("10.8.0.9")));
    let m20 = owned.iter().find(|e| e.metric == 20).unwrap();
    assert_eq!(m20.via, Some(ip("10.8.0.3")));

    assert!(h.del_route(&r4b).unwrap());
    assert!(!h.del_route(&r4b).unwrap());
    assert!(h.del_route(&r6).unwrap());
    assert_eq!(h.owned_routes().unwrap().len(), 2);
}

#[test]
fn sync_routes_changes_only_the_difference_and_never_foreign_routes() {
    let (g, mut h) = ns_with_link("sy");
    h.add_address("e0", net("10.7.0.1/24")).unwrap();
    h.add_address("e0", net("fd00:7::1/64")).unwrap();
    // Someone else's routes, made with iproute2 as an operator would.
    for args in [
        [
            "route",
            "add",
            "10.50.0.0/24",
            "via",
            "10.7.0.50",
            "proto",
            "static",
        ],
        [
            "route",
            "add",
            "10.51.0.0/24",
            "via",
            "10.7.0.51",
            "proto",
            "boot",
        ],
    ] {
        let st = Command::new("ip")
            .args(["-n", &g.name])
            .args(args)
            .status()
            .expect("run ip");
        assert!(st.success(), "ip {args:?}");
    }
    let mut want = vec![
        Route::new(net("10.60.0.0/24")).via(ip("10.7.0.2")),
        Route::new(net("10.61.0.0/24"))
            .via(ip("10.7.0.2"))
            .metric(5),
        Route::new(net("0.0.0.0/0")).via(ip("10.7.0.254")),
        Route::new(net("fd00:61::/64")).via(ip("fd00:7::2")),
        Route::new(net("10.62.0.0/24")).dev("e0"),
    ];
    let s = h.sync_routes(&want).unwrap();
    assert_eq!(
        (s.added.len(), s.replaced.len(), s.removed.len()),
        (5, 0, 0)
    );

    // Same set again: nothing changes, the whole route dump is identical.
    let before = h.routes().unwrap();
    let s = h.sync_routes(&want).unwrap();
    assert!(!s.changed(), "{s:?}");
    assert_eq!(before, h.routes().unwrap());

    // Change one next hop, drop one, add one.
    want[0] = Route::new(net("10.60.0.0/24")).via(ip("10.7.0.3"));
    want.remove(1);
    want.push(Route::new(net("10.63.0.0/24")).via(ip("10.7.0.2")));
    let s = h.sync_routes(&want).unwrap();
    assert_eq!(s.replaced, vec![want[0].clone()]);
    assert_eq!(s.removed.len(), 1);
    assert_eq!(s.removed[0].dst, net("10.61.0.0/24"));
    assert_eq!(s.added.len(), 1);
    let all = h.routes().unwrap();
    let e = all.iter().find(|e| e.dst == net("10.60.0.0/24")).unwrap();
    assert_eq!(e.via, Some(ip("10.7.0.3")));

    // A wanted route whose key someone else holds: refused, nothing changed.
    let before = h.routes().unwrap();
    let mut clash = want.clone();
    clash.push(Route::new(net("10.50.0.0/24")).via(ip("10.7.0.2")));
    let err = h.sync_routes(&clash).unwrap_err();
    assert!(
        matches!(err, Error::RouteConflict { proto: 4, .. }),
        "{err}"
    );
    assert_eq!(before, h.routes().unwrap());
    assert!(matches!(
        h.replace_route(&Route::new(net("10.51.0.0/24")).via(ip("10.7.0.2"))),
        Err(Error::RouteConflict { .. })
    ));

    // Syncing to nothing removes only crosspod's routes.
    let s = h.sync_routes(&[]).unwrap();
    assert_eq!(s.removed.len(), want.len());
    assert!(h.owned_routes().unwrap().is_empty());
    let rest = h.routes().unwrap();
    for (d, p) in [("10.50.0.0/24", 4u8), ("10.51.0.0/24", 3)] {
        let e = rest
            .iter()
            .find(|e| e.dst == net(d))
            .expect("foreign route kept");
        assert_eq!(e.proto, p);
    }
    // Unknown device: refused before any change.
    let err = h
        .sync_routes(&[Route::new(net("10.70.0.0/24")).dev("nope0")])
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchLink { .. }), "{err}");
}

#[test]
fn dumps_of_the_root_namespace_decode() {
    common::require_root();
    // Read-only: whatever the host has (OVS taps, bridges, other crates' test links) decodes.
    let mut h = Handle::new(&plumbing::Netns::Current).unwrap();
    let links = h.links().unwrap();
    let lo = links.iter().find(|l| l.name == "lo").expect("lo");
    assert!(lo.up);
    assert_eq!(h.link("lo").unwrap().as_ref(), Some(lo));
    let addrs = h.addresses().unwrap();
    assert!(addrs
        .iter()
        .any(|a| a.index == lo.index && a.net == net("127.0.0.1/8")));
    let routes = h.routes().unwrap();
    assert!(
        routes.iter().any(|r| r.dst == net("127.0.0.0/8")),
        "local table"
    );
}
