//! Links: veth pairs created with each end directly in its namespace, rename, MTU, MAC,
//! up/down, delete, list. crosspod marks what it owns with the interface alias
//! `crosspod:<owner>` ([`OWNER_ALIAS_PREFIX`]) and the link group [`CROSSPOD_LINK_GROUP`], and
//! refuses to change any other link unless the caller says `force`. The group is set in the
//! create request itself (the kernel ignores an alias there), so a pair whose creator died
//! before writing the alias is still recognisably crosspod's and gets its alias on the next
//! [`ensure_veth`].

use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::netlink::Handle;
use crate::netns::Netns;

/// Aliases of links crosspod owns start with this.
pub const OWNER_ALIAS_PREFIX: &str = "crosspod:";

/// The link group (`ip link ... group`) of links crosspod creates: set atomically at creation.
pub const CROSSPOD_LINK_GROUP: u32 = 0x6370_6f64; // "cpod"

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks an interface name before anything is changed: 1..=15 bytes, no '/', ':' or
/// whitespace, not `.` or `..`.
pub fn validate_ifname(name: &str) -> Result<()> {
    if name.len() > IFNAME_MAX {
        return Err(Error::NameTooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        Some("contains '/', ':', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what: "interface",
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A MAC address.
pub type Mac = [u8; 6];

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_IFALIAS`, where crosspod writes its ownership mark.
    pub alias: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address (for Ethernet-like links).
    pub mac: Option<Mac>,
    /// Administratively up.
    pub up: bool,
    /// Link kind (`veth`, `dummy`, ...), when the driver reports one.
    pub kind: Option<String>,
    /// Link group (`IFLA_GROUP`).
    pub group: u32,
}

impl Link {
    /// Whether crosspod owns this link (its alias starts with `crosspod:`, or it is in the
    /// crosspod link group).
    pub fn owned(&self) -> bool {
        self.group == CROSSPOD_LINK_GROUP
            || self
                .alias
                .as_deref()
                .is_some_and(|a| a.starts_with(OWNER_ALIAS_PREFIX))
    }

    /// The owner tag after `crosspod:`, when owned.
    pub fn owner(&self) -> Option<&str> {
        self.alias.as_deref()?.strip_prefix(OWNER_ALIAS_PREFIX)
    }

    fn from_message(m: &LinkMessage) -> Link {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            alias: None,
            mtu: 0,
            mac: None,
            up: m.header.flags.contains(LinkFlags::Up),
            kind: None,
            group: 0,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::IfAlias(s) if !s.is_empty() => link.alias = Some(s.clone()),
                LinkAttribute::Mtu(v) => link.mtu = *v,
                LinkAttribute::Group(g) => link.group = *g,
                LinkAttribute::Address(a) if a.len() == 6 => {
                    link.mac = Some(a.as_slice().try_into().expect("6 bytes"))
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// One end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethEnd {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Namespace the end is created in.
    pub netns: Netns,
    /// MTU, or the kernel default.
    pub mtu: Option<u32>,
    /// MAC, or a random one.
    pub mac: Option<Mac>,
}

impl VethEnd {
    /// An end with default MTU and a random MAC.
    pub fn new(name: impl Into<String>, netns: Netns) -> VethEnd {
        VethEnd {
            name: name.into(),
            netns,
            mtu: None,
            mac: None,
        }
    }
}

/// A veth pair to create: both ends are created directly in their namespaces, marked as owned
/// by `owner` and brought up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// First end.
    pub a: VethEnd,
    /// Second end (the peer).
    pub b: VethEnd,
    /// Owner tag written in both aliases as `crosspod:<owner>`.
    pub owner: String,
}

/// Whether an idempotent call changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Something was created, changed or removed.
    Yes,
    /// The state already matched.
    No,
}

impl Changed {
    /// `true` for [`Changed::Yes`].
    pub fn changed(self) -> bool {
        self == Changed::Yes
    }
}

fn veth_end_message(end: &VethEnd, ns_fd: i32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(end.name.clone()));
    m.attributes.push(LinkAttribute::Group(CROSSPOD_LINK_GROUP));
    m.attributes.push(LinkAttribute::NetNsFd(ns_fd));
    if let Some(mtu) = end.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = end.mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    m
}

/// Creates a veth pair with each end directly in its namespace (`IFLA_NET_NS_FD` on both ends
/// of one create request), then marks both ends as owned and brings them up. Fails with
/// `EEXIST` if a name is taken; see [`ensure_veth`] for the idempotent form.
pub fn create_veth(spec: &VethSpec) -> Result<()> {
    validate_ifname(&spec.a.name)?;
    validate_ifname(&spec.b.name)?;
    let fd_a = spec.a.netns.open()?;
    let fd_b = spec.b.netns.open()?;
    let mut msg = veth_end_message(&spec.a, fd_a.as_raw_fd());
    let peer = veth_end_message(&spec.b, fd_b.as_raw_fd());
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    let mut h = Handle::new(&Netns::Current)?;
    h.request(
        "create veth",
        format!(
            "{}@{} <-> {}@{}",
            spec.a.name, spec.a.netns, spec.b.name, spec.b.netns
        ),
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    let alias = format!("{OWNER_ALIAS_PREFIX}{}", spec.owner);
    for end in [&spec.a, &spec.b] {
        let mut h = Handle::new(&end.netns)?;
        h.modify_link(&end.name, true, "mark", |m| {
            m.attributes.push(LinkAttribute::IfAlias(alias.clone()));
            m.header.flags |= LinkFlags::Up;
            m.header.change_mask |= LinkFlags::Up;
        })?;
    }
    tracing::info!(
        a = %spec.a.name, a_netns = %spec.a.netns, b = %spec.b.name, b_netns = %spec.b.netns,
        owner = %spec.owner, "created veth pair"
    );
    Ok(())
}

/// Makes the veth pair exist as specified: unchanged when both ends exist, owned, in their
/// namespaces; a half-present owned pair is removed and recreated; MTU, MAC and up state of
/// existing ends are corrected. Links crosspod does not own are never touched (error).
pub fn ensure_veth(spec: &VethSpec) -> Result<Changed> {
    ensure_veth_admin(spec, true)
}

/// [`ensure_veth`] with the first end's administrative state given: `a_up == false` keeps (or
/// brings) the `a` end down, so nothing behind it answers (a fenced router leg), while the
/// pair and its peer stay as they are.
pub fn ensure_veth_admin(spec: &VethSpec, a_up: bool) -> Result<Changed> {
    validate_ifname(&spec.a.name)?;
    validate_ifname(&spec.b.name)?;
    let mut ha = Handle::new(&spec.a.netns)?;
    let mut hb = Handle::new(&spec.b.netns)?;
    let la = ha.link(&spec.a.name)?;
    let lb = hb.link(&spec.b.name)?;
    for (l, ns) in [(&la, &spec.a.netns), (&lb, &spec.b.netns)] {
        if let Some(l) = l {
            if !l.owned() {
                return Err(Error::NotOwned {
                    op: "reuse as a veth end",
                    name: l.name.clone(),
                    ns: ns.display_name().to_string(),
                    alias: l.alias.clone(),
                });
            }
        }
    }
    match (la, lb) {
        (Some(la), Some(lb)) if la.kind.as_deref() == Some("veth") => {
            let mut changed = Changed::No;
            for (h, l, end, want_up) in [(&mut ha, la, &spec.a, a_up), (&mut hb, lb, &spec.b, true)]
            {
                let mut req = h.set_link(&end.name);
                let mut any = false;
                let alias = format!("{OWNER_ALIAS_PREFIX}{}", spec.owner);
                if l.alias.as_deref() != Some(alias.as_str()) {
                    req = req.owner(&spec.owner);
                    any = true;
                }
                if l.up != want_up {
                    req = if want_up { req.up() } else { req.down() };
                    any = true;
                }
                if let Some(mtu) = end.mtu.filter(|m| *m != l.mtu) {
                    req = req.mtu(mtu);
                    any = true;
                }
                if let Some(mac) = end.mac.filter(|m| Some(*m) != l.mac) {
                    req = req.mac(mac);
                    any = true;
                }
                if any {
                    req.apply()?;
                    changed = Changed::Yes;
                }
            }
            Ok(changed)
        }
        (la, lb) => {
            if la.is_some() {
                ha.delete_link(&spec.a.name, false)?;
            }
            if lb.is_some() && hb.link(&spec.b.name)?.is_some() {
                hb.delete_link(&spec.b.name, false)?;
            }
            create_veth(spec)?;
            if !a_up {
                ha.set_link(&spec.a.name).down().apply()?;
            }
            Ok(Changed::Yes)
        }
    }
}

/// A pending change to one link, built with the methods below and sent by
/// [`LinkRequest::apply`] as a single `RTM_NEWLINK`.
#[must_use = "a LinkRequest does nothing until apply()"]
pub struct LinkRequest<'h> {
    handle: &'h mut Handle,
    name: String,
    force: bool,
    up: Option<bool>,
    mtu: Option<u32>,
    mac: Option<Mac>,
    rename: Option<String>,
    alias: Option<String>,
}

impl LinkRequest<'_> {
    /// Bring the link up.
    pub fn up(mut self) -> Self {
        self.up = Some(true);
        self
    }
    /// Bring the link down.
    pub fn down(mut self) -> Self {
        self.up = Some(false);
        self
    }
    /// Set the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Set the MAC address.
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Rename the link (checked against the 15-byte limit before anything is sent).
    pub fn rename(mut self, new_name: impl Into<String>) -> Self {
        self.rename = Some(new_name.into());
        self
    }
    /// Mark the link as owned by `owner` (alias `crosspod:<owner>`, crosspod link group).
    pub fn owner(mut self, owner: &str) -> Self {
        self.alias = Some(format!("{OWNER_ALIAS_PREFIX}{owner}"));
        self
    }
    /// Allow changing a link crosspod does not own.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }
    /// Sends the change.
    pub fn apply(self) -> Result<()> {
        if let Some(n) = &self.rename {
            validate_ifname(n)?;
        }
        let LinkRequest {
            handle,
            name,
            force,
            up,
            mtu,
            mac,
            rename,
            alias,
        } = self;
        handle.modify_link(&name, force, "change", |m| {
            if let Some(up) = up {
                if up {
                    m.header.flags |= LinkFlags::Up;
                }
                m.header.change_mask |= LinkFlags::Up;
            }
            if let Some(mtu) = mtu {
                m.attributes.push(LinkAttribute::Mtu(mtu));
            }
            if let Some(mac) = mac {
                m.attributes.push(LinkAttribute::Address(mac.to_vec()));
            }
            if let Some(n) = rename {
                m.attributes.push(LinkAttribute::IfName(n));
            }
            if let Some(a) = alias {
                m.attributes.push(LinkAttribute::IfAlias(a));
                m.attributes.push(LinkAttribute::Group(CROSSPOD_LINK_GROUP));
            }
        })?;
        tracing::debug!(link = %name, netns = %handle.netns(), ?up, ?mtu, "changed link");
        Ok(())
    }
}

impl Handle {
    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.dump(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// The links crosspod owns in the namespace.
    pub fn owned_links(&mut self) -> Result<Vec<Link>> {
        Ok(self.links()?.into_iter().filter(Link::owned).collect())
    }

    /// The link called `name`, if any (one `RTM_GETLINK` by name, no dump).
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        validate_ifname(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.get("get link", name, RouteNetlinkMessage::GetLink(m))? {
            Some(RouteNetlinkMessage::NewLink(l)) => Ok(Some(Link::from_message(&l))),
            _ => Ok(None),
        }
    }

    fn existing(&mut self, name: &str) -> Result<Link> {
        self.link(name)?.ok_or_else(|| Error::NoSuchLink {
            name: name.to_string(),
            ns: self.netns().display_name().to_string(),
        })
    }

    fn modify_link(
        &mut self,
        name: &str,
        force: bool,
        op: &'static str,
        fill: impl FnOnce(&mut LinkMessage),
    ) -> Result<()> {
        let link = self.existing(name)?;
        if !force && !link.owned() {
            return Err(Error::NotOwned {
                op,
                name: name.to_string(),
                ns: self.netns().display_name().to_string(),
                alias: link.alias,
            });
        }
        let mut m = LinkMessage::default();
        m.header.index = link.index;
        fill(&mut m);
        self.request("change link", name, RouteNetlinkMessage::NewLink(m), 0)
    }

    /// Starts a change to the link `name` (owned links only, unless `.force()`).
    pub fn set_link(&mut self, name: &str) -> LinkRequest<'_> {
        LinkRequest {
            handle: self,
            name: name.to_string(),
            force: false,
            up: None,
            mtu: None,
            mac: None,
            rename: None,
            alias: None,
        }
    }

    /// Brings up a link that is not crosspod's (loopback of a fresh namespace).
    pub(crate) fn link_up_unowned(&mut self, name: &str) -> Result<()> {
        self.set_link(name).force().up().apply()
    }

    /// Deletes the link `name` (for a veth, both ends go). Returns `false` when there was no
    /// such link. Refused for links crosspod does not own unless `force`.
    pub fn delete_link(&mut self, name: &str, force: bool) -> Result<bool> {
        let Some(link) = self.link(name)? else {
            return Ok(false);
        };
        if !force && !link.owned() {
            return Err(Error::NotOwned {
                op: "delete",
                name: name.to_string(),
                ns: self.netns().display_name().to_string(),
                alias: link.alias,
            });
        }
        let mut m = LinkMessage::default();
        m.header.index = link.index;
        self.request("delete link", name, RouteNetlinkMessage::DelLink(m), 0)?;
        tracing::info!(link = %name, netns = %self.netns(), "deleted link");
        Ok(true)
    }

    /// The index of link `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32> {
        Ok(self.existing(name)?.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(validate_ifname("qr-0123456789ab").is_ok());
        assert!(matches!(
            validate_ifname("qr-0123456789abc"),
            Err(Error::NameTooLong { len: 16, .. })
        ));
        for bad in ["", ".", "..", "a/b", "a b", "a:b"] {
            assert!(
                matches!(validate_ifname(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("fa:16:3e:00:0A:ff").unwrap();
        assert_eq!(format_mac(&m), "fa:16:3e:00:0a:ff");
        assert!(parse_mac("fa:16:3e:00:0a").is_none());
        assert!(parse_mac("fa:16:3e:00:0a:ff:01").is_none());
        assert!(parse_mac("zz:16:3e:00:0a:ff").is_none());
    }

    #[test]
    fn ownership_by_alias_or_group() {
        let mut l = Link {
            index: 1,
            name: "x".into(),
            alias: None,
            mtu: 1500,
            mac: None,
            up: true,
            kind: None,
            group: 0,
        };
        assert!(!l.owned());
        l.alias = Some("someone else".into());
        assert!(!l.owned());
        l.alias = Some("crosspod:router:r1".into());
        assert!(l.owned());
        assert_eq!(l.owner(), Some("router:r1"));
        l.alias = None;
        l.group = CROSSPOD_LINK_GROUP;
        assert!(l.owned());
    }
}
