//! Shared test helpers: a root check that fails loudly, and RAII namespaces with unique names.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use plumbing::{netns, Netns};

/// Fails the test (never skips) when not root: every test here drives real namespaces.
pub fn require_root() {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        uid, 0,
        "plumbing tests create network namespaces, veths and nftables tables: run them as root"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name `cpt<pid><n>` (fits in 15 bytes with a short suffix).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("cpt{}{}{}", std::process::id() % 100_000, tag, n)
}

/// A namespace that is deleted when the guard drops, even if the test panicked.
pub struct NsGuard {
    pub name: String,
}

impl NsGuard {
    pub fn new(tag: &str) -> NsGuard {
        require_root();
        let name = unique(tag);
        assert!(
            netns::create(&name).expect("create namespace"),
            "fresh name"
        );
        NsGuard { name }
    }

    pub fn ns(&self) -> Netns {
        Netns::named(&self.name)
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Err(e) = netns::delete(&self.name) {
            eprintln!("cleanup: deleting namespace {}: {e}", self.name);
        }
    }
}

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use plumbing::{Handle, VethEnd, VethSpec};

/// vm --- router --- ext, as the lab recipe's north-south path:
/// vm `eth0` 10.0.1.11/24 (default via 10.0.1.1) <-> router `qr` 10.0.1.1/24;
/// router `qg` 163.3.124.10/24 <-> ext `eth0` 163.3.124.1/24 (ext has no route to 10.0.1.0/24).
pub struct Lab {
    pub vm: NsGuard,
    pub router: NsGuard,
    pub ext: NsGuard,
}

pub fn ip4(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

impl Lab {
    pub fn new() -> Lab {
        let vm = NsGuard::new("v");
        let router = NsGuard::new("r");
        let ext = NsGuard::new("e");
        for (a, b) in [
            (
                VethEnd::new("eth0", vm.ns()),
                VethEnd::new("qr", router.ns()),
            ),
            (
                VethEnd::new("qg", router.ns()),
                VethEnd::new("eth0", ext.ns()),
            ),
        ] {
            plumbing::link::create_veth(&VethSpec {
                a,
                b,
                owner: "test".into(),
            })
            .expect("create veth");
        }
        let mut h = Handle::new(&vm.ns()).unwrap();
        h.add_address("eth0", "10.0.1.11/24".parse().unwrap())
            .unwrap();
        h.add_route(
            &plumbing::Route::new("0.0.0.0/0".parse().unwrap()).via("10.0.1.1".parse().unwrap()),
        )
        .unwrap();
        let mut h = Handle::new(&router.ns()).unwrap();
        h.add_address("qr", "10.0.1.1/24".parse().unwrap()).unwrap();
        h.add_address("qg", "163.3.124.10/24".parse().unwrap())
            .unwrap();
        plumbing::sysctl::set_forwarding(&router.ns(), true, false).unwrap();
        let mut h = Handle::new(&ext.ns()).unwrap();
        h.add_address("eth0", "163.3.124.1/24".parse().unwrap())
            .unwrap();
        Lab { vm, router, ext }
    }
}

/// A TCP listener created inside `ns` (the socket stays in that namespace).
pub fn listen_in(ns: &plumbing::Netns, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let l = plumbing::netns::run_in(ns, || TcpListener::bind(addr))
        .unwrap()
        .expect("bind listener");
    l.set_nonblocking(true).unwrap();
    l
}

/// The peer address of the next connection accepted within `timeout`.
pub fn accept_peer(l: &TcpListener, timeout: Duration) -> Option<SocketAddr> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        match l.accept() {
            Ok((_, peer)) => return Some(peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}
