//! Routers: gateway, extra routes and interfaces, with Neutron's rules (admin-only
//! `external_fixed_ips`, interfaces only on the caller's own subnets, no two overlapping
//! subnets, routes via a connected next hop) and the planner's cross-pod rules, judged on the
//! intent with the change applied. An allocation the change needs (bridge network, bridge or
//! leg IP, pod-local VLAN) is made before the answer, or the change is undone and refused.

use std::net::IpAddr;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, ErrorClass, StoreError};
use crate::naming::OWNER_INTERFACE;
use crate::realize::{self, Intent};
use crate::service::networks;
use crate::service::policy::{self, Target};
use crate::store::jobs::JobType;
use crate::store::l3::{GatewayInfo, RouteEntry, Router};
use crate::store::{FixedIpRequest, NewPort, Port};

/// Neutron's `max_routes`: extra routes per router.
pub const MAX_ROUTES: usize = 30;

/// A router the caller owns (404 otherwise).
pub async fn load_own(core: &Core, who: &Identity, id: &str) -> Result<Router, DomainError> {
    let r = core.store.get_router(id).await?;
    if !policy::visible(who, &r.project_id) {
        return Err(DomainError::not_found("Router", "RouterNotFound", id));
    }
    Ok(r)
}

/// A router the caller owns, after the policy's `action` on it.
async fn load_for(
    core: &Core,
    who: &Identity,
    id: &str,
    action: &str,
) -> Result<Router, DomainError> {
    let r = load_own(core, who, id).await?;
    policy::enforce(who, action, &Target::owned_by(&r.project_id))?;
    Ok(r)
}

fn validation(errors: Vec<planner::ValidationError>) -> Result<(), DomainError> {
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) => Err(DomainError::bad_request(e.to_string())),
    }
}

/// Checks the planner's rules for `router` on the intent with the router replaced.
fn check_router(
    intent: &Intent,
    r: &Router,
    extra: Option<planner::RouterInterface>,
) -> Result<(), DomainError> {
    // Nothing the rules look at changes (a rename, new routes): judge the snapshot as it is
    // rather than a copy of it (a copy costs milliseconds on a big cloud).
    let same = intent.planner_router(&r.id).is_some_and(|cur| {
        cur.project_id == r.project_id
            && cur.az_hints == r.az_hints
            && match (&cur.external_gateway, &r.gateway) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.network_id == b.network_id && a.enable_snat == b.enable_snat
                }
                _ => false,
            }
    });
    if extra.is_none() && same {
        return validation(planner::validate_router(&intent.snapshot, &r.id));
    }
    // Judged as if stored, without copying the snapshot (a copy costs milliseconds on a big
    // cloud, on every router create, gateway change and interface add).
    let router = planner::Router {
        id: r.id.clone(),
        project_id: r.project_id.clone(),
        az_hints: r.az_hints.clone(),
        external_gateway: r.gateway.as_ref().map(|g| planner::ExternalGateway {
            network_id: g.network_id.clone(),
            enable_snat: g.enable_snat,
            external_fixed_ips: Vec::new(),
        }),
        routes: Vec::new(),
    };
    validation(planner::validate_router_change_indexed(
        &intent.snapshot,
        &intent.index,
        &router,
        extra.as_ref(),
    ))
}

async fn check_gateway_network(core: &Core, g: &GatewayInfo) -> Result<(), DomainError> {
    let net = core
        .store
        .get_network(&g.network_id)
        .await
        .map_err(|e| match e {
            StoreError::Rule(a) if a.is_not_found() => {
                DomainError::not_found("Network", "NetworkNotFound", &g.network_id)
            }
            other => other.into(),
        })?;
    if !net.external {
        return Err(DomainError::bad_request(format!(
            "Bad router request: network {} is not an external network",
            g.network_id
        )));
    }
    Ok(())
}

/// The subnets (id, CIDR) the router has interfaces on, by the store's relation.
fn interface_subnets(intent: &Intent, router: &str) -> Vec<(String, ipnet::IpNet)> {
    subnets_of_ports(
        intent,
        intent
            .ports_of(router)
            .filter(|p| p.device_owner == OWNER_INTERFACE && p.is_interface_of(router)),
    )
}

/// The subnets (id, CIDR) of the given ports' fixed IPs.
fn subnets_of_ports<'a>(
    intent: &Intent,
    ports: impl Iterator<Item = &'a Port>,
) -> Vec<(String, ipnet::IpNet)> {
    ports
        .flat_map(|p| p.fixed_ips.iter())
        .filter_map(|f| {
            intent
                .subnets
                .get(&f.subnet_id)
                .map(|s| (s.id.clone(), s.cidr))
        })
        .collect()
}

