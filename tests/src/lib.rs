//! Helpers for crosspod's end-to-end tests: paths of the workspace and its built binaries.

use std::path::PathBuf;

/// The workspace root (the directory holding `Cargo.toml` of the workspace).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Fails the test with a message naming what is missing, instead of skipping it.
pub fn require_tool(tool: &str, hint: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` is not installed: {hint}");
}
