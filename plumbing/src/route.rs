//! Routes, IPv4 and IPv6, with metrics and tables. crosspod marks its routes with the route
//! protocol [`CROSSPOD_PROTO`] and only ever replaces or deletes routes carrying it, so routes
//! made by the kernel, an operator or another daemon are never touched. [`Handle::sync_routes`]
//! makes the owned routes exactly a given set, changing only the difference, and
//! [`Handle::add_routes`] pipelines many requests on one socket.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::netlink::{Handle, Request};

/// The route protocol number crosspod's routes carry (`ip route ... proto 203`); unused by
/// iproute2's reserved list.
pub const CROSSPOD_PROTO: u8 = 203;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// A route crosspod wants: destination, next hop and/or device, metric, table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination (host bits are cleared when sent).
    pub dst: IpNet,
    /// Next hop, if any.
    pub via: Option<IpAddr>,
    /// Output device, if any (a device-only route is link-scoped).
    pub dev: Option<String>,
    /// Metric (`priority`); 0 means the kernel default (IPv6 turns it into 1024).
    pub metric: u32,
    /// Routing table.
    pub table: u32,
}

impl Route {
    /// A route to `dst` in the main table, metric 0, with no next hop yet.
    pub fn new(dst: IpNet) -> Route {
        Route {
            dst: dst.trunc(),
            via: None,
            dev: None,
            metric: 0,
            table: MAIN_TABLE,
        }
    }
    /// Through next hop `via`.
    pub fn via(mut self, via: IpAddr) -> Route {
        self.via = Some(via);
        self
    }
    /// Out of device `dev`.
    pub fn dev(mut self, dev: impl Into<String>) -> Route {
        self.dev = Some(dev.into());
        self
    }
    /// With metric `metric`.
    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = metric;
        self
    }
    /// In table `table`.
    pub fn table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    /// The metric the kernel stores (IPv6 turns 0 into 1024).
    fn effective_metric(&self) -> u32 {
        if self.metric == 0 && self.dst.addr().is_ipv6() {
            1024
        } else {
            self.metric
        }
    }

    /// What identifies a route in the kernel: (table, destination, metric).
    fn key(&self) -> (u32, IpNet, u32) {
        (self.table, self.dst.trunc(), self.effective_metric())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst.trunc())?;
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        write!(f, " metric {}", self.metric)?;
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteEntry {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    pub via: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Metric.
    pub metric: u32,
    /// Table.
    pub table: u32,
    /// Route protocol number ([`CROSSPOD_PROTO`] for crosspod's).
    pub proto: u8,
    /// Route type is unicast (not local, broadcast, multicast...).
    pub unicast: bool,
}

impl RouteEntry {
    /// Whether crosspod owns this route.
    pub fn owned(&self) -> bool {
        self.proto == CROSSPOD_PROTO
    }

    fn key(&self) -> (u32, IpNet, u32) {
        (self.table, self.dst, self.metric)
    }

    fn parse(m: &RouteMessage) -> Option<RouteEntry> {
        let h = &m.header;
        let mut e = RouteEntry {
            dst: IpNet::new(
                match h.address_family {
                    AddressFamily::Inet => IpAddr::from([0u8; 4]),
                    AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
                    _ => return None,
                },
                h.destination_prefix_length,
            )
            .ok()?,
            via: None,
            oif: None,
            metric: 0,
            table: h.table as u32,
            proto: u8::from(h.protocol),
            unicast: h.kind == RouteType::Unicast,
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => {
                    let ip = route_ip(d)?;
                    e.dst = IpNet::new(ip, h.destination_prefix_length).ok()?;
                }
                RouteAttribute::Gateway(g) => e.via = route_ip(g),
                RouteAttribute::Oif(i) => e.oif = Some(*i),
                RouteAttribute::Priority(p) => e.metric = *p,
                RouteAttribute::Table(t) => e.table = *t,
                _ => {}
            }
        }
        Some(e)
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// What [`Handle::sync_routes`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSync {
    /// Routes that were missing and were added.
    pub added: Vec<Route>,
    /// Owned routes whose next hop or device changed.
    pub replaced: Vec<Route>,
    /// Owned routes no longer wanted, removed.
    pub removed: Vec<RouteEntry>,
}

impl RouteSync {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.replaced.is_empty() && self.removed.is_empty())
    }
}

