//! Who may do what: Neutron's default policies (`neutron/conf/policies/{network,subnet,port,
//! router,floatingip,quotas,subnetpool,address_scope}.py`, tags included) as one table,
//! evaluated for every request by the services.
//!
//! A rule names an action the way Neutron does (`create_port:mac_address`), so a 403 reads
//! like Neutron's ("(create_port:mac_address) is disallowed by policy"). Objects a caller may
//! not see answer 404 instead (Neutron hides what a project does not own); that decision is
//! [`visible`]'s.

use crate::auth::Identity;
use crate::error::DomainError;

/// The rule of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any authenticated caller (the object's owner is still checked by visibility).
    Any,
    /// Admins only.
    Admin,
    /// Admin, or the project owning the object.
    Owner,
    /// Admin, or the project owning the network the object is on.
    NetworkOwner,
    /// Admin, the object's project, or the network's project.
    OwnerOrNetworkOwner,
    /// Admin, the network's project, or anyone when the network is shared.
    NetworkOwnerOrShared,
    /// Admin, or a node agent (role `agent`); which node it speaks for is judged apart.
    Agent,
}

/// Every action crosspod authorizes, with Neutron's default rule.
pub const POLICIES: &[(&str, Rule)] = &[
    // networks
    ("create_network", Rule::Any),
    ("create_network:id", Rule::Admin),
    ("create_network:shared", Rule::Admin),
    ("create_network:router:external", Rule::Admin),
    ("create_network:provider:network_type", Rule::Admin),
    ("create_network:provider:physical_network", Rule::Admin),
    ("create_network:provider:segmentation_id", Rule::Admin),
    ("create_network:project_id", Rule::Admin),
    ("update_network", Rule::Owner),
    ("update_network:shared", Rule::Admin),
    ("update_network:router:external", Rule::Admin),
    ("delete_network", Rule::Owner),
    ("get_network_ip_availability", Rule::Admin),
    // subnets
    ("create_subnet", Rule::NetworkOwner),
    ("create_subnet:project_id", Rule::Admin),
    ("update_subnet", Rule::Owner),
    ("delete_subnet", Rule::Owner),
    // subnet pools (seeing one, own or shared, is visibility's)
    ("create_subnetpool", Rule::Any),
    ("create_subnetpool:project_id", Rule::Admin),
    ("create_subnetpool:shared", Rule::Admin),
    ("create_subnetpool:is_default", Rule::Admin),
    ("update_subnetpool", Rule::Owner),
    ("update_subnetpool:is_default", Rule::Admin),
    ("delete_subnetpool", Rule::Owner),
    ("add_prefixes", Rule::Owner),
    ("remove_prefixes", Rule::Owner),
    // address scopes (likewise)
    ("create_address_scope", Rule::Any),
    ("create_address_scope:project_id", Rule::Admin),
    ("create_address_scope:shared", Rule::Admin),
    ("update_address_scope", Rule::Owner),
    ("update_address_scope:shared", Rule::Admin),
    ("delete_address_scope", Rule::Owner),
    // ports
    ("create_port", Rule::NetworkOwnerOrShared),
    ("create_port:project_id", Rule::Admin),
    ("create_port:device_owner", Rule::NetworkOwner),
    ("create_port:mac_address", Rule::NetworkOwner),
    ("create_port:fixed_ips:ip_address", Rule::NetworkOwner),
    (
        "create_port:fixed_ips:subnet_id",
        Rule::NetworkOwnerOrShared,
    ),
    ("create_port:port_security_enabled", Rule::NetworkOwner),
    ("create_port:binding:host_id", Rule::Admin),
    ("update_port", Rule::OwnerOrNetworkOwner),
    ("update_port:device_owner", Rule::NetworkOwner),
    ("update_port:mac_address", Rule::Admin),
    ("update_port:fixed_ips:ip_address", Rule::NetworkOwner),
    (
        "update_port:fixed_ips:subnet_id",
        Rule::NetworkOwnerOrShared,
    ),
    ("update_port:port_security_enabled", Rule::NetworkOwner),
    ("update_port:binding:host_id", Rule::Admin),
    ("delete_port", Rule::OwnerOrNetworkOwner),
    // routers
    ("create_router", Rule::Any),
    ("create_router:project_id", Rule::Admin),
    (
        "create_router:external_gateway_info:external_fixed_ips",
        Rule::Admin,
    ),
    ("update_router", Rule::Owner),
    (
        "update_router:external_gateway_info:external_fixed_ips",
        Rule::Admin,
    ),
    ("delete_router", Rule::Owner),
    ("add_router_interface", Rule::Owner),
    ("remove_router_interface", Rule::Owner),
    // floating IPs
    ("create_floatingip", Rule::Any),
    ("create_floatingip:project_id", Rule::Admin),
    ("create_floatingip:floating_ip_address", Rule::Admin),
    ("update_floatingip", Rule::Owner),
    ("delete_floatingip", Rule::Owner),
    // tags (standard-attr-tag), by Neutron's names since 2025.1 (`<action>_<resource>:tags`,
    // formerly `<action>_<resource>s_tags`); `get` of what the caller may see, as the
    // resource's own visibility (own, shared or external network, network owner's ports)
    ("get_network:tags", Rule::Any),
    ("create_network:tags", Rule::Owner),
    ("update_network:tags", Rule::Owner),
    ("delete_network:tags", Rule::Owner),
    ("get_subnet:tags", Rule::Any),
    ("create_subnet:tags", Rule::OwnerOrNetworkOwner),
    ("update_subnet:tags", Rule::OwnerOrNetworkOwner),
    ("delete_subnet:tags", Rule::OwnerOrNetworkOwner),
    ("get_port:tags", Rule::Any),
    ("create_port:tags", Rule::Owner),
    ("update_port:tags", Rule::Owner),
    ("delete_port:tags", Rule::OwnerOrNetworkOwner),
    ("get_router:tags", Rule::Owner),
    ("create_router:tags", Rule::Owner),
    ("update_router:tags", Rule::Owner),
    ("delete_router:tags", Rule::Owner),
    ("get_floatingip:tags", Rule::Owner),
    ("create_floatingip:tags", Rule::Owner),
    ("update_floatingip:tags", Rule::Owner),
    ("delete_floatingip:tags", Rule::Owner),
    // Tricircle's admin API and the agent API
    ("pods", Rule::Admin),
    // Tricircle's admin API by its own rule names (`tricircle/common/policy.py`)
    ("admin_api:jobs:list", Rule::Admin),
    ("admin_api:jobs:schema_list", Rule::Admin),
    ("admin_api:jobs:create", Rule::Admin),
    ("admin_api:jobs:redo", Rule::Admin),
    ("admin_api:jobs:delete", Rule::Admin),
    ("admin_api:routings:list", Rule::Admin),
    ("admin_api:routings:show", Rule::Admin),
    ("admin_api:routings:create", Rule::Admin),
    ("admin_api:routings:put", Rule::Admin),
    ("admin_api:routings:delete", Rule::Admin),
    ("resync", Rule::Admin),
    ("list_agents", Rule::Admin),
    ("delete_agent", Rule::Admin),
    ("get_agent", Rule::Admin),
    ("update_agent", Rule::Admin),
    ("agent", Rule::Agent),
    // quotas
    ("get_quota", Rule::Owner),
    ("update_quota", Rule::Admin),
    ("delete_quota", Rule::Admin),
];

