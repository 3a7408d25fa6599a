//! Security groups and their rules (Neutron's `security-group` extension): a project sees
//! and changes only its own; each project gets a `default` group on first use, which can be
//! neither renamed nor (except by an admin) deleted. A rule's remote group must be a group of
//! the same project, so everything a node enforces for one group stays within one project
//! (the planner's incremental scope relies on it).

use ipnet::IpNet;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, ErrorClass};
use crate::service::policy::{self, Target};
use crate::store::security_groups::{fingerprint, PROTOCOLS};
use crate::store::{NewSecurityGroup, Scope, SecurityGroup, SecurityGroupRule};

fn not_found(id: &str) -> DomainError {
    DomainError::not_found("Security group", "SecurityGroupNotFound", id)
}

fn bad(kind: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::new(ErrorClass::BadRequest, kind, message)
}

/// Protocols whose rules may name a port range.
const PORTED: &[u8] = &[6, 17, 132, 136, 33];

/// A protocol as the client named it: `None` (any) for absent, `any`, or empty; else the
/// lower-case name or the decimal number, and its number.
pub fn parse_protocol(p: Option<&str>) -> Result<Option<(String, u8)>, DomainError> {
    let Some(p) = p else { return Ok(None) };
    let lower = p.trim().to_ascii_lowercase();
    if lower.is_empty() || lower == "any" {
        return Ok(None);
    }
    if let Some((_, n)) = PROTOCOLS.iter().find(|(name, _)| *name == lower) {
        return Ok(Some((lower, *n)));
    }
    if let Ok(n) = lower.parse::<u8>() {
        return Ok(Some((n.to_string(), n)));
    }
    let names: Vec<&str> = PROTOCOLS.iter().map(|(n, _)| *n).collect();
    Err(bad(
        "SecurityGroupRuleInvalidProtocol",
        format!(
            "Security group rule protocol {p} not supported. Only protocol values [{}] and integer representations [0 to 255] are supported.",
            names.join(", ")
        ),
    ))
}

