//! Subnets: visible with their network, created by the network's owner (with a CIDR of
//! their own, or one allocated from a subnet pool the caller may see), changed and deleted
//! by their own.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::ipam;
use crate::service::policy::{self, Target};
use crate::service::{networks, subnetpools};
use crate::store::subnetpools::{bad, version_mismatch};
use crate::store::{PrefixRequest, Subnet, SubnetPool};

/// A subnet the caller may see: its own, or one on a network it may see.
pub async fn load_visible(core: &Core, who: &Identity, id: &str) -> Result<Subnet, DomainError> {
    let s = core.store.get_subnet(id).await?;
    if !policy::visible(who, &s.project_id) {
        let n = core.store.get_network(&s.network_id).await?;
        if !networks::visible(&n, who) {
            return Err(DomainError::not_found("Subnet", "SubnetNotFound", id));
        }
    }
    Ok(s)
}

/// Where a new subnet's CIDR comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChoice {
    /// Its own `cidr`.
    None,
    /// `subnetpool_id`: a pool the caller may see.
    Pool(String),
    /// `use_default_subnetpool`: the default pool of its IP version (one the caller may see).
    Default,
}

/// A create request as the API parsed it.
#[derive(Debug, Clone)]
pub struct NewSubnet {
    /// The subnet. With `cidr_given` its CIDR, gateway and allocation pools are final
    /// (checked); otherwise they are placeholders the pool's allocation replaces.
    pub subnet: Subnet,
    /// Whether the request named a `cidr`.
    pub cidr_given: bool,
    /// The pool, if any.
    pub pool: PoolChoice,
    /// `prefixlen` (requests without a `cidr`; else the pool's `default_prefixlen`).
    pub prefixlen: Option<u8>,
    /// `ip_version`, when the request named it.
    pub ip_version: Option<i64>,
    /// Requests without a `cidr`: `gateway_ip` as asked (`None`: the first host,
    /// `Some(None)`: no gateway, `Some(Some(ip))`: the CIDR is that address's prefix).
    pub gateway: Option<Option<IpAddr>>,
}

/// The pool a request names, as the caller may see it.
async fn chosen_pool(
    core: &Core,
    who: &Identity,
    req: &NewSubnet,
) -> Result<Option<SubnetPool>, DomainError> {
    match &req.pool {
        PoolChoice::None => Ok(None),
        PoolChoice::Pool(id) => Ok(Some(subnetpools::load_visible(core, who, id).await?)),
        PoolChoice::Default => {
            let version = req
                .ip_version
                .or(req.cidr_given.then_some(req.subnet.ip_version))
                .ok_or_else(|| {
                    bad(
                        "BadRequest",
                        "Bad subnets request: ip_version must be specified in the absence of cidr and subnetpool_id.",
                    )
                })?;
            match core.store.default_subnetpool(version).await? {
                Some(p) if subnetpools::visible(&p, who) => Ok(Some(p)),
                _ => Err(bad(
                    "BadRequest",
                    format!("Bad subnets request: No default subnetpool found for IPv{version}."),
                )),
            }
        }
    }
}

/// Neutron's `InvalidInput` without a field (`exc.InvalidInput(error_message=...)`).
fn invalid_operation(msg: impl std::fmt::Display) -> DomainError {
    DomainError::new(
        crate::error::ErrorClass::BadRequest,
        "InvalidInput",
        format!("Invalid input for operation: {msg}."),
    )
}

/// Neutron's rules on the IPv6 modes of a new subnet (`_validate_subnet` and
/// `_validate_ipv6_attributes`): IPv6 only, DHCP enabled, both the same when both are set,
/// and a /64 for the automatic (EUI-64) modes when the CIDR is known (`prefixlen` when it is
/// still to be allocated from a pool: EUI-64 needs a /64 there too).
fn check_ipv6_modes(s: &Subnet, prefixlen: Option<u8>) -> Result<(), DomainError> {
    let (ra, addr) = (s.ipv6_ra_mode, s.ipv6_address_mode);
    if s.ip_version == 4 {
        if ra.is_some() {
            return Err(invalid_operation(
                "ipv6_ra_mode is not valid when ip_version is 4",
            ));
        }
        if addr.is_some() {
            return Err(invalid_operation(
                "ipv6_address_mode is not valid when ip_version is 4",
            ));
        }
        return Ok(());
    }
    if (ra.is_some() || addr.is_some()) && !s.enable_dhcp {
        return Err(invalid_operation(
            "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False",
        ));
    }
    if let (Some(r), Some(a)) = (ra, addr) {
        if r != a {
            return Err(invalid_operation(format_args!(
                "ipv6_ra_mode set to '{}' with ipv6_address_mode set to '{}' is not valid. If both attributes are set, they must be the same value",
                ipam::ipv6_mode_name(r),
                ipam::ipv6_mode_name(a)
            )));
        }
    }
    if ipam::is_auto_address(ra, addr) {
        let len = prefixlen.unwrap_or(s.cidr.prefix_len());
        if len != 64 {
            let cidr = match prefixlen {
                Some(p) => format!("/{p}"),
                None => s.cidr.to_string(),
            };
            return Err(invalid_operation(format_args!(
                "Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64"
            )));
        }
    }
    Ok(())
}

