//! The lab's tokens file, read by the controller (`--tokens-file`): one token per line,
//! `TOKEN PROJECT ROLES [NODE]` with roles comma-separated among admin, member, reader and
//! agent (the lab's agents use node certificates instead). The controller re-reads the file when it
//! changes, so `lab token` can append while it runs.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Project of the lab's admin token.
pub const ADMIN_PROJECT: &str = "admin";

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLine {
    /// The secret.
    pub token: String,
    /// Project (tenant) it acts as.
    pub project: String,
    /// Roles, e.g. `["member"]`.
    pub roles: Vec<String>,
    /// The node an agent token speaks for.
    pub node: Option<String>,
}

/// A fresh random token (128 bits from the OS, as hex).
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Reads every well-formed line of the file (a missing file has none).
pub fn read(path: &Path) -> Result<Vec<TokenLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (token, project, roles) = (f.next()?, f.next()?, f.next()?);
            Some(TokenLine {
                token: token.to_string(),
                project: project.to_string(),
                roles: roles.split(',').map(str::to_string).collect(),
                node: f.next().map(str::to_string),
            })
        })
        .collect())
}

/// Checks a project name and roles for the file's whitespace-separated format.
pub fn validate(project: &str, roles: &[String]) -> Result<()> {
    if project.is_empty() || project.chars().any(|c| c.is_whitespace() || c == '#') {
        bail!("project {project:?} must be non-empty, without whitespace or '#'");
    }
    for r in roles {
        if !["admin", "member", "reader", "agent"].contains(&r.as_str()) {
            bail!("role {r:?} is not one of admin, member, reader, agent");
        }
    }
    if roles.is_empty() {
        bail!("at least one role is needed");
    }
    Ok(())
}

/// Appends a new token for `project` with `roles` and returns it.
pub fn append(path: &Path, project: &str, roles: &[String]) -> Result<String> {
    append_line(path, project, roles, None)
}

fn append_line(path: &Path, project: &str, roles: &[String], node: Option<&str>) -> Result<String> {
    validate(project, roles)?;
    let token = new_token();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    match node {
        Some(n) => writeln!(f, "{token} {project} {} {n}", roles.join(",")),
        None => writeln!(f, "{token} {project} {}", roles.join(",")),
    }
    .with_context(|| format!("appending to {}", path.display()))?;
    Ok(token)
}

/// The first token of `project` carrying `role`, if any.
pub fn find(lines: &[TokenLine], project: &str, role: &str) -> Option<String> {
    lines
        .iter()
        .find(|l| l.project == project && l.roles.iter().any(|r| r == role))
        .map(|l| l.token.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_tokens_are_read_back_with_roles() {
        struct TempDir(std::path::PathBuf);
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("crosspod-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = TempDir(dir.clone());
        let f = dir.join("tokens");
        let _ = std::fs::remove_file(&f);
        let a = append(&f, "admin", &["admin".into()]).unwrap();
        let m = append(&f, "demo", &["member".into()]).unwrap();
        assert_ne!(a, m);
        let lines = read(&f).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(find(&lines, "demo", "member"), Some(m));
        assert_eq!(find(&lines, "admin", "admin"), Some(a));
        assert_eq!(find(&lines, "demo", "admin"), None);
        assert!(append(&f, "has space", &["member".into()]).is_err());
        assert!(append(&f, "p", &["root".into()]).is_err());
    }
}