/// What a rule is judged against: the object's project, and the network it is on (for
/// ports, subnets and their attributes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The object's project (the new object's owner on create).
    pub project_id: &'a str,
    /// The project owning the network the object is on, if any.
    pub network_owner: Option<&'a str>,
    /// Whether that network is shared.
    pub network_shared: bool,
}

impl<'a> Target<'a> {
    /// An object owned by `project_id`, on no network.
    pub fn owned_by(project_id: &'a str) -> Self {
        Target {
            project_id,
            ..Target::default()
        }
    }
}

/// The rule of `action`; an action missing from [`POLICIES`] is admin-only (deny by default).
pub fn rule_of(action: &str) -> Rule {
    POLICIES
        .iter()
        .find(|(a, _)| *a == action)
        .map(|(_, r)| *r)
        .unwrap_or(Rule::Admin)
}

/// Whether `who` may do `action` on `target`.
pub fn allows(who: &Identity, action: &str, target: &Target) -> bool {
    if who.is_admin() {
        return true;
    }
    let me = who.project_id.as_str();
    let net_owner = target.network_owner == Some(me);
    match rule_of(action) {
        Rule::Any => true,
        Rule::Admin => false,
        Rule::Owner => target.project_id == me,
        Rule::NetworkOwner => net_owner,
        Rule::OwnerOrNetworkOwner => target.project_id == me || net_owner,
        Rule::NetworkOwnerOrShared => net_owner || target.network_shared,
        Rule::Agent => who.roles.contains(&crate::auth::Role::Agent),
    }
}

