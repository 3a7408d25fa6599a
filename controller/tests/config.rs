//! Configuration precedence through the real binary: flags > CROSSPOD_* env > --config file
//! > defaults, checked with --print-config (whose output is itself a valid config file).
use std::process::Command;

fn print_config(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crosspod-controller"));
    cmd.arg("--print-config").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CROSSPOD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run crosspod-controller");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("printed config is TOML")
}

#[test]
fn defaults_are_the_guides() {
    let c = print_config(&[], &[]);
    assert_eq!(c["tricircle-port"].as_integer(), Some(19999));
    assert_eq!(c["neutron-port"].as_integer(), Some(20001));
    assert_eq!(c["bind"].as_str(), Some("0.0.0.0"));
    assert_eq!(
        c["database"].as_str(),
        Some("sqlite:///var/lib/crosspod/controller.db")
    );
    assert_eq!(c["tokens-file"].as_str(), Some("/etc/crosspod/tokens"));
    assert_eq!(
        c["network-vlan-ranges"].as_str(),
        Some("bridge:2001:3000,extern:3001:4000")
    );
    assert_eq!(c["bridge-cidr"].as_str(), Some("100.0.0.0/9"));
    assert_eq!(
        c["tenant-network-types"].as_array().unwrap()[0].as_str(),
        Some("local")
    );
}

#[test]
fn flags_beat_env_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("controller.toml");
    std::fs::write(
        &f,
        "neutron-port = 1111\ntricircle-port = 2222\nbind = \"127.0.0.2\"\nlog-format = \"json\"\n",
    )
    .unwrap();
    let c = print_config(
        &["--config", f.to_str().unwrap(), "--neutron-port", "3333"],
        &[
            ("CROSSPOD_NEUTRON_PORT", "4444"),
            ("CROSSPOD_TRICIRCLE_PORT", "5555"),
            ("CROSSPOD_TENANT_NETWORK_TYPES", "vlan,local"),
        ],
    );
    assert_eq!(
        c["neutron-port"].as_integer(),
        Some(3333),
        "flag beats env and file"
    );
    assert_eq!(
        c["tricircle-port"].as_integer(),
        Some(5555),
        "env beats file"
    );
    assert_eq!(c["bind"].as_str(), Some("127.0.0.2"), "file beats default");
    assert_eq!(c["log-format"].as_str(), Some("json"));
    assert_eq!(
        c["tenant-network-types"].as_array().unwrap()[0].as_str(),
        Some("vlan")
    );
    // The printed configuration round-trips as a config file.
    let g = dir.path().join("printed.toml");
    std::fs::write(&g, toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(print_config(&["--config", g.to_str().unwrap()], &[]), c);
}

#[test]
fn bad_config_fails_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_crosspod-controller"))
        .args(["--print-config", "--network-vlan-ranges", "bridge:10:5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("network-vlan-ranges"));
}
