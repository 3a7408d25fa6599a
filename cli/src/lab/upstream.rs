//! The upstream side of the nodes' eth2: the `ext` namespace runs an OVS of its own because the
//! kernel here cannot untag VLANs (no 8021q, no VLAN filtering). Every eth2 of RegionOne's and
//! RegionTwo's nodes arrives on ext's bridge as a trunk (named after the node; in the guide's
//! two-node lab node2's is `eth2` and node1's `eth3`, as before); a veth pair with both ends in `ext` gives
//! each upstream its leg: `gwp` on the bridge with RegionTwo's external VLAN as tag, `gw0`
//! holding that router's address (163.3.124.1/24); `gw1p`/`gw1` the same for RegionOne's own
//! external network (163.3.125.1/24 on VLAN 3002), used when each pod has its own gateway.
//!
//! IPv6: each leg also holds an address on its external network's IPv6 subnet
//! (2001:db8:124::1/64 on gw0, 2001:db8:125::1/64 on gw1) and `ext` forwards IPv6. Projects'
//! IPv6 subnets leave without NAT, so the upstream must route them back to the router that
//! owns them: `crosspod lab upstream-routes` makes `ext`'s routes `<subnet> via <router's
//! external IPv6 address>` exactly what the API says ([`sync_routes`]).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use plumbing::route::{Route, RouteSync};
use plumbing::{Handle, Netns};
use serde::Serialize;
use serde_json::Value;

use super::cables::{ensure_cable, CableEnd};
use super::state::UpstreamSpec;
use crate::ovsdb::Ovsdb;

/// The bridge in `ext` that eth2 lands on.
pub const UPSTREAM_BRIDGE: &str = "br-up";
/// The router leg's bridge-side end.
pub const LEG_PORT: &str = "gwp";
/// The router leg's address-holding end.
pub const LEG_IF: &str = "gw0";
/// RegionOne's upstream leg: bridge-side end.
pub const REGION_ONE_LEG_PORT: &str = "gw1p";
/// RegionOne's upstream leg: address-holding end.
pub const REGION_ONE_LEG_IF: &str = "gw1";
/// Where a node's eth2 lands in `ext`: `eth2` for the guide's node2, `eth3` for its node1 (the
/// names of the two-node lab), the node's name for every other node.
pub fn ext_port_of(node: &str) -> String {
    match node {
        "node2" => "eth2".into(),
        "node1" => "eth3".into(),
        other => other.into(),
    }
}

/// Makes the upstream bridge and one router leg (`leg_port` on the bridge, `leg_if` holding the
/// address) exist in namespace `netns` (whose OVS is reached through `db`). Returns whether
/// anything changed.
pub fn ensure_upstream(
    netns: &str,
    db: &Ovsdb,
    spec: &UpstreamSpec,
    leg_port: &str,
    leg_if: &str,
) -> Result<bool> {
    let mut changed = db.ensure_netdev_bridge(UPSTREAM_BRIDGE)?;
    changed |= ensure_cable(
        &CableEnd {
            netns,
            ifname: leg_port,
            bridge: Some((db, UPSTREAM_BRIDGE)),
            tag: (spec.vlan != 0).then_some(spec.vlan),
            trunks: &[],
        },
        &CableEnd::bare(netns, leg_if),
    )?;
    let mut h = Handle::new(&Netns::named(netns))?;
    let have = h.link_addresses(leg_if)?;
    for addr in std::iter::once(spec.gateway).chain(spec.gateway_v6) {
        if !have.contains(&addr) {
            h.replace_address(leg_if, addr)
                .with_context(|| format!("giving {addr} to {leg_if}@{netns}"))?;
            changed = true;
        }
    }
    if spec.gateway_v6.is_some() {
        // The upstream routes the projects' IPv6 subnets (no NAT for IPv6).
        changed |=
            plumbing::sysctl::set(&Netns::named(netns), "net.ipv6.conf.all.forwarding", "1")?;
    }
    Ok(changed)
}

