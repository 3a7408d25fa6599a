//! What the agent's DHCP and router-advertisement benches share: reading a process's memory
//! and children, the table rows, and cleaning up what the bench made.
#![allow(dead_code)]

use std::process::Child;

use plumbing::{netns, Netns};

/// A `/proc/<pid>/status` value in KiB (`VmRSS:`, `Threads:`...), 0 when unreadable.
pub fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How many child processes `pid` has.
pub fn children(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .count()
}

/// One row of the bench's table.
pub fn row(what: &str, value: String) {
    println!("| {what:<66} | {value:>22} |");
}

/// What a bench made, removed on drop even when it panics: its processes, every namespace
/// with its prefix (owned links first), its temp dir.
pub struct Cleanup {
    pub prefix: String,
    pub procs: Vec<Child>,
    pub dir: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Ok(all) = netns::list() {
            for n in all.into_iter().filter(|n| n.starts_with(&self.prefix)) {
                if let Ok(mut h) = plumbing::Handle::new(&Netns::named(n.clone())) {
                    if let Ok(links) = h.owned_links() {
                        for l in links {
                            let _ = h.delete_link(&l.name, false);
                        }
                    }
                }
                let _ = netns::delete(&n);
            }
        }
        let _ = &self.dir;
    }
}
