//! Who may do what: Neutron's default policies (`neutron/conf/policies/{network,subnet,port,
//! router,floatingip,quotas,subnetpool,address_scope,security_group}.py`, tags included) as one table,
//! evaluated for every request by the services.
//!
//! A rule names an action the way Neutron does (`create_port:mac_address`), so a 403 reads
//! like Neutron's ("(create_port:mac_address) is disallowed by policy"). Objects a caller may
//! not see answer 404 instead (Neutron hides what a project does not own); that decision is
//! [`visible`]'s.

use crate::auth::{Identity, Role};
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

/// Whether an action only reads or changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: any role of the project (`reader` included) passes this part.
    Read,
    /// Creates, changes or deletes: needs `member` or `admin` (a `reader` gets 403).
    Write,
}
use Access::{Read, Write};

/// Every action crosspod authorizes: whether it changes anything (a `Write` needs the role
/// `member` or `admin`, so a `reader` only reads, as Neutron's defaults have it; agents' own
/// action is judged by [`Rule::Agent`] alone) and Neutron's default rule.
pub const POLICIES: &[(&str, Access, Rule)] = &[
    // networks
    ("create_network", Write, Rule::Any),
    ("create_network:id", Write, Rule::Admin),
    ("create_network:shared", Write, Rule::Admin),
    ("create_network:router:external", Write, Rule::Admin),
    ("create_network:provider:network_type", Write, Rule::Admin),
    (
        "create_network:provider:physical_network",
        Write,
        Rule::Admin,
    ),
    (
        "create_network:provider:segmentation_id",
        Write,
        Rule::Admin,
    ),
    ("create_network:project_id", Write, Rule::Admin),
    ("update_network", Write, Rule::Owner),
    ("update_network:shared", Write, Rule::Admin),
    ("update_network:router:external", Write, Rule::Admin),
    ("delete_network", Write, Rule::Owner),
    ("get_network_ip_availability", Read, Rule::Admin),
    // subnets
    ("create_subnet", Write, Rule::NetworkOwner),
    ("create_subnet:project_id", Write, Rule::Admin),
    ("update_subnet", Write, Rule::Owner),
    ("delete_subnet", Write, Rule::Owner),
    // subnet pools (seeing one, own or shared, is visibility's)
    ("create_subnetpool", Write, Rule::Any),
    ("create_subnetpool:project_id", Write, Rule::Admin),
    ("create_subnetpool:shared", Write, Rule::Admin),
    ("create_subnetpool:is_default", Write, Rule::Admin),
    ("update_subnetpool", Write, Rule::Owner),
    ("update_subnetpool:is_default", Write, Rule::Admin),
    ("delete_subnetpool", Write, Rule::Owner),
    ("add_prefixes", Write, Rule::Owner),
    ("remove_prefixes", Write, Rule::Owner),
    // address scopes (likewise)
    ("create_address_scope", Write, Rule::Any),
    ("create_address_scope:project_id", Write, Rule::Admin),
    ("create_address_scope:shared", Write, Rule::Admin),
    ("update_address_scope", Write, Rule::Owner),
    ("update_address_scope:shared", Write, Rule::Admin),
    ("delete_address_scope", Write, Rule::Owner),
    // ports
    ("create_port", Write, Rule::NetworkOwnerOrShared),
    ("create_port:project_id", Write, Rule::Admin),
    ("create_port:device_owner", Write, Rule::NetworkOwner),
    ("create_port:mac_address", Write, Rule::NetworkOwner),
    (
        "create_port:fixed_ips:ip_address",
        Write,
        Rule::NetworkOwner,
    ),
    (
        "create_port:fixed_ips:subnet_id",
        Write,
        Rule::NetworkOwnerOrShared,
    ),
    (
        "create_port:port_security_enabled",
        Write,
        Rule::NetworkOwner,
    ),
    ("create_port:binding:host_id", Write, Rule::Admin),
    ("update_port", Write, Rule::OwnerOrNetworkOwner),
    ("update_port:device_owner", Write, Rule::NetworkOwner),
    ("update_port:mac_address", Write, Rule::Admin),
    (
        "update_port:fixed_ips:ip_address",
        Write,
        Rule::NetworkOwner,
    ),
    (
        "update_port:fixed_ips:subnet_id",
        Write,
        Rule::NetworkOwnerOrShared,
    ),
    (
        "update_port:port_security_enabled",
        Write,
        Rule::NetworkOwner,
    ),
    ("update_port:binding:host_id", Write, Rule::Admin),
    ("delete_port", Write, Rule::OwnerOrNetworkOwner),
    // routers
    ("create_router", Write, Rule::Any),
    ("create_router:project_id", Write, Rule::Admin),
    (
        "create_router:external_gateway_info:external_fixed_ips",
        Write,
        Rule::Admin,
    ),
    ("update_router", Write, Rule::Owner),
    (
        "update_router:external_gateway_info:external_fixed_ips",
        Write,
        Rule::Admin,
    ),
    ("delete_router", Write, Rule::Owner),
    ("add_router_interface", Write, Rule::Owner),
    ("remove_router_interface", Write, Rule::Owner),
    // floating IPs
    ("create_floatingip", Write, Rule::Any),
    ("create_floatingip:project_id", Write, Rule::Admin),
    ("create_floatingip:floating_ip_address", Write, Rule::Admin),
    ("update_floatingip", Write, Rule::Owner),
    ("delete_floatingip", Write, Rule::Owner),
    // tags (standard-attr-tag), by Neutron's names since 2025.1 (`<action>_<resource>:tags`,
    // formerly `<action>_<resource>s_tags`); `get` of what the caller may see, as the
    // resource's own visibility (own, shared or external network, network owner's ports)
    ("get_network:tags", Read, Rule::Any),
    ("create_network:tags", Write, Rule::Owner),
    ("update_network:tags", Write, Rule::Owner),
    ("delete_network:tags", Write, Rule::Owner),
    ("get_subnet:tags", Read, Rule::Any),
    ("create_subnet:tags", Write, Rule::OwnerOrNetworkOwner),
    ("update_subnet:tags", Write, Rule::OwnerOrNetworkOwner),
    ("delete_subnet:tags", Write, Rule::OwnerOrNetworkOwner),
    ("get_port:tags", Read, Rule::Any),
    ("create_port:tags", Write, Rule::Owner),
    ("update_port:tags", Write, Rule::Owner),
    ("delete_port:tags", Write, Rule::OwnerOrNetworkOwner),
    ("get_router:tags", Read, Rule::Owner),
    ("create_router:tags", Write, Rule::Owner),
    ("update_router:tags", Write, Rule::Owner),
    ("delete_router:tags", Write, Rule::Owner),
    ("get_floatingip:tags", Read, Rule::Owner),
    ("create_floatingip:tags", Write, Rule::Owner),
    ("update_floatingip:tags", Write, Rule::Owner),
    ("delete_floatingip:tags", Write, Rule::Owner),
    // a shared pool's tags are readable by all (Neutron: `get_subnetpool:tags` is the
    // project's reader or `rule:shared_subnetpools`), changed by its project's members only
    ("get_subnetpool:tags", Read, Rule::Any),
    ("create_subnetpool:tags", Write, Rule::Owner),
    ("update_subnetpool:tags", Write, Rule::Owner),
    ("delete_subnetpool:tags", Write, Rule::Owner),
    // security groups (`neutron/conf/policies/security_group.py`; seeing one is visibility's:
    // a project's own only); putting a port in a group is judged by the group's owner
    ("create_security_group", Write, Rule::Any),
    ("create_security_group:project_id", Write, Rule::Admin),
    ("update_security_group", Write, Rule::Owner),
    ("delete_security_group", Write, Rule::Owner),
    ("create_security_group_rule", Write, Rule::Owner),
    ("delete_security_group_rule", Write, Rule::Owner),
    ("get_security_group:tags", Read, Rule::Owner),
    ("create_security_group:tags", Write, Rule::Owner),
    ("update_security_group:tags", Write, Rule::Owner),
    ("delete_security_group:tags", Write, Rule::Owner),
    // Tricircle's admin API and the agent API
    ("pods", Write, Rule::Admin),
    // Tricircle's admin API by its own rule names (`tricircle/common/policy.py`)
    ("admin_api:jobs:list", Read, Rule::Admin),
    ("admin_api:jobs:schema_list", Read, Rule::Admin),
    ("admin_api:jobs:create", Write, Rule::Admin),
    ("admin_api:jobs:redo", Write, Rule::Admin),
    ("admin_api:jobs:delete", Write, Rule::Admin),
    ("admin_api:routings:list", Read, Rule::Admin),
    ("admin_api:routings:show", Read, Rule::Admin),
    ("admin_api:routings:create", Write, Rule::Admin),
    ("admin_api:routings:put", Write, Rule::Admin),
    ("admin_api:routings:delete", Write, Rule::Admin),
    ("resync", Write, Rule::Admin),
    ("list_agents", Read, Rule::Admin),
    ("get_router_placement", Read, Rule::Admin),
    ("delete_agent", Write, Rule::Admin),
    ("get_agent", Read, Rule::Admin),
    ("update_agent", Write, Rule::Admin),
    ("agent", Write, Rule::Agent),
    // quotas
    ("get_quota", Read, Rule::Owner),
    ("update_quota", Write, Rule::Admin),
    ("delete_quota", Write, Rule::Admin),
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
        .find(|(a, _, _)| *a == action)
        .map(|(_, _, r)| *r)
        .unwrap_or(Rule::Admin)
}

