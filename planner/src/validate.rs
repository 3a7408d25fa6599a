//! Checks the controller runs on the snapshot as it would be after a change, before storing it.

use crate::change::Change;
use crate::error::ValidationError;
use crate::fxhash::FxSet;
use crate::index::ScopeIndex;
use crate::scope;
use crate::snapshot::{FloatingIp, Router, RouterInterface, Snapshot};
use crate::topology::{FipProblem, Placement, RouterOverride, Topology};

/// Every rule the snapshot breaks (empty when it is consistent).
pub fn validate(snap: &Snapshot) -> Vec<ValidationError> {
    let t = Topology::build(snap);
    let mut out = Vec::new();
    for n in &snap.networks {
        if let Some(h) = t.unknown_hint(&n.az_hints) {
            out.push(ValidationError::UnknownHint {
                kind: "network",
                id: n.id.clone(),
                hint: h.to_string(),
            });
        }
        if n.external
            && matches!(
                t.placement.get(n.id.as_str()),
                Some(Placement::ExternalUnplaced)
            )
        {
            out.push(ValidationError::ExternalNetworkUnplaced {
                network_id: n.id.clone(),
            });
        }
    }
    for r in &snap.routers {
        out.extend(check_router(&t, &r.id));
    }
    for p in &snap.ports {
        out.extend(check_port(&t, &p.id));
    }
    for f in &snap.floating_ips {
        if let Err(e) = check_fip(&t, f) {
            out.push(e);
        }
    }
    out
}

/// Checks one router (after an interface add or a gateway set): hints, and that a local router
/// can meet each of its networks and its external network.
pub fn validate_router(snap: &Snapshot, router_id: &str) -> Vec<ValidationError> {
    let scope = scope::for_change(snap, &Change::Router(router_id.to_string()));
    let t = Topology::build_scoped(snap, scope.as_ref());
    check_router(&t, router_id)
}

/// [`validate_router`] on the snapshot as it would be with `router` stored (in place of the
/// router of its id, or added) and `extra` stored as one more interface of it — what the
/// controller checks before a router write, without copying the snapshot.
pub fn validate_router_change(
    snap: &Snapshot,
    router: &Router,
    extra: Option<&RouterInterface>,
) -> Vec<ValidationError> {
    // The scope `scope::for_change` would find on the changed snapshot: the router's project,
    // or everything when one of its interfaces is on a shared or external network.
    let shared = snap
        .router_interfaces
        .iter()
        .filter(|i| i.router_id == router.id)
        .chain(extra)
        .filter_map(|i| scope::by_id(&snap.subnets, &i.subnet_id, |s| &s.id))
        .filter_map(|s| scope::by_id(&snap.networks, &s.network_id, |n| &n.id))
        .any(|n| n.shared || n.external);
    let mut scope: FxSet<&str> = FxSet::default();
    scope.insert(&router.project_id);
    let over = RouterOverride {
        router,
        extra_interface: extra,
    };
    let t = Topology::build_with(snap, (!shared).then_some(&scope), Some(over), None);
    check_router(&t, &router.id)
}

/// [`validate_router_change`] gathering the router's project through `index` (kept for `snap`)
/// instead of scanning the cloud, and indexing only the open networks the project uses (with
/// the changed router's gateway and extra interface): what the controller runs on every
/// router create, gateway change and interface add. Answers what it answers.
pub fn validate_router_change_indexed(
    snap: &Snapshot,
    index: &ScopeIndex,
    router: &Router,
    extra: Option<&RouterInterface>,
) -> Vec<ValidationError> {
    let network_of = |i: &RouterInterface| {
        scope::by_id(&snap.subnets, &i.subnet_id, |s| &s.id)
            .and_then(|s| scope::by_id(&snap.networks, &s.network_id, |n| &n.id))
    };
    let shared = index
        .interfaces_of(snap, &router.id)
        .chain(extra)
        .filter_map(network_of)
        .any(|n| n.shared || n.external);
    if shared {
        // Other projects' routers on that network may be concerned: the whole cloud, as
        // `validate_router_change` does.
        return validate_router_change(snap, router, extra);
    }
    let mut scope: FxSet<&str> = FxSet::default();
    scope.insert(&router.project_id);
    let mut used = index.open_networks_used(snap, scope.iter().copied());
    // The changed router's own, not in the snapshot yet.
    if let Some(g) = &router.external_gateway {
        if scope::by_id(&snap.networks, &g.network_id, |n| &n.id)
            .is_some_and(|n| n.shared || n.external)
        {
            used.insert(&g.network_id);
        }
    }
    let over = RouterOverride {
        router,
        extra_interface: extra,
    };
    let t = Topology::build_indexed_with(snap, index, &scope, Some(&used), Some(over));
    check_router(&t, &router.id)
}

