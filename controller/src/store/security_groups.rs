//! Security groups, their rules, and which groups each port is in.
//!
//! Rules that must hold under concurrency are constraints: one default group per project
//! (partial unique index, so two first requests of a project race to one group), one rule per
//! (group, normalised content) (`fingerprint`, so two identical creates give one rule and one
//! `SecurityGroupRuleExists`), and a group with ports cannot be deleted (the port relation's
//! foreign key; the count before the delete only gives the friendlier message).

use std::collections::BTreeMap;

use sqlx::any::AnyRow;

use super::{col_b, col_i, col_oi, col_os, col_s, now, retrying, Scope, Store, WriteTx};
use crate::error::{DomainError, StoreError};

/// Migration 14: groups, rules, port membership, and allowed address pairs (a JSON list on
/// the port: always read and written with it); and the tags table rebuilt (as migration 12
/// did) so groups carry tags too.
pub const SECURITY_GROUPS_MIGRATION: &str = r#"
CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    is_default BIGINT NOT NULL DEFAULT 0,
    stateful BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX security_groups_project ON security_groups (project_id);
CREATE UNIQUE INDEX security_groups_one_default ON security_groups (project_id) WHERE is_default = 1;
CREATE TABLE security_group_rules (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    direction TEXT NOT NULL,
    ethertype TEXT NOT NULL,
    protocol TEXT,
    port_range_min BIGINT,
    port_range_max BIGINT,
    remote_ip_prefix TEXT,
    remote_group_id TEXT REFERENCES security_groups (id) ON DELETE CASCADE,
    description TEXT NOT NULL DEFAULT '',
    fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1,
    UNIQUE (security_group_id, fingerprint)
);
CREATE INDEX security_group_rules_remote ON security_group_rules (remote_group_id);
CREATE INDEX security_group_rules_project ON security_group_rules (project_id);
CREATE TABLE port_security_groups (
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id),
    PRIMARY KEY (port_id, security_group_id)
);
CREATE INDEX port_security_groups_group ON port_security_groups (security_group_id);
ALTER TABLE ports ADD COLUMN allowed_address_pairs TEXT NOT NULL DEFAULT '[]';
CREATE TABLE tags_new (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    network_id TEXT REFERENCES networks (id) ON DELETE CASCADE,
    subnet_id TEXT REFERENCES subnets (id) ON DELETE CASCADE,
    port_id TEXT REFERENCES ports (id) ON DELETE CASCADE,
    router_id TEXT REFERENCES routers (id) ON DELETE CASCADE,
    floatingip_id TEXT REFERENCES floatingips (id) ON DELETE CASCADE,
    subnetpool_id TEXT REFERENCES subnetpools (id) ON DELETE CASCADE,
    security_group_id TEXT REFERENCES security_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (resource_type, resource_id, tag),
    CHECK ((CASE WHEN network_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN subnet_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN port_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN router_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN floatingip_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN subnetpool_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN security_group_id IS NULL THEN 0 ELSE 1 END) = 1),
    CHECK ((resource_type = 'network' AND network_id IS NOT NULL AND network_id = resource_id)
        OR (resource_type = 'subnet' AND subnet_id IS NOT NULL AND subnet_id = resource_id)
        OR (resource_type = 'port' AND port_id IS NOT NULL AND port_id = resource_id)
        OR (resource_type = 'router' AND router_id IS NOT NULL AND router_id = resource_id)
        OR (resource_type = 'floatingip' AND floatingip_id IS NOT NULL AND floatingip_id = resource_id)
        OR (resource_type = 'subnetpool' AND subnetpool_id IS NOT NULL AND subnetpool_id = resource_id)
        OR (resource_type = 'security_group' AND security_group_id IS NOT NULL AND security_group_id = resource_id))
);
INSERT INTO tags_new (resource_type, resource_id, tag, network_id, subnet_id, port_id, router_id, floatingip_id, subnetpool_id)
    SELECT resource_type, resource_id, tag, network_id, subnet_id, port_id, router_id, floatingip_id, subnetpool_id FROM tags;
