//! Tags (Neutron's `standard-attr-tag`) of networks, subnets, ports, routers, floating IPs
//! and subnet pools. One table keyed by (resource type, resource id, tag); each row also
//! names its resource in that resource's own foreign-key column, so a resource's tags go
//! with it on every path that deletes it (a network's subnets included) without any code
//! remembering to, and a tag can never be written for a resource a concurrent request just
//! deleted.
//!
//! A tag change bumps the resource's `revision_number` and `updated_at` (as Neutron's
//! `revises_on_change`) and logs the resource in the change log (subnet pools excepted: the
//! realizer holds no copy of them), so the realizer's copy of the row stays equal to the
//! store's. Nothing of the data plane depends on tags.

use std::collections::{BTreeSet, HashMap};

use super::{col_s, now, retrying, Store, WriteTx};
use crate::error::{DomainError, ErrorClass, StoreError};

/// The most tags one resource may carry (Neutron's `MAX_TAGS_COUNT`).
pub const MAX_TAGS: usize = 50;

/// Migration 7: the tags table. The CHECKs keep the type, the id and the one foreign key
/// that is set in agreement, so a row cannot name one resource and cascade with another.
pub const TAGS_MIGRATION: &str = r#"
CREATE TABLE tags (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    network_id TEXT REFERENCES networks (id) ON DELETE CASCADE,
    subnet_id TEXT REFERENCES subnets (id) ON DELETE CASCADE,
    port_id TEXT REFERENCES ports (id) ON DELETE CASCADE,
    router_id TEXT REFERENCES routers (id) ON DELETE CASCADE,
    floatingip_id TEXT REFERENCES floatingips (id) ON DELETE CASCADE,
    PRIMARY KEY (resource_type, resource_id, tag),
    CHECK ((CASE WHEN network_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN subnet_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN port_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN router_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN floatingip_id IS NULL THEN 0 ELSE 1 END) = 1),
    CHECK ((resource_type = 'network' AND network_id IS NOT NULL AND network_id = resource_id)
        OR (resource_type = 'subnet' AND subnet_id IS NOT NULL AND subnet_id = resource_id)
        OR (resource_type = 'port' AND port_id IS NOT NULL AND port_id = resource_id)
        OR (resource_type = 'router' AND router_id IS NOT NULL AND router_id = resource_id)
        OR (resource_type = 'floatingip' AND floatingip_id IS NOT NULL AND floatingip_id = resource_id))
);
CREATE INDEX tags_network ON tags (network_id);
CREATE INDEX tags_subnet ON tags (subnet_id);
CREATE INDEX tags_port ON tags (port_id);
CREATE INDEX tags_router ON tags (router_id);
CREATE INDEX tags_floatingip ON tags (floatingip_id)
"#;

/// Migration 12: subnet pools carry tags too. A CHECK cannot be altered in SQLite, so the
/// table is rebuilt (created anew with a `subnetpool_id` foreign key and CHECKs naming it,
/// filled from the old one, which is dropped, then renamed and its indexes made again); the
/// same statements serve PostgreSQL, and the existing tags are kept.
pub const SUBNETPOOL_TAGS_MIGRATION: &str = r#"
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
    PRIMARY KEY (resource_type, resource_id, tag),
    CHECK ((CASE WHEN network_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN subnet_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN port_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN router_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN floatingip_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN subnetpool_id IS NULL THEN 0 ELSE 1 END) = 1),
    CHECK ((resource_type = 'network' AND network_id IS NOT NULL AND network_id = resource_id)
        OR (resource_type = 'subnet' AND subnet_id IS NOT NULL AND subnet_id = resource_id)
        OR (resource_type = 'port' AND port_id IS NOT NULL AND port_id = resource_id)
        OR (resource_type = 'router' AND router_id IS NOT NULL AND router_id = resource_id)
        OR (resource_type = 'floatingip' AND floatingip_id IS NOT NULL AND floatingip_id = resource_id)
        OR (resource_type = 'subnetpool' AND subnetpool_id IS NOT NULL AND subnetpool_id = resource_id))
);
INSERT INTO tags_new (resource_type, resource_id, tag, network_id, subnet_id, port_id, router_id, floatingip_id)
    SELECT resource_type, resource_id, tag, network_id, subnet_id, port_id, router_id, floatingip_id FROM tags;
DROP TABLE tags;
ALTER TABLE tags_new RENAME TO tags;
CREATE INDEX tags_network ON tags (network_id);
CREATE INDEX tags_subnet ON tags (subnet_id);
CREATE INDEX tags_port ON tags (port_id);
CREATE INDEX tags_router ON tags (router_id);
CREATE INDEX tags_floatingip ON tags (floatingip_id);
CREATE INDEX tags_subnetpool ON tags (subnetpool_id)
"#;