/// Extra routes: at most [`MAX_ROUTES`], each next hop on a subnet the router is connected to
/// (an interface's, or its gateway's as Neutron allows: a route via an upstream hop).
fn check_routes(intent: &Intent, r: &Router) -> Result<(), DomainError> {
    if r.routes.len() > MAX_ROUTES {
        return Err(DomainError::new(
            ErrorClass::BadRequest,
            "RoutesExhausted",
            format!(
                "Unable to complete operation for {}. The number of routes exceeds the maximum {MAX_ROUTES}.",
                r.id
            ),
        ));
    }
    let mut connected = interface_subnets(intent, &r.id);
    connected.extend(subnets_of_ports(
        intent,
        intent.gateway_port(&r.id).into_iter(),
    ));
    for route in &r.routes {
        let hop: IpAddr = route.nexthop.parse().map_err(|_| {
            DomainError::invalid_input(
                "routes",
                format!("nexthop '{}' is not an IP address", route.nexthop),
            )
        })?;
        if !connected.iter().any(|(_, c)| c.contains(&hop)) {
            return Err(DomainError::new(
                ErrorClass::BadRequest,
                "InvalidRoutes",
                format!(
                    "Invalid format for routes: the nexthop {hop} of route {} is not connected with router {}",
                    route.destination, r.id
                ),
            ));
        }
    }
    Ok(())
}

/// The gateway's requested addresses are an admin's choice (Neutron's policy).
fn check_gateway_policy(who: &Identity, action: &str, r: &Router) -> Result<(), DomainError> {
    if r.gateway
        .as_ref()
        .is_some_and(|g| !g.requested_ips.is_empty())
    {
        policy::enforce(
            who,
            &format!("{action}:external_gateway_info:external_fixed_ips"),
            &Target::owned_by(&r.project_id),
        )?;
    }
    Ok(())
}

/// What a router create asks for.
#[derive(Debug, Clone)]
pub struct Create {
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Admin state.
    pub admin_state_up: bool,
    /// AZ hints.
    pub az_hints: Vec<String>,
    /// External gateway.
    pub gateway: Option<GatewayInfo>,
    /// Extra routes.
    pub routes: Vec<RouteEntry>,
    /// Tags.
    pub tags: Vec<String>,
}

/// Create a router, its gateway port and its tags in one transaction.
pub async fn create(core: &Core, who: &Identity, c: Create) -> Result<Router, DomainError> {
    let t = Target::owned_by(&c.project_id);
    policy::enforce(who, "create_router", &t)?;
    if c.project_id != who.project_id {
        policy::enforce(who, "create_router:project_id", &t)?;
    }
    super::tags::check_create(who, crate::store::Tagged::Router, &t, &c.tags)?;
    networks::check_hints(core, &c.az_hints).await?;
    let r = Router {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: c.project_id,
        name: c.name,
        description: c.description,
        admin_state_up: c.admin_state_up,
        az_hints: c.az_hints,
        gateway: c.gateway,
        routes: c.routes,
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 1,
    };
    check_gateway_policy(who, "create_router", &r)?;
    if let Some(g) = &r.gateway {
        check_gateway_network(core, g).await?;
    }
    {
        let intent = core.realizer.intent(core).await?;
        check_router(&intent, &r, None)?;
        check_routes(&intent, &r)?;
    }
    let port = realize::gateway_port_request(&r)?;
    let r = core
        .store
        .create_router_tagged(&r, port.as_ref(), &c.tags)
        .await?;
    if let Err(e) = needed_allocations(core, &r).await {
        // Nothing half made: the router (and its gateway port) go again.
        if let Some(p) = &port {
            let _ = core.store.delete_port(&p.id).await;
        }
        if let Err(undo) = core.store.delete_router(&r.id).await {
            tracing::warn!(router = %r.id, error = %undo, "undoing a router whose allocations failed");
        }
        return Err(e);
    }
    if r.gateway.is_some() {
        // A bare router has no instance anywhere: nothing to set up until it has a leg.
        core.store
            .queue_job(JobType::RouterSetup, &r.id, &r.project_id)
            .await?;
    }
    tracing::info!(router = %r.id, project = %r.project_id, "router created");
    Ok(r)
}

/// The attributes a router update may change (`None` = leave as is).
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin state.
    pub admin_state_up: Option<bool>,
    /// New gateway (`Some(None)` clears it).
    pub gateway: Option<Option<GatewayInfo>>,
    /// New extra routes.
    pub routes: Option<Vec<RouteEntry>>,
}

