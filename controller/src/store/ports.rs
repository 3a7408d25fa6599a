//! Ports, their MAC addresses and fixed IPs.

use std::collections::HashSet;
use std::net::IpAddr;

use sqlx::any::AnyRow;

use super::subnets::subnet_from_row;
use super::{
    col_b, col_i, col_os, col_s, entropy, now, retrying, AddressPair, FixedIp, FixedIpRequest,
    NewPort, Port, Scope, Store, Subnet, WriteTx,
};
use crate::error::{DomainError, StoreError};
use crate::ipam;
use crate::mac;
use crate::naming::{OWNER_BRIDGE_IP, OWNER_DHCP, OWNER_FLOATINGIP, OWNER_INTERFACE, OWNER_LEG};

fn port_from_row(r: &AnyRow) -> Result<Port, StoreError> {
    Ok(Port {
        id: col_s(r, "id")?,
        project_id: col_s(r, "project_id")?,
        network_id: col_s(r, "network_id")?,
        name: col_s(r, "name")?,
        description: col_s(r, "description")?,
        admin_state_up: col_b(r, "admin_state_up")?,
        status: col_s(r, "status")?,
        mac_address: col_s(r, "mac_address")?,
        device_id: col_s(r, "device_id")?,
        device_owner: col_s(r, "device_owner")?,
        host_id: col_s(r, "host_id")?,
        port_security_enabled: col_b(r, "port_security_enabled")?,
        fixed_ips: Vec::new(),
        security_groups: Vec::new(),
        allowed_address_pairs: super::col_json(r, "allowed_address_pairs")?,
        interface_of: col_os(r, "rp_router_id")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
    })
}

fn fixed_ip_from_row(r: &AnyRow) -> Result<(String, FixedIp), StoreError> {
    let ip = col_s(r, "ip_address")?;
    let ip_address = ip.parse().map_err(|_| StoreError::Corrupt {
        column: "ip_address",
        object: "ip_allocations".into(),
        detail: format!("{ip:?} is not an address"),
    })?;
    Ok((
        col_s(r, "port_id")?,
        FixedIp {
            subnet_id: col_s(r, "subnet_id")?,
            ip_address,
        },
    ))
}

async fn claim_ip(
    w: &mut WriteTx<'_>,
    subnet: &Subnet,
    ip: IpAddr,
    port_id: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO ip_allocations (network_id, ip_address, subnet_id, port_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(subnet.network_id.clone())
    .bind(ip.to_string())
    .bind(subnet.id.clone())
    .bind(port_id.to_string())
    .execute(&mut *w.tx)
    .await
    .map_err(StoreError::db(format!("claiming {ip} in subnet {}", subnet.id)))?;
    Ok(r.rows_affected() == 1)
}

async fn taken_in(w: &mut WriteTx<'_>, subnet: &Subnet) -> Result<HashSet<IpAddr>, StoreError> {
    let rows = sqlx::query("SELECT ip_address FROM ip_allocations WHERE subnet_id = $1")
        .bind(subnet.id.clone())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "reading addresses of subnet {}",
            subnet.id
        )))?;
    Ok(rows
        .iter()
        .filter_map(|r| col_s(r, "ip_address").ok())
        .filter_map(|s| s.parse().ok())
        .collect())
}

/// Allocate one free address of `subnet` to `port_id`; None when the pools are full.
/// Small pools hand out the lowest free address first (then spread among the lowest few
/// after losing a race); large pools draw random addresses.
async fn allocate_ip(
    w: &mut WriteTx<'_>,
    subnet: &Subnet,
    port_id: &str,
) -> Result<Option<IpAddr>, StoreError> {
    let pools = &subnet.allocation_pools;
    let size = ipam::pools_size(pools);
    if size == 0 {
        return Ok(None);
    }
    if size > ipam::SCAN_LIMIT {
        for _ in 0..32 {
            if let Some(ip) = ipam::random_in(pools, entropy()) {
                if claim_ip(w, subnet, ip, port_id).await? {
                    return Ok(Some(ip));
                }
            }
        }
    }
    for attempt in 0..64u32 {
        let taken = taken_in(w, subnet).await?;
        let cands = ipam::lowest_free(pools, &taken, 16);
        if cands.is_empty() {
            return Ok(None);
        }
        let ip = if attempt == 0 {
            cands[0]
        } else {
            cands[(entropy() % cands.len() as u128) as usize]
        };
        if claim_ip(w, subnet, ip, port_id).await? {
            return Ok(Some(ip));
        }
        tracing::debug!(subnet = %subnet.id, %ip, attempt, "address taken concurrently, trying another");
    }
    Err(DomainError::conflict(
        "IpAddressGenerationFailure",
        format!(
            "No address could be allocated on subnet {} (too much contention), retry",
            subnet.id
        ),
    )
    .into())
}

