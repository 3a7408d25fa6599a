//! Realization: from the store to every node's published desired state. Level-triggered, like
//! the agent: each run reads the whole intent into a [`planner::Snapshot`], allocates what the
//! plan needs and releases what it no longer needs (bridge networks, bridge IPs, per-pod leg
//! IPs, pod-local tags — each idempotent and keyed, so a crash mid-run is finished by the next
//! run), plans every node and publishes the states whose content changed (the node's revision
//! moves by one). Runs after every write request, on a timer, and at start, so a controller
//! killed mid-change resumes it; with several controllers each run is safe to repeat.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use planner::{AllocationKey, Snapshot};
use tokio::sync::{watch, Mutex, Notify};

use crate::api::App;
use crate::error::{ApiError, StoreError};
use crate::ipam;
use crate::store::l3::{FloatingIp, Router};
use crate::store::{
    FixedIpRequest, Network, NewNetwork, NewPort, Port, Scope, Segment, SegmentRequest, Subnet,
};

/// Project that owns the bridge networks (hidden from members, visible to admins).
pub const BRIDGE_OWNER: &str = "crosspod-bridge";
/// device_owner of router interface ports.
pub const OWNER_INTERFACE: &str = "network:router_interface";
/// device_owner of router gateway ports.
pub const OWNER_GATEWAY: &str = "network:router_gateway";
/// device_owner of floating IP ports.
pub const OWNER_FLOATINGIP: &str = "network:floatingip";
/// device_owner of bridge IP ports (one per router instance).
pub const OWNER_BRIDGE_IP: &str = "network:router_bridge";
/// device_owner of per-pod leg IP ports on stretched networks.
pub const OWNER_LEG: &str = "network:router_leg";
/// The physnet of bridge networks and of local networks' tags.
pub const BRIDGE_PHYSNET: &str = "bridge";

