//! The files that ship with crosspod: systemd units and the Vagrant lab, checked by the tools
//! that would load them (`systemd-analyze verify`, `vagrant validate`), offline.

use std::path::Path;
use std::process::Command;

use e2e::{require_tool, workspace_root};

/// Verifies one unit with `systemd-analyze verify`, with ExecStart's binary pointed at a real
/// executable so the check covers everything but the install path.
fn verify_unit(unit: &Path, binary: &str) {
    require_tool(
        "systemd-analyze",
        "install Debian's systemd (scripts/install-deps.sh)",
    );
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(unit).unwrap();
    let installed = format!("/usr/local/bin/{binary}");
    assert!(
        text.contains(&installed),
        "{} should start {installed}",
        unit.display()
    );
    assert!(
        text.contains("Type=notify"),
        "{} is not Type=notify",
        unit.display()
    );
    assert!(
        text.contains("WatchdogSec="),
        "{} has no watchdog",
        unit.display()
    );
    let stand_in = dir.path().join(binary);
    std::fs::copy("/bin/true", &stand_in).unwrap();
    let copy = dir.path().join(unit.file_name().unwrap());
    std::fs::write(&copy, text.replace(&installed, stand_in.to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {} failed: {stderr}",
        unit.display()
    );
}

#[test]
fn agent_unit_verifies() {
    let unit = workspace_root().join("agent/systemd/crosspod-agent.service");
    verify_unit(&unit, "crosspod-agent");
    let text = std::fs::read_to_string(&unit).unwrap();
    // Wants= (not Requires=): stopping or restarting OVS must not stop the agent for good
    // (tests/tests/vm_lab.rs proves it under systemd on a VM).
    assert!(text.contains("Wants=network-online.target openvswitch-switch.service"));
    assert!(!text.contains("Requires=openvswitch-switch.service"));
    assert!(text.contains("After=network-online.target openvswitch-switch.service"));
    assert!(text.contains("Restart=always"));
}

#[test]
fn controller_unit_verifies() {
    verify_unit(
        &workspace_root().join("controller/systemd/crosspod-controller.service"),
        "crosspod-controller",
    );
}

#[test]
fn a_broken_unit_is_caught() {
    // The check above must be able to fail: a unit with a bad directive does.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("crosspod-broken.service");
    std::fs::write(&unit, "[Service]\nType=notifyy\nExecStart=/bin/true\n").unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
}

#[test]
fn vagrantfile_validates() {
    require_tool(
        "vagrant",
        "install Debian's vagrant and vagrant-libvirt (scripts/install-deps.sh)",
    );
    let root = workspace_root().join("vagrant");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("vagrant")
        .arg("validate")
        .current_dir(&root)
        .env("VAGRANT_HOME", home.path().join("vagrant.d"))
        .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "vagrant validate failed: {text}");
    assert!(text.contains("validated successfully"), "{text}");
}

#[test]
fn shell_scripts_parse() {
    let root = workspace_root();
    for s in [
        "scripts/install-deps.sh",
        "scripts/test.sh",
        "scripts/demo.sh",
        "scripts/guide.sh",
        "scripts/lib/pg.sh",
        "vagrant/provision.sh",
        "vagrant/play-guide.sh",
        "vagrant/make-pki.sh",
        "vagrant/vmlab.sh",
        "vagrant/plug-vm.sh",
        "vagrant/image/firstboot.sh",
        "vagrant/libvirt.sh",
        "vagrant/bench.sh",
        "scripts/install-vm-deps.sh",
    ] {
        let p = root.join(s);
        assert!(p.is_file(), "{s} is missing");
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&p)
            .output()
            .expect("running bash -n");
        assert!(
            out.status.success(),
            "{s} does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A script with a syntax error is caught (the check can fail).
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "if then fi\n").unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn vmlab_runner_without_a_lab() {
    // The VM lab itself runs in tests/tests/vm_lab.rs (scripts/test.sh --vms); here only what
    // needs no VM: usage on a bad command, and status/down on a run directory that is not there.
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(workspace_root().join("vagrant/vmlab.sh"))
            .args(args)
            .env("CROSSPOD_VMLAB_DIR", dir.path().join("run"))
            .output()
            .expect("running vmlab.sh")
    };
    let usage = run(&["bogus"]);
    assert_eq!(usage.status.code(), Some(2));
    let text = String::from_utf8_lossy(&usage.stdout);
    for cmd in ["up", "down", "status", "ssh", "reboot", "env", "box"] {
        assert!(text.contains(&format!("vmlab.sh {cmd}")), "{cmd}: {text}");
    }
    let status = run(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "status of no lab is not success"
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("down"));
    assert!(run(&["down"]).status.success(), "down of no lab is a no-op");
    assert!(!run(&["env"]).status.success(), "env of no lab fails");
}

#[test]
fn shell_completions_are_valid_bash_and_know_the_commands() {
    let crosspod = e2e::workspace_binary("crosspod");
    let out = Command::new(&crosspod)
        .args(["completions", "bash"])
        .output()
        .expect("crosspod completions");
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    for word in ["lab", "vm", "probe", "completions"] {
        assert!(script.contains(word), "{word} missing from the completions");
    }
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &script).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bad = Command::new(&crosspod)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown shell is refused");
}

#[test]
fn vagrant_pki_is_made_once_and_verifies() {
    let root = workspace_root();
    let crosspod = root.join("target").join("debug").join("crosspod");
    assert!(
        crosspod.exists(),
        "{} is missing: cargo build --workspace --bins first",
        crosspod.display()
    );
    // A copy of the script in a temp dir: it writes pki/ next to itself.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("vagrant/make-pki.sh"),
        dir.path().join("make-pki.sh"),
    )
    .unwrap();
    let run = || {
        std::process::Command::new("bash")
            .arg(dir.path().join("make-pki.sh"))
            .env("CROSSPOD_BIN", &crosspod)
            .env("CROSSPOD_CONTROLLER_IP", "192.168.56.24")
            .output()
            .expect("running make-pki.sh")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pki = dir.path().join("pki");
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    // Every certificate verifies against the CA, for its purpose.
    for (name, purpose) in [
        ("node1", "sslclient"),
        ("node2", "sslclient"),
        ("controller", "sslserver"),
    ] {
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(pki.join("ca.pem"))
            .arg(pki.join(format!("{name}.pem")))
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(pki.join("controller.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("192.168.56.24"));
    // A second run keeps the CA (certificates already in the VMs stay valid).
    assert!(run().status.success());
    assert_eq!(std::fs::read(pki.join("ca.pem")).unwrap(), ca);
}
