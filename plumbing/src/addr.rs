//! Addresses on links, IPv4 and IPv6: add, replace, delete, list, and "make this link's
//! addresses exactly this set". Only links crosspod owns are changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::link::Changed;
use crate::netlink::Handle;

/// An address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// Address with its prefix length.
    pub net: IpNet,
    /// Scope is link (IPv6 fe80::/64, kernel-made): never managed by crosspod.
    pub link_scope: bool,
}

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn message(index: u32, net: &IpNet) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(&net.addr());
    m.header.prefix_len = net.prefix_len();
    m.header.index = index;
    m.header.scope = AddressScope::Universe;
    match net.addr() {
        IpAddr::V4(_) => {
            m.attributes.push(AddressAttribute::Local(net.addr()));
            m.attributes.push(AddressAttribute::Address(net.addr()));
        }
        IpAddr::V6(_) => {
            // Router legs answer at once: no duplicate address detection delay.
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes.push(AddressAttribute::Address(net.addr()));
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

impl Handle {
    /// Every address in the namespace.
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let msgs = self.dump(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            let mut local = None;
            let mut address = None;
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS may be a peer).
            let Some(ip) = local.or(address) else {
                continue;
            };
            let Ok(net) = IpNet::new(ip, a.header.prefix_len) else {
                continue;
            };
            out.push(Address {
                index: a.header.index,
                net,
                link_scope: a.header.scope == AddressScope::Link,
            });
        }
        out.sort();
        Ok(out)
    }

    /// The addresses of link `ifname` (link-scope ones included), sorted.
    pub fn link_addresses(&mut self, ifname: &str) -> Result<Vec<IpNet>> {
        let index = self.link_index(ifname)?;
        Ok(self
            .addresses()?
            .into_iter()
            .filter(|a| a.index == index)
            .map(|a| a.net)
            .collect())
    }

    fn owned_index(&mut self, ifname: &str, op: &'static str) -> Result<u32> {
        let link = self.link(ifname)?.ok_or_else(|| Error::NoSuchLink {
            name: ifname.to_string(),
            ns: self.netns().display_name().to_string(),
        })?;
        if !link.owned() {
            return Err(Error::NotOwned {
                op,
                name: ifname.to_string(),
                ns: self.netns().display_name().to_string(),
                alias: link.alias,
            });
        }
        Ok(link.index)
    }

    /// Adds `net` to `ifname`; fails with `EEXIST` if it is there already.
    pub fn add_address(&mut self, ifname: &str, net: IpNet) -> Result<()> {
        let index = self.owned_index(ifname, "add an address to")?;
        self.request(
            "add address",
            format!("{net} on {ifname}"),
            RouteNetlinkMessage::NewAddress(message(index, &net)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds `net` to `ifname`, or updates it if present (no error if it exists).
    pub fn replace_address(&mut self, ifname: &str, net: IpNet) -> Result<()> {
        let index = self.owned_index(ifname, "add an address to")?;
        self.request(
            "replace address",
            format!("{net} on {ifname}"),
            RouteNetlinkMessage::NewAddress(message(index, &net)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes `net` from `ifname`. Returns `false` when it was not there.
    pub fn del_address(&mut self, ifname: &str, net: IpNet) -> Result<bool> {
        let index = self.owned_index(ifname, "remove an address from")?;
        match self.request(
            "delete address",
            format!("{net} on {ifname}"),
            RouteNetlinkMessage::DelAddress(message(index, &net)),
            0,
        ) {
            Ok(()) => Ok(true),
            Err(Error::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the addresses of the owned link `ifname` exactly `want` (kernel-made link-scope
    /// IPv6 addresses are left alone), changing only the difference.
    pub fn sync_addresses(&mut self, ifname: &str, want: &[IpNet]) -> Result<Changed> {
        let index = self.owned_index(ifname, "set the addresses of")?;
        let have: BTreeMap<IpNet, bool> = self
            .addresses()?
            .into_iter()
            .filter(|a| a.index == index)
            .map(|a| (a.net, a.link_scope))
            .collect();
        let want: BTreeSet<IpNet> = want.iter().copied().collect();
        let mut changed = Changed::No;
        for (net, link_scope) in &have {
            if !link_scope && !want.contains(net) {
                self.request(
                    "delete address",
                    format!("{net} on {ifname}"),
                    RouteNetlinkMessage::DelAddress(message(index, net)),
                    0,
                )?;
                changed = Changed::Yes;
            }
        }
        for net in &want {
            if !have.contains_key(net) {
                self.request(
                    "add address",
                    format!("{net} on {ifname}"),
                    RouteNetlinkMessage::NewAddress(message(index, net)),
                    NLM_F_CREATE | NLM_F_EXCL,
                )?;
                changed = Changed::Yes;
            }
        }
        if changed.changed() {
            tracing::info!(link = %ifname, netns = %self.netns(), addresses = ?want, "synced addresses");
        }
        Ok(changed)
    }
}