/// Checks one floating IP (before associating it): the port is the owner project's and one of
/// the project's routers links the port's subnet to the floating IP's external network.
pub fn validate_floating_ip(snap: &Snapshot, fip: &FloatingIp) -> Result<(), ValidationError> {
    let mut scope: FxSet<&str> = FxSet::default();
    scope.insert(&fip.project_id);
    if let Some(p) = fip
        .port_id
        .as_deref()
        .and_then(|id| snap.ports.iter().find(|p| p.id == id))
    {
        scope.insert(&p.project_id);
    }
    let t = Topology::build_scoped(snap, Some(&scope));
    check_fip(&t, fip)
}

/// Checks one port's binding: its host's pod is one where the network may be present.
pub fn validate_port(snap: &Snapshot, port_id: &str) -> Vec<ValidationError> {
    let scope = scope::for_change(snap, &Change::Port(port_id.to_string()));
    let t = Topology::build_scoped(snap, scope.as_ref());
    check_port(&t, port_id).into_iter().collect()
}

fn may_be_in(p: &Placement<'_>, pod: &str) -> bool {
    match p {
        Placement::Local(h) | Placement::External(h) => *h == pod,
        Placement::Unplaced => true,
        Placement::Stretched(None) => true,
        Placement::Stretched(Some(a)) => a.contains(pod),
        Placement::ExternalUnplaced => false,
    }
}

fn describe(p: &Placement<'_>) -> String {
    match p {
        Placement::Local(h) | Placement::External(h) => h.to_string(),
        Placement::Stretched(Some(a)) => a.iter().copied().collect::<Vec<_>>().join(","),
        Placement::Stretched(None) | Placement::Unplaced => "any pod".into(),
        Placement::ExternalUnplaced => "no pod".into(),
    }
}

fn check_router(t: &Topology<'_>, router_id: &str) -> Vec<ValidationError> {
    let mut out = Vec::new();
    let Some(r) = t.routers.get(router_id) else {
        return out;
    };
    if let Some(h) = t.unknown_hint(&r.az_hints) {
        out.push(ValidationError::UnknownHint {
            kind: "router",
            id: r.id.clone(),
            hint: h.to_string(),
        });
    }
    let local = t.router_local_pod.get(router_id).copied();
    if let Some(lp) = local {
        for i in t.interfaces_by_router.get(router_id).into_iter().flatten() {
            let Some(s) = t.subnets.get(i.subnet_id.as_str()) else {
                continue;
            };
            let Some(p) = t.placement.get(s.network_id.as_str()) else {
                continue;
            };
            if !may_be_in(p, lp) {
                out.push(ValidationError::RouterNetworkApart {
                    router_id: r.id.clone(),
                    router_pod: lp.to_string(),
                    network_id: s.network_id.clone(),
                    network_pods: describe(p),
                });
            }
        }
    }
    if let Some(g) = &r.external_gateway {
        let ext = t.networks.get(g.network_id.as_str());
        match (ext, t.placement.get(g.network_id.as_str())) {
            (Some(n), Some(Placement::External(ep))) if n.external => {
                if let Some(lp) = local {
                    if lp != *ep {
                        out.push(ValidationError::GatewayApart {
                            router_id: r.id.clone(),
                            router_pod: lp.to_string(),
                            network_id: g.network_id.clone(),
                            network_pod: ep.to_string(),
                        });
                    }
                }
            }
            _ => out.push(ValidationError::BadGatewayNetwork {
                router_id: r.id.clone(),
                network_id: g.network_id.clone(),
            }),
        }
    }
    out
}

fn check_port(t: &Topology<'_>, port_id: &str) -> Option<ValidationError> {
    let p = t.ports.get(port_id)?;
    if !p.is_vm_port() {
        return None;
    }
    let host = p.binding_host.as_deref()?;
    let pod = t.node_pod(host)?;
    let placement = t.placement.get(p.network_id.as_str())?;
    if may_be_in(placement, pod) {
        return None;
    }
    Some(ValidationError::PortOutsideNetwork {
        port_id: p.id.clone(),
        host: host.to_string(),
        pod: pod.to_string(),
        network_id: p.network_id.clone(),
    })
}

fn check_fip(t: &Topology<'_>, f: &FloatingIp) -> Result<(), ValidationError> {
    let port_id = f.port_id.clone().unwrap_or_default();
    match t.fip_target(f) {
        Ok(_) => Ok(()),
        Err(FipProblem::ForeignPort) => Err(ValidationError::FloatingIpForeignPort {
            floatingip_id: f.id.clone(),
            port_project: t
                .ports
                .get(port_id.as_str())
                .map(|p| p.project_id.clone())
                .unwrap_or_default(),
            port_id,
            fip_project: f.project_id.clone(),
        }),
        Err(FipProblem::Unreachable) => Err(ValidationError::FloatingIpUnreachable {
            floatingip_id: f.id.clone(),
            port_id,
            network_id: f.floating_network_id.clone(),
        }),
        Err(FipProblem::NoPort | FipProblem::NoFixedIp) => {
            Err(ValidationError::FloatingIpBadPort {
                floatingip_id: f.id.clone(),
                port_id,
            })
        }
    }
}
