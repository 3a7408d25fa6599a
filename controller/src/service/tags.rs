//! Tags of networks, subnets, ports, routers, floating IPs and subnet pools
//! (`standard-attr-tag`): what a tag may be, and who may read and change a resource's tags.
//! The rules are Neutron's `get_<resource>:tags`, `create_<resource>:tags` (`POST .../tags`
//! and tags in a create body), `update_<resource>:tags` (`PUT .../tags`,
//! `PUT .../tags/{tag}`) and `delete_<resource>:tags`; a resource the caller may not see
//! answers 404 first, as its own `GET` would.

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::service::policy::{self, Target};
use crate::service::{floatingips, networks, ports, routers, subnetpools, subnets};
use crate::store::tags::{too_many_tags, MAX_TAGS};
use crate::store::{TagChange, Tagged};

/// Longest tag, in characters (Neutron's `MAX_TAG_LEN`).
pub const MAX_TAG_LEN: usize = 255;

/// Check one tag: not empty, at most [`MAX_TAG_LEN`] characters, no `,` (the list filters
/// `tags=a,b` split on it, so such a tag could never be matched).
pub fn validate_tag(tag: &str) -> Result<(), DomainError> {
    if tag.is_empty() {
        return Err(DomainError::invalid_input(
            "tags",
            "'' is not a valid tag: it is empty",
        ));
    }
    if tag.chars().count() > MAX_TAG_LEN {
        let head: String = tag.chars().take(16).collect();
        return Err(DomainError::invalid_input(
            "tags",
            format!("'{head}...' exceeds maximum length of {MAX_TAG_LEN}"),
        ));
    }
    if tag.contains(',') {
        return Err(DomainError::invalid_input(
            "tags",
            format!(
                "'{}' contains ',', which the tags filters use to separate tags",
                tag.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Check a list of tags: each tag, no duplicates (Neutron's `list_of_unique_strings`), at
/// most [`MAX_TAGS`].
pub fn validate_tags(tags: &[String]) -> Result<(), DomainError> {
    for (i, t) in tags.iter().enumerate() {
        validate_tag(t)?;
        if tags[..i].contains(t) {
            return Err(DomainError::invalid_input(
                "tags",
                format!("Duplicate items in the list: '{}'", t.escape_debug()),
            ));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(too_many_tags(tags.len()));
    }
    Ok(())
}

/// Who owns a resource, for the policy: the resource's project and its network's.
struct Owner {
    project_id: String,
    network_owner: Option<String>,
    network_shared: bool,
}

impl Owner {
    fn target(&self) -> Target<'_> {
        Target {
            project_id: &self.project_id,
            network_owner: self.network_owner.as_deref(),
            network_shared: self.network_shared,
        }
    }
}

/// The resource as the caller may see it (404 otherwise), with its owners.
async fn load(core: &Core, who: &Identity, kind: Tagged, id: &str) -> Result<Owner, DomainError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(kind.not_found(id));
    }
    let (project_id, network_id) = match kind {
        Tagged::Network => (
            networks::load_visible(core, who, id).await?.project_id,
            None,
        ),
        Tagged::Subnet => {
            let s = subnets::load_visible(core, who, id).await?;
            (s.project_id, Some(s.network_id))
        }
        Tagged::Port => {
            let p = ports::load_visible(core, who, id).await?;
            (p.project_id, Some(p.network_id))
        }
        Tagged::Router => (routers::load_own(core, who, id).await?.project_id, None),
        Tagged::FloatingIp => (floatingips::load_own(core, who, id).await?.project_id, None),
        Tagged::SubnetPool => (
            subnetpools::load_visible(core, who, id).await?.project_id,
            None,
        ),
        Tagged::SecurityGroup => (
            super::security_groups::load_visible(core, who, id)
                .await?
                .project_id,
            None,
        ),
    };
    let (network_owner, network_shared) = match network_id {
        Some(n) => {
            let n = core.store.get_network(&n).await?;
            (Some(n.project_id), n.shared)
        }
        None => (None, false),
    };
    Ok(Owner {
        project_id,
        network_owner,
        network_shared,
    })
}

fn action(verb: &str, kind: Tagged) -> String {
    format!("{verb}_{}:tags", kind.as_str())
}

/// The tags of a resource the caller may see (`get_<resource>:tags`).
pub async fn get(
    core: &Core,
    who: &Identity,
    kind: Tagged,
    id: &str,
) -> Result<Vec<String>, DomainError> {
    let o = load(core, who, kind, id).await?;
    policy::enforce(who, &action("get", kind), &o.target())?;
    Ok(core.store.tags_of(kind, id).await?)
}

/// `Ok` when the resource carries `tag`, else 404 `TagNotFound`.
pub async fn check(
    core: &Core,
    who: &Identity,
    kind: Tagged,
    id: &str,
    tag: &str,
) -> Result<(), DomainError> {
    validate_tag(tag)?;
    if get(core, who, kind, id).await?.iter().any(|t| t == tag) {
        Ok(())
    } else {
        Err(crate::store::tags::tag_not_found(tag))
    }
}

async fn change(
    core: &Core,
    who: &Identity,
    verb: &str,
    kind: Tagged,
    id: &str,
    c: TagChange<'_>,
) -> Result<Vec<String>, DomainError> {
    let o = load(core, who, kind, id).await?;
    policy::enforce(who, &action(verb, kind), &o.target())?;
    Ok(core.store.change_tags(kind, id, c).await?)
}

/// Replace every tag (`PUT .../tags`, `update_<resource>:tags`).
pub async fn replace(
    core: &Core,
    who: &Identity,
    kind: Tagged,
    id: &str,
    tags: &[String],
) -> Result<Vec<String>, DomainError> {
    validate_tags(tags)?;
    change(core, who, "update", kind, id, TagChange::Replace(tags)).await
}

/// Add tags, keeping those it has (`POST .../tags`, `create_<resource>:tags`).
pub async fn add(
    core: &Core,
    who: &Identity,
    kind: Tagged,
    id: &str,
    tags: &[String],
) -> Result<Vec<String>, DomainError> {
    validate_tags(tags)?;
    change(core, who, "create", kind, id, TagChange::Add(tags)).await
}

/// Add one tag (`PUT .../tags/{tag}`, `update_<resource>:tags`); idempotent.
pub async fn add_one(
    core: &Core,
    who: &Identity,
    kind: Tagged,
    id: &str,
    tag: &str,
) -> Result<Vec<String>, DomainError> {
    validate_tag(tag)?;
    let one = [tag.to_string()];
    change(core, who, "update", kind, id, TagChange::Add(&one)).await
}

/// Remove one tag (`DELETE .../tags/{tag}`, `delete_<resource>:tags`); 404 when absent.
pub async fn remove_one(
    core: &Core,
    who: &Identity,
    kind: Tagged,
    id: &str,
    tag: &str,
) -> Result<(), DomainError> {
    validate_tag(tag)?;
    change(core, who, "delete", kind, id, TagChange::Remove(tag)).await?;
    Ok(())
}

/// Remove every tag (`DELETE .../tags`, `delete_<resource>:tags`).
pub async fn clear(core: &Core, who: &Identity, kind: Tagged, id: &str) -> Result<(), DomainError> {
    change(core, who, "delete", kind, id, TagChange::Clear).await?;
    Ok(())
}

/// Tags given in a create body: valid, and `create_<resource>:tags` allowed on the new
/// resource's target (nothing to check when there are none).
pub fn check_create(
    who: &Identity,
    kind: Tagged,
    target: &Target,
    tags: &[String],
) -> Result<(), DomainError> {
    if tags.is_empty() {
        return Ok(());
    }
    validate_tags(tags)?;
    policy::enforce(who, &action("create", kind), target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_like_neutron() {
        assert!(validate_tag("red").is_ok());
        assert!(
            validate_tag(&"é".repeat(255)).is_ok(),
            "255 characters, not bytes"
        );
        assert!(validate_tag("a/b c").is_ok());
        for bad in ["", "a,b", &"x".repeat(256)] {
            let e = validate_tag(bad).unwrap_err();
            assert_eq!(e.kind, "InvalidInput", "{bad}");
        }
        let dup = validate_tags(&["a".into(), "b".into(), "a".into()]).unwrap_err();
        assert!(dup.message.contains("Duplicate"), "{dup}");
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(validate_tags(&many).unwrap_err().message.contains("50"));
        assert!(validate_tags(&many[..MAX_TAGS]).is_ok());
    }
}
