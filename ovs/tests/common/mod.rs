//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use ovs::sandbox::{Sandbox, SandboxOptions};
use ovs::{Client, ClientConfig};

/// A sandbox, or a test failure naming what is missing.
pub fn sandbox(opts: SandboxOptions) -> Sandbox {
    match Sandbox::start(opts) {
        Ok(s) => s,
        Err(e) => panic!("FAIL: cannot start the OVS sandbox this test needs: {e}"),
    }
}

/// A plain ovsdb-server sandbox.
pub fn ovsdb() -> Sandbox {
    sandbox(SandboxOptions::default())
}

/// Test settings: short timeouts and backoff so failures show quickly.
pub fn config(sb: &Sandbox) -> ClientConfig {
    let mut c = ClientConfig::new(sb.endpoint());
    c.request_timeout = Duration::from_secs(10);
    c.connect_timeout = Duration::from_secs(2);
    c.backoff_initial = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(400);
    c
}

pub async fn client(sb: &Sandbox) -> Client {
    Client::connect(config(sb))
        .await
        .unwrap_or_else(|e| panic!("connect to sandbox {}: {e}", sb.db_arg()))
}
