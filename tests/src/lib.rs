//! Helpers for crosspod's end-to-end tests: paths of the workspace and its built binaries, and
//! a lab per test ([`lab::Lab`]).

pub mod lab;

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

/// A binary of the workspace built next to this test (`cargo build --workspace --bins` puts
/// them in the same target directory; scripts/test.sh builds them before the tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>; benches (release) fall back to
    // the debug build, which `cargo build --workspace --bins` makes.
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the test runs from target/<profile>/deps");
    let candidates = [
        dir.join(name),
        dir.parent()
            .map(|t| t.join("debug").join(name))
            .unwrap_or_default(),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
                candidates[0].display()
            )
        })
}

/// Two distinct free TCP ports on loopback (both held while picking, since a port just released
/// by bind(0) is often handed out again at once).
pub fn free_port_pair() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    (
        a.local_addr().expect("its address").port(),
        b.local_addr().expect("its address").port(),
    )
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("its address")
        .port()
}