DROP TABLE tags;
ALTER TABLE tags_new RENAME TO tags;
CREATE INDEX tags_network ON tags (network_id);
CREATE INDEX tags_subnet ON tags (subnet_id);
CREATE INDEX tags_port ON tags (port_id);
CREATE INDEX tags_router ON tags (router_id);
CREATE INDEX tags_floatingip ON tags (floatingip_id);
CREATE INDEX tags_subnetpool ON tags (subnetpool_id);
CREATE INDEX tags_security_group ON tags (security_group_id)
"#;

/// Neutron's protocol names and their numbers.
pub const PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("icmpv6", 58),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// The number of a protocol as stored (a lower-case name or a decimal number).
pub fn protocol_number(p: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(name, _)| *name == p)
        .map(|(_, n)| *n)
        .or_else(|| p.parse().ok())
}

/// A security group with its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name (`default` for the project's default group).
    pub name: String,
    /// Description.
    pub description: String,
    /// The project's default group (made on first use, never deleted or renamed).
    pub is_default: bool,
    /// Always true: crosspod enforces with conntrack.
    pub stateful: bool,
    /// Rules, by id.
    pub rules: Vec<SecurityGroupRule>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Revision (bumped by rule changes too, as Neutron's).
    pub revision_number: i64,
}

/// A rule as stored: `protocol` as the client named it (lower-case name or number),
/// `remote_ip_prefix` normalised to its network address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupRule {
    /// UUID.
    pub id: String,
    /// Owner (the group's).
    pub project_id: String,
    /// Group.
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// Protocol name or number, `None` for any.
    pub protocol: Option<String>,
    /// Lowest port, or ICMP type.
    pub port_range_min: Option<i64>,
    /// Highest port, or ICMP code.
    pub port_range_max: Option<i64>,
    /// Remote prefix.
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    pub remote_group_id: Option<String>,
    /// Description.
    pub description: String,
    /// The normalised content duplicates are judged by (protocol as a number).
    pub fingerprint: String,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Revision.
    pub revision_number: i64,
}

/// A new group (its rules are written with it).
#[derive(Debug, Clone)]
pub struct NewSecurityGroup {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
}

fn group_not_found(id: &str) -> DomainError {
    DomainError::not_found("Security group", "SecurityGroupNotFound", id)
}

fn rule_not_found(id: &str) -> DomainError {
    DomainError::not_found("Security group rule", "SecurityGroupRuleNotFound", id)
}

fn group_from_row(r: &AnyRow) -> Result<SecurityGroup, StoreError> {
    Ok(SecurityGroup {
        id: col_s(r, "id")?,
        project_id: col_s(r, "project_id")?,
        name: col_s(r, "name")?,
        description: col_s(r, "description")?,
        is_default: col_b(r, "is_default")?,
        stateful: col_b(r, "stateful")?,
        rules: Vec::new(),
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
    })
}

fn rule_from_row(r: &AnyRow) -> Result<SecurityGroupRule, StoreError> {
    Ok(SecurityGroupRule {
        id: col_s(r, "id")?,
        project_id: col_s(r, "project_id")?,
        security_group_id: col_s(r, "security_group_id")?,
        direction: col_s(r, "direction")?,
        ethertype: col_s(r, "ethertype")?,
        protocol: col_os(r, "protocol")?,
        port_range_min: col_oi(r, "port_range_min")?,
        port_range_max: col_oi(r, "port_range_max")?,
        remote_ip_prefix: col_os(r, "remote_ip_prefix")?,
        remote_group_id: col_os(r, "remote_group_id")?,
        description: col_s(r, "description")?,
        fingerprint: col_s(r, "fingerprint")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
    })
}

