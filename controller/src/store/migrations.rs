//! Schema migrations, run at start. One SQL dialect serves SQLite and PostgreSQL: TEXT and
//! BIGINT columns only (booleans are 0/1), so one set of statements and one code path.
//!
//! Every allocation's uniqueness is a constraint here: `segment_allocations` primary key
//! (physnet, VLAN; VLAN 0 = flat), `ip_allocations` primary key (network, address),
//! `ports.mac_address` UNIQUE, `pods.region_name` UNIQUE and one central pod (partial index), one floating IP per fixed IP
//! (partial unique index), one default subnet pool per IP version (partial unique index).

/// Ordered migrations: (version, name, statements separated by `;`).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial schema", INITIAL),
    (2, "bridge subnets per project", BRIDGE),
    (
        3,
        "routers, floating IPs, agents, node states, local tags, jobs",
        super::l3::L3_MIGRATION,
    ),
    (4, "change log", super::changes::CHANGES_MIGRATION),
    (5, "quotas", super::quotas::QUOTAS_MIGRATION),
    (6, "router ports", ROUTER_PORTS),
    (7, "tags", super::tags::TAGS_MIGRATION),
    (
        8,
        "address scopes and subnet pools",
        super::subnetpools::SUBNETPOOLS_MIGRATION,
    ),
    (
        9,
        "job log, job versions, Tricircle's job types",
        super::jobs::JOBS_MIGRATION,
    ),
    (11, "agent description and admin state", AGENT_ADMIN),
    (
        12,
        "tags of subnet pools",
        super::tags::SUBNETPOOL_TAGS_MIGRATION,
    ),
    (
        14,
        "security groups, port security groups, allowed address pairs",
        super::security_groups::SECURITY_GROUPS_MIGRATION,
    ),
    (15, "VxLAN VNI allocations", VNI_ALLOCATIONS),
    (
        16,
        "router failover: a node's lost flag",
        super::failover::LOST_MIGRATION,
    ),
    (
        17,
        "router failover: sticky placements",
        super::failover::PLACEMENTS_MIGRATION,
    ),
    (18, "IPv6 address and RA modes of subnets", IPV6_MODES),
];

/// Neutron's `ipv6_ra_mode` and `ipv6_address_mode` of a subnet (`slaac`, `dhcpv6-stateful`,
/// `dhcpv6-stateless`; NULL when unset, as every IPv4 subnet).
const IPV6_MODES: &str = r#"
ALTER TABLE subnets ADD COLUMN ipv6_ra_mode TEXT;
ALTER TABLE subnets ADD COLUMN ipv6_address_mode TEXT
"#;

/// One row per VNI held by a VxLAN network: the primary key makes a VNI unique, the cascade
/// gives it back with its network (Neutron's `ml2_vxlan_allocations`, holding only the taken).
const VNI_ALLOCATIONS: &str = r#"
CREATE TABLE vni_allocations (
    vni BIGINT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE
);
CREATE INDEX vni_allocations_network ON vni_allocations (network_id)
"#;

/// What an admin sets on a node's agent through `/v2.0/agents/{id}`: a description, and
/// `admin_state_up` (a disabled node takes no new port bindings; what is bound stays).
const AGENT_ADMIN: &str = r#"
ALTER TABLE agents ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN admin_state_up BIGINT NOT NULL DEFAULT 1
"#;

/// Which ports are a router's interfaces: only `add_router_interface` writes here, so a port
/// whose `device_owner`/`device_id` merely name a router is not one. One interface per
/// (router, subnet) is the unique key. Existing interface ports are carried over.
const ROUTER_PORTS: &str = r#"
CREATE TABLE router_ports (
    port_id TEXT PRIMARY KEY REFERENCES ports (id) ON DELETE CASCADE,
    router_id TEXT NOT NULL REFERENCES routers (id),
    subnet_id TEXT NOT NULL,
    UNIQUE (router_id, subnet_id)
);
INSERT INTO router_ports (port_id, router_id, subnet_id)
    SELECT p.id, p.device_id, MIN(a.subnet_id) FROM ports p
    JOIN routers r ON r.id = p.device_id
    JOIN ip_allocations a ON a.port_id = p.id
    WHERE p.device_owner = 'network:router_interface'
    GROUP BY p.id, p.device_id
    ON CONFLICT DO NOTHING
"#;

/// One /24 of `bridge_cidr` per project (its east-west bridge network), unique both ways.
const BRIDGE: &str = r#"
CREATE TABLE bridge_allocations (
    project_id TEXT PRIMARY KEY,
    cidr TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
)
"#;

const INITIAL: &str = r#"
CREATE TABLE pods (
    pod_id TEXT PRIMARY KEY,
    region_name TEXT NOT NULL UNIQUE,
    az_name TEXT NOT NULL DEFAULT '',
    pod_az_name TEXT NOT NULL DEFAULT '',
    dc_name TEXT NOT NULL DEFAULT '',
    is_central BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX pods_one_central ON pods (is_central) WHERE is_central = 1;
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    admin_state_up BIGINT NOT NULL,
    status TEXT NOT NULL,
    shared BIGINT NOT NULL,
    external BIGINT NOT NULL,
    mtu BIGINT NOT NULL,
    port_security_enabled BIGINT NOT NULL,
    network_type TEXT NOT NULL,
    physical_network TEXT,
    segmentation_id BIGINT,
    az_hints TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX networks_project ON networks (project_id);
CREATE TABLE segment_allocations (
    physical_network TEXT NOT NULL,
    segmentation_id BIGINT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    PRIMARY KEY (physical_network, segmentation_id)
);
CREATE INDEX segment_allocations_network ON segment_allocations (network_id);
CREATE TABLE subnets (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    ip_version BIGINT NOT NULL,
    cidr TEXT NOT NULL,
    gateway_ip TEXT,
    allocation_pools TEXT NOT NULL,
    enable_dhcp BIGINT NOT NULL,
    dns_nameservers TEXT NOT NULL DEFAULT '[]',
    host_routes TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX subnets_network ON subnets (network_id);
CREATE TABLE ports (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id),
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    admin_state_up BIGINT NOT NULL,
    status TEXT NOT NULL,
    mac_address TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL DEFAULT '',
    device_owner TEXT NOT NULL DEFAULT '',
    host_id TEXT NOT NULL DEFAULT '',
    port_security_enabled BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX ports_network ON ports (network_id);
CREATE INDEX ports_project ON ports (project_id);
CREATE TABLE ip_allocations (
    network_id TEXT NOT NULL,
    ip_address TEXT NOT NULL,
    subnet_id TEXT NOT NULL REFERENCES subnets (id),
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    PRIMARY KEY (network_id, ip_address)
);
CREATE INDEX ip_allocations_port ON ip_allocations (port_id);
CREATE INDEX ip_allocations_subnet ON ip_allocations (subnet_id)
"#;

/// The statements of one migration.
pub fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|s| !s.is_empty())
}