/// Whether ports of `owner` take their EUI-64 address on every auto-address subnet of their
/// network without asking for it (Neutron: every port but router interfaces). crosspod's own
/// DHCP, leg, bridge-IP and floating-IP ports take addresses only where they ask: the
/// realizer releases a DHCP address the planner does not want, and a floating IP is IPv4.
fn takes_auto_addresses(owner: &str) -> bool {
    !matches!(
        owner,
        OWNER_INTERFACE | OWNER_LEG | OWNER_BRIDGE_IP | OWNER_DHCP | OWNER_FLOATINGIP
    )
}

/// Router legs choose their own address on an auto-address subnet (the gateway IP, or one
/// from the pools), as Neutron's router interfaces do.
fn is_router_leg(owner: &str) -> bool {
    matches!(owner, OWNER_INTERFACE | OWNER_LEG)
}

fn is_auto(s: &Subnet) -> bool {
    s.ip_version == 6 && ipam::is_auto_address(s.ipv6_ra_mode, s.ipv6_address_mode)
}

fn in_use(network_id: &str, ip: IpAddr) -> StoreError {
    DomainError::conflict(
        "IpAddressAlreadyAllocated",
        format!(
            "Unable to complete operation for network {network_id}. The IP address {ip} is in use."
        ),
    )
    .into()
}

/// Give `port_id` (with `mac`) its EUI-64 address on the auto-address `subnet`; 409 when
/// another port (or the subnet's gateway) has it.
async fn claim_eui64(
    w: &mut WriteTx<'_>,
    subnet: &Subnet,
    port_id: &str,
    mac: &str,
) -> Result<IpAddr, StoreError> {
    let ip = ipam::eui64(&subnet.cidr, mac).ok_or_else(|| {
        DomainError::invalid_input(
            "mac_address",
            format!(
                "no EUI-64 address of {mac} in subnet {} ({})",
                subnet.id, subnet.cidr
            ),
        )
    })?;
    if subnet.gateway_ip == Some(ip) {
        return Err(DomainError::conflict(
            "IpAddressAlreadyAllocated",
            format!(
                "IP address {ip} (the EUI-64 address of {mac}) is the gateway of subnet {}",
                subnet.id
            ),
        )
        .into());
    }
    if !claim_ip(w, subnet, ip, port_id).await? {
        return Err(in_use(&subnet.network_id, ip));
    }
    Ok(ip)
}

async fn network_subnets(w: &mut WriteTx<'_>, network_id: &str) -> Result<Vec<Subnet>, StoreError> {
    let rows = sqlx::query("SELECT * FROM subnets WHERE network_id = $1 ORDER BY created_at, id")
        .bind(network_id.to_string())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "reading subnets of network {network_id}"
        )))?;
    rows.iter().map(subnet_from_row).collect()
}

async fn bump_port(w: &mut WriteTx<'_>, port_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ports SET revision_number = revision_number + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now())
    .bind(port_id.to_string())
    .execute(&mut *w.tx)
    .await
    .map_err(StoreError::db(format!("updating port {port_id}")))?;
    w.touch(super::changes::ChangeKind::Port, port_id);
    Ok(())
}

/// A new auto-address `subnet`: every port of its network that takes auto addresses gets its
/// EUI-64 address there, inside `w` (Neutron's `add_auto_addrs_on_network_ports`).
pub(super) async fn add_auto_addresses(
    w: &mut WriteTx<'_>,
    subnet: &Subnet,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT id, mac_address, device_owner FROM ports WHERE network_id = $1 ORDER BY id",
    )
    .bind(subnet.network_id.clone())
    .fetch_all(&mut *w.tx)
    .await
    .map_err(StoreError::db(format!(
        "reading ports of network {}",
        subnet.network_id
    )))?;
    for r in &rows {
        if !takes_auto_addresses(&col_s(r, "device_owner")?) {
            continue;
        }
        let id = col_s(r, "id")?;
        claim_eui64(w, subnet, &id, &col_s(r, "mac_address")?).await?;
        bump_port(w, &id).await?;
    }
    Ok(())
}

