//! The crate's one error type: every variant says what failed and on which object, so a
//! reconcile report can be read without a debugger.

use std::io;

/// Everything that can go wrong in the plumbing crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Linux interface names are at most 15 bytes (IFNAMSIZ - 1); checked before any change.
    #[error("interface name {name:?} is {len} bytes long; Linux allows at most 15")]
    NameTooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A namespace or interface name that Linux or `ip netns` would not accept.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "interface" or "namespace".
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A namespace operation (mount, unshare, setns, open) failed.
    #[error("{op} of network namespace {ns:?} failed: {source}")]
    Netns {
        /// What was attempted.
        op: &'static str,
        /// The namespace.
        ns: String,
        /// The OS error.
        source: io::Error,
    },
    /// The namespace does not exist under /run/netns.
    #[error("network namespace {ns:?} does not exist")]
    NoSuchNetns {
        /// The namespace.
        ns: String,
    },
    /// A netlink request was refused by the kernel or the socket failed.
    #[error("netlink {op} of {object} in namespace {ns:?} failed: {source}")]
    Netlink {
        /// What was attempted ("add route", "dump links", ...).
        op: &'static str,
        /// The object it was about (a link name, a route, ...).
        object: String,
        /// The namespace the socket lives in.
        ns: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The kernel sent something the netlink decoder could not read.
    #[error("netlink {op} in namespace {ns:?}: undecodable reply: {detail}")]
    Decode {
        /// What was attempted.
        op: &'static str,
        /// The namespace.
        ns: String,
        /// The decoder's message.
        detail: String,
    },
    /// The link exists but is not marked as crosspod's (alias `crosspod:...`).
    #[error("refusing to {op} link {name:?} in namespace {ns:?}: not owned by crosspod (alias {alias:?}); use force to override")]
    NotOwned {
        /// What was refused.
        op: &'static str,
        /// The link.
        name: String,
        /// The namespace.
        ns: String,
        /// The alias it has, if any.
        alias: Option<String>,
    },
    /// A link that the operation needs is not there.
    #[error("link {name:?} not found in namespace {ns:?}")]
    NoSuchLink {
        /// The link.
        name: String,
        /// The namespace.
        ns: String,
    },
    /// A route crosspod wants is already held by someone else (another protocol).
    #[error("route {route} in namespace {ns:?} already exists with protocol {proto} (not crosspod's); refusing to replace it")]
    RouteConflict {
        /// The route.
        route: String,
        /// The namespace.
        ns: String,
        /// The protocol number of the existing route.
        proto: u8,
    },
    /// Reading or writing a sysctl failed.
    #[error("sysctl {key} in namespace {ns:?}: {source}")]
    Sysctl {
        /// Dotted key, e.g. `net.ipv4.ip_forward`.
        key: String,
        /// The namespace.
        ns: String,
        /// The OS error.
        source: io::Error,
    },
    /// nft failed or printed something unreadable.
    #[error("nft {op} in namespace {ns:?}: {detail}")]
    Nft {
        /// What was attempted.
        op: &'static str,
        /// The namespace.
        ns: String,
        /// nft's stderr or the parse error.
        detail: String,
    },
    /// A probe could not even be set up (no such interface, no address, socket refused).
    #[error("{kind} probe to {target} out of {ifname:?} in namespace {ns:?}: {detail}")]
    Probe {
        /// "arp", "nd", "icmp", "tcp", "garp" or "unsolicited-na".
        kind: &'static str,
        /// The target.
        target: String,
        /// The interface.
        ifname: String,
        /// The namespace.
        ns: String,
        /// What went wrong.
        detail: String,
    },
    /// The worker thread that ran inside a namespace panicked.
    #[error("the thread working inside namespace {ns:?} panicked")]
    ThreadPanicked {
        /// The namespace.
        ns: String,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
