//! ARP, ICMP and TCP probes out of a given interface, positive and negative.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ip4, listen_in, require_root, Lab};
use plumbing::{probe, Handle, ProbeOptions, ProbeStatus};

fn quick() -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_millis(300),
        retries: 1,
    }
}

#[test]
fn arp_probe_finds_the_neighbour_and_times_out_on_nobody() {
    require_root();
    let lab = Lab::new();
    let vm_mac = Handle::new(&lab.vm.ns())
        .unwrap()
        .link("eth0")
        .unwrap()
        .unwrap()
        .mac;
    let r = probe::arp(&lab.router.ns(), "qr", ip4("10.0.1.11"), &quick()).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.mac, vm_mac);
    assert_eq!(r.attempts, 1);
    let r = probe::arp(&lab.router.ns(), "qr", ip4("10.0.1.99"), &quick()).unwrap();
    assert_eq!(r.status, ProbeStatus::Timeout);
    assert_eq!(r.attempts, 2, "one retry");
    // Out of the other leg, the VM is not on the wire.
    let r = probe::arp(&lab.router.ns(), "qg", ip4("10.0.1.11"), &quick()).unwrap();
    assert!(!r.ok());
    // Setup errors are errors, not timeouts.
    assert!(probe::arp(&lab.router.ns(), "nope0", ip4("10.0.1.11"), &quick()).is_err());
    assert!(probe::arp(
        &lab.router.ns(),
        "much_too_long_name",
        ip4("10.0.1.11"),
        &quick()
    )
    .is_err());
}

#[test]
fn icmp_probe_measures_rtt_and_times_out() {
    require_root();
    let lab = Lab::new();
    let r = probe::icmp(&lab.router.ns(), "qr", ip4("10.0.1.11").into(), &quick()).unwrap();
    assert!(r.ok(), "{r:?}");
    let rtt = r.rtt.unwrap();
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_millis(300),
        "{rtt:?}"
    );
    // Through the router: vm -> router's far leg.
    let r = probe::icmp(&lab.vm.ns(), "eth0", ip4("163.3.124.10").into(), &quick()).unwrap();
    assert!(r.ok(), "{r:?}");
    let r = probe::icmp(&lab.router.ns(), "qr", ip4("10.0.1.99").into(), &quick()).unwrap();
    assert_eq!(r.status, ProbeStatus::Timeout, "{r:?}");
    assert_eq!(r.attempts, 2);
    // Bound to the wrong interface the VM is not reachable.
    let r = probe::icmp(&lab.router.ns(), "qg", ip4("10.0.1.11").into(), &quick()).unwrap();
    assert!(!r.ok(), "{r:?}");
}

#[test]
fn icmpv6_probe_answers_and_times_out() {
    require_root();
    let lab = Lab::new();
    Handle::new(&lab.router.ns())
        .unwrap()
        .add_address("qr", "fd00:1::1/64".parse().unwrap())
        .unwrap();
    Handle::new(&lab.vm.ns())
        .unwrap()
        .add_address("eth0", "fd00:1::11/64".parse().unwrap())
        .unwrap();
    let target: std::net::IpAddr = "fd00:1::11".parse().unwrap();
    // Neighbour discovery on a link that just came up may need its 1 s retransmission.
    let patient = ProbeOptions {
        timeout: Duration::from_millis(1500),
        retries: 2,
    };
    let r = probe::icmp(&lab.router.ns(), "qr", target, &patient).unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(r.rtt.unwrap() > Duration::ZERO);
    // Once the neighbour is known, an answer is quick.
    let r = probe::icmp(&lab.router.ns(), "qr", target, &quick()).unwrap();
    assert!(r.ok(), "{r:?}");
    let r = probe::icmp(
        &lab.router.ns(),
        "qr",
        "fd00:1::99".parse().unwrap(),
        &quick(),
    )
    .unwrap();
    assert!(!r.ok(), "{r:?}");
}

#[test]
fn tcp_probe_connects_is_refused_and_times_out() {
    require_root();
    let lab = Lab::new();
    let l = listen_in(&lab.vm.ns(), "10.0.1.11:0");
    let port = l.local_addr().unwrap().port();
    let target = SocketAddr::new(ip4("10.0.1.11").into(), port);
    let r = probe::tcp(&lab.router.ns(), Some("qr"), target, &quick()).unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(r.rtt.is_some());
    drop(l);
    let r = probe::tcp(&lab.router.ns(), Some("qr"), target, &quick()).unwrap();
    match &r.status {
        ProbeStatus::Failed(m) => assert!(m.contains("refused"), "{m}"),
        other => panic!("expected refused, got {other:?}"),
    }
    assert_eq!(r.attempts, 1, "a refusal is not retried");
    let r = probe::tcp(
        &lab.router.ns(),
        Some("qr"),
        SocketAddr::new(ip4("10.0.1.99").into(), 80),
        &quick(),
    )
    .unwrap();
    assert!(!r.ok(), "{r:?}");
}
