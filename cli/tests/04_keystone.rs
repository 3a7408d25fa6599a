//! Keystone from the CLI against a real Keystone: `crosspod keystone register` puts the
//! `network` service in the catalog once (a second run changes nothing, a new URL moves the
//! endpoints), and `crosspod lab up --keystone` runs the lab's own Keystone so that the
//! `openstack` CLI works with plain password auth, a reader cannot write, agents keep their
//! certificates, and `lab down` stops it and removes its files.

mod common;
#[path = "../../controller/tests/common/keystone.rs"]
mod keystone_server;

use std::process::Command;

use common::*;
use keystone_server::{Keystone, PASSWORD};
use serde_json::Value;

fn register(ks: &Keystone, url: &str) -> Value {
    let out = ok(crosspod()
        .args(["--json", "keystone", "register", "--url", url])
        .env("OS_AUTH_URL", ks.url())
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", PASSWORD)
        .env("OS_PROJECT_NAME", "admin")
        .env_remove("OS_REGION_NAME"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The catalog's network endpoints: (interface, url).
fn network_endpoints(ks: &Keystone) -> Vec<(String, String)> {
    let (s, v) = ks.admin("GET", "/v3/services?type=network", None);
    assert_eq!(s, 200);
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "one network service: {v}");
    let sid = services[0]["id"].as_str().unwrap();
    let (_, v) = ks.admin("GET", &format!("/v3/endpoints?service_id={sid}"), None);
    let mut e: Vec<(String, String)> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["interface"].as_str().unwrap().to_string(),
                e["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    e.sort();
    e
}

#[test]
fn keystone_register_is_idempotent() {
    let ks = Keystone::start();
    let first = register(&ks, "http://127.0.0.1:20001");
    assert_eq!(first["changed"], true, "{first}");
    assert_eq!(
        first["changes"].as_array().unwrap().len(),
        4,
        "service and three endpoints: {first}"
    );
    let want = |u: &str| {
        ["admin", "internal", "public"]
            .iter()
            .map(|i| (i.to_string(), u.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(network_endpoints(&ks), want("http://127.0.0.1:20001"));
    let again = register(&ks, "http://127.0.0.1:20001");
    assert_eq!(again["changed"], false, "a second run changed {again}");
    assert_eq!(network_endpoints(&ks), want("http://127.0.0.1:20001"));
    // The controller moved: the same three endpoints now point at it.
    let moved = register(&ks, "http://10.1.2.3:20001");
    assert_eq!(moved["changes"].as_array().unwrap().len(), 3, "{moved}");
    assert_eq!(network_endpoints(&ks), want("http://10.1.2.3:20001"));
    // Bad credentials: a clear failure, nothing registered.
    let out = output(
        crosspod()
            .args(["keystone", "register", "--url", "http://x:1"])
            .env("OS_AUTH_URL", ks.url())
            .env("OS_USERNAME", "admin")
            .env("OS_PASSWORD", "wrong")
            .env("OS_PROJECT_NAME", "admin"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused admin") && err.contains("401"),
        "{err}"
    );
}

/// `openstack` with the lab's env, as `user` of `project` when given.
fn openstack(lab: &Lab, user: Option<(&str, &str)>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(openstack_bin());
    for (k, v) in lab.env() {
        c.env(k, v);
    }
    if let Some((u, p)) = user {
        c.env("OS_USERNAME", u).env("OS_PROJECT_NAME", p);
    }
    c.env_remove("OS_CLOUD")
        .env_remove("OS_TOKEN")
        .env_remove("OS_ENDPOINT")
        .env("HOME", std::env::temp_dir())
        .args(args);
    output(&mut c)
}

#[test]
fn lab_up_keystone_gives_password_auth_and_lab_down_removes_it() {
    require_root_and_tools();
    require_openstack();
    keystone_server::venv();
    let lab = Lab::new();
    let ctl = require_controller();
    let up = ok(lab
        .up_cmd(&ctl, std::path::Path::new("/nonexistent/crosspod-agent"))
        .arg("--keystone"));
    assert!(!up.contains("WARNING: controller"), "{up}");
    assert!(up.contains("keystone"), "{up}");

    // Plain password auth, the endpoint from the catalog: no token, no endpoint override.
    let env = lab.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("OS_AUTH_TYPE").as_deref(), Some("password"));
    assert!(get("OS_AUTH_URL").unwrap().ends_with("/v3"));
    assert!(
        get("OS_ENDPOINT").is_none() && get("OS_TOKEN").is_none(),
        "{env:?}"
    );
    let o = openstack(&lab, None, &["network", "create", "-f", "json", "adm-net"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = openstack(
        &lab,
        Some(("demo", "demo")),
        &["network", "create", "-f", "json", "demo-net"],
    );
    assert!(
        o.status.success(),
        "demo: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = openstack(
        &lab,
        Some(("reader", "demo")),
        &["network", "list", "-f", "value", "-c", "Name"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "demo-net",
        "the reader sees demo's network only"
    );
    let o = openstack(
        &lab,
        Some(("reader", "demo")),
        &["network", "create", "r-net"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(create_network) is disallowed by policy"));
    let o = openstack(
        &lab,
        None,
        &["network", "list", "-f", "value", "-c", "Name"],
    );
    let all = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(all.contains("adm-net") && all.contains("demo-net"), "{all}");

    // The guide's curl with `$token` (a Keystone token now): step 5, a pod.
    let token = get("token").unwrap();
    ok(Command::new("curl").args([
        "-sS",
        "-f",
        "-X",
        "POST",
        &format!("http://127.0.0.1:{}/v1.0/pods", lab.tricircle_port),
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("X-Auth-Token: {token}"),
        "-d",
        r#"{"pod": {"region_name": "RegionOne", "az_name": "az1"}}"#,
    ]));
    // Agents keep their certificates: node1 registers on the agent listener.
    let reg = ok(Command::new("curl").args([
        "-sS", "-f", "-X", "POST",
        &format!("{}/v1.0/agents", get("CROSSPOD_AGENT_URL").unwrap()),
        "--cacert", &get("CROSSPOD_CA").unwrap(),
        "--cert", &get("CROSSPOD_AGENT_CERT_node1").unwrap(),
        "--key", &get("CROSSPOD_AGENT_KEY_node1").unwrap(),
        "-H", "Content-Type: application/json",
        "-d", r#"{"pod": "RegionOne", "node": "node1", "bridge_mappings": {"bridge": "br-vlan"}, "uplinks": ["bridge"]}"#,
    ]));
    assert!(reg.contains("node1"), "{reg}");

    // A tokens-file token for a person would not be accepted: `lab token` says so.
    let t = output(&mut lab.cmd(&["token", "--project", "demo"]));
    assert!(!t.status.success());
    assert!(String::from_utf8_lossy(&t.stderr).contains("authenticates people with Keystone"));

    // A second `up` changes nothing; status shows Keystone.
    let again = ok(lab
        .up_cmd(&ctl, std::path::Path::new("/nonexistent/crosspod-agent"))
        .arg("--keystone"));
    assert!(again.contains("nothing changed"), "{again}");
    let status = output(&mut lab.cmd(&["status"]));
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("keystone"), "{status}");

    // Down: Keystone stopped, its files gone.
    let kdir = lab.dir.join("keystone");
    assert!(
        !processes_mentioning(&kdir.display().to_string()).is_empty(),
        "Keystone runs"
    );
    ok(&mut lab.cmd(&["down"]));
    assert!(
        processes_mentioning(&kdir.display().to_string()).is_empty(),
        "Keystone still runs after down"
    );
    assert!(!kdir.exists());
}
