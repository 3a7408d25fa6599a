//! The NAT table read and written in-process (libnftables on a namespace thread) and through
//! the `nft` binary forked into the namespace are the same thing: the same listing, and a
//! table written by one is "no change" for the other. Its own test binary: switching the
//! backend is process-wide.

mod common;

use std::process::Command;

use common::NsGuard;
use plumbing::nat::{self, FloatingIp, NatSpec, Snat};
use plumbing::nftlib;

fn spec(to: &str) -> NatSpec {
    NatSpec {
        snat: vec![Snat {
            sources: vec![
                "10.0.1.0/24".parse().unwrap(),
                "10.0.2.7/32".parse().unwrap(),
            ],
            out_ifname: "qg".into(),
            to: to.parse().unwrap(),
        }],
        floating: vec![FloatingIp {
            floating_ip: "163.3.124.20".parse().unwrap(),
            fixed_ip: "10.0.1.11".parse().unwrap(),
            out_ifname: "qg".into(),
        }],
    }
}

#[test]
fn library_and_binary_agree_on_the_table() {
    let a = NsGuard::new("nb");
    let b = NsGuard::new("nb");
    assert!(
        nftlib::available(),
        "libnftables.so.1 loads on this host (the nft binary depends on it)"
    );

    // Written in-process, read both ways.
    assert!(nat::apply(&a.ns(), &spec("163.3.124.10"))
        .unwrap()
        .changed());
    let by_lib = nat::current(&a.ns()).unwrap().expect("table");
    nftlib::force_binary(true);
    let by_bin = nat::current(&a.ns()).unwrap().expect("table");
    assert_eq!(by_lib, by_bin);
    assert_eq!(
        by_lib.1.len(),
        2 + 2,
        "DNAT, floating SNAT, two subnet SNATs"
    );
    // The binary sees nothing to do on the library's table, and writes a different one in b.
    assert!(!nat::apply(&a.ns(), &spec("163.3.124.10"))
        .unwrap()
        .changed());
    assert!(nat::apply(&b.ns(), &spec("163.3.124.11"))
        .unwrap()
        .changed());
    nftlib::force_binary(false);

    // The library reads each namespace's own table (the socket is the namespace's), finds
    // the binary's table up to date, and repairs a changed one.
    assert!(!nat::apply(&b.ns(), &spec("163.3.124.11"))
        .unwrap()
        .changed());
    assert_ne!(
        nat::current(&a.ns()).unwrap(),
        nat::current(&b.ns()).unwrap()
    );
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &b.name,
            "nft",
            "add rule ip crosspod postrouting counter",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(nat::apply(&b.ns(), &spec("163.3.124.11"))
        .unwrap()
        .changed());
    assert!(!nat::apply(&b.ns(), &spec("163.3.124.11"))
        .unwrap()
        .changed());

    // libnftables' own message comes back as the error.
    let err = plumbing::netns::run_in(&a.ns(), || nftlib::run("list table ip nosuchtable"))
        .unwrap()
        .expect("library loaded")
        .unwrap_err();
    assert!(err.contains("No such file or directory"), "{err}");

    // Removal, then nothing to remove, both ways.
    assert!(nat::remove(&a.ns()).unwrap().changed());
    assert!(nat::current(&a.ns()).unwrap().is_none());
    nftlib::force_binary(true);
    assert!(nat::current(&a.ns()).unwrap().is_none());
    assert!(nat::remove(&b.ns()).unwrap().changed());
    nftlib::force_binary(false);
    assert!(nat::current(&b.ns()).unwrap().is_none());
}
