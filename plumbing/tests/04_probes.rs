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

/// fd00:1::1/64 on the router's `qr`, fd00:1::11/64 on the VM's `eth0`.
fn give_v6(lab: &Lab) {
    for (ns, ifname, addr) in [
        (lab.router.ns(), "qr", "fd00:1::1/64"),
        (lab.vm.ns(), "eth0", "fd00:1::11/64"),
    ] {
        Handle::new(&ns)
            .unwrap()
            .add_address(ifname, addr.parse().unwrap())
            .unwrap();
    }
}

#[test]
fn icmpv6_probe_answers_and_times_out() {
    require_root();
    let lab = Lab::new();
    give_v6(&lab);
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
fn neighbour_discovery_probe_finds_the_neighbour_and_unsolicited_advertisements_reach_it() {
    require_root();
    let lab = Lab::new();
    give_v6(&lab);
    let vm_mac = Handle::new(&lab.vm.ns())
        .unwrap()
        .link("eth0")
        .unwrap()
        .unwrap()
        .mac;
    let router_mac = Handle::new(&lab.router.ns())
        .unwrap()
        .link("qr")
        .unwrap()
        .unwrap()
        .mac
        .unwrap();
    // Usable at once: both addresses went in without duplicate address detection.
    let r = probe::nd(
        &lab.router.ns(),
        "qr",
        "fd00:1::11".parse().unwrap(),
        &quick(),
    )
    .unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.mac, vm_mac);
    let r = probe::nd(
        &lab.router.ns(),
        "qr",
        "fd00:1::99".parse().unwrap(),
        &quick(),
    )
    .unwrap();
    assert_eq!(r.status, ProbeStatus::Timeout);
    assert_eq!(r.attempts, 2, "one retry");
    let r = probe::nd(
        &lab.router.ns(),
        "qg",
        "fd00:1::11".parse().unwrap(),
        &quick(),
    )
    .unwrap();
    assert!(!r.ok(), "not on that leg: {r:?}");
    assert!(probe::nd(
        &lab.router.ns(),
        "nope0",
        "fd00:1::11".parse().unwrap(),
        &quick()
    )
    .is_err());

    // Unsolicited advertisements (router, override) of the router's address reach the VM.
    let s = plumbing::icmp6::open_in(&lab.vm.ns(), "eth0", &[136]).unwrap();
    s.socket.set_nonblocking(false).unwrap();
    s.socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let n = probe::unsolicited_na(
        &lab.router.ns(),
        "qr",
        &["fd00:1::1".parse().unwrap()],
        2,
        Duration::from_millis(50),
    )
    .unwrap();
    assert_eq!(n, 2);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let mut seen = 0;
    while let Ok((n, _)) = s.socket.recv_from(&mut buf) {
        // SAFETY: recv_from initialised the first n bytes.
        let pkt: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let target: std::net::Ipv6Addr = "fd00:1::1".parse().unwrap();
        if plumbing::icmp6::advertised_mac(&pkt, &target) == Some(Some(router_mac)) {
            assert_eq!(pkt[4], 0xa0, "router and override flags, not solicited");
            seen += 1;
        }
        if seen == 2 {
            break;
        }
    }
    assert_eq!(seen, 2);
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
