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