/// Before deleting `subnet_id`: when it is an auto-address subnet, its ports' EUI-64
/// addresses go (router legs keep theirs, so the subnet stays in use while they exist).
pub(super) async fn drop_auto_addresses(
    w: &mut WriteTx<'_>,
    subnet_id: &str,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT * FROM subnets WHERE id = $1")
        .bind(subnet_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading subnet {subnet_id}")))?;
    match row {
        Some(r) if is_auto(&subnet_from_row(&r)?) => {}
        _ => return Ok(()),
    }
    let rows = sqlx::query("SELECT a.port_id AS port_id, p.device_owner AS device_owner FROM ip_allocations a JOIN ports p ON p.id = a.port_id WHERE a.subnet_id = $1")
        .bind(subnet_id.to_string())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading addresses of subnet {subnet_id}")))?;
    for r in &rows {
        if is_router_leg(&col_s(r, "device_owner")?) {
            continue;
        }
        let port = col_s(r, "port_id")?;
        sqlx::query("DELETE FROM ip_allocations WHERE subnet_id = $1 AND port_id = $2")
            .bind(subnet_id.to_string())
            .bind(port.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "releasing the address of port {port} on subnet {subnet_id}"
            )))?;
        bump_port(w, &port).await?;
    }
    Ok(())
}

/// A port's MAC changed: its EUI-64 addresses follow (router legs keep theirs).
async fn readdress_auto(
    w: &mut WriteTx<'_>,
    network_id: &str,
    port_id: &str,
    device_owner: &str,
    mac: &str,
) -> Result<(), StoreError> {
    if is_router_leg(device_owner) {
        return Ok(());
    }
    for s in network_subnets(w, network_id).await? {
        if !is_auto(&s) {
            continue;
        }
        let had = sqlx::query("DELETE FROM ip_allocations WHERE subnet_id = $1 AND port_id = $2")
            .bind(s.id.clone())
            .bind(port_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "releasing the address of port {port_id} on subnet {}",
                s.id
            )))?
            .rows_affected()
            > 0;
        if had || takes_auto_addresses(device_owner) {
            claim_eui64(w, &s, port_id, mac).await?;
        }
    }
    Ok(())
}