fn header(family_of: &IpNet, table: u32) -> RouteHeader {
    RouteHeader {
        address_family: if family_of.addr().is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        },
        destination_prefix_length: family_of.prefix_len(),
        table: if table < 256 { table as u8 } else { 0 },
        protocol: RouteProtocol::from(CROSSPOD_PROTO),
        kind: RouteType::Unicast,
        ..Default::default()
    }
}

fn add_message(r: &Route, oif: Option<u32>) -> RouteMessage {
    let dst = r.dst.trunc();
    let mut m = RouteMessage::default();
    m.header = header(&dst, r.table);
    m.header.scope = if r.via.is_none() && oif.is_some() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
    }
    if let Some(v) = r.via {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(v)));
    }
    if let Some(i) = oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    m
}

fn del_message(dst: &IpNet, table: u32, metric: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = header(dst, table);
    m.header.scope = RouteScope::NoWhere;
    if dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
    }
    if metric != 0 {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    m.attributes.push(RouteAttribute::Table(table));
    m
}

impl Handle {
    /// Every route in the namespace (all tables, both families).
    pub fn routes(&mut self) -> Result<Vec<RouteEntry>> {
        let msgs = self.dump(
            "dump routes",
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        )?;
        let mut out: Vec<RouteEntry> = msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => RouteEntry::parse(r),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The routes crosspod owns (protocol [`CROSSPOD_PROTO`]).
    pub fn owned_routes(&mut self) -> Result<Vec<RouteEntry>> {
        Ok(self
            .routes()?
            .into_iter()
            .filter(RouteEntry::owned)
            .collect())
    }

    fn ifindex_map(&mut self) -> Result<HashMap<String, u32>> {
        Ok(self
            .links()?
            .into_iter()
            .map(|l| (l.name, l.index))
            .collect())
    }

    fn resolve(&self, r: &Route, map: &HashMap<String, u32>) -> Result<Option<u32>> {
        match &r.dev {
            None => Ok(None),
            Some(d) => map
                .get(d)
                .copied()
                .map(Some)
                .ok_or_else(|| Error::NoSuchLink {
                    name: d.clone(),
                    ns: self.netns().display_name().to_string(),
                }),
        }
    }

    /// Adds one route; fails with `EEXIST` if a route with the same table, destination and
    /// metric exists (whoever owns it).
    pub fn add_route(&mut self, r: &Route) -> Result<()> {
        self.add_routes(std::slice::from_ref(r))
    }

    /// Adds many routes, pipelined on this socket (batches of requests per datagram, acks read
    /// per batch). Every route is attempted; the first failure is returned.
    pub fn add_routes(&mut self, routes: &[Route]) -> Result<()> {
        let map = if routes.iter().any(|r| r.dev.is_some()) {
            self.ifindex_map()?
        } else {
            HashMap::new()
        };
        let mut reqs = Vec::with_capacity(routes.len());
        for r in routes {
            let oif = self.resolve(r, &map)?;
            reqs.push(Request {
                msg: RouteNetlinkMessage::NewRoute(add_message(r, oif)),
                flags: NLM_F_CREATE | NLM_F_EXCL,
                object: r.to_string(),
            });
        }
        let mut failures = self.pipeline("add route", reqs)?;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.swap_remove(0).1)
        }
    }

    /// Adds the route or changes its next hop/device, but only if no route of someone else
    /// holds the same table, destination and metric ([`Error::RouteConflict`]).
    pub fn replace_route(&mut self, r: &Route) -> Result<()> {
        if let Some(e) = self.routes()?.into_iter().find(|e| e.key() == r.key()) {
            if !e.owned() {
                return Err(Error::RouteConflict {
                    route: r.to_string(),
                    ns: self.netns().display_name().to_string(),
                    proto: e.proto,
                });
            }
        }
        let map = self.ifindex_map()?;
        let oif = self.resolve(r, &map)?;
        self.request(
            "replace route",
            r.to_string(),
            RouteNetlinkMessage::NewRoute(add_message(r, oif)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes crosspod's route with this table, destination and metric. Returns `false` when
    /// there is none (a route of someone else with the same key is left alone).
    pub fn del_route(&mut self, r: &Route) -> Result<bool> {
        let (table, dst, metric) = r.key();
        match self.request(
            "delete route",
            r.to_string(),
            RouteNetlinkMessage::DelRoute(del_message(&dst, table, metric)),
            0,
        ) {
            Ok(()) => Ok(true),
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes crosspod's routes in this namespace exactly `want`: adds the missing ones,
    /// replaces owned ones whose next hop or device differ, deletes owned ones not wanted, and
    /// changes nothing else. Refuses (before any change) if a wanted route's key is held by a
    /// route crosspod does not own.
    pub fn sync_routes(&mut self, want: &[Route]) -> Result<RouteSync> {
        let map = self.ifindex_map()?;
        let all = self.routes()?;
        let mut owned: BTreeMap<(u32, IpNet, u32), RouteEntry> = BTreeMap::new();
        let mut foreign: HashMap<(u32, IpNet, u32), u8> = HashMap::new();
        for e in all.into_iter().filter(|e| e.unicast) {
            if e.owned() {
                owned.insert(e.key(), e);
            } else {
                foreign.insert(e.key(), e.proto);
            }
        }
        let mut wanted: BTreeMap<(u32, IpNet, u32), (&Route, Option<u32>)> = BTreeMap::new();
        for r in want {
            let oif = self.resolve(r, &map)?;
            if let Some(proto) = foreign
                .get(&r.key())
                .filter(|_| !owned.contains_key(&r.key()))
            {
                return Err(Error::RouteConflict {
                    route: r.to_string(),
                    ns: self.netns().display_name().to_string(),
                    proto: *proto,
                });
            }
            wanted.insert(r.key(), (r, oif));
        }
        let mut plan = RouteSync::default();
        let mut reqs = Vec::new();
        for (key, e) in &owned {
            if !wanted.contains_key(key) {
                reqs.push(Request {
                    msg: RouteNetlinkMessage::DelRoute(del_message(&key.1, key.0, key.2)),
                    flags: 0,
                    object: format!("{} metric {} table {}", key.1, key.2, key.0),
                });
                plan.removed.push(e.clone());
            }
        }
        for (key, (r, oif)) in &wanted {
            let (flags, list) = match owned.get(key) {
                None => (NLM_F_CREATE | NLM_F_EXCL, &mut plan.added),
                Some(e) => {
                    let same_via = e.via == r.via;
                    let same_dev = oif.is_none() || e.oif == *oif;
                    if same_via && same_dev {
                        continue;
                    }
                    (NLM_F_CREATE | NLM_F_REPLACE, &mut plan.replaced)
                }
            };
            reqs.push(Request {
                msg: RouteNetlinkMessage::NewRoute(add_message(r, *oif)),
                flags,
                object: r.to_string(),
            });
            list.push((*r).clone());
        }
        if reqs.is_empty() {
            return Ok(plan);
        }
        let mut failures = self.pipeline("sync routes", reqs)?;
        if !failures.is_empty() {
            return Err(failures.swap_remove(0).1);
        }
        tracing::info!(
            netns = %self.netns(),
            added = plan.added.len(),
            replaced = plan.replaced.len(),
            removed = plan.removed.len(),
            "synced routes"
        );
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_keys() {
        let r = Route::new("10.1.2.3/24".parse().unwrap())
            .via("10.0.0.1".parse().unwrap())
            .dev("qr")
            .metric(7)
            .table(100);
        assert_eq!(
            r.to_string(),
            "10.1.2.0/24 via 10.0.0.1 dev qr metric 7 table 100"
        );
        assert_eq!(r.key(), (100, "10.1.2.0/24".parse().unwrap(), 7));
        let v6 = Route::new("fd00::/64".parse().unwrap());
        assert_eq!(v6.key().2, 1024, "IPv6 metric 0 is stored as 1024");
        let v4 = Route::new("0.0.0.0/0".parse().unwrap());
        assert_eq!(v4.key().2, 0);
    }

    #[test]
    fn messages_carry_the_crosspod_protocol() {
        let r = Route::new("10.1.0.0/16".parse().unwrap()).via("10.0.0.1".parse().unwrap());
        let m = add_message(&r, None);
        assert_eq!(u8::from(m.header.protocol), CROSSPOD_PROTO);
        assert_eq!(m.header.scope, RouteScope::Universe);
        let d = add_message(
            &Route::new("10.2.0.0/16".parse().unwrap()).dev("x"),
            Some(3),
        );
        assert_eq!(d.header.scope, RouteScope::Link);
        let del = del_message(&"10.1.0.0/16".parse().unwrap(), MAIN_TABLE, 0);
        assert_eq!(u8::from(del.header.protocol), CROSSPOD_PROTO);
    }
}