/// Whether `action` writes; an action missing from [`POLICIES`] counts as a write.
pub fn access_of(action: &str) -> Access {
    POLICIES
        .iter()
        .find(|(a, _, _)| *a == action)
        .map(|(_, w, _)| *w)
        .unwrap_or(Write)
}

/// Whether `who` may do `action` on `target`.
pub fn allows(who: &Identity, action: &str, target: &Target) -> bool {
    if who.is_admin() {
        return true;
    }
    let rule = rule_of(action);
    // A write needs `member` (Neutron's project member); a `reader` only reads. The agent
    // API's own action has its role of its own.
    if access_of(action) == Write && rule != Rule::Agent && !who.roles.contains(&Role::Member) {
        return false;
    }
    let me = who.project_id.as_str();
    let net_owner = target.network_owner == Some(me);
    match rule {
        Rule::Any => true,
        Rule::Admin => false,
        Rule::Owner => target.project_id == me,
        Rule::NetworkOwner => net_owner,
        Rule::OwnerOrNetworkOwner => target.project_id == me || net_owner,
        Rule::NetworkOwnerOrShared => net_owner || target.network_shared,
        Rule::Agent => who.roles.contains(&Role::Agent),
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
        // A reader of project a: b's reader too, to attack b's objects.
        let reader = |p: &str| Identity {
            project_id: p.into(),
            roles: vec![Role::Reader],
            node: None,
        };
        let own_net = Target {
            project_id: "a",
            network_owner: Some("a"),
            network_shared: false,
        };
        for (action, access, rule) in POLICIES {
            assert!(allows(&admin, action, &bs), "admin may {action}");
            // Whatever the rule, a reader never writes: not its own objects, not on its own
            // network, not b's; and a reader of b may not write on b's objects either.
            if *access == Access::Write {
                for t in [Target::owned_by("a"), own_net, bs, on_bs_shared] {
                    assert!(!allows(&reader("a"), action, &t), "reader may not {action}");
                }
                assert!(
                    !allows(&reader("b"), action, &bs),
                    "b's reader may not {action}"
                );
            } else if matches!(rule, Rule::Any | Rule::Owner) {
                assert!(
                    allows(&reader("a"), action, &Target::owned_by("a")),
                    "reader may {action}"
                );
                if *rule == Rule::Owner {
                    assert!(
                        !allows(&reader("a"), action, &bs),
                        "a's reader may not {action} b's"
                    );
                }
            }
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
        assert_eq!(access_of("no_such_action"), Access::Write);
        // The writes a member makes every day are among them.
        for w in [
            "create_network",
            "create_port",
            "update_router",
            "add_router_interface",
            "delete_floatingip",
        ] {
            assert_eq!(access_of(w), Access::Write, "{w}");
            assert!(allows(&a, w, &own_net), "a member may {w}");
        }
    }
}