/// Give `port_id` (with `mac`) the requested fixed IPs, or, without a request, one address
/// of the first IPv4 subnet with room and one of the first IPv6 subnet with room that is not
/// an auto-address one (as Neutron; a floating IP's port only IPv4). Either way, a port that
/// takes auto addresses gets its EUI-64 address on every auto-address subnet; explicit
/// addresses there are refused unless they are that address (router legs excepted).
async fn assign_ips(
    w: &mut WriteTx<'_>,
    network_id: &str,
    port_id: &str,
    device_owner: &str,
    mac: &str,
    request: Option<&[FixedIpRequest]>,
) -> Result<(), StoreError> {
    let subnets = network_subnets(w, network_id).await?;
    let mut auto_done: HashSet<&str> = HashSet::new();
    match request {
        None => {
            let v4: Vec<&Subnet> = subnets.iter().filter(|s| s.ip_version == 4).collect();
            let v6: Vec<&Subnet> = subnets
                .iter()
                .filter(|s| s.ip_version != 4 && !is_auto(s))
                .filter(|_| device_owner != OWNER_FLOATINGIP)
                .collect();
            for group in [v4, v6] {
                if group.is_empty() {
                    continue;
                }
                let mut got = false;
                for s in group {
                    if allocate_ip(w, s, port_id).await?.is_some() {
                        got = true;
                        break;
                    }
                }
                if !got {
                    return Err(DomainError::conflict(
                        "IpAddressGenerationFailure",
                        format!("No more IP addresses available on network {network_id}."),
                    )
                    .into());
                }
            }
        }
        Some(request) => {
            for (i, req) in request.iter().enumerate() {
                let field = format!("fixed_ips[{i}]");
                let subnet = match (&req.subnet_id, req.ip_address) {
                    (Some(sid), _) => subnets.iter().find(|s| &s.id == sid).ok_or_else(|| {
                        DomainError::invalid_input(&field, format!("subnet {sid} is not a subnet of network {network_id}"))
                    })?,
                    (None, Some(ip)) => subnets.iter().find(|s| ipam::is_host(&s.cidr, ip)).ok_or_else(|| {
                        DomainError::invalid_input(&field, format!("IP address {ip} is not a valid IP for any subnet on network {network_id}"))
                    })?,
                    (None, None) => {
                        return Err(DomainError::invalid_input(&field, "a fixed IP needs subnet_id or ip_address").into())
                    }
                };
                if is_auto(subnet) && !is_router_leg(device_owner) {
                    if let Some(ip) = req.ip_address {
                        if ipam::eui64(&subnet.cidr, mac) != Some(ip) {
                            // Neutron's AllocationOnAutoAddressSubnet.
                            return Err(DomainError::new(
                                crate::error::ErrorClass::BadRequest,
                                "InvalidInput",
                                format!(
                                    "IPv6 address {ip} cannot be directly assigned to a port on subnet {} as the subnet is configured for automatic addresses",
                                    subnet.id
                                ),
                            )
                            .into());
                        }
                    }
                    // Only the subnet (or its EUI-64 address) asked for: that address, once.
                    if auto_done.insert(subnet.id.as_str()) {
                        claim_eui64(w, subnet, port_id, mac).await?;
                    }
                    continue;
                }
                match req.ip_address {
                    Some(ip) => {
                        if !ipam::is_host(&subnet.cidr, ip) {
                            return Err(DomainError::invalid_input(
                                &field,
                                format!(
                                    "IP address {ip} is not a valid IP for subnet {} ({})",
                                    subnet.id, subnet.cidr
                                ),
                            )
                            .into());
                        }
                        if subnet.gateway_ip == Some(ip) && !device_owner.starts_with("network:") {
                            return Err(DomainError::conflict(
                                "IpAddressAlreadyAllocated",
                                format!("IP address {ip} is the gateway of subnet {}", subnet.id),
                            )
                            .into());
                        }
                        if !claim_ip(w, subnet, ip, port_id).await? {
                            return Err(in_use(network_id, ip));
                        }
                    }
                    None => {
                        if allocate_ip(w, subnet, port_id).await?.is_none() {
                            return Err(DomainError::conflict(
                                "IpAddressGenerationFailure",
                                format!("No more IP addresses available for subnet {}.", subnet.id),
                            )
                            .into());
                        }
                    }
                }
            }
        }
    }
    if takes_auto_addresses(device_owner) {
        for s in subnets.iter().filter(|s| is_auto(s)) {
            if !auto_done.contains(s.id.as_str()) {
                claim_eui64(w, s, port_id, mac).await?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Create a port: MAC (requested or drawn, unique) and fixed IPs in one transaction.
    pub async fn create_port(&self, p: &NewPort) -> Result<Port, StoreError> {
        self.create_port_tagged(p, &[]).await
    }

    /// [`Store::create_port`] with its tags, in the same transaction.
    pub async fn create_port_tagged(
        &self,
        p: &NewPort,
        tags: &[String],
    ) -> Result<Port, StoreError> {
        retrying!(self.create_port_once(p, tags, &[], &[]))
    }

    /// [`Store::create_port_tagged`] in the given security groups and with allowed address
    /// pairs, in the same transaction.
    pub async fn create_port_secured(
        &self,
        p: &NewPort,
        tags: &[String],
        groups: &[String],
        pairs: &[AddressPair],
    ) -> Result<Port, StoreError> {
        retrying!(self.create_port_once(p, tags, groups, pairs))
    }

    async fn create_port_once(
        &self,
        p: &NewPort,
        tags: &[String],
        groups: &[String],
        pairs: &[AddressPair],
    ) -> Result<Port, StoreError> {
        let mut w = self.begin_write().await?;
        insert_port(&mut w, &self.quota_defaults, p).await?;
        if !groups.is_empty() || !pairs.is_empty() {
            super::security_groups::write_port_security(&mut w, &p.id, Some(groups), Some(pairs))
                .await?;
        }
        super::tags::insert_tags(&mut w, super::Tagged::Port, &p.id, tags).await?;
        w.commit().await?;
        self.get_port(&p.id).await
    }

    /// Create an interface port of `router_id` and its `router_ports` row in one transaction
    /// (the only way a router gets an interface). A second interface on the same subnet is
    /// refused by the relation's unique key, not by a read before the write.
    pub async fn create_interface_port(
        &self,
        router_id: &str,
        subnet_id: &str,
        p: &NewPort,
    ) -> Result<Port, StoreError> {
        retrying!(async {
            let mut w = self.begin_write().await?;
            insert_port(&mut w, &self.quota_defaults, p).await?;
            relate(&mut w, router_id, &p.id, subnet_id).await?;
            w.commit().await?;
            self.get_port(&p.id).await
        })
    }

    /// Make an existing unused port (at `revision`) an interface of `router_id` in one
    /// transaction: its device owner and id, and the `router_ports` row. 409 when the port
    /// changed meanwhile (another request took it).
    pub async fn attach_interface_port(
        &self,
        router_id: &str,
        subnet_id: &str,
        port_id: &str,
        revision: i64,
    ) -> Result<Port, StoreError> {
        retrying!(async {
            let mut w = self.begin_write().await?;
            let r = sqlx::query("UPDATE ports SET device_owner = $1, device_id = $2, updated_at = $3, revision_number = revision_number + 1 WHERE id = $4 AND revision_number = $5 AND device_owner = '' AND device_id = ''")
                .bind(crate::naming::OWNER_INTERFACE)
                .bind(router_id.to_string())
                .bind(now())
                .bind(port_id.to_string())
                .bind(revision)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("attaching port {port_id} to router {router_id}")))?;
            if r.rows_affected() == 0 {
                return Err(DomainError::conflict(
                    "PortInUse",
                    format!("Port {port_id} changed or is in use; it was not attached to router {router_id}"),
                )
                .into());
            }
            relate(&mut w, router_id, port_id, subnet_id).await?;
            w.touch(super::changes::ChangeKind::Port, port_id);
            w.commit().await?;
            self.get_port(port_id).await
        })
    }
}

/// Record that `port_id` is an interface of `router_id` on `subnet_id`.
async fn relate(
    w: &mut WriteTx<'_>,
    router_id: &str,
    port_id: &str,
    subnet_id: &str,
) -> Result<(), StoreError> {
    let r = sqlx::query("INSERT INTO router_ports (port_id, router_id, subnet_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(port_id.to_string())
        .bind(router_id.to_string())
        .bind(subnet_id.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("relating port {port_id} to router {router_id}")))?;
    if r.rows_affected() == 0 {
        return Err(DomainError::bad_request(format!(
            "Bad router request: Router {router_id} already has a port on subnet {subnet_id}."
        ))
        .into());
    }
    Ok(())
}

/// Insert a port (MAC drawn until unique) and assign its addresses, inside `w`.
pub(super) async fn insert_port(
    w: &mut WriteTx<'_>,
    quota_defaults: &super::quotas::QuotaDefaults,
    p: &NewPort,
) -> Result<(), StoreError> {
    {
        super::quotas::check(
            w,
            quota_defaults,
            &p.project_id,
            Some(&p.device_owner),
            super::QuotaResource::Port,
        )
        .await?;
        let net = sqlx::query("SELECT port_security_enabled FROM networks WHERE id = $1")
            .bind(p.network_id.clone())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading network {}", p.network_id)))?;
        let Some(net) = net else {
            return Err(DomainError::not_found("Network", "NetworkNotFound", &p.network_id).into());
        };
        let port_security = match p.port_security_enabled {
            Some(v) => v,
            None => col_b(&net, "port_security_enabled")?,
        };
        let ts = now();
        let mut inserted = None;
        for _ in 0..16 {
            let mac = p.mac_address.clone().unwrap_or_else(mac::random);
            let r = sqlx::query(
                "INSERT INTO ports (id, project_id, network_id, name, description, admin_state_up, status, mac_address, device_id, device_owner, host_id, port_security_enabled, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, $5, $6, 'DOWN', $7, $8, $9, $10, $11, $12, $12, 1) ON CONFLICT DO NOTHING",
            )
            .bind(p.id.clone())
            .bind(p.project_id.clone())
            .bind(p.network_id.clone())
            .bind(p.name.clone())
            .bind(p.description.clone())
            .bind(i64::from(p.admin_state_up))
            .bind(mac.clone())
            .bind(p.device_id.clone())
            .bind(p.device_owner.clone())
            .bind(p.host_id.clone())
            .bind(i64::from(port_security))
            .bind(ts.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("inserting port {}", p.id)))?;
            if r.rows_affected() == 1 {
                inserted = Some(mac);
                break;
            }
            let exists = sqlx::query("SELECT id FROM ports WHERE id = $1")
                .bind(p.id.clone())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("reading port {}", p.id)))?;
            if exists.is_some() {
                return Err(DomainError::conflict(
                    "PortExists",
                    format!("Port {} already exists", p.id),
                )
                .into());
            }
            if p.mac_address.is_some() {
                return Err(DomainError::conflict(
                    "MacAddressInUse",
                    format!("Unable to complete operation for network {}. The mac address {mac} is in use.", p.network_id),
                )
                .into());
            }
            tracing::debug!(%mac, "MAC collision, drawing another");
        }
        let Some(mac) = inserted else {
            return Err(DomainError::conflict(
                "MacAddressGenerationFailure",
                "Unable to generate a unique MAC address",
            )
            .into());
        };
        assign_ips(
            w,
            &p.network_id,
            &p.id,
            &p.device_owner,
            &mac,
            p.fixed_ips.as_deref(),
        )
        .await?;
        w.touch(super::changes::ChangeKind::Port, &p.id);
        Ok(())
    }
}