/// What a rule create asks for, as parsed from the body.
#[derive(Debug, Clone, Default)]
pub struct RuleRequest {
    /// Owner named in the body, if any.
    pub project_id: Option<String>,
    /// Group.
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` (default) or `IPv6`.
    pub ethertype: Option<String>,
    /// Protocol as given.
    pub protocol: Option<String>,
    /// Port range / ICMP type.
    pub port_range_min: Option<i64>,
    /// Port range / ICMP code.
    pub port_range_max: Option<i64>,
    /// Remote prefix as given.
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    pub remote_group_id: Option<String>,
    /// Description.
    pub description: String,
}

/// Validate and normalise a rule as Neutron does (without the group's existence or owner):
/// direction, ethertype, protocol, port range or ICMP type/code, the prefix's family, and
/// prefix and remote group exclusive. The prefix is kept as given (a bare address as a host
/// prefix); duplicates are judged on its network address, as Neutron's `normalized_cidr`.
pub fn normalise(req: &RuleRequest, project: &str) -> Result<SecurityGroupRule, DomainError> {
    if req.direction != "ingress" && req.direction != "egress" {
        return Err(DomainError::invalid_input(
            "direction",
            format!("'{}' is not in ['ingress', 'egress']", req.direction),
        ));
    }
    let ethertype = match req.ethertype.as_deref().unwrap_or("IPv4") {
        e if e.eq_ignore_ascii_case("ipv4") => "IPv4",
        e if e.eq_ignore_ascii_case("ipv6") => "IPv6",
        e => {
            return Err(bad(
                "SecurityGroupRuleInvalidEtherType",
                format!(
                    "Security group rule for ethertype '{e}' not supported. Allowed values are ['IPv4', 'IPv6']."
                ),
            ))
        }
    };
    let proto = parse_protocol(req.protocol.as_deref())?;
    if let Some((name, 58)) = &proto {
        if ethertype == "IPv4" {
            return Err(bad(
                "SecurityGroupEthertypeConflictWithProtocol",
                format!("Invalid ethertype {ethertype} for protocol {name}."),
            ));
        }
    }
    let (min, max) = (req.port_range_min, req.port_range_max);
    match &proto {
        None if min.is_some() || max.is_some() => {
            return Err(bad(
                "SecurityGroupProtocolRequiredWithPorts",
                "Must also specify protocol if port range is given.",
            ))
        }
        Some((_, n @ (1 | 58))) => {
            for (field, attr, v) in [
                ("type", "port_range_min", min),
                ("code", "port_range_max", max),
            ] {
                if let Some(v) = v {
                    if !(0..=255).contains(&v) {
                        return Err(bad(
                            "SecurityGroupInvalidIcmpValue",
                            format!(
                                "Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."
                            ),
                        ));
                    }
                }
            }
            if min.is_none() && max.is_some() {
                return Err(bad(
                    "SecurityGroupMissingIcmpType",
                    format!(
                        "ICMP code (port-range-max) {} is provided but ICMP type (port-range-min) is missing.",
                        max.unwrap_or_default()
                    ),
                ));
            }
            let _ = n;
        }
        Some((name, n)) if min.is_some() || max.is_some() => {
            if !PORTED.contains(n) {
                return Err(bad(
                    "SecurityGroupInvalidProtocolForPort",
                    format!(
                        "Invalid protocol {name} for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP."
                    ),
                ));
            }
            for v in [min, max].into_iter().flatten() {
                if !(1..=65535).contains(&v) {
                    return Err(bad(
                        "SecurityGroupInvalidPortValue",
                        format!("Invalid value for port {v}"),
                    ));
                }
            }
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(bad(
                        "SecurityGroupInvalidPortRange",
                        "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                    ));
                }
            }
        }
        _ => {}
    }
    // TCP/UDP with one end only: the range is that one port (Neutron's canonical range).
    let (min, max) = match (&proto, min, max) {
        (Some((_, n)), Some(a), None) if PORTED.contains(n) => (Some(a), Some(a)),
        (Some((_, n)), None, Some(b)) if PORTED.contains(n) => (Some(b), Some(b)),
        _ => (min, max),
    };
    if req.remote_ip_prefix.is_some() && req.remote_group_id.is_some() {
        return Err(bad(
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
            "Only remote_ip_prefix or remote_group_id may be provided.",
        ));
    }
    let prefix = match &req.remote_ip_prefix {
        None => None,
        Some(p) => {
            let net: IpNet = p
                .parse()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    DomainError::invalid_input(
                        "remote_ip_prefix",
                        format!("'{p}' is not a valid IP prefix"),
                    )
                })?;
            if net.addr().is_ipv4() != (ethertype == "IPv4") {
                return Err(bad(
                    "SecurityGroupRuleParameterConflict",
                    format!("Conflicting value ethertype {ethertype} for CIDR {p}"),
                ));
            }
            Some(net)
        }
    };
    let mut r = SecurityGroupRule {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.to_string(),
        security_group_id: req.security_group_id.clone(),
        direction: req.direction.clone(),
        ethertype: ethertype.into(),
        protocol: proto.as_ref().map(|(n, _)| n.clone()),
        port_range_min: min,
        port_range_max: max,
        remote_ip_prefix: prefix.map(|p| p.to_string()),
        remote_group_id: req.remote_group_id.clone(),
        description: req.description.clone(),
        fingerprint: String::new(),
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 1,
    };
    // Duplicates are judged on the prefix's network (Neutron's `normalized_cidr`).
    let normal = SecurityGroupRule {
        remote_ip_prefix: prefix.map(|p| p.trunc().to_string()),
        ..r.clone()
    };
    r.fingerprint = fingerprint(&normal, proto.map(|(_, n)| n));
    Ok(r)
}

/// Make sure `project` has its default group (its first list or port makes it).
pub async fn ensure_default(core: &Core, project: &str) -> Result<String, DomainError> {
    Ok(core.store.ensure_default_security_group(project).await?)
}

/// A group the caller may see (404 otherwise).
pub async fn load_visible(
    core: &Core,
    who: &Identity,
    id: &str,
) -> Result<SecurityGroup, DomainError> {
    let g = core.store.get_security_group(id).await?;
    if !policy::visible(who, &g.project_id) {
        return Err(not_found(id));
    }
    Ok(g)
}

/// The groups the caller may see; its project's default group is made first.
pub async fn list(core: &Core, who: &Identity) -> Result<Vec<SecurityGroup>, DomainError> {
    if !who.project_id.is_empty() && who.node.is_none() {
        ensure_default(core, &who.project_id).await?;
    }
    let scope = Scope {
        project_id: (!who.is_admin()).then(|| who.project_id.clone()),
    };
    Ok(core.store.list_security_groups(&scope).await?)
}

/// Create a group (with Neutron's two egress rules); `default` is the project's own.
pub async fn create(
    core: &Core,
    who: &Identity,
    g: &NewSecurityGroup,
) -> Result<SecurityGroup, DomainError> {
    let t = Target::owned_by(&g.project_id);
    policy::enforce(who, "create_security_group", &t)?;
    if g.project_id != who.project_id {
        policy::enforce(who, "create_security_group:project_id", &t)?;
    }
    ensure_default(core, &g.project_id).await?;
    if g.name == "default" {
        return Err(DomainError::conflict(
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        ));
    }
    let sg = core
        .store
        .create_security_group(g, &core.store.quota_defaults())
        .await?;
    tracing::info!(group = %sg.id, project = %sg.project_id, "security group created");
    Ok(sg)
}

/// What a group update names.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// New name (not of the default group).
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// Update a group the caller owns.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    u: &Update,
    if_match: Option<i64>,
) -> Result<SecurityGroup, DomainError> {
    super::with_retry(if_match, || async {
        let mut g = load_visible(core, who, id).await?;
        policy::enforce(
            who,
            "update_security_group",
            &Target::owned_by(&g.project_id),
        )?;
        super::check_if_match(if_match, g.revision_number)?;
        if let Some(n) = &u.name {
            if g.is_default && *n != g.name {
                return Err(DomainError::conflict(
                    "SecurityGroupCannotUpdateDefault",
                    "Updating default security group not allowed.",
                ));
            }
            if !g.is_default && n == "default" {
                return Err(DomainError::conflict(
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                ));
            }
            g.name = n.clone();
        }
        if let Some(d) = &u.description {
            g.description = d.clone();
        }
        Ok(core.store.update_security_group(&g).await?)
    })
    .await
}

/// Delete a group the caller owns: not the default one (admins excepted, as Neutron), not
/// while a port is in it.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let g = load_visible(core, who, id).await?;
    policy::enforce(
        who,
        "delete_security_group",
        &Target::owned_by(&g.project_id),
    )?;
    if g.is_default && !who.is_admin() {
        return Err(DomainError::conflict(
            "SecurityGroupCannotRemoveDefault",
            "Insufficient rights for removing default security group.",
        ));
    }
    Ok(core.store.delete_security_group(id).await?)
}

/// The rules of the groups the caller may see.
pub async fn list_rules(
    core: &Core,
    who: &Identity,
) -> Result<Vec<SecurityGroupRule>, DomainError> {
    let mut out: Vec<SecurityGroupRule> = list(core, who)
        .await?
        .into_iter()
        .flat_map(|g| g.rules)
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A rule the caller may see.
pub async fn load_rule(
    core: &Core,
    who: &Identity,
    id: &str,
) -> Result<SecurityGroupRule, DomainError> {
    let r = core.store.get_security_group_rule(id).await?;
    if !policy::visible(who, &r.project_id) {
        return Err(DomainError::not_found(
            "Security group rule",
            "SecurityGroupRuleNotFound",
            id,
        ));
    }
    Ok(r)
}

/// Create a rule in a group the caller owns; its remote group must be one the caller sees,
/// of the same project.
pub async fn create_rule(
    core: &Core,
    who: &Identity,
    req: &RuleRequest,
) -> Result<SecurityGroupRule, DomainError> {
    let g = load_visible(core, who, &req.security_group_id).await?;
    let t = Target::owned_by(&g.project_id);
    policy::enforce(who, "create_security_group_rule", &t)?;
    if let Some(p) = &req.project_id {
        if *p != g.project_id {
            return Err(DomainError::invalid_input(
                "project_id",
                format!(
                    "'{p}' is not the project of security group {} ({})",
                    g.id, g.project_id
                ),
            ));
        }
    }
    let rule = normalise(req, &g.project_id)?;
    if let Some(rg) = &req.remote_group_id {
        let remote = load_visible(core, who, rg).await?;
        if remote.project_id != g.project_id {
            return Err(not_found(rg));
        }
    }
    let r = core
        .store
        .create_security_group_rule(&rule, &core.store.quota_defaults())
        .await?;
    tracing::info!(rule = %r.id, group = %r.security_group_id, "security group rule created");
    Ok(r)
}

/// Delete a rule of a group the caller owns.
pub async fn delete_rule(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let r = load_rule(core, who, id).await?;
    policy::enforce(
        who,
        "delete_security_group_rule",
        &Target::owned_by(&r.project_id),
    )?;
    Ok(core.store.delete_security_group_rule(id).await?)
}

/// The groups a port of `project` may be put in, as named by `who`: each visible to the
/// caller and the port's project's own (404 `SecurityGroupNotFound` otherwise); sorted,
/// duplicates dropped.
pub async fn resolve_for_port(
    core: &Core,
    who: &Identity,
    project: &str,
    ids: &[String],
) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::new();
    for id in ids {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(not_found(id));
        }
        let g = load_visible(core, who, id).await?;
        if g.project_id != project {
            return Err(not_found(id));
        }
        out.push(g.id);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(proto: Option<&str>, min: Option<i64>, max: Option<i64>) -> RuleRequest {
        RuleRequest {
            security_group_id: "g".into(),
            direction: "ingress".into(),
            protocol: proto.map(str::to_string),
            port_range_min: min,
            port_range_max: max,
            ..RuleRequest::default()
        }
    }

    fn kind(r: Result<SecurityGroupRule, DomainError>) -> &'static str {
        r.err().map(|e| e.kind).unwrap_or("ok")
    }

    #[test]
    fn rules_are_validated_as_neutron_does() {
        let ok = normalise(&req(Some("TCP"), Some(22), None), "p").unwrap();
        assert_eq!(ok.protocol.as_deref(), Some("tcp"));
        assert_eq!((ok.port_range_min, ok.port_range_max), (Some(22), Some(22)));
        assert_eq!(
            kind(normalise(&req(Some("tcp"), Some(80), Some(22)), "p")),
            "SecurityGroupInvalidPortRange"
        );
        assert_eq!(
            kind(normalise(&req(Some("tcp"), Some(0), Some(22)), "p")),
            "SecurityGroupInvalidPortValue"
        );
        assert_eq!(
            kind(normalise(&req(None, Some(1), Some(2)), "p")),
            "SecurityGroupProtocolRequiredWithPorts"
        );
        assert_eq!(
            kind(normalise(&req(Some("gre"), Some(1), Some(2)), "p")),
            "SecurityGroupInvalidProtocolForPort"
        );
        assert_eq!(
            kind(normalise(&req(Some("icmp"), Some(8), Some(256)), "p")),
            "SecurityGroupInvalidIcmpValue"
        );
        assert_eq!(
            kind(normalise(&req(Some("icmp"), None, Some(0)), "p")),
            "SecurityGroupMissingIcmpType"
        );
        assert_eq!(
            kind(normalise(&req(Some("bogus"), None, None), "p")),
            "SecurityGroupRuleInvalidProtocol"
        );
        assert_eq!(
            kind(normalise(&req(Some("ipv6-icmp"), None, None), "p")),
            "SecurityGroupEthertypeConflictWithProtocol"
        );
        let mut r = req(None, None, None);
        r.remote_ip_prefix = Some("10.1.2.3/16".into());
        let given = normalise(&r, "p").unwrap();
        assert_eq!(given.remote_ip_prefix.as_deref(), Some("10.1.2.3/16"));
        r.remote_ip_prefix = Some("10.1.0.0/16".into());
        assert_eq!(normalise(&r, "p").unwrap().fingerprint, given.fingerprint);
        r.remote_ip_prefix = Some("10.1.2.3".into());
        assert_eq!(
            normalise(&r, "p").unwrap().remote_ip_prefix.as_deref(),
            Some("10.1.2.3/32")
        );
        r.ethertype = Some("IPv6".into());
        assert_eq!(
            kind(normalise(&r, "p")),
            "SecurityGroupRuleParameterConflict"
        );
        r.ethertype = None;
        r.remote_group_id = Some("x".into());
        assert_eq!(
            kind(normalise(&r, "p")),
            "SecurityGroupRemoteGroupAndRemoteIpPrefix"
        );
        // "6" and "tcp" are one rule.
        let a = normalise(&req(Some("6"), Some(22), Some(22)), "p").unwrap();
        assert_eq!(a.fingerprint, ok.fingerprint);
        assert_eq!(a.protocol.as_deref(), Some("6"));
        assert_eq!(
            kind(normalise(&req(Some("256"), None, None), "p")),
            "SecurityGroupRuleInvalidProtocol"
        );
    }
}