/// Bump a group's revision (a rule changed), also locking its row; false when it is gone.
async fn bump_group(w: &mut WriteTx<'_>, id: &str) -> Result<bool, StoreError> {
    let r = sqlx::query("UPDATE security_groups SET revision_number = revision_number + 1, updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(id.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("locking security group {id}")))?;
    Ok(r.rows_affected() == 1)
}

async fn insert_rule(w: &mut WriteTx<'_>, r: &SecurityGroupRule) -> Result<bool, StoreError> {
    let ts = now();
    let res = sqlx::query("INSERT INTO security_group_rules (id, project_id, security_group_id, direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description, fingerprint, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, 1) ON CONFLICT DO NOTHING")
        .bind(r.id.clone())
        .bind(r.project_id.clone())
        .bind(r.security_group_id.clone())
        .bind(r.direction.clone())
        .bind(r.ethertype.clone())
        .bind(r.protocol.clone())
        .bind(r.port_range_min)
        .bind(r.port_range_max)
        .bind(r.remote_ip_prefix.clone())
        .bind(r.remote_group_id.clone())
        .bind(r.description.clone())
        .bind(r.fingerprint.clone())
        .bind(ts)
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            let e = StoreError::db(format!("inserting security group rule {}", r.id))(e);
            if e.is_foreign_key_violation() {
                // The group or the remote group was deleted meanwhile.
                group_not_found(r.remote_group_id.as_deref().unwrap_or(&r.security_group_id))
                    .into()
            } else {
                e
            }
        })?;
    Ok(res.rows_affected() == 1)
}

/// Insert the rules a new group starts with, as Neutron's: any egress for IPv4 and IPv6; and
/// for the default group, ingress from its own members too.
async fn insert_initial_rules(
    w: &mut WriteTx<'_>,
    project: &str,
    group: &str,
    default: bool,
) -> Result<(), StoreError> {
    for ethertype in ["IPv4", "IPv6"] {
        let mut dirs = vec![("egress", None)];
        if default {
            dirs.push(("ingress", Some(group.to_string())));
        }
        for (direction, remote) in dirs {
            let mut r = SecurityGroupRule {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: project.to_string(),
                security_group_id: group.to_string(),
                direction: direction.into(),
                ethertype: ethertype.into(),
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote_ip_prefix: None,
                remote_group_id: remote,
                description: String::new(),
                fingerprint: String::new(),
                created_at: String::new(),
                updated_at: String::new(),
                revision_number: 1,
            };
            r.fingerprint = fingerprint(&r, None);
            insert_rule(w, &r).await?;
        }
    }
    Ok(())
}

/// The normalised content of a rule (`proto` is its protocol as a number, when any).
pub fn fingerprint(r: &SecurityGroupRule, proto: Option<u8>) -> String {
    let o = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        r.direction,
        r.ethertype,
        proto.map(|p| p.to_string()).unwrap_or_default(),
        o(r.port_range_min),
        o(r.port_range_max),
        r.remote_ip_prefix.as_deref().unwrap_or_default(),
        r.remote_group_id.as_deref().unwrap_or_default()
    )
}

