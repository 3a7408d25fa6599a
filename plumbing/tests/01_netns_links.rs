//! Namespaces and links, in real namespaces.

mod common;

use common::{require_root, unique, NsGuard};
use plumbing::link::{format_mac, validate_ifname};
use plumbing::{netns, Error, Handle, Netns, VethEnd, VethSpec};

#[test]
fn namespace_create_list_run_delete() {
    require_root();
    let name = unique("n");
    assert!(netns::create(&name).unwrap());
    let guard = NsGuard { name: name.clone() };
    assert!(!netns::create(&name).unwrap(), "second create is a no-op");
    assert!(netns::list().unwrap().contains(&name));
    let mine = netns::list_prefixed(&name).unwrap();
    assert!(mine.contains(&name) && mine.iter().all(|n| n.starts_with(&name)));
    assert!(std::path::Path::new("/run/netns").join(&name).exists());

    // Inside, only loopback exists and it is up; the thread's namespace differs from ours.
    let mut h = Handle::new(&guard.ns()).unwrap();
    let links = h.links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    assert!(links[0].up);
    let inside = netns::run_in(&guard.ns(), || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    })
    .unwrap();
    let outside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_ne!(inside, outside);
    let async_inside = futures::executor::block_on(netns::spawn_in(&guard.ns(), || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    }))
    .unwrap();
    assert_eq!(async_inside, inside);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outside,
        "the caller never moves"
    );

    drop(guard);
    assert!(!netns::exists(&name));
    assert!(!netns::list().unwrap().contains(&name));
    assert!(!netns::delete(&name).unwrap(), "deleting twice is a no-op");
    assert!(matches!(
        Handle::new(&Netns::named(&name)),
        Err(Error::NoSuchNetns { .. })
    ));
    assert!(matches!(
        futures::executor::block_on(netns::spawn_in(&Netns::named(&name), || ())),
        Err(Error::NoSuchNetns { .. })
    ));
}

#[test]
fn a_failing_test_still_removes_its_namespaces() {
    require_root();
    let mut made = String::new();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let g = NsGuard::new("f");
        made = g.name.clone();
        plumbing::link::create_veth(&VethSpec {
            a: VethEnd::new("fa", g.ns()),
            b: VethEnd::new("fb", g.ns()),
            owner: "test".into(),
        })
        .unwrap();
        panic!("simulated test failure");
    }));
    assert!(res.is_err());
    assert!(!made.is_empty());
    assert!(!netns::exists(&made), "guard removed {made}");
}

#[test]
fn a_stale_unmounted_namespace_file_is_replaced() {
    require_root();
    let name = unique("s");
    std::fs::create_dir_all("/run/netns").unwrap();
    std::fs::write(std::path::Path::new("/run/netns").join(&name), b"").unwrap();
    let guard = NsGuard { name: name.clone() };
    assert!(
        Handle::new(&guard.ns()).is_err(),
        "a plain file is no namespace"
    );
    assert!(netns::create(&name).unwrap(), "recreated");
    assert_eq!(Handle::new(&guard.ns()).unwrap().links().unwrap().len(), 1);
    assert!(!netns::create(&name).unwrap());
}

#[test]
fn namespaces_are_shared_with_iproute2() {
    require_root();
    // Ours are visible to `ip netns` ...
    let ours = NsGuard::new("i");
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&ours.name));
    let out = std::process::Command::new("ip")
        .args(["-n", &ours.name, "link", "show", "lo"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("UP"),
        "lo is up"
    );
    // ... and iproute2's are usable by us.
    let theirs = unique("j");
    let st = std::process::Command::new("ip")
        .args(["netns", "add", &theirs])
        .status()
        .unwrap();
    assert!(st.success());
    let guard = NsGuard {
        name: theirs.clone(),
    };
    assert!(netns::list().unwrap().contains(&theirs));
    let links = Handle::new(&guard.ns()).unwrap().links().unwrap();
    assert_eq!(links.len(), 1);
    assert!(!links[0].up, "iproute2 leaves lo down");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /run/netns ") && l.contains("shared:")),
        "/run/netns is a shared mount"
    );
}

