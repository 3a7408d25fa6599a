//! A lab for one end-to-end test: `crosspod lab up` with its own directory, namespace prefix
//! and controller ports (so tests run in parallel), the guide played by scripts/guide.sh, and
//! `crosspod lab down` on drop, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port_pair, require_tool, workspace_binary, workspace_root};

/// The openstack CLI of the scripts' venv.
pub const OPENSTACK: &str = "/var/lib/crosspod/venv/bin/openstack";

/// A running lab.
pub struct Lab {
    /// The `crosspod` binary.
    pub crosspod: PathBuf,
    /// Lab directory.
    pub dir: PathBuf,
    /// Namespace prefix.
    pub prefix: String,
    /// Tricircle API port.
    pub tricircle: u16,
    /// Neutron API port.
    pub neutron: u16,
    /// Admin token.
    pub admin: String,
    /// Extra `lab up` arguments (`--pods 3 --nodes-per-pod 2`), repeated by `bring_up`.
    pub extra: Vec<String>,
    _tmp: tempfile::TempDir,
}

/// One node of the lab, as its state file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// `node1`, `node2` (the guide's lab) or `node<k>-<j>`.
    pub name: String,
    /// Its pod's region (`RegionOne`, ...).
    pub region: String,
    /// Its pod's availability zone (`az1`, ...).
    pub az: String,
    /// Its namespace.
    pub netns: String,
    /// Its tunnel IP on the underlay.
    pub tunnel_ip: Option<String>,
}