impl Store {
    /// The project's default group, made (with Neutron's default rules) when it has none yet.
    /// Two first requests of one project race to one group: the loser's insert does nothing
    /// under the partial unique index and it reads the winner's.
    pub async fn ensure_default_security_group(&self, project: &str) -> Result<String, StoreError> {
        if let Some(id) = self.default_security_group(project).await? {
            return Ok(id);
        }
        retrying!(async {
            let mut w = self.begin_write().await?;
            let id = uuid::Uuid::new_v4().to_string();
            let ts = now();
            let r = sqlx::query("INSERT INTO security_groups (id, project_id, name, description, is_default, stateful, created_at, updated_at, revision_number) VALUES ($1, $2, 'default', 'Default security group', 1, 1, $3, $3, 1) ON CONFLICT DO NOTHING")
                .bind(id.clone())
                .bind(project.to_string())
                .bind(ts)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("making the default security group of {project}")))?;
            if r.rows_affected() == 0 {
                drop(w);
                return self.default_security_group(project).await?.ok_or_else(|| {
                    DomainError::internal("default security group vanished").into()
                });
            }
            insert_initial_rules(&mut w, project, &id, true).await?;
            w.touch(super::changes::ChangeKind::SecurityGroup, &id);
            w.commit().await?;
            tracing::info!(project, group = %id, "default security group created");
            Ok::<_, StoreError>(id)
        })
    }

    /// The id of the project's default group, if it has one.
    pub async fn default_security_group(
        &self,
        project: &str,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT id FROM security_groups WHERE project_id = $1 AND is_default = 1")
                .bind(project.to_string())
                .fetch_optional(self.pool())
                .await
                .map_err(StoreError::db(format!(
                    "reading the default group of {project}"
                )))?;
        row.map(|r| col_s(&r, "id")).transpose()
    }

    /// Create a group with its two egress rules (quota `security_group`).
    pub async fn create_security_group(
        &self,
        g: &NewSecurityGroup,
        quotas: &super::QuotaDefaults,
    ) -> Result<SecurityGroup, StoreError> {
        retrying!(async {
            let mut w = self.begin_write().await?;
            super::quotas::check(
                &mut w,
                quotas,
                &g.project_id,
                None,
                super::QuotaResource::SecurityGroup,
            )
            .await?;
            let ts = now();
            let r = sqlx::query("INSERT INTO security_groups (id, project_id, name, description, is_default, stateful, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, 0, 1, $5, $5, 1) ON CONFLICT DO NOTHING")
                .bind(g.id.clone())
                .bind(g.project_id.clone())
                .bind(g.name.clone())
                .bind(g.description.clone())
                .bind(ts)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("inserting security group {}", g.id)))?;
            if r.rows_affected() == 0 {
                return Err(DomainError::conflict(
                    "SecurityGroupExists",
                    format!("Security group {} already exists", g.id),
                )
                .into());
            }
            insert_initial_rules(&mut w, &g.project_id, &g.id, false).await?;
            w.touch(super::changes::ChangeKind::SecurityGroup, &g.id);
            w.commit().await?;
            self.get_security_group(&g.id).await
        })
    }

    /// One group with its rules.
    pub async fn get_security_group(&self, id: &str) -> Result<SecurityGroup, StoreError> {
        let row = sqlx::query("SELECT * FROM security_groups WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading security group {id}")))?;
        let Some(row) = row else {
            return Err(group_not_found(id).into());
        };
        let mut g = group_from_row(&row)?;
        let rules = sqlx::query(
            "SELECT * FROM security_group_rules WHERE security_group_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::db(format!("reading the rules of group {id}")))?;
        for r in &rules {
            g.rules.push(rule_from_row(r)?);
        }
        Ok(g)
    }

    /// Groups in `scope` (a project sees its own), with their rules, by id.
    pub async fn list_security_groups(
        &self,
        scope: &Scope,
    ) -> Result<Vec<SecurityGroup>, StoreError> {
        let (groups, rules) = match &scope.project_id {
            Some(p) => (
                sqlx::query("SELECT * FROM security_groups WHERE project_id = $1 ORDER BY id")
                    .bind(p.clone())
                    .fetch_all(self.pool())
                    .await,
                sqlx::query("SELECT r.* FROM security_group_rules r JOIN security_groups g ON g.id = r.security_group_id WHERE g.project_id = $1 ORDER BY r.id")
                    .bind(p.clone())
                    .fetch_all(self.pool())
                    .await,
            ),
            None => (
                sqlx::query("SELECT * FROM security_groups ORDER BY id")
                    .fetch_all(self.pool())
                    .await,
                sqlx::query("SELECT * FROM security_group_rules ORDER BY id")
                    .fetch_all(self.pool())
                    .await,
            ),
        };
        let groups = groups.map_err(StoreError::db("listing security groups"))?;
        let rules = rules.map_err(StoreError::db("listing security group rules"))?;
        let mut out: BTreeMap<String, SecurityGroup> = BTreeMap::new();
        for g in &groups {
            let g = group_from_row(g)?;
            out.insert(g.id.clone(), g);
        }
        for r in &rules {
            let r = rule_from_row(r)?;
            if let Some(g) = out.get_mut(&r.security_group_id) {
                g.rules.push(r);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Write a group's name and description, conditioned on its revision.
    pub async fn update_security_group(
        &self,
        g: &SecurityGroup,
    ) -> Result<SecurityGroup, StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query("UPDATE security_groups SET name = $1, description = $2, updated_at = $3, revision_number = revision_number + 1 WHERE id = $4 AND revision_number = $5")
            .bind(g.name.clone())
            .bind(g.description.clone())
            .bind(now())
            .bind(g.id.clone())
            .bind(g.revision_number)
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("updating security group {}", g.id)))?;
        if r.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "security_groups",
                &g.id,
                group_not_found(&g.id),
            )
            .await);
        }
        w.commit().await?;
        self.get_security_group(&g.id).await
    }

    /// Delete a group: 409 `SecurityGroupInUse` while a port is in it. Rules of other groups
    /// naming it as their remote group go with it (as Neutron's), and those groups are logged.
    pub async fn delete_security_group(&self, id: &str) -> Result<(), StoreError> {
        retrying!(async {
            let mut w = self.begin_write().await?;
            if !bump_group(&mut w, id).await? {
                return Err(group_not_found(id).into());
            }
            let in_use = |id: &str| {
                DomainError::conflict("SecurityGroupInUse", format!("Security Group {id} in use."))
            };
            let n = sqlx::query(
                "SELECT COUNT(*) AS n FROM port_security_groups WHERE security_group_id = $1",
            )
            .bind(id.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("counting the ports of group {id}")))?;
            if col_i(&n, "n")? > 0 {
                return Err(in_use(id).into());
            }
            let referrers = sqlx::query("SELECT DISTINCT security_group_id FROM security_group_rules WHERE remote_group_id = $1 AND security_group_id <> $1")
                .bind(id.to_string())
                .fetch_all(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("reading the groups naming {id}")))?;
            for r in &referrers {
                let g = col_s(r, "security_group_id")?;
                bump_group(&mut w, &g).await?;
                w.touch(super::changes::ChangeKind::SecurityGroup, &g);
            }
            sqlx::query("DELETE FROM security_groups WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(|e| {
                    let e = StoreError::db(format!("deleting security group {id}"))(e);
                    if e.is_foreign_key_violation() {
                        in_use(id).into()
                    } else {
                        e
                    }
                })?;
            w.touch(super::changes::ChangeKind::SecurityGroup, id);
            w.commit().await?;
            tracing::info!(group = id, "security group deleted");
            Ok::<(), StoreError>(())
        })
    }

    /// Create a rule (quota `security_group_rule`); 409 `SecurityGroupRuleExists` naming the
    /// existing one when the group already has the same rule.
    pub async fn create_security_group_rule(
        &self,
        r: &SecurityGroupRule,
        quotas: &super::QuotaDefaults,
    ) -> Result<SecurityGroupRule, StoreError> {
        retrying!(async {
            let mut w = self.begin_write().await?;
            super::quotas::check(
                &mut w,
                quotas,
                &r.project_id,
                None,
                super::QuotaResource::SecurityGroupRule,
            )
            .await?;
            if !bump_group(&mut w, &r.security_group_id).await? {
                return Err(group_not_found(&r.security_group_id).into());
            }
            if !insert_rule(&mut w, r).await? {
                let row = sqlx::query("SELECT id FROM security_group_rules WHERE id = $1 OR (security_group_id = $2 AND fingerprint = $3)")
                    .bind(r.id.clone())
                    .bind(r.security_group_id.clone())
                    .bind(r.fingerprint.clone())
                    .fetch_optional(&mut *w.tx)
                    .await
                    .map_err(StoreError::db("reading the duplicate rule"))?;
                let existing = row
                    .map(|x| col_s(&x, "id"))
                    .transpose()?
                    .unwrap_or_default();
                return Err(DomainError::conflict(
                    "SecurityGroupRuleExists",
                    format!("Security group rule already exists. Rule id is {existing}."),
                )
                .into());
            }
            w.touch(
                super::changes::ChangeKind::SecurityGroup,
                &r.security_group_id,
            );
            w.commit().await?;
            self.get_security_group_rule(&r.id).await
        })
    }

    /// One rule.
    pub async fn get_security_group_rule(&self, id: &str) -> Result<SecurityGroupRule, StoreError> {
        let row = sqlx::query("SELECT * FROM security_group_rules WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading security group rule {id}")))?;
        match row {
            Some(r) => rule_from_row(&r),
            None => Err(rule_not_found(id).into()),
        }
    }

    /// Delete a rule.
    pub async fn delete_security_group_rule(&self, id: &str) -> Result<(), StoreError> {
        let rule = self.get_security_group_rule(id).await?;
        retrying!(async {
            let mut w = self.begin_write().await?;
            bump_group(&mut w, &rule.security_group_id).await?;
            let r = sqlx::query("DELETE FROM security_group_rules WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("deleting security group rule {id}")))?;
            if r.rows_affected() == 0 {
                return Err(rule_not_found(id).into());
            }
            w.touch(
                super::changes::ChangeKind::SecurityGroup,
                &rule.security_group_id,
            );
            w.commit().await?;
            Ok::<(), StoreError>(())
        })
    }

    /// Group ids of each port (all ports, or one), sorted.
    pub async fn port_security_groups(
        &self,
        port: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let rows = match port {
            Some(p) => {
                sqlx::query("SELECT port_id, security_group_id FROM port_security_groups WHERE port_id = $1 ORDER BY port_id, security_group_id")
                    .bind(p.to_string())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT port_id, security_group_id FROM port_security_groups ORDER BY port_id, security_group_id")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::db("reading port security groups"))?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &rows {
            out.entry(col_s(r, "port_id")?)
                .or_default()
                .push(col_s(r, "security_group_id")?);
        }
        Ok(out)
    }
}

/// Replace a port's groups and allowed address pairs inside `w` (a group deleted meanwhile
/// is a 404 by the foreign key).
pub(crate) async fn write_port_security(
    w: &mut WriteTx<'_>,
    port_id: &str,
    groups: Option<&[String]>,
    pairs: Option<&[super::AddressPair]>,
) -> Result<(), StoreError> {
    if let Some(groups) = groups {
        sqlx::query("DELETE FROM port_security_groups WHERE port_id = $1")
            .bind(port_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "clearing the groups of port {port_id}"
            )))?;
        for g in groups {
            sqlx::query("INSERT INTO port_security_groups (port_id, security_group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(port_id.to_string())
                .bind(g.clone())
                .execute(&mut *w.tx)
                .await
                .map_err(|e| {
                    let e = StoreError::db(format!("adding port {port_id} to group {g}"))(e);
                    if e.is_foreign_key_violation() {
                        group_not_found(g).into()
                    } else {
                        e
                    }
                })?;
        }
    }
    if let Some(pairs) = pairs {
        let text = serde_json::to_string(pairs)
            .map_err(|e| DomainError::internal(format!("encoding address pairs: {e}")))?;
        sqlx::query("UPDATE ports SET allowed_address_pairs = $1 WHERE id = $2")
            .bind(text)
            .bind(port_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "writing the address pairs of port {port_id}"
            )))?;
    }
    Ok(())
}