impl Store {
    /// One port with its fixed IPs (no visibility check).
    pub async fn get_port(&self, id: &str) -> Result<Port, StoreError> {
        let row = sqlx::query("SELECT p.*, rp.router_id AS rp_router_id FROM ports p LEFT JOIN router_ports rp ON rp.port_id = p.id WHERE p.id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db(format!("reading port {id}")))?;
        let Some(row) = row else {
            return Err(DomainError::not_found("Port", "PortNotFound", id).into());
        };
        let mut port = port_from_row(&row)?;
        let ips = sqlx::query(
            "SELECT * FROM ip_allocations WHERE port_id = $1 ORDER BY subnet_id, ip_address",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db(format!("reading addresses of port {id}")))?;
        for r in &ips {
            port.fixed_ips.push(fixed_ip_from_row(r)?.1);
        }
        port.security_groups = self
            .port_security_groups(Some(id))
            .await?
            .remove(id)
            .unwrap_or_default();
        Ok(port)
    }

    /// Ports in `scope` (a project sees its own and those on its networks), optionally on one
    /// network. One
    /// query (ports LEFT JOIN their addresses, ordered by port id) keeps large lists cheap.
    pub async fn list_ports(
        &self,
        scope: &Scope,
        network_id: Option<&str>,
    ) -> Result<Vec<Port>, StoreError> {
        let mut sql = String::from(
            "SELECT p.*, rp.router_id AS rp_router_id, a.subnet_id AS a_subnet_id, a.ip_address AS a_ip_address FROM ports p LEFT JOIN router_ports rp ON rp.port_id = p.id LEFT JOIN ip_allocations a ON a.port_id = p.id",
        );
        let mut conds = Vec::new();
        let mut binds = Vec::new();
        if let Some(p) = &scope.project_id {
            binds.push(p.clone());
            // Neutron: a project sees its own ports and every port on its own networks.
            conds.push(format!(
                "(p.project_id = ${0} OR p.network_id IN (SELECT id FROM networks WHERE project_id = ${0}))",
                binds.len()
            ));
        }
        if let Some(n) = network_id {
            binds.push(n.to_string());
            conds.push(format!("p.network_id = ${}", binds.len()));
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(" ORDER BY p.id, a.subnet_id, a.ip_address");
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.clone());
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("listing ports"))?;
        let mut out: Vec<Port> = Vec::new();
        for r in &rows {
            let id = col_s(r, "id")?;
            if out.last().map(|p| p.id != id).unwrap_or(true) {
                out.push(port_from_row(r)?);
            }
            if let (Some(subnet_id), Some(ip)) =
                (col_os(r, "a_subnet_id")?, col_os(r, "a_ip_address")?)
            {
                let ip_address = ip.parse().map_err(|_| StoreError::Corrupt {
                    column: "ip_address",
                    object: format!("port {id}"),
                    detail: format!("{ip:?} is not an address"),
                })?;
                if let Some(last) = out.last_mut() {
                    last.fixed_ips.push(FixedIp {
                        subnet_id,
                        ip_address,
                    });
                }
            }
        }
        let mut groups = self.port_security_groups(None).await?;
        for p in &mut out {
            if let Some(g) = groups.remove(&p.id) {
                p.security_groups = g;
            }
        }
        Ok(out)
    }

