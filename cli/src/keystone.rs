//! Keystone's REST API from the CLI: password authentication, and the idempotent steps
//! `crosspod keystone register` and `crosspod lab up --keystone` take (the `network` service
//! and its endpoints in the catalog; projects, users and role grants). Each `ensure_*` looks
//! first and changes only what differs, so a second run changes nothing.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::http;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Password credentials, as the openstack CLI's `OS_*` variables name them.
#[derive(Debug, Clone)]
pub struct Creds {
    /// Keystone URL (with or without `/v3`).
    pub auth_url: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Project name to scope to.
    pub project: String,
    /// Domain name of the user.
    pub user_domain: String,
    /// Domain name of the project.
    pub project_domain: String,
}

/// `…/v3` of a Keystone URL given with or without it.
pub fn v3(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/v3") {
        base.to_string()
    } else {
        format!("{base}/v3")
    }
}

/// A project-scoped token, to act on Keystone's API.
pub struct Session {
    url: String,
    token: String,
}

impl Session {
    /// Authenticate by password (`POST /v3/auth/tokens`).
    pub fn password(c: &Creds) -> Result<Session> {
        let url = v3(&c.auth_url);
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain}, "password": c.password}}},
            "scope": {"project": {"name": c.project, "domain": {"name": c.project_domain}}}}});
        let r = http::request(
            "POST",
            &format!("{url}/auth/tokens?nocatalog"),
            None,
            Some(&body),
            TIMEOUT,
        )
        .with_context(|| format!("authenticating to Keystone at {url}"))?;
        if r.status != 201 {
            bail!(
                "Keystone at {url} refused {} on project {}: {} {}",
                c.username,
                c.project,
                r.status,
                r.body
            );
        }
        let token = r
            .header("x-subject-token")
            .context("Keystone issued no X-Subject-Token")?
            .to_string();
        Ok(Session { url, token })
    }

    /// The token (for `lab env`'s `$token`).
    pub fn token(&self) -> &str {
        &self.token
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<http::Response> {
        http::request(
            method,
            &format!("{}{path}", self.url),
            Some(&self.token),
            body,
            TIMEOUT,
        )
        .with_context(|| format!("{method} {}{path}", self.url))
    }

    /// A call that must answer `want`; its JSON body.
    fn expect(&self, method: &str, path: &str, body: Option<&Value>, want: u16) -> Result<Value> {
        let r = self.call(method, path, body)?;
        if r.status != want {
            bail!(
                "Keystone answered {} to {method} {path}: {}",
                r.status,
                r.body
            );
        }
        Ok(r.json()?)
    }

    /// The objects of `/v3/{coll}?{query}`.
    fn list(&self, coll: &str, query: &str) -> Result<Vec<Value>> {
        let v = self.expect("GET", &format!("/{coll}?{query}"), None, 200)?;
        Ok(v[coll].as_array().cloned().unwrap_or_default())
    }

    fn find_id(&self, coll: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .list(coll, &format!("name={}", enc(name)))?
            .first()
            .and_then(|o| o["id"].as_str())
            .map(str::to_string))
    }

    /// A project in the `default` domain; (id, whether it was made).
    pub fn ensure_project(&self, name: &str) -> Result<(String, bool)> {
        if let Some(id) = self.find_id("projects", name)? {
            return Ok((id, false));
        }
        let v = self.expect(
            "POST",
            "/projects",
            Some(&json!({"project": {"name": name, "domain_id": "default",
                "description": "made by crosspod"}})),
            201,
        )?;
        Ok((v["project"]["id"].as_str().unwrap_or_default().into(), true))
    }

    /// A user in the `default` domain with `password` (set again when it exists: the lab
    /// owns these users); (id, whether it was made).
    pub fn ensure_user(&self, name: &str, password: &str) -> Result<(String, bool)> {
        if let Some(id) = self.find_id("users", name)? {
            return Ok((id, false));
        }
        let v = self.expect(
            "POST",
            "/users",
            Some(&json!({"user": {"name": name, "password": password, "domain_id": "default"}})),
            201,
        )?;
        Ok((v["user"]["id"].as_str().unwrap_or_default().into(), true))
    }

    /// `role` for `user` on `project` (ids); whether it was granted now.
    pub fn ensure_grant(&self, project: &str, user: &str, role: &str) -> Result<bool> {
        let rid = self
            .find_id("roles", role)?
            .with_context(|| format!("Keystone has no role {role:?} (keystone-manage bootstrap makes admin, member, reader and service)"))?;
        let path = format!("/projects/{project}/users/{user}/roles/{rid}");
        if self.call("GET", &path, None)?.status == 204 {
            return Ok(false);
        }
        self.expect("PUT", &path, None, 204)?;
        Ok(true)
    }

    /// The `network` service (named `name`) with public, internal and admin endpoints at
    /// `url` in `region`: made when missing, endpoints pointing elsewhere moved. Returns
    /// what changed (empty: nothing).
    pub fn register_network(&self, name: &str, url: &str, region: &str) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        let sid = match self
            .list("services", "type=network")?
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["id"].as_str())
        {
            Some(id) => id.to_string(),
            None => {
                let v = self.expect(
                    "POST",
                    "/services",
                    Some(&json!({"service": {"name": name, "type": "network",
                        "description": "crosspod (Neutron v2.0 API)"}})),
                    201,
                )?;
                changes.push(format!("service {name} (network)"));
                v["service"]["id"].as_str().unwrap_or_default().to_string()
            }
        };
        if self
            .call("GET", &format!("/regions/{}", enc(region)), None)?
            .status
            == 404
        {
            self.expect(
                "POST",
                "/regions",
                Some(&json!({"region": {"id": region}})),
                201,
            )?;
            changes.push(format!("region {region}"));
        }
        for iface in ["public", "internal", "admin"] {
            let found = self.list(
                "endpoints",
                &format!(
                    "service_id={sid}&interface={iface}&region_id={}",
                    enc(region)
                ),
            )?;
            match found.first() {
                Some(e) if e["url"] == url => {}
                Some(e) => {
                    let id = e["id"].as_str().unwrap_or_default();
                    self.expect(
                        "PATCH",
                        &format!("/endpoints/{id}"),
                        Some(&json!({"endpoint": {"url": url}})),
                        200,
                    )?;
                    changes.push(format!("{iface} endpoint moved to {url}"));
                }
                None => {
                    self.expect(
                        "POST",
                        "/endpoints",
                        Some(&json!({"endpoint": {"service_id": sid, "interface": iface,
                            "url": url, "region_id": region}})),
                        201,
                    )?;
                    changes.push(format!("{iface} endpoint {url}"));
                }
            }
        }
        Ok(changes)
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_query_values() {
        assert_eq!(v3("http://k:5000"), "http://k:5000/v3");
        assert_eq!(v3("http://k:5000/v3/"), "http://k:5000/v3");
        assert_eq!(enc("Region One/x"), "Region%20One%2Fx");
    }
}
