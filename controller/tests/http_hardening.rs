//! HTTP hardening against the real binary: header, body and idle timeouts; long-poll caps per
//! node and per project; `/realized` woken by reports; `/metrics` labels bounded and every
//! line well-formed; a 401 never shows a file path.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::guide::{agent, desired, net_subnet, ok, pods, register, vm_port, AGENT};
use common::{Controller, Opts, ADMIN, DEMO};
use serde_json::{json, Value};

/// Short timeouts so the tests are quick: header 1 s, body 1 s, idle 2 s.
const SHORT: &[&str] = &[
    "--header-timeout",
    "1",
    "--body-timeout",
    "1",
    "--idle-timeout",
    "2",
];

fn start_short() -> Controller {
    Controller::start_opts(&Opts {
        extra: SHORT,
        ..Opts::default()
    })
}

/// Connect, send `bytes`, then read until the server closes: (what it sent, seconds until
/// the close counted from the send).
fn send_and_wait_close(addr: SocketAddr, bytes: &[u8]) -> (String, f64) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let t0 = Instant::now();
    s.write_all(bytes).expect("write");
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    let took = t0.elapsed().as_secs_f64();
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server did not close the connection within 15 s: {r:?}"
    );
    (String::from_utf8_lossy(&buf).into_owned(), took)
}

#[test]
fn a_stalled_or_trickled_head_is_cut_off_after_the_header_timeout() {
    let c = start_short();
    // Stalled: part of a header line, then nothing.
    let (got, took) = send_and_wait_close(
        c.tricircle,
        b"GET /v1.0/pods HTTP/1.1\r\nHost: x\r\nX-Auth-To",
    );
    assert!(got.is_empty(), "no answer to half a head: {got:?}");
    assert!((0.8..3.0).contains(&took), "closed after {took:.2} s");
    println!("stalled head closed after {took:.3} s (header timeout 1 s)");
    // Trickled: one byte every 200 ms keeps the socket busy but the head never ends.
    let mut s = TcpStream::connect(c.neutron).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = s.try_clone().unwrap();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        for b in b"GET /v2.0/networks HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaa" {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = t0.elapsed().as_secs_f64();
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    assert!(
        (0.8..3.0).contains(&took),
        "trickled head closed after {took:.2} s"
    );
    println!("trickled head closed after {took:.3} s");
    writer.join().unwrap();
    // The controller still serves.
    assert_eq!(c.t("GET", "/", None, None).0, 200);
}

#[test]
fn a_stalled_body_gets_408_and_the_connection_closes() {
    let c = start_short();
    let head = format!(
        "POST /v1.0/pods HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"pod\": "
    );
    let (got, took) = send_and_wait_close(c.tricircle, head.as_bytes());
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("RequestTimeout"), "Neutron-shaped: {got}");
    assert!(
        (0.8..3.0).contains(&took),
        "answered and closed after {took:.2} s"
    );
    println!("stalled body: 408 and close after {took:.3} s (body timeout 1 s)");
    let pods = ok(c.t("GET", "/v1.0/pods", Some(ADMIN), None), "pods");
    assert_eq!(pods["pods"], json!([]), "nothing was created");
}

#[test]
fn an_idle_keep_alive_connection_closes_after_the_idle_timeout_not_the_header_timeout() {
    let c = start_short();
    let mut s = TcpStream::connect(c.tricircle).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Longer than the header timeout, shorter than the idle timeout: still open.
    std::thread::sleep(Duration::from_millis(1400));
    let t0 = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(
        text.matches("HTTP/1.1 200").count(),
        2,
        "both requests answered on one connection: {text}"
    );
    assert!(
        (1.7..4.0).contains(&took),
        "closed {took:.2} s after the last request"
    );
    println!("idle connection closed {took:.3} s after its last request (idle timeout 2 s)");
}

/// Pods, node1 in RegionOne and node2 in RegionTwo (agent token), a DEMO network with a VM
/// port on node1 and a router on its subnet: (router id, node1's published revision).
fn router_on_node1(c: &Controller) -> (String, u64) {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "register node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", false),
        "register node2",
    );
    let (net, subnet) = net_subnet(c, "net1", "10.0.1.0/24");
    vm_port(c, &net, "node1");
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({"router": {"name": "r1"}})),
        ),
        "router",
    );
    let router = r["router"]["id"].as_str().unwrap().to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": subnet})),
        ),
        "add_router_interface",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = desired(c, "node1");
        if d["state"]["routers"][&router].is_object() {
            return (router, d["revision"].as_u64().unwrap());
        }
        assert!(Instant::now() < deadline, "router never reached node1: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn in_thread(
    c: &Controller,
    path: String,
    token: &str,
) -> std::thread::JoinHandle<(u16, Value, f64)> {
    let addr = c.tricircle;
    let token = token.to_string();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let (s, b) = common::request(addr, "GET", &path, Some(&token), None);
        (s, b, t0.elapsed().as_secs_f64())
    })
}