    /// Write the mutable attributes of `p` (name, description, admin state, device id and
    /// owner, host, port security) and, when `new_ips` is given, replace its fixed IPs.
    pub async fn update_port(
        &self,
        p: &Port,
        new_ips: Option<&[FixedIpRequest]>,
    ) -> Result<Port, StoreError> {
        self.update_port_full(p, new_ips, None).await
    }

    /// [`Store::update_port`], and a new MAC address when given (409 when another port
    /// holds it). Conditioned on `p.revision_number`: a concurrent change makes it fail.
    pub async fn update_port_full(
        &self,
        p: &Port,
        new_ips: Option<&[FixedIpRequest]>,
        new_mac: Option<&str>,
    ) -> Result<Port, StoreError> {
        retrying!(self.update_port_once(p, new_ips, new_mac, None, None))
    }

    /// [`Store::update_port_full`], and replace the port's security groups and allowed
    /// address pairs when given, in the same transaction.
    pub async fn update_port_secured(
        &self,
        p: &Port,
        new_ips: Option<&[FixedIpRequest]>,
        new_mac: Option<&str>,
        groups: Option<&[String]>,
        pairs: Option<&[AddressPair]>,
    ) -> Result<Port, StoreError> {
        retrying!(self.update_port_once(p, new_ips, new_mac, groups, pairs))
    }