#[test]
fn veth_ends_created_in_their_namespaces_and_changed() {
    let a = NsGuard::new("a");
    let b = NsGuard::new("b");
    let spec = VethSpec {
        a: VethEnd {
            mtu: Some(1400),
            mac: Some([0x02, 0, 0, 0, 0xaa, 0x01]),
            ..VethEnd::new("va", a.ns())
        },
        b: VethEnd::new("vb", b.ns()),
        owner: "test".into(),
    };
    plumbing::link::create_veth(&spec).unwrap();
    let mut ha = Handle::new(&a.ns()).unwrap();
    let mut hb = Handle::new(&b.ns()).unwrap();
    let la = ha.link("va").unwrap().expect("va in a");
    assert!(la.owned() && la.up && la.mtu == 1400);
    assert_eq!(la.owner(), Some("test"));
    assert_eq!(format_mac(&la.mac.unwrap()), "02:00:00:00:aa:01");
    assert_eq!(la.kind.as_deref(), Some("veth"));
    assert!(hb.link("vb").unwrap().unwrap().owned());
    assert!(ha.link("vb").unwrap().is_none(), "peer not in a");
    // Nothing appeared in our own namespace.
    let mut root = Handle::new(&Netns::Current).unwrap();
    assert!(root.link("va").unwrap().is_none() && root.link("vb").unwrap().is_none());

    // ensure_veth on the existing pair changes nothing (same dump on both sides).
    let before = (ha.links().unwrap(), hb.links().unwrap());
    assert!(!plumbing::link::ensure_veth(&spec).unwrap().changed());
    assert_eq!(before, (ha.links().unwrap(), hb.links().unwrap()));
    assert!(la.group == plumbing::link::CROSSPOD_LINK_GROUP);

    // rename, MTU, MAC, down/up.
    ha.set_link("va")
        .rename("va2")
        .mtu(1300)
        .mac([0x02, 0, 0, 0, 0xaa, 0x02])
        .down()
        .apply()
        .unwrap();
    let l = ha.link("va2").unwrap().unwrap();
    assert_eq!((l.mtu, l.up), (1300, false));
    assert_eq!(format_mac(&l.mac.unwrap()), "02:00:00:00:aa:02");
    assert!(ha.link("va").unwrap().is_none());
    ha.set_link("va2").up().apply().unwrap();
    assert!(ha.link("va2").unwrap().unwrap().up);

    // Deleting one end removes the pair.
    assert!(ha.delete_link("va2", false).unwrap());
    assert!(hb.link("vb").unwrap().is_none());
    assert!(!ha.delete_link("va2", false).unwrap());
}

#[test]
fn unowned_links_are_refused_unless_forced() {
    let a = NsGuard::new("u");
    let mut h = Handle::new(&a.ns()).unwrap();
    let err = h.set_link("lo").mtu(1500).apply().unwrap_err();
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    assert!(err.to_string().contains("not owned by crosspod"), "{err}");
    assert!(matches!(
        h.delete_link("lo", false),
        Err(Error::NotOwned { .. })
    ));
    assert_eq!(h.link("lo").unwrap().unwrap().mtu, 65536, "lo untouched");
    h.set_link("lo").force().mtu(65000).apply().unwrap();
    assert_eq!(h.link("lo").unwrap().unwrap().mtu, 65000);
}