#[test]
fn long_polls_are_capped_per_node_and_per_project_outlive_the_timeouts_and_realized_wakes_on_reports(
) {
    let mut extra = SHORT.to_vec();
    extra.extend([
        "--long-polls-per-node",
        "2",
        "--long-polls-per-project",
        "1",
    ]);
    let c = Controller::start_opts(&Opts {
        extra: &extra,
        tokens: &[&format!("{AGENT} service agent")],
        ..Opts::default()
    });
    let (router, rev1) = router_on_node1(&c);
    let rev2 = desired(&c, "node2")["revision"].as_u64().unwrap_or(0);

    // Two waits on node1 fill its places; a third gets 429; node2 is not throttled. The waits last 3 s: longer than the header (1 s) and idle (2 s) timeouts.
    let poll = |node: &str, rev: u64, secs: u64| {
        in_thread(
            &c,
            format!("/v1.0/agents/{node}/desired?since={rev}&timeout={secs}"),
            &agent(node),
        )
    };
    let a = poll("node1", rev1, 3);
    let b = poll("node1", rev1, 3);
    std::thread::sleep(Duration::from_millis(500));
    let (s, body) = c.t(
        "GET",
        &format!("/v1.0/agents/node1/desired?since={rev1}&timeout=3"),
        Some(&agent("node1")),
        None,
    );
    assert_eq!(s, 429, "{body}");
    assert_eq!(body["NeutronError"]["type"], "TooManyRequests", "{body}");
    // An answer at once (since=0) takes no place.
    assert_eq!(
        c.t(
            "GET",
            "/v1.0/agents/node1/desired?since=0",
            Some(&agent("node1")),
            None
        )
        .0,
        200
    );
    let other = poll("node2", rev2, 1);
    let (s, _, took) = other.join().unwrap();
    assert!(s == 204 || s == 200, "node2 is not throttled: {s}");
    println!("node2's poll answered {s} after {took:.3} s");
    for h in [a, b] {
        let (s, body, took) = h.join().unwrap();
        assert_eq!(s, 204, "a 3 s long-poll outlives the timeouts: {body}");
        assert!(took >= 2.9, "{took}");
    }
    // Places are released.
    let (s, _, _) = poll("node1", rev1, 1).join().unwrap();
    assert_eq!(s, 204);

    // /realized: not realized until node1 reports; one wait per project.
    let path = format!("/v1.0/routers/{router}/realized?timeout=20");
    let w = in_thread(&c, path.clone(), DEMO);
    std::thread::sleep(Duration::from_millis(500));
    let (s, body) = c.t("GET", &path, Some(DEMO), None);
    assert_eq!(s, 429, "{body}");
    assert_eq!(body["NeutronError"]["type"], "TooManyRequests");
    // The admin is another caller.
    let (s, body) = c.t(
        "GET",
        &format!("/v1.0/routers/{router}/realized?timeout=1"),
        Some(ADMIN),
        None,
    );
    assert_eq!((s, &body["realized"]), (200, &json!(false)), "{body}");
    let report = json!({"node": "node1", "revision_applied": rev1, "ports": [],
        "routers": [{"router_id": router, "state": "ready"}], "probes": [], "errors": []});
    let t_report = Instant::now();
    let (s, body) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&agent("node1")),
        Some(&report),
    );
    assert_eq!(s, 204, "{body}");
    let (s, body, _) = w.join().unwrap();
    let after = t_report.elapsed().as_secs_f64();
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["realized"], true, "{body}");
    // The 2 s fallback re-check did not answer it: the report woke it.
    assert!(after < 1.0, "answered {after:.3} s after the report");
    println!(
        "/realized answered {:.1} ms after the status report",
        after * 1000.0
    );
    assert!(!c.log_has_5xx());
}

/// One line of the text exposition: a comment (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) or a
/// sample `name{k="v",...} value` with values escaped as the format wants; `Err` says why not.
fn check_line(line: &str) -> Result<(), String> {
    if let Some(rest) = line.strip_prefix("# ") {
        let mut w = rest.splitn(3, ' ');
        return match (w.next(), w.next()) {
            (Some("EOF"), None) => Ok(()),
            (Some("HELP" | "TYPE" | "UNIT"), Some(name)) if is_name(name) => Ok(()),
            _ => Err("bad comment".into()),
        };
    }
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    if !is_name(&line[..name_end]) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let mut chars = labels.char_indices().peekable();
        loop {
            // name="value"
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            let eq = labels[start..].find('=').ok_or("label without =")? + start;
            if !is_name(&labels[start..eq]) || labels[start..].starts_with(':') {
                return Err(format!("bad label name {:?}", &labels[start..eq]));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' | '"' | 'n' => {}
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    '"' => break,
                    '\n' => return Err("raw newline in a label value".into()),
                    _ => {}
                }
            }
            match chars.next().ok_or("unterminated labels")? {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &labels[i + 1..];
                    break;
                }
                (_, c) => return Err(format!("unexpected {c:?} after a label value")),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    if ok {
        Ok(())
    } else {
        Err(format!("bad value {value:?}"))
    }
}

fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn scrape(c: &Controller) -> String {
    let (s, body) = common::request_raw(c.tricircle, "GET", "/metrics", None, None, &[]);
    assert_eq!(s, 200);
    let text = String::from_utf8(body).expect("UTF-8 exposition");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for (n, line) in text.lines().enumerate() {
        if let Err(why) = check_line(line) {
            panic!(
                "line {} of /metrics does not parse ({why}): {line:?}\n{text}",
                n + 1
            );
        }
    }
    text
}

/// The request series (what requests can add; the realizer's own series may appear at any
/// time in the background).
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("crosspod_controller_api_request"))
        .count()
}

#[test]
fn the_line_checker_refuses_what_breaks_the_format() {
    assert!(check_line(r#"a_total{route="/v2.0/ports/{id}",s="200"} 1"#).is_ok());
    assert!(check_line(r#"a{v="x\"y\\z\n"} 1.5"#).is_ok());
    assert!(check_line("a_bucket{le=\"+Inf\"} 3").is_ok());
    assert!(check_line(r#"a{v="x"y"} 1"#).is_err());
    assert!(check_line(r#"a{v="x\y"} 1"#).is_err());
    assert!(check_line(r#"a{v="x} 1"#).is_err());
    assert!(check_line("a{v=\"x\ny\"} 1").is_err());
    assert!(check_line("# HELP a the help").is_ok());
    assert!(check_line("a 1 2 3").is_err());
}

#[test]
fn metrics_label_routes_by_template_and_junk_paths_do_not_grow_or_break_them() {
    let c = Controller::start();
    let junk = |i: usize| {
        [
            format!("/junk-{i}"),
            format!("/v2.0/networks/{i}/x/y"),
            format!("/q\"uote{i}"),
            format!("/back\\slash{i}"),
            format!("/new%0Aline{i}%22%5C"),
            format!("/v1.0/zzz{i}"),
        ]
    };
    let send = |i: usize| {
        for p in junk(i) {
            let api = [c.tricircle, c.neutron][i % 2];
            let (s, _) = common::request_raw(api, "GET", &p, None, None, &[]);
            assert!(s >= 400, "{p}: {s}");
            common::request_raw(api, "BREW", &p, None, None, &[]);
        }
    };
    // Every shape of junk once on each API, known routes with ids, and a scrape.
    send(0);
    send(1);
    ok(c.n("GET", "/v2.0/networks", Some(DEMO), None), "networks");
    c.n(
        "GET",
        "/v2.0/ports/3f0c9a1e-6b2d-4a8e-9c1f-000000000001",
        Some(DEMO),
        None,
    );
    c.n("GET", "/v2.0/ports/another-id.json", Some(DEMO), None);
    scrape(&c);
    let before = scrape(&c);
    for i in 2..102 {
        send(i);
    }
    c.n("GET", "/v2.0/ports/yet-another-id", Some(DEMO), None);
    let after = scrape(&c);
    assert_eq!(
        series(&before),
        series(&after),
        "junk paths added series:\n{after}"
    );
    println!(
        "{} request series before and after 1200 junk requests",
        series(&after)
    );
    for want in [
        r#"route="unmatched""#,
        r#"route="/v2.0/ports/{id}""#,
        r#"route="/v2.0/networks""#,
        r#"route="/metrics""#,
        r#"method="other""#,
    ] {
        assert!(after.contains(want), "{want} missing:\n{after}");
    }
    for bad in [
        "junk-",
        "uote",
        "slash",
        "%0A",
        "zzz",
        "3f0c9a1e",
        "another-id",
    ] {
        assert!(!after.contains(bad), "{bad} leaked into a label:\n{after}");
    }
}

#[test]
fn a_401_shows_no_file_path_when_the_tokens_file_is_gone_or_unreadable() {
    let c = Controller::start();
    assert_eq!(c.n("GET", "/v2.0/networks", Some(DEMO), None).0, 200);
    let file = c.tokens_file();
    let saved = std::fs::read(&file).unwrap();
    let check = |what: &str| {
        let (s, body) = c.n("GET", "/v2.0/networks", Some(DEMO), None);
        assert_eq!(s, 401, "{what}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains('/'),
            "{what}: the 401 body shows a path: {text}"
        );
        assert!(body["NeutronError"]["message"].is_string(), "{body}");
    };
    std::fs::remove_file(&file).unwrap();
    check("removed");
    // A directory in its place cannot be read, even by root.
    std::fs::create_dir(&file).unwrap();
    check("a directory");
    std::fs::remove_dir(&file).unwrap();
    std::fs::write(&file, &saved).unwrap();
    assert_eq!(
        c.n("GET", "/v2.0/networks", Some(DEMO), None).0,
        200,
        "read again once it is back"
    );
}