/// What scripts/guide.sh reported.
pub struct Played {
    /// Its stdout.
    pub out: String,
    /// vm1's and vm2's addresses and the floating IP.
    pub vm1_ip: String,
    /// vm2's address.
    pub vm2_ip: String,
    /// The floating IP bound to vm1.
    pub floating_ip: String,
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Lab {
    /// Brings the guide's lab (two pods of one node) up with prefix `<tag><pid>-`.
    pub fn up(tag: &str) -> Lab {
        Lab::up_with(tag, &[])
    }

    /// Brings a lab up with prefix `<tag><pid>-` and extra `lab up` arguments
    /// (`&["--pods", "3", "--nodes-per-pod", "2"]`).
    pub fn up_with(tag: &str, extra: &[&str]) -> Lab {
        require_tool("curl", "apt-get install curl (scripts/install-deps.sh)");
        require_tool("jq", "apt-get install jq (scripts/install-deps.sh)");
        assert!(
            Path::new(OPENSTACK).is_file(),
            "the openstack CLI venv is missing: run scripts/install-deps.sh"
        );
        let tmp = tempfile::tempdir().unwrap();
        let (tricircle, neutron) = free_port_pair();
        let mut lab = Lab {
            crosspod: workspace_binary("crosspod"),
            dir: tmp.path().join("lab"),
            prefix: format!("{tag}{}-", std::process::id() % 10_000),
            tricircle,
            neutron,
            admin: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        lab.bring_up();
        let env = lab.crosspod(&["lab", "env"], None);
        lab.admin = env
            .lines()
            .find_map(|l| l.strip_prefix("export OS_TOKEN="))
            .expect("lab env exports OS_TOKEN")
            .trim_matches('\'')
            .to_string();
        lab
    }

    /// `crosspod lab up` on this lab (idempotent: restarts what is not running).
    pub fn bring_up(&self) {
        run(
            Command::new(&self.crosspod)
                .args(["lab", "up", "--dir"])
                .arg(&self.dir)
                .args(["--prefix", &self.prefix])
                .args(["--tricircle-port", &self.tricircle.to_string()])
                .args(["--neutron-port", &self.neutron.to_string()])
                .args(&self.extra),
            "crosspod lab up",
        );
    }

    /// Runs `crosspod ARGS --dir DIR` with OS_ENDPOINT/OS_TOKEN (admin unless given).
    pub fn crosspod(&self, args: &[&str], token: Option<&str>) -> String {
        run(
            Command::new(&self.crosspod)
                .args(args)
                .arg("--dir")
                .arg(&self.dir)
                .env("OS_ENDPOINT", format!("http://127.0.0.1:{}", self.neutron))
                .env("OS_TOKEN", token.unwrap_or(&self.admin)),
            &format!("crosspod {args:?}"),
        )
    }

    /// Runs the openstack CLI with `token`.
    pub fn os(&self, token: &str, args: &[&str]) -> String {
        run(
            Command::new(OPENSTACK)
                .args(["--os-auth-type", "admin_token", "--os-endpoint"])
                .arg(format!("http://127.0.0.1:{}", self.neutron))
                .args(["--os-token", token])
                .args(args),
            &format!("openstack {args:?}"),
        )
    }

    /// An external network of the lab's upstream, as admin: `name` on VLAN `vlan` of the
    /// `extern` physnet hinted to `region`, with the IPv4 subnet `subnet` on `cidr` (no DHCP;
    /// gateway `gateway`, or the range's first address).
    pub fn external_network(
        &self,
        name: &str,
        region: &str,
        vlan: &str,
        cidr: &str,
        gateway: Option<&str>,
        subnet: &str,
    ) {
        self.os(
            &self.admin,
            &[
                "network",
                "create",
                "--external",
                "--provider-network-type",
                "vlan",
                "--provider-physical-network",
                "extern",
                "--provider-segment",
                vlan,
                "--availability-zone-hint",
                region,
                name,
            ],
        );
        let mut args = vec![
            "subnet",
            "create",
            "--network",
            name,
            "--no-dhcp",
            "--subnet-range",
            cidr,
        ];
        if let Some(gw) = gateway {
            args.extend(["--gateway", gw]);
        }
        args.push(subnet);
        self.os(&self.admin, &args);
    }

    /// The lab's nodes, pod by pod (from its state file).
    pub fn nodes(&self) -> Vec<LabNode> {
        self.read_nodes()
            .expect("the lab's state file lists its nodes")
    }

    fn read_nodes(&self) -> Option<Vec<LabNode>> {
        let text = std::fs::read_to_string(self.dir.join("state.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let s = |n: &serde_json::Value, k: &str| n[k].as_str().map(String::from);
        v["nodes"]
            .as_array()?
            .iter()
            .map(|n| {
                Some(LabNode {
                    name: s(n, "name")?,
                    region: s(n, "region")?,
                    az: s(n, "az")?,
                    netns: s(n, "netns")?,
                    tunnel_ip: s(n, "tunnel_ip"),
                })
            })
            .collect()
    }

    /// The lab's pods as `(region, az)`, in order.
    pub fn pods(&self) -> Vec<(String, String)> {
        let mut pods: Vec<(String, String)> = Vec::new();
        for n in self.nodes() {
            if !pods.iter().any(|(r, _)| *r == n.region) {
                pods.push((n.region, n.az));
            }
        }
        pods
    }

    /// Creates CentralRegion and every pod of the lab (RegionOne/az1, RegionTwo/az2, ...)
    /// with the Tricircle API, as the guide's curl commands do.
    pub fn create_pods(&self) {
        let mut bodies = vec![r#"{"pod": {"region_name": "CentralRegion"}}"#.to_string()];
        for (region, az) in self.pods() {
            bodies.push(format!(
                r#"{{"pod": {{"region_name": "{region}", "az_name": "{az}"}}}}"#
            ));
        }
        for body in bodies {
            let o = Command::new("curl")
                .args(["-sS", "--fail-with-body", "-X", "POST"])
                .arg(format!("http://127.0.0.1:{}/v1.0/pods", self.tricircle))
                .args(["-H", "Content-Type: application/json", "-H"])
                .arg(format!("X-Auth-Token: {}", self.admin))
                .args(["-d", &body])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        }
    }

    /// A namespace name of this lab.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Plays scripts/guide.sh (`order`: guide, gateway-first, ext-last) with VMs `vm1`, `vm2`.
    pub fn play_guide(&self, order: &str) -> Played {
        let o = Command::new("bash")
            .arg(workspace_root().join("scripts/guide.sh"))
            .env("CROSSPOD", &self.crosspod)
            .env("CROSSPOD_LAB_DIR", &self.dir)
            .env(
                "CROSSPOD_TRICIRCLE_URL",
                format!("http://127.0.0.1:{}", self.tricircle),
            )
            .env("OPENSTACK", OPENSTACK)
            .env("VM1", self.ns("vm1"))
            .env("VM2", self.ns("vm2"))
            .env("GUIDE_WAIT", "90")
            .env("GUIDE_ORDER", order)
            .output()
            .expect("running scripts/guide.sh");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "guide.sh failed:\n{out}\n{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.logs()
        );
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("guide.sh printed no {k}"))
                .trim()
                .to_string()
        };
        Played {
            vm1_ip: get("VM1_IP="),
            vm2_ip: get("VM2_IP="),
            floating_ip: get("FLOATING_IP="),
            out,
        }
    }

    /// The last lines of the controller's and agents' logs (for assertion messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        let mut files = vec!["controller/controller.log".to_string()];
        files.extend(
            self.read_nodes()
                .unwrap_or_default()
                .iter()
                .map(|n| format!("agents/{}.log", n.name)),
        );
        for f in &files {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                let tail: Vec<&str> = t.lines().rev().take(30).collect();
                s.push_str(&format!("--- {f}\n"));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(&self.crosspod)
            .args(["lab", "down", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// One ICMP echo from namespace `ns` (`wait` seconds for the answer).
pub fn ping(ns: &str, target: &str, wait: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W", wait, target])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Pings until the answer is `want` or `timeout` passes; returns whether it got there.
pub fn wait_ping(ns: &str, target: &str, want: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ping(ns, target, "1") == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Failure injection (`crosspod lab node ...`, router failover's failure model, issue #20).
impl Lab {
    /// `GET /v1.0/routers/{id}/placement` as admin, the body as text.
    pub fn placement_json(&self, router: &str) -> String {
        let o = Command::new("curl")
            .args(["-sS", "--fail-with-body"])
            .arg(format!(
                "http://127.0.0.1:{}/v1.0/routers/{router}/placement",
                self.tricircle
            ))
            .args(["-H", &format!("X-Auth-Token: {}", self.admin)])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Where `router`'s instance in `pod` runs, from the admin placement API: (active node,
    /// standbys in order).
    pub fn placement(&self, router: &str, pod: &str) -> (String, Vec<String>) {
        let text = self.placement_json(router);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("placement: {e}: {text}"));
        let inst = v["placement"]["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["pod"] == pod))
            .unwrap_or_else(|| panic!("no instance of {router} in {pod}: {text}"));
        let standbys = inst["standbys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        (
            inst["node"].as_str().unwrap_or_default().to_string(),
            standbys,
        )
    }

    fn node_cmd(&self, action: &str, name: &str) -> String {
        run(
            Command::new(&self.crosspod)
                .args(["lab", "node", action, name, "--dir"])
                .arg(&self.dir),
            &format!("crosspod lab node {action} {name}"),
        )
    }

    /// Powers node `name` off: its agent and OVS killed, its router/DHCP namespaces and VMs
    /// deleted, its cables without link.
    pub fn node_stop(&self, name: &str) -> String {
        self.node_cmd("stop", name)
    }

    /// Powers node `name` on again (OVS, cables, tunnel IP, agent; VMs are not rebooted).
    pub fn node_start(&self, name: &str) -> String {
        self.node_cmd("start", name)
    }

    /// Cuts node `name`'s cables at their far ends (its daemons keep running).
    pub fn node_cut(&self, name: &str) -> String {
        self.node_cmd("cut", name)
    }

    /// Mends node `name`'s cut cables.
    pub fn node_mend(&self, name: &str) -> String {
        self.node_cmd("mend", name)
    }

    /// Kills only node `name`'s agent (SIGKILL); [`Lab::bring_up`] restarts it.
    pub fn kill_agent(&self, name: &str) -> String {
        self.node_cmd("kill-agent", name)
    }
}

/// What a [`Pinger`] saw.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// The time of each echo reply, seconds since the epoch (ping's `-D`), in order.
    pub replies: Vec<f64>,
    /// Replies ping marked `DUP!` (two hosts answering for one address).
    pub duplicates: usize,
    /// When the pinger was stopped, seconds since the epoch.
    pub stopped_at: f64,
}

impl PingReport {
    /// The longest silence between two consecutive replies, as `(last reply before, first
    /// reply after)`: the failover gap. `None` with fewer than two replies.
    pub fn longest_gap(&self) -> Option<(f64, f64)> {
        self.replies
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)))
    }

    /// The length of [`PingReport::longest_gap`] (zero with fewer than two replies).
    pub fn gap(&self) -> Duration {
        self.longest_gap()
            .map(|(a, b)| Duration::from_secs_f64(b - a))
            .unwrap_or_default()
    }

    /// The silence from the last reply to the stop (long when traffic never came back).
    pub fn tail_silence(&self) -> Duration {
        self.replies
            .last()
            .map(|l| Duration::from_secs_f64((self.stopped_at - l).max(0.0)))
            .unwrap_or_default()
    }
}

/// `ping -D -i 0.1 -W 1 TARGET` running in a namespace in the background, collecting the
/// timestamps of its replies until [`Pinger::stop`]: the failover gap is measured from what
/// a client sees, not from what the daemons say.
pub struct Pinger {
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<(Vec<f64>, usize)>>,
}

impl Pinger {
    /// Starts pinging `target` from namespace `ns` every 100 ms.
    pub fn start(ns: &str, target: &str) -> Pinger {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-D", "-n", "-i", "0.1", "-W", "1",
            ])
            .arg(target)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("ping from {ns}: {e}"));
        let out = child.stdout.take().expect("ping's stdout");
        let reader = std::thread::spawn(move || {
            let mut replies = Vec::new();
            let mut dups = 0;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                // `[1700000000.123456] 64 bytes from 10.0.0.1: icmp_seq=3 ttl=64 time=0.4 ms`
                let Some(ts) = line
                    .strip_prefix('[')
                    .and_then(|l| l.split_once(']'))
                    .filter(|(_, rest)| rest.contains(" bytes from "))
                    .and_then(|(ts, _)| ts.parse::<f64>().ok())
                else {
                    continue;
                };
                if line.contains("DUP!") {
                    dups += 1;
                } else {
                    replies.push(ts);
                }
            }
            (replies, dups)
        });
        Pinger {
            child,
            reader: Some(reader),
        }
    }

    /// Stops the ping and returns what it saw.
    pub fn stop(mut self) -> PingReport {
        self.finish()
    }

    fn finish(&mut self) -> PingReport {
        let stopped_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs_f64();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (replies, duplicates) = self
            .reader
            .take()
            .map(|r| r.join().expect("the ping reader"))
            .unwrap_or_default();
        PingReport {
            replies,
            duplicates,
            stopped_at,
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.finish();
        }
    }
}

/// The distinct MACs answering ARP for `addr` on interface `ifname` of namespace `ns` during
/// `secs` seconds (iputils-arping, one probe a second: its `-i` takes whole seconds). The probes are those of duplicate address detection
/// (sender 0.0.0.0, so nobody learns the prober), but sent with `-b` rather than `-D`, which
/// quits at the first answer and so can never see a second one. Two MACs mean two nodes
/// serve the address at once.
pub fn arp_answerers(
    ns: &str,
    ifname: &str,
    addr: &str,
    secs: u32,
) -> std::collections::BTreeSet<String> {
    require_tool(
        "arping",
        "apt-get install iputils-arping (scripts/install-deps.sh)",
    );
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "arping", "-b", "-s", "0.0.0.0"])
        .args(["-I", ifname, "-w", &secs.to_string(), addr])
        .output()
        .unwrap_or_else(|e| panic!("arping from {ns}: {e}"));
    parse_arping(&String::from_utf8_lossy(&o.stdout))
}