/// A kind of resource that carries tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tagged {
    /// A network.
    Network,
    /// A subnet.
    Subnet,
    /// A port.
    Port,
    /// A router.
    Router,
    /// A floating IP.
    FloatingIp,
    /// A subnet pool.
    SubnetPool,
    /// A security group.
    SecurityGroup,
}

impl Tagged {
    /// Every taggable kind.
    pub const ALL: [Tagged; 7] = [
        Tagged::Network,
        Tagged::Subnet,
        Tagged::Port,
        Tagged::Router,
        Tagged::FloatingIp,
        Tagged::SubnetPool,
        Tagged::SecurityGroup,
    ];

    /// The kind as stored in `resource_type` and as Neutron's policy names it (`network`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tagged::Network => "network",
            Tagged::Subnet => "subnet",
            Tagged::Port => "port",
            Tagged::Router => "router",
            Tagged::FloatingIp => "floatingip",
            Tagged::SubnetPool => "subnetpool",
            Tagged::SecurityGroup => "security_group",
        }
    }

    /// The API collection (`networks`).
    pub fn collection(self) -> &'static str {
        match self {
            Tagged::Network => "networks",
            Tagged::Subnet => "subnets",
            Tagged::Port => "ports",
            Tagged::Router => "routers",
            Tagged::FloatingIp => "floatingips",
            Tagged::SubnetPool => "subnetpools",
            Tagged::SecurityGroup => "security-groups",
        }
    }

    /// The kind whose collection is `c`.
    pub fn from_collection(c: &str) -> Option<Tagged> {
        Tagged::ALL.into_iter().find(|t| t.collection() == c)
    }

    fn table(self) -> &'static str {
        match self {
            Tagged::SecurityGroup => "security_groups",
            other => other.collection(),
        }
    }

    fn fk_column(self) -> &'static str {
        match self {
            Tagged::Network => "network_id",
            Tagged::Subnet => "subnet_id",
            Tagged::Port => "port_id",
            Tagged::Router => "router_id",
            Tagged::FloatingIp => "floatingip_id",
            Tagged::SubnetPool => "subnetpool_id",
            Tagged::SecurityGroup => "security_group_id",
        }
    }

    /// What the change log records of a tag change; `None` for what the realizer does not
    /// hold (subnet pools).
    fn change_kind(self) -> Option<super::changes::ChangeKind> {
        use super::changes::ChangeKind;
        match self {
            Tagged::Network => Some(ChangeKind::Network),
            Tagged::Subnet => Some(ChangeKind::Subnet),
            Tagged::Port => Some(ChangeKind::Port),
            Tagged::Router => Some(ChangeKind::Router),
            Tagged::FloatingIp => Some(ChangeKind::FloatingIp),
            Tagged::SubnetPool => None,
            Tagged::SecurityGroup => Some(ChangeKind::SecurityGroup),
        }
    }

    /// The resource's own 404 (`NetworkNotFound`, ...).
    pub fn not_found(self, id: &str) -> DomainError {
        match self {
            Tagged::Network => DomainError::not_found("Network", "NetworkNotFound", id),
            Tagged::Subnet => DomainError::not_found("Subnet", "SubnetNotFound", id),
            Tagged::Port => DomainError::not_found("Port", "PortNotFound", id),
            Tagged::Router => DomainError::not_found("Router", "RouterNotFound", id),
            Tagged::FloatingIp => DomainError::not_found("Floating IP", "FloatingIPNotFound", id),
            Tagged::SubnetPool => super::subnetpools::pool_not_found(id),
            Tagged::SecurityGroup => {
                DomainError::not_found("Security group", "SecurityGroupNotFound", id)
            }
        }
    }
}

