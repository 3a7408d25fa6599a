//! The lab with the real controller: `lab up` starts it on the lab's ports with SQLite in the
//! lab directory, `lab env` drives the real openstack CLI and the guide's curl, and tokens
//! made by `lab token` are accepted while it runs.

mod common;

use std::process::Command;

use common::*;

#[test]
fn lab_env_drives_the_openstack_cli_and_the_guides_curl() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    lab.up_with_controller();
    let pid_file = lab.dir.join("controller").join("controller.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // A second `up` with the controller running changes nothing.
    let again = ok(&mut lab.up_cmd(
        &require_controller(),
        std::path::Path::new("/nonexistent/a"),
    ));
    assert!(again.contains("nothing changed"), "{again}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        pid,
        "controller restarted"
    );
    assert!(
        lab.dir.join("controller").join("controller.db").exists(),
        "SQLite store not in the lab dir"
    );

    let env = lab.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("OS_AUTH_TYPE").as_deref(), Some("admin_token"));
    assert_eq!(
        get("OS_ENDPOINT"),
        Some(format!("http://127.0.0.1:{}", lab.neutron_port))
    );
    let token = get("token").expect("token exported");
    let as_json: serde_json::Value =
        serde_json::from_str(&ok(&mut lab.cmd(&["env", "--json"]))).unwrap();
    assert_eq!(as_json["OS_TOKEN"], token.as_str());
    assert_eq!(as_json["CROSSPOD_OVSDB_node2"], lab.db("node2").as_str());
    assert_eq!(get("OS_TOKEN"), Some(token.clone()));

    // The guide's step 5, verbatim but for the port.
    let pod = ok(Command::new("curl").args([
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
        r#"{"pod": {"region_name":  "RegionOne", "az_name": "az1"}}"#,
    ]));
    assert!(pod.contains("RegionOne"), "{pod}");

    let id = lab.network("labnet", "10.9.0.0/24");
    let list = ok(&mut lab.openstack(
        None,
        &["network", "list", "-f", "value", "-c", "ID", "-c", "Name"],
    ));
    assert!(list.contains(&id) && list.contains("labnet"), "{list}");

    // A member token of another project is accepted at once and sees none of admin's networks.
    let demo = ok(&mut lab.cmd(&["token", "--project", "demo"]))
        .trim()
        .to_string();
    assert_eq!(demo.len(), 32, "unexpected token {demo:?}");
    let tokens = std::fs::read_to_string(lab.dir.join("tokens")).unwrap();
    assert!(tokens.contains(&format!("{demo} demo member")), "{tokens}");
    let demo_list =
        ok(&mut lab.openstack(Some(&demo), &["network", "list", "-f", "value", "-c", "ID"]));
    assert!(
        !demo_list.contains(&id),
        "project isolation broken: {demo_list}"
    );
    let bad = output(&mut lab.openstack(Some("not-a-token"), &["network", "list"]));
    assert!(!bad.status.success(), "an unknown token was accepted");

    // Status sees the controller and its two APIs.
    let st = output(&mut lab.cmd(&["status", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    for name in [
        "controller",
        &format!("neutron 127.0.0.1:{}", lab.neutron_port),
        &format!("tricircle 127.0.0.1:{}", lab.tricircle_port),
    ] {
        let item = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in status"));
        assert_eq!(item["ok"], true, "{name}: {item}");
    }

    // Down stops the controller too.
    ok(&mut lab.cmd(&["down"]));
    assert!(processes_mentioning(&format!("{}/", lab.dir.display())).is_empty());
    assert!(Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{}/", lab.neutron_port)])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true));
}

#[test]
fn lab_up_runs_one_agent_per_node_with_the_node_flags_or_says_why_not() {
    require_root_and_tools();
    let ctl = require_controller();
    let agent = agent_bin();
    assert!(
        agent.exists(),
        "agent binary {} is missing: build it with `cargo build -p agent` into the same target dir, or set CROSSPOD_AGENT_BIN",
        agent.display()
    );
    let lab = Lab::new();
    let out = ok(&mut lab.up_cmd(&ctl, &agent));
    assert!(!out.contains("WARNING: controller"), "{out}");
    let mut running = 0;
    for (node, region) in [("node1", "RegionOne"), ("node2", "RegionTwo")] {
        // Each agent's log starts with the command line the lab gave it.
        let log =
            std::fs::read_to_string(lab.dir.join("agents").join(format!("{node}.log"))).unwrap();
        let started = log
            .lines()
            .find(|l| l.starts_with("crosspod lab: starting "))
            .unwrap_or_else(|| panic!("no command line in the agent log of {node}:\n{log}"));
        let args: Vec<&str> = started.split_whitespace().collect();
        for want in [
            format!("--pod={region}"),
            format!("--node={node}"),
            format!("--node-netns={}", lab.ns(node)),
            format!("--netns-prefix={}-", lab.ns(node)),
            "--datapath-type=netdev".to_string(),
            format!("--ovsdb={}", lab.db(node)),
            format!(
                "--tls-cert={}",
                lab.dir.join("pki").join(format!("{node}.pem")).display()
            ),
            format!(
                "--tls-key={}",
                lab.dir.join("pki").join(format!("{node}.key")).display()
            ),
            format!("--ca={}", lab.dir.join("pki").join("ca.pem").display()),
        ] {
            assert!(
                args.contains(&want.as_str()),
                "agent of {node} lacks {want}: {started}"
            );
        }
        // The agent channel is mutual TLS on the controller's agent listener.
        assert!(
            args.iter()
                .any(|a| a.starts_with("--controller-url=https://127.0.0.1:")),
            "agent of {node} is not sent to the agent listener over TLS: {started}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--token")),
            "agent of {node} still gets a token: {started}"
        );
        // The unfinished agent may exit at once: then `lab up` must say so, with its log.
        let pid_file = lab.dir.join("agents").join(format!("{node}.pid"));
        if pid_file.exists() {
            running += 1;
        } else {
            assert!(
                out.contains(&format!("WARNING: agent@{node} is not running")),
                "agent@{node} neither runs nor is reported:\n{out}"
            );
        }
    }
    // The agents' credentials are node certificates from the lab's CA, keys private; no
    // agent token is handed out.
    for node in ["node1", "node2"] {
        let cert =
            std::fs::read_to_string(lab.dir.join("pki").join(format!("{node}.pem"))).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(lab.dir.join("pki").join(format!("{node}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{node}'s key is private");
    }
    let tokens = std::fs::read_to_string(lab.dir.join("tokens")).unwrap();
    assert!(!tokens.lines().any(|l| l.contains(" agent")), "{tokens}");
    if running == 2 {
        // Everything is up, the agents' metrics included: status exits 0 (the agents may
        // still be binding their metrics port on a loaded machine: allow 20s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let st = output(&mut lab.cmd(&["status"]));
            if st.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lab status still reports something down:\n{}",
                String::from_utf8_lossy(&st.stdout)
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    } else {
        let st = output(&mut lab.cmd(&["status"]));
        assert_eq!(
            st.status.code(),
            Some(3),
            "status must flag the missing agent"
        );
    }
    ok(&mut lab.cmd(&["down"]));
    assert!(
        processes_mentioning(&format!("{}/", lab.dir.display())).is_empty(),
        "agents survived down"
    );
}

#[test]
fn lab_up_tls_serves_the_user_apis_over_https() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    let ctl = require_controller();
    let out = ok(lab
        .up_cmd(&ctl, std::path::Path::new("/nonexistent/crosspod-agent"))
        .arg("--tls"));
    assert!(!out.contains("WARNING: controller"), "{out}");
    let endpoint = lab.env_var("OS_ENDPOINT");
    assert_eq!(endpoint, format!("https://127.0.0.1:{}", lab.neutron_port));
    let ca = lab.env_var("OS_CACERT");
    assert!(ca.ends_with("pki/ca.pem"), "{ca}");
    let token = lab.env_var("token");
    // The guide's step 5 over https, trusting the lab's CA only.
    let pod = ok(Command::new("curl").args([
        "-sS",
        "-f",
        "--cacert",
        &ca,
        "-X",
        "POST",
        &format!("https://127.0.0.1:{}/v1.0/pods", lab.tricircle_port),
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("X-Auth-Token: {token}"),
        "-d",
        r#"{"pod": {"region_name":  "RegionOne", "az_name": "az1"}}"#,
    ]));
    assert!(pod.contains("RegionOne"), "{pod}");
    // Plain HTTP gets no answer there, and no CA means no trust.
    for args in [
        vec![
            "-sS".to_string(),
            "-f".into(),
            format!("http://127.0.0.1:{}/v1.0/pods", lab.tricircle_port),
        ],
        vec![
            "-sS".to_string(),
            "-f".into(),
            format!("https://127.0.0.1:{}/v1.0/pods", lab.tricircle_port),
        ],
    ] {
        let o = output(
            Command::new("curl")
                .args(&args)
                .args(["-H", &format!("X-Auth-Token: {token}")]),
        );
        assert!(!o.status.success(), "{args:?} succeeded");
    }
    // The openstack CLI, unchanged, over https with OS_CACERT.
    let id = lab.network("tlsnet", "10.8.0.0/24");
    let list = ok(&mut lab.openstack(
        None,
        &["network", "list", "-f", "value", "-c", "ID", "-c", "Name"],
    ));
    assert!(list.contains(&id) && list.contains("tlsnet"), "{list}");
    // The lab's own client (status) speaks https too: both APIs answer.
    let st = output(&mut lab.cmd(&["status", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    for name in [
        format!("neutron 127.0.0.1:{}", lab.neutron_port),
        format!("tricircle 127.0.0.1:{}", lab.tricircle_port),
    ] {
        let item = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in status"));
        assert_eq!(item["ok"], true, "{name}: {item}");
    }
}