/// Makes the upstream's own IPv6 routes in `netns` exactly `want` (`<prefix> via <next
/// hop>`): adds the missing ones, replaces those whose next hop changed, removes stale ones.
/// They carry crosspod's route protocol (203), and only those of them that are IPv6 are
/// managed: the kernel's, an operator's and any IPv4 route are left as they are.
pub fn sync_routes(netns: &str, want: &[(IpNet, IpAddr)]) -> Result<RouteSync> {
    let mut routes: Vec<Route> = Vec::new();
    for (dst, via) in want {
        if !dst.addr().is_ipv6() || !via.is_ipv6() {
            bail!("upstream route {dst} via {via}: only IPv6 routes are the upstream's to sync");
        }
        if routes.iter().any(|r| r.dst == dst.trunc()) {
            continue;
        }
        routes.push(Route::new(*dst).via(*via));
    }
    let mut h = Handle::new(&Netns::named(netns))?;
    // Owned IPv4 routes (none are made here) are handed back as they are, so the sync only
    // ever changes IPv6 ones.
    for e in h.owned_routes()?.into_iter().filter(|e| e.unicast) {
        if e.dst.addr().is_ipv4() {
            let mut r = Route::new(e.dst).metric(e.metric).table(e.table);
            r.via = e.via;
            routes.push(r);
        }
    }
    h.sync_routes(&routes)
        .with_context(|| format!("syncing the upstream's IPv6 routes in {netns}"))
}

/// What `lab upstream-routes` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamRoutesReport {
    /// The routes the upstream now has: (project subnet, router's external IPv6 address).
    pub routes: Vec<(IpNet, IpAddr)>,
    /// What changed (`added ...`, `replaced ...`, `removed ...`).
    pub changes: Vec<String>,
}

fn api_get(url: &str, token: &str) -> Result<Value> {
    let r = crate::http::request("GET", url, Some(token), None, Duration::from_secs(15))
        .with_context(|| {
            format!("GET {url}: is the controller running? (`crosspod lab status`)")
        })?;
    if !r.ok() {
        bail!("GET {url} answered {}: {}", r.status, r.body);
    }
    r.json().with_context(|| format!("GET {url}: not JSON"))
}

/// The routes the upstream needs, from the Neutron API's routers, their interface ports and
/// the subnets: every IPv6 subnet on an interface of a router whose external gateway has an
/// IPv6 fixed IP, via that address.
pub fn wanted_routes(neutron: &str, token: &str) -> Result<Vec<(IpNet, IpAddr)>> {
    let routers = api_get(&format!("{neutron}/v2.0/routers"), token)?;
    let subnets = api_get(&format!("{neutron}/v2.0/subnets"), token)?;
    let cidr_of = |id: &str| -> Option<IpNet> {
        subnets["subnets"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == id)?["cidr"]
            .as_str()?
            .parse()
            .ok()
    };
    let mut out = Vec::new();
    for r in routers["routers"].as_array().into_iter().flatten() {
        let via = r
            .pointer("/external_gateway_info/external_fixed_ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f["ip_address"].as_str()?.parse::<IpAddr>().ok())
            .find(IpAddr::is_ipv6);
        let (Some(via), Some(id)) = (via, r["id"].as_str()) else {
            continue;
        };
        let ports = api_get(&format!("{neutron}/v2.0/ports?device_id={id}"), token)?;
        for p in ports["ports"].as_array().into_iter().flatten() {
            let owner = p["device_owner"].as_str().unwrap_or_default();
            if !owner.starts_with("network:router_interface") {
                continue;
            }
            for f in p["fixed_ips"].as_array().into_iter().flatten() {
                let v6 = f["ip_address"]
                    .as_str()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|a| a.is_ipv6());
                if let (true, Some(cidr)) = (v6, f["subnet_id"].as_str().and_then(cidr_of)) {
                    if !out.contains(&(cidr, via)) {
                        out.push((cidr, via));
                    }
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `crosspod lab upstream-routes`: reads the API with the lab's admin token and syncs `ext`.
pub fn sync_from_api(dir: &Path) -> Result<UpstreamRoutesReport> {
    let st = super::state::LabState::require(dir)?;
    let lines = super::tokens::read(&st.layout().tokens_file())?;
    let token =
        super::tokens::find(&lines, super::tokens::ADMIN_PROJECT, "admin").with_context(|| {
            format!(
                "no admin token in {}; run `crosspod lab up --dir {}`",
                st.layout().tokens_file().display(),
                dir.display()
            )
        })?;
    let want = wanted_routes(&st.api_url(st.neutron_port), &token)?;
    let _lock = super::lock_dir(dir)?;
    let sync = sync_routes(&st.netns_of(super::state::EXT_SWITCH), &want)?;
    let mut changes: Vec<String> = Vec::new();
    changes.extend(sync.added.iter().map(|r| format!("added {r}")));
    changes.extend(sync.replaced.iter().map(|r| format!("replaced {r}")));
    changes.extend(sync.removed.iter().map(|e| match e.via {
        Some(v) => format!("removed {} via {v}", e.dst),
        None => format!("removed {}", e.dst),
    }));
    Ok(UpstreamRoutesReport {
        routes: want,
        changes,
    })
}