/// A change of one resource's tags.
#[derive(Debug, Clone, Copy)]
pub enum TagChange<'a> {
    /// Exactly these tags (`PUT .../tags`).
    Replace(&'a [String]),
    /// These tags too (`POST .../tags`, `PUT .../tags/{tag}`).
    Add(&'a [String]),
    /// Without this tag; 404 `TagNotFound` when it has not got it.
    Remove(&'a str),
    /// No tags (`DELETE .../tags`).
    Clear,
}

/// 404 for a tag the resource does not carry.
pub fn tag_not_found(tag: &str) -> DomainError {
    DomainError::new(
        ErrorClass::NotFound,
        "TagNotFound",
        format!("Tag {tag} could not be found."),
    )
}

/// 400 for more than [`MAX_TAGS`] tags on one resource.
pub fn too_many_tags(n: usize) -> DomainError {
    DomainError::new(
        ErrorClass::BadRequest,
        "BadRequest",
        format!("Bad tags request: {n} tags exceed the per-resource limit of {MAX_TAGS}"),
    )
}

/// Insert `tags` of the resource `id` inside `w` (a create's transaction); duplicates
/// collapse. A resource that is gone is its 404.
pub(crate) async fn insert_tags(
    w: &mut WriteTx<'_>,
    kind: Tagged,
    id: &str,
    tags: &[String],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO tags (resource_type, resource_id, tag, {}) VALUES ($1, $2, $3, $2) ON CONFLICT DO NOTHING",
        kind.fk_column()
    );
    for tag in tags.iter().collect::<BTreeSet<_>>() {
        sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(id.to_string())
            .bind(tag.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(|e| {
                let err = StoreError::db(format!("tagging {} {id}", kind.as_str()))(e);
                if err.is_foreign_key_violation() {
                    kind.not_found(id).into()
                } else {
                    err
                }
            })?;
    }
    Ok(())
}

impl Store {
    /// The tags of one resource, in order (empty for an unknown resource).
    pub async fn tags_of(&self, kind: Tagged, id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT tag FROM tags WHERE resource_type = $1 AND resource_id = $2 ORDER BY tag",
        )
        .bind(kind.as_str())
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::db(format!(
            "reading the tags of {} {id}",
            kind.as_str()
        )))?;
        rows.iter().map(|r| col_s(r, "tag")).collect()
    }

    /// The tags of every resource of a kind that has any, by resource id (for lists: one
    /// query instead of one per item).
    pub async fn tags_by_id(
        &self,
        kind: Tagged,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let rows = sqlx::query(
            "SELECT resource_id, tag FROM tags WHERE resource_type = $1 ORDER BY resource_id, tag",
        )
        .bind(kind.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::db(format!(
            "reading the tags of {}s",
            kind.as_str()
        )))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for r in &rows {
            out.entry(col_s(r, "resource_id")?)
                .or_default()
                .push(col_s(r, "tag")?);
        }
        Ok(out)
    }

    /// Apply `change` to the tags of resource `id` in one transaction and return its tags
    /// after it. The resource's row is updated first (revision and `updated_at`), which
    /// locks it, so concurrent changes of one resource's tags serialise and the
    /// [`MAX_TAGS`] limit holds; a change that changes nothing is rolled back, revision
    /// included. 404 for a resource that does not exist.
    pub async fn change_tags(
        &self,
        kind: Tagged,
        id: &str,
        change: TagChange<'_>,
    ) -> Result<Vec<String>, StoreError> {
        retrying!(self.change_tags_once(kind, id, change))
    }

    async fn change_tags_once(
        &self,
        kind: Tagged,
        id: &str,
        change: TagChange<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let what = format!("{} {id}", kind.as_str());
        let mut w = self.begin_write().await?;
        let sql = format!(
            "UPDATE {} SET revision_number = revision_number + 1, updated_at = $1 WHERE id = $2",
            kind.table()
        );
        let r = sqlx::query(&sql)
            .bind(now())
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("revising {what}")))?;
        if r.rows_affected() == 0 {
            return Err(kind.not_found(id).into());
        }
        let rows =
            sqlx::query("SELECT tag FROM tags WHERE resource_type = $1 AND resource_id = $2")
                .bind(kind.as_str())
                .bind(id.to_string())
                .fetch_all(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("reading the tags of {what}")))?;
        let current: BTreeSet<String> = rows
            .iter()
            .map(|r| col_s(r, "tag"))
            .collect::<Result<_, _>>()?;
        let wanted: BTreeSet<String> = match change {
            TagChange::Replace(t) => t.iter().cloned().collect(),
            TagChange::Add(t) => current.iter().chain(t).cloned().collect(),
            TagChange::Remove(t) => {
                if !current.contains(t) {
                    return Err(tag_not_found(t).into());
                }
                current.iter().filter(|c| *c != t).cloned().collect()
            }
            TagChange::Clear => BTreeSet::new(),
        };
        if wanted == current {
            // Nothing changes: the revision bump goes with the rolled-back transaction.
            return Ok(current.into_iter().collect());
        }
        if wanted.len() > MAX_TAGS {
            return Err(too_many_tags(wanted.len()).into());
        }
        for gone in current.difference(&wanted) {
            sqlx::query(
                "DELETE FROM tags WHERE resource_type = $1 AND resource_id = $2 AND tag = $3",
            )
            .bind(kind.as_str())
            .bind(id.to_string())
            .bind(gone.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("untagging {what}")))?;
        }
        let added: Vec<String> = wanted.difference(&current).cloned().collect();
        insert_tags(&mut w, kind, id, &added).await?;
        if let Some(k) = kind.change_kind() {
            w.touch(k, id);
        }
        w.commit().await?;
        tracing::info!(resource = %what, tags = wanted.len(), "tags changed");
        Ok(wanted.into_iter().collect())
    }
}