/// Create a subnet (with its `tags`) on a network the caller owns (or as admin); from a pool,
/// its CIDR is allocated (or, when given, must be free in the pool).
pub async fn create(
    core: &Core,
    who: &Identity,
    req: NewSubnet,
    tags: &[String],
) -> Result<Subnet, DomainError> {
    let net = networks::load_visible(core, who, &req.subnet.network_id).await?;
    {
        let s = &req.subnet;
        let t = Target {
            project_id: &s.project_id,
            network_owner: Some(&net.project_id),
            network_shared: net.shared,
        };
        if s.project_id != who.project_id {
            policy::enforce(who, "create_subnet:project_id", &t)?;
        }
        policy::enforce(who, "create_subnet", &t)?;
        super::tags::check_create(who, crate::store::Tagged::Subnet, &t, tags)?;
    }
    let Some(pool) = chosen_pool(core, who, &req).await? else {
        check_ipv6_modes(&req.subnet, None)?;
        return Ok(core.store.create_subnet_tagged(&req.subnet, tags).await?);
    };
    let mut s = req.subnet;
    let asked = req.ip_version.or(req.cidr_given.then_some(s.ip_version));
    if let Some(v) = asked.filter(|v| *v != pool.ip_version) {
        return Err(version_mismatch(v, pool.ip_version));
    }
    s.ip_version = pool.ip_version;
    s.subnetpool_id = Some(pool.id.clone());
    if req.cidr_given {
        check_ipv6_modes(&s, None)?;
        return Ok(core.store.create_subnet_tagged(&s, tags).await?);
    }
    let prefixlen = req.prefixlen.unwrap_or(pool.default_prefixlen);
    check_ipv6_modes(&s, Some(prefixlen))?;
    let bits: u8 = if pool.ip_version == 4 { 32 } else { 128 };
    if prefixlen <= bits && bits - prefixlen < ipam::min_host_bits(pool.ip_version) {
        return Err(DomainError::invalid_input(
            "prefixlen",
            format!("a /{prefixlen} subnet is too small to hold any host"),
        ));
    }
    match req.gateway {
        // As Neutron: a gateway without a CIDR asks for the prefix around it.
        Some(Some(gw)) => {
            if gw.is_ipv4() != (pool.ip_version == 4) {
                return Err(version_mismatch(
                    if gw.is_ipv4() { 4 } else { 6 },
                    pool.ip_version,
                ));
            }
            let cidr = IpNet::new(gw, prefixlen)
                .map_err(|_| {
                    DomainError::invalid_input(
                        "prefixlen",
                        format!(
                            "{prefixlen} is longer than an IPv{} address",
                            pool.ip_version
                        ),
                    )
                })?
                .trunc();
            ipam::check_gateway(&cidr, gw)?;
            s.cidr = cidr;
            s.gateway_ip = Some(gw);
            s.allocation_pools = ipam::default_pools(&cidr, Some(gw));
            Ok(core.store.create_subnet_tagged(&s, tags).await?)
        }
        gateway => {
            let req = PrefixRequest {
                prefixlen,
                gateway: gateway.is_none(),
            };
            Ok(core.store.allocate_subnet(&s, req, tags).await?)
        }
    }
}

/// Update a subnet the caller owns: `apply` changes the attributes the request names on the
/// current row (it may run again when a concurrent update wins the race).
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    if_match: Option<i64>,
    apply: impl Fn(&mut Subnet) -> Result<(), DomainError>,
) -> Result<Subnet, DomainError> {
    super::with_retry(if_match, || async {
        let mut s = load_visible(core, who, id).await?;
        policy::enforce(who, "update_subnet", &Target::owned_by(&s.project_id))?;
        super::check_if_match(if_match, s.revision_number)?;
        apply(&mut s)?;
        if !s.enable_dhcp && (s.ipv6_ra_mode.is_some() || s.ipv6_address_mode.is_some()) {
            return Err(invalid_operation(
                "Cannot disable enable_dhcp with ipv6 attributes set",
            ));
        }
        ipam::validate_pools(&s.cidr, &s.allocation_pools, s.gateway_ip)?;
        Ok(core.store.update_subnet(&s).await?)
    })
    .await
}

/// Delete a subnet the caller owns.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let s = load_visible(core, who, id).await?;
    policy::enforce(who, "delete_subnet", &Target::owned_by(&s.project_id))?;
    Ok(core.store.delete_subnet(id).await?)
}