/// Update only the given attributes; a gateway change moves the gateway port, and is undone
/// when the external network cannot give the port.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    u: &Update,
    if_match: Option<i64>,
) -> Result<Router, DomainError> {
    let (before, r) = super::with_retry(if_match, || async {
        let mut r = load_for(core, who, id, "update_router").await?;
        super::check_if_match(if_match, r.revision_number)?;
        let before = r.clone();
        if let Some(v) = &u.name {
            r.name = v.clone();
        }
        if let Some(v) = &u.description {
            r.description = v.clone();
        }
        if let Some(v) = u.admin_state_up {
            r.admin_state_up = v;
        }
        if let Some(g) = &u.gateway {
            r.gateway = g.clone();
            check_gateway_policy(who, "update_router", &r)?;
        }
        if let Some(v) = &u.routes {
            r.routes = v.clone();
        }
        if let Some(g) = &r.gateway {
            check_gateway_network(core, g).await?;
        }
        {
            let intent = core.realizer.intent(core).await?;
            check_router(&intent, &r, None)?;
            check_routes(&intent, &r)?;
        }
        let r = core.store.update_router(&r).await?;
        Ok((before, r))
    })
    .await?;
    if before.gateway != r.gateway {
        if let Err(e) = sync_gateway_port(core, &r).await {
            // Put the previous gateway back (its port is still there unless the network
            // changed; the realizer mends that) and refuse.
            let mut back = r.clone();
            back.gateway = before.gateway.clone();
            if let Err(undo) = core.store.update_router(&back).await {
                tracing::warn!(router = %r.id, error = %undo, "undoing a failed gateway change failed; the realizer will retry the gateway port");
            } else if let Err(undo) = sync_gateway_port(core, &back).await {
                tracing::warn!(router = %r.id, error = %undo.message, "restoring the previous gateway port failed; the realizer will retry");
            }
            return Err(e);
        }
    }
    // The work the nodes have to do, by Tricircle's job types; a rename needs none.
    if before.gateway != r.gateway {
        core.store
            .queue_job(JobType::RouterSetup, &r.id, &r.project_id)
            .await?;
    }
    if before.routes != r.routes {
        core.store
            .queue_job(JobType::ConfigureRoute, &r.id, &r.project_id)
            .await?;
    }
    Ok(r)
}

/// `add_extraroutes` / `remove_extraroutes` (`extraroute-atomic`): add the routes not there
/// yet, or remove those given, atomically against concurrent changes of the router.
pub async fn change_routes(
    core: &Core,
    who: &Identity,
    id: &str,
    routes: &[RouteEntry],
    add: bool,
) -> Result<Router, DomainError> {
    let r = super::with_retry(None, || async {
        let mut r = load_for(core, who, id, "update_router").await?;
        if add {
            for route in routes {
                if !r.routes.contains(route) {
                    r.routes.push(route.clone());
                }
            }
        } else {
            r.routes.retain(|x| !routes.contains(x));
        }
        {
            let intent = core.realizer.intent(core).await?;
            check_routes(&intent, &r)?;
        }
        Ok(core.store.update_router(&r).await?)
    })
    .await?;
    core.store
        .queue_job(JobType::ConfigureRoute, &r.id, &r.project_id)
        .await?;
    Ok(r)
}

async fn gateway_port(core: &Core, router: &str) -> Result<Option<Port>, DomainError> {
    let intent = core.realizer.intent(core).await?;
    let port = intent.gateway_port(router).cloned();
    Ok(port)
}

/// Makes the gateway port match `r.gateway` (the realizer does the same after a crash).
async fn sync_gateway_port(core: &Core, r: &Router) -> Result<(), DomainError> {
    let existing = gateway_port(core, &r.id).await?;
    realize::ensure_gateway_port(core, r, existing.as_ref())
        .await
        .map(|_| ())
}

/// Delete a router without interfaces (409 `RouterInUse` otherwise), gateway port first.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let r = load_for(core, who, id, "delete_router").await?;
    {
        let intent = core.realizer.intent(core).await?;
        let interface = intent
            .ports_of(&r.id)
            .find(|p| p.device_owner == OWNER_INTERFACE && p.is_interface_of(&r.id))
            .map(|p| p.id.clone());
        if let Some(p) = interface {
            return Err(DomainError::conflict(
                "RouterInUse",
                format!(
                    "Router {} still has ports (interface port {p}): remove its interfaces first",
                    r.id
                ),
            ));
        }
    }
    // The store deletes the gateway port with the router, in one transaction.
    core.store.delete_router(&r.id).await.map_err(|e| match e {
        e if e.is_foreign_key_violation() => DomainError::conflict(
            "RouterInUse",
            format!("Router {} still has interfaces: remove them first", r.id),
        ),
        other => other.into(),
    })?;
    tracing::info!(router = %r.id, "router deleted");
    Ok(())
}