/// The MACs of the `reply from ADDR [MAC]` lines of arping's output.
pub fn parse_arping(out: &str) -> std::collections::BTreeSet<String> {
    out.lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('[')?;
            let (mac, _) = rest.split_once(']')?;
            Some(mac.to_ascii_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_is_between_consecutive_replies() {
        let r = PingReport {
            replies: vec![10.0, 10.1, 10.2, 12.7, 12.8],
            duplicates: 0,
            stopped_at: 13.0,
        };
        assert_eq!(r.longest_gap(), Some((10.2, 12.7)));
        assert!((r.gap().as_secs_f64() - 2.5).abs() < 1e-6);
        assert!((r.tail_silence().as_secs_f64() - 0.2).abs() < 1e-6);
        let none = PingReport {
            replies: vec![1.0],
            duplicates: 0,
            stopped_at: 5.0,
        };
        assert_eq!(none.longest_gap(), None);
        assert_eq!(none.gap(), Duration::ZERO);
    }

    #[test]
    fn arping_answers_are_counted_by_mac() {
        let out = "ARPING 10.77.0.2 from 0.0.0.0 e0\n\
            Unicast reply from 10.77.0.2 [06:B5:5C:C3:00:28]  0.539ms\n\
            Unicast reply from 10.77.0.2 [96:CF:F3:C3:C0:54]  0.563ms\n\
            Unicast reply from 10.77.0.2 [06:B5:5C:C3:00:28]  0.558ms\n\
            Sent 2 probes (2 broadcast(s))\nReceived 3 response(s)\n";
        let macs = parse_arping(out);
        assert_eq!(macs.len(), 2, "{macs:?}");
        assert!(macs.contains("06:b5:5c:c3:00:28"));
        assert!(parse_arping("Sent 3 probes\nReceived 0 response(s)\n").is_empty());
    }
}
