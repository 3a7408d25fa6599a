//! Node plumbing for crosspod, in-process and without shelling out to `ip`: named network
//! namespaces ([`netns`]), rtnetlink links, addresses and routes through one typed socket per
//! namespace ([`Handle`]; [`link`], [`addr`], [`route`]), forwarding sysctls ([`sysctl`]),
//! NAT in a crosspod-owned nftables table ([`nat`]) and ARP/ICMP/TCP probes ([`probe`]).
//!
//! crosspod only touches what it marks: links by the alias `crosspod:<owner>`, routes by the
//! route protocol [`route::CROSSPOD_PROTO`], NAT by the table `ip crosspod`.

pub mod addr;
pub mod error;
pub mod link;
pub mod nat;
pub mod netlink;
pub mod netns;
pub mod probe;
pub mod route;
pub mod sysctl;

pub use error::{Error, Result};
pub use link::{Changed, Link, VethEnd, VethSpec};
pub use nat::{FloatingIp, NatSpec, Snat};
pub use netlink::Handle;
pub use netns::Netns;
pub use probe::{ProbeOptions, ProbeResult, ProbeStatus};
pub use route::{Route, RouteEntry, RouteSync, CROSSPOD_PROTO};
