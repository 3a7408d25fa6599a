//! Keystone as the authentication backend (`--auth-strategy keystone`), the way
//! keystonemiddleware does it for Neutron: a user's `X-Auth-Token` is validated with
//! `GET /v3/auth/tokens` (`X-Auth-Token`: crosspod's own service token, `X-Subject-Token`: the
//! user's), and the token's project and roles become an [`Identity`].
//!
//! - The service token comes from password authentication with crosspod's own credential; it
//!   is renewed once three quarters of its lifetime have passed, and once more when Keystone
//!   answers 401 to it (revoked, or Keystone's keys rotated).
//! - Validated tokens are cached for at most `cache_ttl` and never past their `expires_at`,
//!   so a revoked token is refused at most `cache_ttl` after its revocation. The cache holds
//!   at most `cache_size` tokens: when full, expired entries go first, then those that would
//!   expire soonest. Refused tokens are not cached.
//! - Keystone unreachable, answering 5xx, or refusing crosspod's own credential is
//!   [`KeystoneError::Unavailable`] (the API answers 503): never "everyone is unauthenticated"
//!   and never open access. Tokens already in the cache keep working meanwhile.
//! - Roles map as Neutron's defaults read them: `admin`, `member` (and the legacy
//!   `_member_`), `reader`. Keystone lists implied roles in the token (admin implies member
//!   implies reader), so an admin token carries all three. A token with none of them is
//!   [`KeystoneError::NoRole`] (403).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::auth::{Identity, Role};
use crate::config::KeystoneConfig;

/// Why a token was not turned into an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoneError {
    /// The token is unknown, expired, revoked or not scoped to a project (401).
    #[error("{0}")]
    Invalid(String),
    /// The token is valid but carries none of the roles crosspod knows (403).
    #[error("{0}")]
    NoRole(String),
    /// Keystone cannot answer (unreachable, 5xx, or it refuses crosspod's own credential):
    /// nobody new can be authenticated (503).
    #[error("{0}")]
    Unavailable(String),
    /// The client cannot be built (a bad CA file): a start-up error.
    #[error("keystone client: {0}")]
    Setup(String),
}

/// crosspod's own token and when to renew it.
struct ServiceToken {
    token: String,
    renew_at: Instant,
}

struct Cached {
    identity: Identity,
    until: Instant,
}