/// A UUID derived from `parts`, so every controller names the same allocation the same way and
/// the primary key makes a concurrent duplicate impossible.
pub fn derived_id(parts: &[&str]) -> String {
    let a = wire::names::stable_hash(parts);
    let mut salted: Vec<&str> = parts.to_vec();
    salted.push("crosspod-salt");
    let b = wire::names::stable_hash(&salted);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The realizer: a generation counter watchers wait on, and the kick of the background task.
pub struct Realizer {
    kick: Notify,
    generation: watch::Sender<u64>,
    run_lock: Mutex<()>,
}

impl Default for Realizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Realizer {
    /// A realizer with nothing run yet.
    pub fn new() -> Self {
        Realizer {
            kick: Notify::new(),
            generation: watch::Sender::new(0),
            run_lock: Mutex::new(()),
        }
    }

    /// Ask the background task for a run (cheap; bursts collapse into one run).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// A receiver that changes whenever a run published something.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Runs now (serialised with the background task).
    pub async fn run(&self, app: &App) -> Result<usize, ApiError> {
        let _g = self.run_lock.lock().await;
        let started = std::time::Instant::now();
        let res = realize(app).await;
        app.metrics
            .record_realize(res.is_ok(), started.elapsed(), *res.as_ref().unwrap_or(&0));
        let published = res?;
        if published > 0 {
            self.generation.send_modify(|g| *g += 1);
        }
        Ok(published)
    }
}

/// The background task: a run on every kick and every `period`, then the jobs.
pub async fn background(app: Arc<App>, period: Duration) {
    loop {
        if let Err(e) = app.realizer.run(&app).await {
            tracing::warn!(error = %e.message, "realization failed; will retry");
        }
        if let Err(e) = crate::jobs::advance(&app).await {
            tracing::warn!(error = %e.message, "advancing jobs failed; will retry");
        }
        tokio::select! {
            _ = app.realizer.kick.notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Everything the planner needs, read from the store.
pub struct Intent {
    /// The planner's snapshot.
    pub snapshot: Snapshot,
    /// Ports by id (all of them).
    pub ports: BTreeMap<String, Port>,
    /// Routers by id.
    pub routers: BTreeMap<String, Router>,
    /// Floating IPs by id.
    pub floatingips: BTreeMap<String, FloatingIp>,
    /// Networks by id.
    pub networks: BTreeMap<String, Network>,
    /// Subnets by id.
    pub subnets: BTreeMap<String, Subnet>,
}

fn planner_network(n: &Network) -> planner::Network {
    let (network_type, physnet, segmentation_id) = match &n.segment {
        Segment::Local => (planner::NetworkType::Local, None, None),
        Segment::Vlan { physnet, id } => {
            (planner::NetworkType::Vlan, Some(physnet.clone()), Some(*id))
        }
        Segment::Flat { physnet } => (planner::NetworkType::Flat, Some(physnet.clone()), None),
    };
    planner::Network {
        id: n.id.clone(),
        project_id: n.project_id.clone(),
        network_type,
        physnet,
        segmentation_id,
        external: n.external,
        az_hints: n.az_hints.clone(),
        shared: n.shared,
    }
}

/// The bridge network of a project, by its derived id.
pub fn bridge_network_id(project: &str) -> String {
    derived_id(&["bridge-network", project])
}

fn bridge_subnet_id(project: &str) -> String {
    derived_id(&["bridge-subnet", project])
}

fn bridge_ip_port_id(router: &str, pod: &str) -> String {
    derived_id(&["bridge-ip", router, pod])
}

fn leg_port_id(router: &str, pod: &str, subnet: &str) -> String {
    derived_id(&["leg-ip", router, pod, subnet])
}

/// Reads the whole intent.
pub async fn read_intent(app: &App) -> Result<Intent, StoreError> {
    let store = &app.store;
    let all = Scope::default();
    let pods = store.list_pods().await?;
    let agents = store.list_agents().await?;
    let networks = store.list_networks(&all).await?;
    let subnets = store.list_subnets(&all).await?;
    let mut ports = store.list_ports(&all, None).await?;
    ports.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let routers = store.list_routers(None).await?;
    let fips = store.list_floatingips(None).await?;
    let tags = store.local_tags().await?;

    let mut snap = Snapshot {
        bridge_physnet: BRIDGE_PHYSNET.into(),
        local_physnet: BRIDGE_PHYSNET.into(),
        ..Snapshot::default()
    };
    snap.pods = pods
        .iter()
        .map(|p| planner::Pod {
            region_name: p.region_name.clone(),
            az_name: (!p.az_name.is_empty()).then(|| p.az_name.clone()),
        })
        .collect();
    snap.nodes = agents
        .iter()
        .map(|a| planner::Node::from(&a.registration))
        .collect();
    snap.networks = networks
        .iter()
        .filter(|n| n.project_id != BRIDGE_OWNER)
        .map(planner_network)
        .collect();
    snap.subnets = subnets
        .iter()
        .filter(|s| s.project_id != BRIDGE_OWNER)
        .map(|s| planner::Subnet {
            id: s.id.clone(),
            network_id: s.network_id.clone(),
            cidr: s.cidr,
            gateway_ip: s.gateway_ip,
        })
        .collect();
    let fixed = |p: &Port| -> Vec<planner::FixedIp> {
        p.fixed_ips
            .iter()
            .map(|f| planner::FixedIp {
                subnet_id: f.subnet_id.clone(),
                ip_address: f.ip_address,
            })
            .collect()
    };
    snap.ports = ports
        .iter()
        .filter(|p| p.project_id != BRIDGE_OWNER)
        .map(|p| planner::Port {
            id: p.id.clone(),
            network_id: p.network_id.clone(),
            project_id: p.project_id.clone(),
            mac: p.mac_address.clone(),
            fixed_ips: fixed(p),
            device_owner: p.device_owner.clone(),
            device_id: p.device_id.clone(),
            binding_host: (!p.host_id.is_empty()).then(|| p.host_id.clone()),
        })
        .collect();
    let gateway_port = |router: &str| {
        ports
            .iter()
            .find(|p| p.device_owner == OWNER_GATEWAY && p.device_id == router)
    };
    snap.routers = routers
        .iter()
        .map(|r| planner::Router {
            id: r.id.clone(),
            project_id: r.project_id.clone(),
            az_hints: r.az_hints.clone(),
            external_gateway: r.gateway.as_ref().and_then(|g| {
                gateway_port(&r.id).map(|p| planner::ExternalGateway {
                    network_id: g.network_id.clone(),
                    enable_snat: g.enable_snat,
                    external_fixed_ips: fixed(p),
                })
            }),
            routes: r
                .routes
                .iter()
                .filter_map(|rt| {
                    Some(planner::UserRoute {
                        destination: rt.destination.parse().ok()?,
                        nexthop: rt.nexthop.parse().ok()?,
                    })
                })
                .collect(),
        })
        .collect();
    snap.router_interfaces = ports
        .iter()
        .filter(|p| p.device_owner == OWNER_INTERFACE && !p.device_id.is_empty())
        .filter_map(|p| {
            let f = p.fixed_ips.first()?;
            Some(planner::RouterInterface {
                router_id: p.device_id.clone(),
                subnet_id: f.subnet_id.clone(),
                port_id: p.id.clone(),
                ip_address: f.ip_address,
                mac: p.mac_address.clone(),
            })
        })
        .collect();
    snap.floating_ips = fips
        .iter()
        .filter_map(|f| {
            Some(planner::FloatingIp {
                id: f.id.clone(),
                project_id: f.project_id.clone(),
                floating_network_id: f.floating_network_id.clone(),
                floating_ip_address: f.floating_ip_address.parse().ok()?,
                port_id: f.port_id.clone(),
                fixed_ip_address: f.fixed_ip_address.as_deref().and_then(|a| a.parse().ok()),
            })
        })
        .collect();
    // Allocations.
    let by_id: BTreeMap<&str, &Network> = networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let subnet_ids: HashSet<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
    for n in networks.iter().filter(|n| n.project_id == BRIDGE_OWNER) {
        let Some(project) = n.name.strip_prefix("bridge-net-") else {
            continue;
        };
        let (Segment::Vlan { id, .. }, Some(cidr)) =
            (&n.segment, store.bridge_subnet_of(project).await?)
        else {
            continue;
        };
        if !subnet_ids.contains(bridge_subnet_id(project).as_str()) {
            continue; // half made: the next allocation pass finishes it
        }
        snap.allocations.bridge_networks.insert(
            project.to_string(),
            planner::BridgeNetwork {
                vlan: *id,
                cidr: IpNet::V4(cidr),
            },
        );
    }
    for p in &ports {
        let Some(f) = p.fixed_ips.first() else {
            continue;
        };
        if p.device_owner == OWNER_BRIDGE_IP {
            snap.allocations
                .set_bridge_ip(&p.device_id, &p.name, f.ip_address);
        } else if p.device_owner == OWNER_LEG {
            snap.allocations
                .set_leg_ip(&p.device_id, &p.name, &f.subnet_id, f.ip_address);
        }
    }
    for (net, pod, tag) in tags {
        if by_id.contains_key(net.as_str()) {
            snap.allocations.set_local_tag(&net, &pod, tag);
        }
    }
    Ok(Intent {
        snapshot: snap,
        ports: ports.into_iter().map(|p| (p.id.clone(), p)).collect(),
        routers: routers.into_iter().map(|r| (r.id.clone(), r)).collect(),
        floatingips: fips.into_iter().map(|f| (f.id.clone(), f)).collect(),
        networks: networks.into_iter().map(|n| (n.id.clone(), n)).collect(),
        subnets: subnets.into_iter().map(|s| (s.id.clone(), s)).collect(),
    })
}

fn ignore_exists(r: Result<Port, StoreError>) -> Result<(), StoreError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_unique_violation() => Ok(()),
        Err(StoreError::Api(a)) if a.status == axum::http::StatusCode::CONFLICT => Ok(()),
        Err(e) => Err(e),
    }
}

fn ignore_missing(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Api(a)) if a.status == axum::http::StatusCode::NOT_FOUND => Ok(()),
        other => other,
    }
}

