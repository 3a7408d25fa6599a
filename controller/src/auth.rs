//! Token authentication from a tokens file.
//!
//! File format, one token per line, fields separated by whitespace:
//!
//! ```text
//! # comment lines and blank lines are ignored
//! TOKEN  PROJECT  ROLES         [NODE]
//! s3cr3t admin    admin
//! tok-a  demo     member
//! agt-1  service  agent         node1
//! ```
//!
//! An `agent` token speaks only for the node in its fourth field (a node-bound token, the
//! simple alternative to an agent's TLS client certificate); an agent token without one is
//! refused by every node endpoint.
//!
//! `ROLES` is a comma-separated list of `admin`, `member`, `reader` and `agent`. The file is re-read
//! when its modification time or size changes, and at least once every [`RECHECK`] anyway:
//! a rewrite of the same size within the file system's time granularity keeps both, so what
//! decides is a hash of the content. A lab may thus change tokens while the controller runs.
//! A malformed line is skipped with a warning naming its line number.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

/// Longest time a lookup trusts an unchanged modification time and size.
pub const RECHECK: Duration = Duration::from_secs(1);

/// A role a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, every project.
    Admin,
    /// Own project's resources.
    Member,
    /// Reads its own project's resources, writes nothing (Neutron's `reader`).
    Reader,
    /// A node agent (the agent API).
    Agent,
}

/// Who is calling: the project and roles of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Project (tenant) id.
    pub project_id: String,
    /// Roles of the token.
    pub roles: Vec<Role>,
    /// The one node an agent credential speaks for (a node-bound token's fourth field, or
    /// the subject of an agent's TLS client certificate); `None` for people.
    pub node: Option<String>,
}

impl Identity {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
    /// Whether the caller may see/touch a resource owned by `project_id`.
    pub fn owns(&self, project_id: &str) -> bool {
        self.is_admin() || self.project_id == project_id
    }
}

/// Failure to load the tokens file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read.
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Default)]
struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    /// When the content was last read.
    read_at: Option<Instant>,
    /// Hash of the content last parsed.
    hash: Option<u64>,
    tokens: HashMap<String, Identity>,
}

/// The tokens file, cached and re-read when it changes.
pub struct TokenStore {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl TokenStore {
    /// A store reading `path` (lazily, on first lookup).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenStore {
            path: path.into(),
            loaded: RwLock::new(Loaded::default()),
        }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Look a token up, re-reading the file first if its stamp changed or [`RECHECK`]
    /// passed, and parsing it again if its content changed.
    pub fn lookup(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let read_err = |source| AuthError::Read {
            path: self.path.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.path).map_err(read_err)?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        {
            let g = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            let fresh = g.read_at.is_some_and(|t| t.elapsed() < RECHECK);
            if g.stamp == Some(stamp) && fresh {
                return Ok(g.tokens.get(token).cloned());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(read_err)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let hash = h.finish();
        let mut g = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        g.stamp = Some(stamp);
        g.read_at = Some(Instant::now());
        if g.hash != Some(hash) {
            g.tokens = parse(&text, &self.path);
            g.hash = Some(hash);
            tracing::info!(path = %self.path.display(), tokens = g.tokens.len(), "tokens file loaded");
        }
        Ok(g.tokens.get(token).cloned())
    }
}

/// Parse the tokens file text (see the module docs for the format).
pub fn parse(text: &str, path: &Path) -> HashMap<String, Identity> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (token, project, roles, node) = match fields.as_slice() {
            [t, p, r] => (t, p, r, None),
            [t, p, r, node] => (t, p, r, Some(node.to_string())),
            _ => {
                tracing::warn!(path = %path.display(), line = n + 1, "tokens file line is not TOKEN PROJECT ROLES [NODE]; skipped");
                continue;
            }
        };
        let mut parsed = Vec::new();
        let mut ok = true;
        for r in roles.split(',').filter(|r| !r.is_empty()) {
            match r {
                "admin" => parsed.push(Role::Admin),
                "member" => parsed.push(Role::Member),
                "reader" => parsed.push(Role::Reader),
                "agent" => parsed.push(Role::Agent),
                other => {
                    tracing::warn!(path = %path.display(), line = n + 1, role = other, "unknown role in tokens file; line skipped");
                    ok = false;
                }
            }
        }
        if ok && !parsed.is_empty() {
            out.insert(
                token.to_string(),
                Identity {
                    project_id: project.to_string(),
                    roles: parsed,
                    node,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_format_and_skips_garbage() {
        let t = parse(
            "# c\n\nadm admin admin\nm1 demo member # trailing\nbad line\nx p wizard\nag svc agent,member\nr1 demo reader\n",
            Path::new("t"),
        );
        assert_eq!(t.len(), 4);
        assert_eq!(t["r1"].roles, vec![Role::Reader]);
        assert!(t["adm"].is_admin());
        assert_eq!(t["m1"].project_id, "demo");
        assert!(!t["m1"].is_admin());
        assert_eq!(t["ag"].roles, vec![Role::Agent, Role::Member]);
    }

    #[test]
    fn rereads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "a p admin\n").unwrap();
        let s = TokenStore::new(&f);
        assert!(s.lookup("a").unwrap().is_some());
        assert!(s.lookup("b").unwrap().is_none());
        std::fs::write(&f, "a p admin\nb q member\n").unwrap();
        assert_eq!(s.lookup("b").unwrap().unwrap().project_id, "q");
    }

    #[test]
    fn rereads_a_same_size_rewrite_with_the_same_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "aa p admin\n").unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let s = TokenStore::new(&f);
        assert!(s.lookup("aa").unwrap().is_some());
        // Same size, and the mtime put back: only the content tells.
        std::fs::write(&f, "bb p admin\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!((meta.modified().unwrap(), meta.len()), (mtime, 11));
        std::thread::sleep(RECHECK + Duration::from_millis(100));
        assert!(s.lookup("bb").unwrap().is_some(), "the new token is seen");
        assert!(s.lookup("aa").unwrap().is_none(), "the old token is gone");
    }
}
