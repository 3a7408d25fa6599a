//! Node plumbing for crosspod, in-process and without shelling out to `ip`: named network
//! namespaces ([`netns`]), rtnetlink links, addresses and routes through one typed socket per
//! namespace ([`Handle`]; [`link`], [`addr`], [`route`]), forwarding sysctls ([`sysctl`]),
//! NAT in a crosspod-owned nftables table ([`nat`]), ARP/ICMP/TCP probes ([`probe`]), and the
//! sockets of the agent's DHCP servers ([`udp`]) and router advertisements ([`icmp6`]).
//!
//! crosspod only touches what it marks: links by the alias `crosspod:<owner>` and link group
//! [`link::CROSSPOD_LINK_GROUP`], routes by the route protocol [`route::CROSSPOD_PROTO`], NAT by
//! the table `ip crosspod`.
//!
//! Everything is blocking and quick; from async code call it inside
//! `tokio::task::spawn_blocking`. Namespace switches happen only on fresh dedicated threads,
//! never on the caller's thread.
//!
//! A router instance, as the agent builds one:
//!
//! ```no_run
//! use plumbing::{nat, netns, probe, sysctl, Handle, NatSpec, Netns, Route, Snat, VethEnd, VethSpec};
//!
//! # fn main() -> plumbing::Result<()> {
//! netns::create("qrouter-r1")?;
//! let r1 = Netns::named("qrouter-r1");
//! plumbing::link::ensure_veth(&VethSpec {
//!     a: VethEnd::new("qr-1", r1.clone()),
//!     b: VethEnd::new("qrp-1", Netns::Current), // plugged into OVS by the caller
//!     owner: "router:r1".into(),
//! })?;
//! sysctl::set_forwarding(&r1, true, false)?;
//! let mut h = Handle::new(&r1)?;
//! h.sync_addresses("qr-1", &["10.0.1.1/24".parse().unwrap()])?;
//! h.sync_routes(&[Route::new("10.0.2.0/24".parse().unwrap()).via("100.0.0.3".parse().unwrap())])?;
//! nat::apply(&r1, &NatSpec {
//!     snat: vec![Snat {
//!         sources: vec!["10.0.1.0/24".parse().unwrap()],
//!         out_ifname: "qg-1".into(),
//!         to: "163.3.124.10".parse().unwrap(),
//!     }],
//!     floating: vec![],
//! })?;
//! let r = probe::icmp(&r1, "qr-1", "10.0.1.11".parse().unwrap(), &Default::default())?;
//! println!("ok={} rtt={:?}", r.ok(), r.rtt);
//! # Ok(())
//! # }
//! ```

pub mod addr;
pub mod error;
pub mod ethtool;
pub mod icmp6;
pub mod link;
pub mod nat;
pub mod netlink;
pub mod netns;
pub mod nftlib;
pub mod probe;
pub mod route;
pub mod sysctl;
pub mod udp;

pub use error::{Error, Result};
pub use link::{Changed, Link, VethEnd, VethSpec};
pub use nat::{FloatingIp, NatSpec, Snat};
pub use netlink::Handle;
pub use netns::Netns;
pub use probe::{ProbeOptions, ProbeResult, ProbeStatus};
pub use route::{Route, RouteEntry, RouteSync, CROSSPOD_PROTO};