async fn allocate(app: &App, key: &AllocationKey, intent: &Intent) -> Result<(), StoreError> {
    crate::failpoint::hit("realize:allocate");
    let store = &app.store;
    match key {
        AllocationKey::BridgeNetwork { project_id } => {
            let net_id = bridge_network_id(project_id);
            if let Err(e) = store.get_network(&net_id).await {
                if !matches!(&e, StoreError::Api(a) if a.status == axum::http::StatusCode::NOT_FOUND)
                {
                    return Err(e);
                }
                let r = store
                    .create_network(
                        &NewNetwork {
                            id: net_id.clone(),
                            project_id: BRIDGE_OWNER.into(),
                            name: format!("bridge-net-{project_id}"),
                            description: format!(
                                "crosspod east-west bridge network of project {project_id}"
                            ),
                            admin_state_up: true,
                            shared: false,
                            external: false,
                            mtu: 1500,
                            port_security_enabled: false,
                            segment: SegmentRequest::Vlan {
                                physnet: Some(BRIDGE_PHYSNET.into()),
                                id: None,
                            },
                            az_hints: Vec::new(),
                        },
                        &app.config.network_vlan_ranges,
                    )
                    .await;
                if let Err(e) = r {
                    if !e.is_unique_violation() {
                        return Err(e);
                    }
                }
            }
            let cidr = store
                .bridge_subnet(project_id, app.config.bridge_cidr)
                .await?;
            let sid = bridge_subnet_id(project_id);
            if store.get_subnet(&sid).await.is_err() {
                let net = IpNet::V4(cidr);
                let r = store
                    .create_subnet(&Subnet {
                        id: sid,
                        project_id: BRIDGE_OWNER.into(),
                        network_id: net_id,
                        name: format!("bridge-subnet-{project_id}"),
                        description: String::new(),
                        ip_version: 4,
                        cidr: net,
                        gateway_ip: None,
                        allocation_pools: ipam::default_pools(&net, None),
                        enable_dhcp: false,
                        dns_nameservers: Vec::new(),
                        host_routes: Vec::new(),
                        created_at: String::new(),
                        updated_at: String::new(),
                        revision_number: 1,
                    })
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if e.is_unique_violation() => {}
                    Err(StoreError::Api(a)) if a.status == axum::http::StatusCode::BAD_REQUEST => {
                        // Overlap with itself: created concurrently by another controller.
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        AllocationKey::BridgeIp { router_id, pod } => {
            let Some(router) = intent.routers.get(router_id) else {
                return Ok(());
            };
            ignore_exists(
                store
                    .create_port(&NewPort {
                        id: bridge_ip_port_id(router_id, pod),
                        project_id: BRIDGE_OWNER.into(),
                        network_id: bridge_network_id(&router.project_id),
                        name: pod.clone(),
                        description: format!("bridge IP of router {router_id} in pod {pod}"),
                        admin_state_up: true,
                        mac_address: None,
                        device_id: router_id.clone(),
                        device_owner: OWNER_BRIDGE_IP.into(),
                        host_id: String::new(),
                        port_security_enabled: Some(false),
                        fixed_ips: None,
                    })
                    .await,
            )
        }
        AllocationKey::LegIp {
            router_id,
            pod,
            subnet_id,
        } => {
            let (Some(router), Some(subnet)) =
                (intent.routers.get(router_id), intent.subnets.get(subnet_id))
            else {
                return Ok(());
            };
            ignore_exists(
                store
                    .create_port(&NewPort {
                        id: leg_port_id(router_id, pod, subnet_id),
                        project_id: router.project_id.clone(),
                        network_id: subnet.network_id.clone(),
                        name: pod.clone(),
                        description: format!(
                            "gateway of router {router_id} on subnet {subnet_id} in pod {pod}"
                        ),
                        admin_state_up: true,
                        mac_address: None,
                        device_id: router_id.clone(),
                        device_owner: OWNER_LEG.into(),
                        host_id: String::new(),
                        port_security_enabled: Some(false),
                        fixed_ips: Some(vec![FixedIpRequest {
                            subnet_id: Some(subnet_id.clone()),
                            ip_address: None,
                        }]),
                    })
                    .await,
            )
        }
        AllocationKey::LocalTag { network_id, pod } => {
            let reserved = app.config.network_vlan_ranges.range(BRIDGE_PHYSNET);
            let candidates: Vec<u16> = (100..=4000)
                .filter(|t| !reserved.is_some_and(|(lo, hi)| (lo..=hi).contains(t)))
                .collect();
            store
                .allocate_local_tag(network_id, pod, BRIDGE_PHYSNET, &candidates)
                .await
                .map(|_| ())
        }
    }
}

async fn release(app: &App, key: &AllocationKey) -> Result<(), StoreError> {
    let store = &app.store;
    match key {
        AllocationKey::BridgeNetwork { project_id } => {
            ignore_missing(store.delete_subnet(&bridge_subnet_id(project_id)).await)?;
            ignore_missing(store.delete_network(&bridge_network_id(project_id)).await)?;
            store.release_bridge_subnet(project_id).await
        }
        AllocationKey::BridgeIp { router_id, pod } => {
            ignore_missing(store.delete_port(&bridge_ip_port_id(router_id, pod)).await)
        }
        AllocationKey::LegIp {
            router_id,
            pod,
            subnet_id,
        } => ignore_missing(
            store
                .delete_port(&leg_port_id(router_id, pod, subnet_id))
                .await,
        ),
        AllocationKey::LocalTag { network_id, pod } => {
            store.release_local_tag(network_id, pod).await
        }
    }
}

/// Ports the API's multi-step changes may leave behind after a crash: gateway ports of routers
/// without a gateway, floating-IP ports without their floating IP, interface/leg/bridge ports
/// of deleted routers. Removed here so every change is resumable.
async fn collect_garbage(app: &App, intent: &Intent) -> Result<usize, StoreError> {
    let mut n = 0;
    for p in intent.ports.values() {
        let orphan = match p.device_owner.as_str() {
            OWNER_GATEWAY => intent.routers.get(&p.device_id).is_none_or(|r| {
                r.gateway
                    .as_ref()
                    .is_none_or(|g| g.network_id != p.network_id)
            }),
            OWNER_FLOATINGIP => !intent.floatingips.contains_key(&p.device_id),
            OWNER_INTERFACE | OWNER_LEG | OWNER_BRIDGE_IP => {
                !p.device_id.is_empty() && !intent.routers.contains_key(&p.device_id)
            }
            _ => false,
        };
        // A floating-IP port is created just before its row: leave young ones alone.
        let young = p.device_owner == OWNER_FLOATINGIP && is_recent(&p.created_at);
        if orphan && !young {
            ignore_missing(app.store.delete_port(&p.id).await)?;
            tracing::info!(port = %p.id, owner = %p.device_owner, device = %p.device_id, "removed an orphaned port");
            n += 1;
        }
    }
    n += app.store.disassociate_dangling_floatingips().await? as usize;
    Ok(n)
}

fn is_recent(ts: &str) -> bool {
    // Timestamps are RFC 3339 UTC at second precision; "recent" = in the current minute.
    let now = crate::store::now();
    now.get(..16) == ts.get(..16)
}

/// One realization run; returns how many node states were published.
pub async fn realize(app: &App) -> Result<usize, ApiError> {
    let mut intent = read_intent(app).await?;
    if collect_garbage(app, &intent).await? > 0 {
        intent = read_intent(app).await?;
    }
    let plan = planner::required_allocations(&intent.snapshot);
    if !plan.is_empty() {
        for key in &plan.allocate {
            if let Err(e) = allocate(app, key, &intent).await {
                tracing::warn!(?key, error = %e, "allocation failed");
            }
        }
        // Release IPs before the networks they come from.
        for key in plan.release.iter().rev() {
            if let Err(e) = release(app, key).await {
                tracing::warn!(?key, error = %e, "release failed");
            }
        }
        intent = read_intent(app).await?;
    }
    let states = planner::plan_all(&intent.snapshot);
    let mut published = 0;
    for (node, state) in states {
        let content = serde_json::to_string(&state)
            .map_err(|e| ApiError::internal(format!("serialising the state of {node}: {e}")))?;
        crate::failpoint::hit("realize:publish");
        if let Some(rev) = app.store.publish_node_state(&node, &content).await? {
            tracing::info!(node = %node, revision = rev, "published a new desired state");
            published += 1;
        }
    }
    Ok(published)
}

/// The published state of `node` with its revision filled in.
pub async fn published_state(
    app: &App,
    node: &str,
) -> Result<Option<(u64, wire::NodeDesiredState)>, ApiError> {
    let Some((rev, content)) = app.store.node_state(node).await? else {
        return Ok(None);
    };
    let mut state: wire::NodeDesiredState = serde_json::from_str(&content)
        .map_err(|e| ApiError::internal(format!("stored state of {node} unreadable: {e}")))?;
    state.revision = rev as u64;
    Ok(Some((rev as u64, state)))
}

/// Whether a router is in place everywhere: every node whose published state holds one of its
/// instances has applied that revision and reports the instance ready. `Err` carries an
/// agent's failure.
pub async fn router_realized(app: &App, router_id: &str) -> Result<Result<bool, String>, ApiError> {
    let agents = app.store.list_agents().await?;
    for a in &agents {
        let Some((rev, state)) = published_state(app, &a.node).await? else {
            continue;
        };
        if !state.routers.contains_key(router_id) {
            continue;
        }
        let Some(report) = &a.report else {
            return Ok(Ok(false));
        };
        if let Some(r) = report.routers.iter().find(|r| r.router_id == router_id) {
            if r.state == wire::RouterState::Failed {
                return Ok(Err(format!(
                    "node {}: {}",
                    a.node,
                    r.error.clone().unwrap_or_default()
                )));
            }
        }
        let ready = report.revision_applied >= rev
            && report
                .routers
                .iter()
                .any(|r| r.router_id == router_id && r.state == wire::RouterState::Ready);
        if !ready {
            return Ok(Ok(false));
        }
    }
    Ok(Ok(true))
}

/// The gateway IP of a project's router for a port, as the planner would serve it: used by
/// the floating IP API to name the router.
pub fn serving_router(intent: &Intent, fip_network: &str, port: &Port) -> Option<String> {
    let subnets: Vec<&str> = port
        .fixed_ips
        .iter()
        .map(|f| f.subnet_id.as_str())
        .collect();
    intent
        .routers
        .values()
        .filter(|r| r.project_id == port.project_id)
        .filter(|r| {
            r.gateway
                .as_ref()
                .is_some_and(|g| g.network_id == fip_network)
        })
        .find(|r| {
            intent.ports.values().any(|p| {
                p.device_owner == OWNER_INTERFACE
                    && p.device_id == r.id
                    && p.fixed_ips
                        .iter()
                        .any(|f| subnets.contains(&f.subnet_id.as_str()))
            })
        })
        .map(|r| r.id.clone())
}