#[test]
fn names_over_15_bytes_are_refused_before_any_change() {
    let a = NsGuard::new("l");
    let b = NsGuard::new("m");
    assert!(validate_ifname("exactly15bytes_").is_ok());
    let err = validate_ifname("sixteen_bytes_xx").unwrap_err();
    assert!(matches!(err, Error::NameTooLong { len: 16, .. }), "{err}");
    let mut ha = Handle::new(&a.ns()).unwrap();
    let mut hb = Handle::new(&b.ns()).unwrap();
    let before = (ha.links().unwrap(), hb.links().unwrap());
    let spec = VethSpec {
        a: VethEnd::new("ok0", a.ns()),
        b: VethEnd::new("this_name_is_too_long", b.ns()),
        owner: "test".into(),
    };
    let err = plumbing::link::create_veth(&spec).unwrap_err();
    assert!(err.to_string().contains("at most 15"), "{err}");
    assert!(plumbing::link::ensure_veth(&spec).is_err());
    assert_eq!(before, (ha.links().unwrap(), hb.links().unwrap()));

    // Renaming to a long name is refused before anything is sent.
    let ok = VethSpec {
        a: VethEnd::new("ok0", a.ns()),
        b: VethEnd::new("ok1", b.ns()),
        owner: "test".into(),
    };
    plumbing::link::create_veth(&ok).unwrap();
    let before = ha.links().unwrap();
    let err = ha
        .set_link("ok0")
        .mtu(1280)
        .rename("sixteen_bytes_xx")
        .apply()
        .unwrap_err();
    assert!(matches!(err, Error::NameTooLong { .. }), "{err}");
    assert_eq!(before, ha.links().unwrap(), "MTU not changed either");
}

#[test]
fn ensure_veth_repairs_and_recreates_owned_pairs_only() {
    let a = NsGuard::new("p");
    let b = NsGuard::new("q");
    let spec = VethSpec {
        a: VethEnd {
            mtu: Some(1450),
            ..VethEnd::new("ra", a.ns())
        },
        b: VethEnd::new("rb", b.ns()),
        owner: "r1".into(),
    };
    // A create interrupted before the alias was written: only the link group marks it.
    let group = plumbing::link::CROSSPOD_LINK_GROUP.to_string();
    let st = std::process::Command::new("ip")
        .args([
            "-n", &a.name, "link", "add", "ra", "group", &group, "type", "veth",
        ])
        .args(["peer", "name", "rb", "netns", &b.name, "group", &group])
        .status()
        .unwrap();
    assert!(st.success());
    let mut ha = Handle::new(&a.ns()).unwrap();
    let mut hb = Handle::new(&b.ns()).unwrap();
    assert!(ha.link("ra").unwrap().unwrap().owned());
    assert!(plumbing::link::ensure_veth(&spec).unwrap().changed());
    let la = ha.link("ra").unwrap().unwrap();
    assert_eq!((la.owner(), la.mtu, la.up), (Some("r1"), 1450, true));
    assert_eq!(hb.link("rb").unwrap().unwrap().owner(), Some("r1"));
    let before = (ha.links().unwrap(), hb.links().unwrap());
    assert!(!plumbing::link::ensure_veth(&spec).unwrap().changed());
    assert_eq!(before, (ha.links().unwrap(), hb.links().unwrap()));

    // One end renamed away: the pair is half-present; it is removed and recreated.
    ha.set_link("ra").rename("ra_old").apply().unwrap();
    assert!(plumbing::link::ensure_veth(&spec).unwrap().changed());
    assert!(ha.link("ra_old").unwrap().is_none(), "old pair removed");
    assert!(ha.link("ra").unwrap().unwrap().owned());
    assert!(hb.link("rb").unwrap().unwrap().owned());

    // A same-named link that is not crosspod's is never reused or removed.
    let st = std::process::Command::new("ip")
        .args([
            "-n", &a.name, "link", "add", "xa", "type", "veth", "peer", "name", "xb",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let foreign = VethSpec {
        a: VethEnd::new("xa", a.ns()),
        b: VethEnd::new("xb2", b.ns()),
        owner: "r1".into(),
    };
    let err = plumbing::link::ensure_veth(&foreign).unwrap_err();
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    assert!(ha.link("xa").unwrap().is_some() && ha.link("xb").unwrap().is_some());
    assert!(ha.link("nosuch0").unwrap().is_none());
}