/// What an interface request names.
#[derive(Debug, Clone)]
pub enum InterfaceRef {
    /// A subnet: the router takes its gateway IP.
    Subnet(String),
    /// An existing unused port.
    Port(String),
}

/// A router's interface: the router and its interface port.
pub struct Interface {
    /// The router.
    pub router: Router,
    /// The interface port.
    pub port: Port,
}

/// A subnet the router may attach: the caller's own (admins: any), not external, not
/// overlapping a subnet the router holds already.
fn check_interface_subnet(
    intent: &Intent,
    who: &Identity,
    r: &Router,
    sid: &str,
) -> Result<(), DomainError> {
    let s = intent
        .subnets
        .get(sid)
        .ok_or_else(|| DomainError::not_found("Subnet", "SubnetNotFound", sid))?;
    let net = intent
        .networks
        .get(&s.network_id)
        .ok_or_else(|| DomainError::not_found("Network", "NetworkNotFound", &s.network_id))?;
    if !networks::visible(net, who) && !policy::visible(who, &s.project_id) {
        return Err(DomainError::not_found("Subnet", "SubnetNotFound", sid));
    }
    // Neutron lets a member attach another project's subnet only when it is shared with it
    // by RBAC, which crosspod does not have.
    if !who.is_admin() && s.project_id != r.project_id {
        return Err(DomainError::bad_request(format!(
            "Bad router request: subnet {sid} belongs to another project than router {}",
            r.id
        )));
    }
    if net.external {
        return Err(DomainError::bad_request(format!(
            "Bad router request: subnet {sid} is on external network {}; use the gateway",
            net.id
        )));
    }
    for (other, cidr) in interface_subnets(intent, &r.id) {
        if other == sid {
            return Err(DomainError::bad_request(format!(
                "Bad router request: Router {} already has a port on subnet {sid}.",
                r.id
            )));
        }
        let overlap = cidr.contains(&s.cidr.network()) || s.cidr.contains(&cidr.network());
        if overlap {
            return Err(DomainError::bad_request(format!(
                "Bad router request: Cidr {} of subnet {sid} overlaps with cidr {cidr} of subnet {other}.",
                s.cidr
            )));
        }
    }
    Ok(())
}