/// Keystone validation with crosspod's service credential and a bounded cache.
pub struct Keystone {
    cfg: KeystoneConfig,
    http: reqwest::Client,
    service: tokio::sync::Mutex<Option<ServiceToken>>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Keystone {
    /// A validator for `cfg` (no request is made until the first token arrives).
    pub fn new(cfg: KeystoneConfig) -> Result<Self, KeystoneError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("crosspod-controller/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| KeystoneError::Setup(format!("reading {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| KeystoneError::Setup(format!("{}: {e}", ca.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| KeystoneError::Setup(e.to_string()))?;
        Ok(Keystone {
            cfg,
            http,
            service: tokio::sync::Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &KeystoneConfig {
        &self.cfg
    }

    /// How many validated tokens the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The identity of a user's token: from the cache while it is fresh, else from Keystone.
    pub async fn validate(&self, token: &str) -> Result<Identity, KeystoneError> {
        if let Some(id) = self.cache_get(token) {
            return Ok(id);
        }
        let mut stale: Option<String> = None;
        for attempt in 0..2 {
            let service = self.service_token(stale.as_deref()).await?;
            let url = format!("{}/auth/tokens?nocatalog", self.cfg.url);
            let resp = self
                .send(|| {
                    self.http
                        .get(&url)
                        .header("X-Auth-Token", &service)
                        .header("X-Subject-Token", token)
                        .header("Accept", "application/json")
                })
                .await?;
            let status = resp.status().as_u16();
            match status {
                200 => {
                    let body: Value = resp.json().await.map_err(|e| {
                        KeystoneError::Unavailable(format!(
                            "Keystone's token validation answer is not JSON: {e}"
                        ))
                    })?;
                    let (identity, expires) = parse_token(&body)?;
                    self.cache_put(token, &identity, expires);
                    return Ok(identity);
                }
                // Unknown, expired, revoked (Keystone answers 404 for all of them) or malformed.
                404 | 400 => {
                    return Err(KeystoneError::Invalid(
                        "The request you have made requires authentication: the token is unknown, expired or revoked".into(),
                    ))
                }
                // Our own token is refused: get a new one, once.
                401 if attempt == 0 => {
                    tracing::info!("Keystone refused crosspod's service token; renewing it");
                    stale = Some(service);
                }
                401 => {
                    return Err(self.down("Keystone refuses crosspod's service token even just after it issued it"));
                }
                403 => {
                    return Err(self.down(&format!(
                        "Keystone does not let crosspod's user {:?} validate tokens; give it the service role (openstack role add --user {} --project {} service)",
                        self.cfg.username, self.cfg.username, self.cfg.project
                    )));
                }
                s => return Err(self.down(&format!("Keystone answered {s} to a token validation"))),
            }
        }
        Err(self.down("Keystone refuses crosspod's service token"))
    }

    /// A 503 naming why, logged for the operator.
    fn down(&self, why: &str) -> KeystoneError {
        tracing::warn!(keystone = %self.cfg.url, why, "identity service unavailable");
        KeystoneError::Unavailable(format!(
            "The identity service is unavailable, try again later: {why}"
        ))
    }

    /// Sends a request, once more on a fresh connection when a pooled one turns out closed
    /// (a server closing idle keep-alive connections, as uWSGI's HTTP router does, races
    /// with their reuse). Both requests crosspod makes are safe to repeat.
    async fn send(
        &self,
        req: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, KeystoneError> {
        match req().send().await {
            Ok(r) => Ok(r),
            Err(e) if e.is_timeout() || e.is_connect() => Err(self.unreachable(&e)),
            Err(e) => {
                tracing::debug!(error = %e, "Keystone request failed on a pooled connection; once more");
                req().send().await.map_err(|e| self.unreachable(&e))
            }
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> KeystoneError {
        let what = if e.is_timeout() {
            format!(
                "Keystone did not answer within {} s",
                self.cfg.timeout.as_secs()
            )
        } else {
            // The source chain says why (connection refused, TLS, ...).
            let mut why = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                why = format!("{why}: {s}");
                src = s.source();
            }
            format!("Keystone is unreachable ({why})")
        };
        self.down(&what)
    }

    /// crosspod's service token: the current one unless it is due for renewal or is
    /// `refused` (then a new one, made once however many requests saw it refused).
    async fn service_token(&self, refused: Option<&str>) -> Result<String, KeystoneError> {
        let mut g = self.service.lock().await;
        if let Some(t) = g.as_ref() {
            let is_refused = refused == Some(t.token.as_str());
            if !is_refused && Instant::now() < t.renew_at {
                return Ok(t.token.clone());
            }
        }
        let (token, lifetime) = self.password_auth().await?;
        tracing::info!(
            user = %self.cfg.username,
            lifetime_s = lifetime.as_secs(),
            "got crosspod's Keystone service token"
        );
        *g = Some(ServiceToken {
            token: token.clone(),
            renew_at: Instant::now() + lifetime * 3 / 4,
        });
        Ok(token)
    }

    /// `POST /v3/auth/tokens` with the service credential: the token and its lifetime.
    async fn password_auth(&self) -> Result<(String, Duration), KeystoneError> {
        let c = &self.cfg;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain},
                "password": c.password.expose()}}},
            "scope": {"project": {"name": c.project, "domain": {"name": c.project_domain}}}
        }});
        let url = format!("{}/auth/tokens?nocatalog", c.url);
        let resp = self.send(|| self.http.post(&url).json(&body)).await?;
        let status = resp.status().as_u16();
        if status != 201 && status != 200 {
            return Err(self.down(&format!(
                "Keystone answered {status} to crosspod's own password authentication (user {:?}, project {:?}); check --keystone-username/--keystone-password/--keystone-project",
                c.username, c.project
            )));
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| self.down("Keystone issued crosspod a token without X-Subject-Token"))?;
        let v: Value = resp.json().await.map_err(|e| {
            self.down(&format!(
                "Keystone's authentication answer is not JSON: {e}"
            ))
        })?;
        let expires = v["token"]["expires_at"]
            .as_str()
            .and_then(parse_time)
            .ok_or_else(|| self.down("Keystone issued crosspod a token without expires_at"))?;
        let lifetime = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Ok((token, lifetime))
    }

    fn cache_get(&self, token: &str) -> Option<Identity> {
        if self.cfg.cache_ttl.is_zero() {
            return None;
        }
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match c.get(token) {
            Some(e) if Instant::now() < e.until => Some(e.identity.clone()),
            Some(_) => {
                c.remove(token);
                None
            }
            None => None,
        }
    }

    fn cache_put(&self, token: &str, identity: &Identity, expires: SystemTime) {
        if self.cfg.cache_ttl.is_zero() {
            return;
        }
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let until = Instant::now() + left.min(self.cfg.cache_ttl);
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= self.cfg.cache_size && !c.contains_key(token) {
            let now = Instant::now();
            c.retain(|_, e| e.until > now);
            while c.len() >= self.cfg.cache_size {
                let Some(soonest) = c
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                c.remove(&soonest);
            }
        }
        c.insert(
            token.to_string(),
            Cached {
                identity: identity.clone(),
                until,
            },
        );
    }
}

/// The identity and expiry of a validated token (`{"token": {...}}`).
fn parse_token(body: &Value) -> Result<(Identity, SystemTime), KeystoneError> {
    let t = &body["token"];
    let expires = t["expires_at"]
        .as_str()
        .and_then(parse_time)
        .ok_or_else(|| {
            KeystoneError::Unavailable(
                "Keystone's token validation answer has no readable expires_at".into(),
            )
        })?;
    let Some(project_id) = t["project"]["id"].as_str().filter(|p| !p.is_empty()) else {
        return Err(KeystoneError::Invalid(
            "The request you have made requires authentication: the token is not scoped to a project".into(),
        ));
    };
    let mut roles = Vec::new();
    for r in t["roles"].as_array().into_iter().flatten() {
        let role = match r["name"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("admin") => Role::Admin,
            Some("member") | Some("_member_") => Role::Member,
            Some("reader") => Role::Reader,
            _ => continue,
        };
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(KeystoneError::NoRole(format!(
            "The token has none of the roles admin, member or reader on project {project_id}"
        )));
    }
    Ok((
        Identity {
            project_id: project_id.to_string(),
            roles,
            node: None,
        },
        expires,
    ))
}

/// Keystone's `2026-11-30T06:20:04.000000Z` (UTC, fraction optional).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim().strip_suffix('Z').unwrap_or(s.trim());
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split(['.', '+']).next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_times_parse() {
        let t = parse_time("2026-11-30T06:20:04.000000Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_796_019_604);
        assert_eq!(
            parse_time("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_time("2024-02-29T00:00:00").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800)
        );
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn roles_map_as_neutron_reads_them() {
        let body = |roles: &[&str], project: Value| {
            json!({"token": {"expires_at": "2099-01-01T00:00:00.000000Z", "project": project,
                "roles": roles.iter().map(|r| json!({"id": "x", "name": r})).collect::<Vec<_>>()}})
        };
        let (id, _) = parse_token(&body(&["reader"], json!({"id": "p1"}))).unwrap();
        assert_eq!(
            (id.project_id.as_str(), id.roles.clone()),
            ("p1", vec![Role::Reader])
        );
        let (id, _) = parse_token(&body(
            &["admin", "member", "reader", "manager"],
            json!({"id": "p"}),
        ))
        .unwrap();
        assert!(id.is_admin());
        assert_eq!(id.roles, vec![Role::Admin, Role::Member, Role::Reader]);
        let (id, _) = parse_token(&body(&["_member_"], json!({"id": "p"}))).unwrap();
        assert_eq!(id.roles, vec![Role::Member]);
        assert!(matches!(
            parse_token(&body(&["heat_stack_owner"], json!({"id": "p"}))),
            Err(KeystoneError::NoRole(_))
        ));
        assert!(matches!(
            parse_token(&body(&["member"], Value::Null)),
            Err(KeystoneError::Invalid(_))
        ));
        // A token file agent role never comes from Keystone.
        let (id, _) = parse_token(&body(&["agent", "member"], json!({"id": "p"}))).unwrap();
        assert_eq!(id.roles, vec![Role::Member]);
    }
}