/// `Ok` when `who` may do `action` on `target`, else 403 `PolicyNotAuthorized` naming it.
pub fn enforce(who: &Identity, action: &str, target: &Target) -> Result<(), DomainError> {
    if allows(who, action, target) {
        Ok(())
    } else {
        tracing::info!(project = %who.project_id, action, "refused by policy");
        Err(DomainError::forbidden(action))
    }
}

/// Whether `who` may see an object owned by `project_id` (others' objects answer 404).
pub fn visible(who: &Identity, project_id: &str) -> bool {
    who.owns(project_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn member(p: &str) -> Identity {
        Identity {
            project_id: p.into(),
            roles: vec![Role::Member],
            node: None,
        }
    }

    #[test]
    fn every_rule_with_two_projects() {
        let a = member("a");
        let admin = Identity {
            project_id: "x".into(),
            roles: vec![Role::Admin],
            node: None,
        };
        let on_bs_net = Target {
            project_id: "a",
            network_owner: Some("b"),
            network_shared: false,
        };
        let on_bs_shared = Target {
            network_shared: true,
            ..on_bs_net
        };
        let bs = Target::owned_by("b");
        for (action, rule) in POLICIES {
            assert!(allows(&admin, action, &bs), "admin may {action}");
            let (own, foreign) = (Target::owned_by("a"), bs);
            match rule {
                Rule::Any => assert!(allows(&a, action, &foreign)),
                Rule::Admin => {
                    assert!(!allows(&a, action, &own), "{action} is admin-only")
                }
                Rule::Owner => {
                    assert!(allows(&a, action, &own));
                    assert!(!allows(&a, action, &foreign), "{action} on b's object");
                }
                Rule::NetworkOwner => {
                    assert!(!allows(&a, action, &on_bs_net), "{action} on b's network");
                    assert!(
                        !allows(&a, action, &on_bs_shared),
                        "{action} on b's shared network"
                    );
                }
                Rule::OwnerOrNetworkOwner => {
                    assert!(allows(&a, action, &on_bs_net));
                    assert!(!allows(
                        &a,
                        action,
                        &Target {
                            project_id: "b",
                            ..on_bs_net
                        }
                    ));
                }
                Rule::NetworkOwnerOrShared => {
                    assert!(!allows(&a, action, &on_bs_net));
                    assert!(allows(&a, action, &on_bs_shared));
                }
                Rule::Agent => {
                    assert!(!allows(&a, action, &own), "{action} needs role agent");
                    let agent = Identity {
                        project_id: "svc".into(),
                        roles: vec![Role::Agent],
                        node: Some("n1".into()),
                    };
                    assert!(allows(&agent, action, &foreign));
                }
            }
        }
        assert_eq!(rule_of("no_such_action"), Rule::Admin);
    }
}