/// `add_router_interface`: a new interface port on a subnet, or an unused port made one; the
/// allocations it needs are made before the answer, or it is undone and refused.
pub async fn add_interface(
    core: &Core,
    who: &Identity,
    id: &str,
    what: InterfaceRef,
) -> Result<Interface, DomainError> {
    let r = load_for(core, who, id, "add_router_interface").await?;
    let port = {
        let intent = core.realizer.intent(core).await?;
        match what {
            InterfaceRef::Subnet(sid) => {
                check_interface_subnet(&intent, who, &r, &sid)?;
                let s = &intent.subnets[&sid];
                let Some(gw) = s.gateway_ip else {
                    return Err(DomainError::bad_request(format!(
                        "Bad router request: subnet {sid} has no gateway IP"
                    )));
                };
                if !s.cidr.contains(&gw) {
                    return Err(DomainError::bad_request(format!(
                        "Bad router request: the gateway {gw} of subnet {sid} is outside its CIDR {}: the router's leg would take it",
                        s.cidr
                    )));
                }
                check_router(
                    &intent,
                    &r,
                    Some(planner::RouterInterface {
                        router_id: r.id.clone(),
                        subnet_id: sid.clone(),
                        port_id: "pending".into(),
                        ip_address: gw,
                        mac: String::new(),
                    }),
                )?;
                let network_id = s.network_id.clone();
                drop(intent);
                core.store
                    .create_interface_port(
                        &r.id,
                        &sid,
                        &NewPort {
                            id: uuid::Uuid::new_v4().to_string(),
                            project_id: r.project_id.clone(),
                            network_id,
                            name: String::new(),
                            description: format!("interface of router {} on subnet {sid}", r.id),
                            admin_state_up: true,
                            mac_address: None,
                            device_id: r.id.clone(),
                            device_owner: OWNER_INTERFACE.into(),
                            host_id: String::new(),
                            port_security_enabled: Some(false),
                            fixed_ips: Some(vec![FixedIpRequest {
                                subnet_id: Some(sid.clone()),
                                ip_address: Some(gw),
                            }]),
                        },
                    )
                    .await
                    .map_err(|e| match e {
                        StoreError::Rule(a)
                            if a.class == ErrorClass::Conflict
                                && a.kind == "IpAddressAlreadyAllocated" =>
                        {
                            DomainError::conflict(
                                "IpAddressInUse",
                                format!(
                                    "the gateway IP {gw} of subnet {sid} is in use (another router?): {}",
                                    a.message
                                ),
                            )
                        }
                        other => other.into(),
                    })?
            }
            InterfaceRef::Port(pid) => {
                let p = intent
                    .ports
                    .get(&pid)
                    .cloned()
                    .ok_or_else(|| DomainError::not_found("Port", "PortNotFound", &pid))?;
                if !policy::visible(who, &p.project_id) {
                    return Err(DomainError::not_found("Port", "PortNotFound", &pid));
                }
                if !p.device_owner.is_empty() || !p.device_id.is_empty() {
                    return Err(DomainError::conflict(
                        "PortInUse",
                        format!("port {pid} is in use by {} {}", p.device_owner, p.device_id),
                    ));
                }
                let Some(f) = p.fixed_ips.first().cloned() else {
                    return Err(DomainError::bad_request(format!(
                        "Bad router request: port {pid} has no fixed IP"
                    )));
                };
                if !crate::mac::is_unicast(&p.mac_address) {
                    return Err(DomainError::bad_request(format!(
                        "Bad router request: port {pid} has the multicast MAC {}, which no router leg can take",
                        p.mac_address
                    )));
                }
                check_interface_subnet(&intent, who, &r, &f.subnet_id)?;
                check_router(
                    &intent,
                    &r,
                    Some(planner::RouterInterface {
                        router_id: r.id.clone(),
                        subnet_id: f.subnet_id.clone(),
                        port_id: pid.clone(),
                        ip_address: f.ip_address,
                        mac: p.mac_address.clone(),
                    }),
                )?;
                drop(intent);
                core.store
                    .attach_interface_port(&r.id, &f.subnet_id, &pid, p.revision_number)
                    .await?
            }
        }
    };
    if let Err(e) = needed_allocations(core, &r).await {
        // Nothing half done: the interface goes again, and the request is refused.
        if let Err(undo) = core.store.delete_port(&port.id).await {
            tracing::warn!(router = %r.id, port = %port.id, error = %undo, "undoing an interface whose allocations failed");
        }
        return Err(e);
    }
    crate::failpoint::hit("api:interface_job");
    core.store
        .queue_job(JobType::RouterSetup, &r.id, &r.project_id)
        .await?;
    tracing::info!(router = %r.id, port = %port.id, "router interface added");
    Ok(Interface { router: r, port })
}

/// Runs the realizer (which allocates what the change needs) and fails with the pool's error
/// when an allocation for `r` (its bridge network, bridge and leg IPs, its networks' pod-local
/// VLANs) could not be made.
async fn needed_allocations(core: &Core, r: &Router) -> Result<(), DomainError> {
    let intent = core.realizer.intent(core).await?;
    let failed = core.realizer.router_failure(&intent, &r.id);
    super::allocation_refused(&format!("router {}", r.id), failed)
}

/// `remove_router_interface` by subnet or port.
pub async fn remove_interface(
    core: &Core,
    who: &Identity,
    id: &str,
    what: InterfaceRef,
) -> Result<Interface, DomainError> {
    let r = load_for(core, who, id, "remove_router_interface").await?;
    let found = {
        let intent = core.realizer.intent(core).await?;
        let found = intent
            .ports_of(&r.id)
            .find(|p| {
                p.device_owner == OWNER_INTERFACE
                    && p.is_interface_of(&r.id)
                    && match &what {
                        InterfaceRef::Port(pid) => &p.id == pid,
                        InterfaceRef::Subnet(sid) => {
                            p.fixed_ips.iter().any(|f| &f.subnet_id == sid)
                        }
                    }
            })
            .cloned();
        found
    };
    let Some(p) = found else {
        return Err(match what {
            InterfaceRef::Port(pid) => DomainError::not_found(
                "Router interface",
                "RouterInterfaceNotFound",
                &format!("{pid} on router {}", r.id),
            ),
            InterfaceRef::Subnet(sid) => DomainError::not_found(
                "Router interface",
                "RouterInterfaceNotFoundForSubnet",
                &format!("{sid} on router {}", r.id),
            ),
        });
    };
    core.store.delete_port(&p.id).await?;
    crate::failpoint::hit("api:interface_job");
    core.store
        .queue_job(JobType::RouterSetup, &r.id, &r.project_id)
        .await?;
    tracing::info!(router = %r.id, port = %p.id, "router interface removed");
    Ok(Interface { router: r, port: p })
}