    async fn update_port_once(
        &self,
        p: &Port,
        new_ips: Option<&[FixedIpRequest]>,
        new_mac: Option<&str>,
        groups: Option<&[String]>,
        pairs: Option<&[AddressPair]>,
    ) -> Result<Port, StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE ports SET name = $1, description = $2, admin_state_up = $3, device_id = $4, device_owner = $5, host_id = $6, port_security_enabled = $7, status = $8, updated_at = $9, revision_number = revision_number + 1, mac_address = COALESCE($12, mac_address) WHERE id = $10 AND revision_number = $11",
        )
        .bind(p.name.clone())
        .bind(p.description.clone())
        .bind(i64::from(p.admin_state_up))
        .bind(p.device_id.clone())
        .bind(p.device_owner.clone())
        .bind(p.host_id.clone())
        .bind(i64::from(p.port_security_enabled))
        .bind(p.status.clone())
        .bind(now())
        .bind(p.id.clone())
            .bind(p.revision_number)
        .bind(new_mac.map(str::to_string))
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            let e = StoreError::db(format!("updating port {}", p.id))(e);
            match (new_mac, e.is_unique_violation()) {
                (Some(mac), true) => DomainError::conflict(
                    "MacAddressInUse",
                    format!("Unable to complete operation for network {}. The mac address {mac} is in use.", p.network_id),
                )
                .into(),
                _ => e,
            }
        })?;
        if r.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "ports",
                &p.id,
                DomainError::not_found("Port", "PortNotFound", &p.id),
            )
            .await);
        }
        let mac = new_mac.unwrap_or(&p.mac_address);
        if let Some(req) = new_ips {
            sqlx::query("DELETE FROM ip_allocations WHERE port_id = $1")
                .bind(p.id.clone())
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!(
                    "releasing addresses of port {}",
                    p.id
                )))?;
            assign_ips(
                &mut w,
                &p.network_id,
                &p.id,
                &p.device_owner,
                mac,
                Some(req),
            )
            .await?;
        } else if new_mac.is_some() {
            readdress_auto(&mut w, &p.network_id, &p.id, &p.device_owner, mac).await?;
        }
        super::security_groups::write_port_security(&mut w, &p.id, groups, pairs).await?;
        w.touch(super::changes::ChangeKind::Port, &p.id);
        w.commit().await?;
        self.get_port(&p.id).await
    }

    /// Delete a port, releasing its addresses (cascade) and MAC.
    pub async fn delete_port(&self, id: &str) -> Result<(), StoreError> {
        let w = self.begin_write().await?;
        let mut w = w;
        let r = sqlx::query("DELETE FROM ports WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting port {id}")))?;
        if r.rows_affected() == 0 {
            return Err(DomainError::not_found("Port", "PortNotFound", id).into());
        }
        w.touch(super::changes::ChangeKind::Port, id);
        w.commit().await?;
        tracing::info!(port = id, "port deleted");
        Ok(())
    }
}
