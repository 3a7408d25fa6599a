//! A router namespace between a VM and an external host: forwarding sysctls, SNAT and
//! floating-IP DNAT/SNAT checked with real probes and real TCP connections, NAT idempotency.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{accept_peer, ip4, listen_in, require_root, Lab};
use plumbing::nat::{self, FloatingIp, NatSpec, Snat};
use plumbing::{probe, sysctl, Netns, ProbeOptions, ProbeStatus};

fn quick() -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_millis(500),
        retries: 2,
    }
}

#[test]
fn forwarding_sysctl_is_per_namespace() {
    require_root();
    let lab = Lab::new();
    let root_before = sysctl::get(&Netns::Current, "net.ipv4.ip_forward").unwrap();
    assert_eq!(
        sysctl::get(&lab.router.ns(), "net.ipv4.ip_forward").unwrap(),
        "1"
    );
    assert_eq!(
        sysctl::get(&lab.vm.ns(), "net.ipv4.ip_forward").unwrap(),
        "0"
    );
    assert!(
        !sysctl::set_forwarding(&lab.router.ns(), true, false).unwrap(),
        "already on"
    );
    assert!(sysctl::set_forwarding(&lab.vm.ns(), false, true).unwrap());
    assert_eq!(
        sysctl::get(&lab.vm.ns(), "net.ipv6.conf.all.forwarding").unwrap(),
        "1"
    );
    assert_eq!(
        sysctl::get(&Netns::Current, "net.ipv4.ip_forward").unwrap(),
        root_before,
        "the root namespace is untouched"
    );
    assert!(
        sysctl::get(&lab.vm.ns(), "kernel.hostname").is_err(),
        "only net.* keys"
    );
    assert!(sysctl::get(&lab.vm.ns(), "net.ipv4/../../x").is_err());
}

#[test]
fn snat_and_floating_ip_through_the_router() {
    require_root();
    let lab = Lab::new();
    let (vm, router, ext) = (lab.vm.ns(), lab.router.ns(), lab.ext.ns());
    let gw = ip4("163.3.124.1");

    // Without NAT the external host cannot answer 10.0.1.11 (no route back).
    let r = probe::icmp(&vm, "eth0", gw.into(), &quick()).unwrap();
    assert_eq!(r.status, ProbeStatus::Timeout, "{r:?}");

    // A table of someone else's in the router namespace must survive everything below.
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.router.name,
            "nft",
            "add table ip other",
        ])
        .status()
        .unwrap();
    assert!(st.success());

    // Phase 1: subnet SNAT only.
    let snat_only = NatSpec {
        snat: vec![Snat {
            sources: vec![
                "10.0.1.0/24".parse().unwrap(),
                "10.0.2.0/24".parse().unwrap(),
            ],
            out_ifname: "qg".into(),
            to: ip4("163.3.124.10"),
        }],
        floating: vec![],
    };
    assert!(nat::apply(&router, &snat_only).unwrap().changed());
    let r = probe::icmp(&vm, "eth0", gw.into(), &quick()).unwrap();
    assert!(r.ok(), "ping through SNAT: {r:?}");
    assert!(r.rtt.unwrap() > Duration::ZERO);
    let l = listen_in(&ext, "163.3.124.1:0");
    let port = l.local_addr().unwrap().port();
    let r = probe::tcp(
        &vm,
        Some("eth0"),
        SocketAddr::new(gw.into(), port),
        &quick(),
    )
    .unwrap();
    assert!(r.ok(), "{r:?}");
    let peer = accept_peer(&l, Duration::from_secs(5)).expect("ext accepted");
    assert_eq!(
        peer.ip().to_string(),
        "163.3.124.10",
        "ext sees the SNAT address"
    );

    // Phase 2: a floating IP for the VM.
    let full = NatSpec {
        floating: vec![FloatingIp {
            floating_ip: ip4("163.3.124.20"),
            fixed_ip: ip4("10.0.1.11"),
            out_ifname: "qg".into(),
        }],
        ..snat_only.clone()
    };
    let mut h = plumbing::Handle::new(&router).unwrap();
    h.add_address("qg", "163.3.124.20/32".parse().unwrap())
        .unwrap();
    assert!(nat::apply(&router, &full).unwrap().changed());
    // DNAT: the external host reaches the VM at the floating IP.
    let r = probe::icmp(&ext, "eth0", ip4("163.3.124.20").into(), &quick()).unwrap();
    assert!(r.ok(), "ping the floating IP: {r:?}");
    let lv = listen_in(&vm, "10.0.1.11:0");
    let vport = lv.local_addr().unwrap().port();
    let r = probe::tcp(
        &ext,
        None,
        format!("163.3.124.20:{vport}").parse().unwrap(),
        &quick(),
    )
    .unwrap();
    assert!(r.ok(), "{r:?}");
    let peer = accept_peer(&lv, Duration::from_secs(5)).expect("vm accepted");
    assert_eq!(
        peer.ip().to_string(),
        "163.3.124.1",
        "DNAT keeps the client address"
    );
    // 1:1 SNAT: the VM's own connections now leave as the floating IP.
    let r = probe::tcp(
        &vm,
        Some("eth0"),
        SocketAddr::new(gw.into(), port),
        &quick(),
    )
    .unwrap();
    assert!(r.ok(), "{r:?}");
    let peer = accept_peer(&l, Duration::from_secs(5)).expect("ext accepted");
    assert_eq!(peer.ip().to_string(), "163.3.124.20");

    // Idempotency: same NAT again (lists in another order) changes nothing.
    let before = nat::current(&router).unwrap().expect("table present");
    let mut shuffled = full.clone();
    shuffled.snat[0].sources.reverse();
    assert!(!nat::apply(&router, &full).unwrap().changed());
    assert!(!nat::apply(&router, &shuffled).unwrap().changed());
    assert_eq!(before, nat::current(&router).unwrap().unwrap());

    // Tampering is detected and repaired.
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.router.name,
            "nft",
            "add rule ip crosspod postrouting counter",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(nat::apply(&router, &full).unwrap().changed());
    assert_eq!(before, nat::current(&router).unwrap().unwrap());

    // Back to SNAT only, then removal; the other table is still there.
    assert!(nat::apply(&router, &snat_only).unwrap().changed());
    let r = probe::tcp(
        &vm,
        Some("eth0"),
        SocketAddr::new(gw.into(), port),
        &quick(),
    )
    .unwrap();
    assert!(r.ok());
    assert_eq!(
        accept_peer(&l, Duration::from_secs(5))
            .unwrap()
            .ip()
            .to_string(),
        "163.3.124.10"
    );
    assert!(nat::remove(&router).unwrap().changed());
    assert!(!nat::remove(&router).unwrap().changed());
    assert!(nat::current(&router).unwrap().is_none());
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.router.name, "nft", "list tables"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("table ip other"));
    let r = probe::icmp(&vm, "eth0", gw.into(), &quick()).unwrap();
    assert_eq!(r.status, ProbeStatus::Timeout, "no NAT, no answer: {r:?}");
}

#[test]
fn nat_refuses_long_interface_names_before_any_change() {
    require_root();
    let lab = Lab::new();
    let spec = NatSpec {
        snat: vec![Snat {
            sources: vec!["10.0.1.0/24".parse().unwrap()],
            out_ifname: "a_much_too_long_name".into(),
            to: ip4("163.3.124.10"),
        }],
        floating: vec![],
    };
    let err = nat::apply(&lab.router.ns(), &spec).unwrap_err();
    assert!(err.to_string().contains("at most 15"), "{err}");
    assert!(nat::current(&lab.router.ns()).unwrap().is_none());
}
