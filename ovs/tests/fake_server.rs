//! A misbehaving server (a tokio UnixListener in the test): every failure is an error within
//! the configured time, never a hang or a panic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ovs::{Client, ClientConfig, Endpoint, Error};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

struct Fake {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

fn fake() -> Fake {
    let dir = tempfile::Builder::new()
        .prefix("ovs-fake-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("db.sock");
    let listener = UnixListener::bind(&path).unwrap();
    Fake {
        _dir: dir,
        path,
        listener,
    }
}

fn config(path: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(Endpoint::Unix(path.to_path_buf()));
    c.request_timeout = Duration::from_millis(500);
    c.connect_timeout = Duration::from_millis(500);
    c.inactivity_probe = None;
    c.reconnect = false;
    c
}

/// Reads one JSON request from the client.
async fn read_request(s: &mut UnixStream) -> Json {
    let mut split = ovs::framing::JsonSplitter::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed");
        if let Some(m) = split.push(&buf[..n]).unwrap().into_iter().next() {
            return serde_json::from_slice(&m).unwrap();
        }
    }
}

/// Runs `call` against a server that behaves as `serve`, bounded by a hard 5 s limit.
async fn against<F, Fut>(
    cfg: impl FnOnce(&Path) -> ClientConfig,
    serve: F,
) -> Result<Vec<String>, Error>
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = fake();
    let c = cfg(&f.path);
    let listener = f.listener;
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        serve(s).await;
    });
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let client = Client::connect(c).await?;
        client.list_dbs().await
    })
    .await
    .expect("the client hung instead of failing");
    server.abort();
    r
}

#[tokio::test]
async fn garbage_is_an_error() {
    let e = against(config, |mut s| async move {
        read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Disconnected { reason, .. } if reason.contains("bad framing")),
        "{e}"
    );
}

#[tokio::test]
async fn invalid_json_inside_braces_is_an_error() {
    let e = against(config, |mut s| async move {
        read_request(&mut s).await;
        s.write_all(b"{\"id\":1,\"result\":[nope]}").await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Disconnected { reason, .. } if reason.contains("invalid JSON")),
        "{e}"
    );
}

#[tokio::test]
async fn truncated_object_then_close_is_an_error() {
    let e = against(config, |mut s| async move {
        let req = read_request(&mut s).await;
        let reply = format!(r#"{{"id":{},"result":["Open_vSw"#, req["id"]);
        s.write_all(reply.as_bytes()).await.unwrap();
        drop(s);
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Disconnected { reason, .. } if reason.contains("middle of a message")),
        "{e}"
    );
}

#[tokio::test]
async fn never_answering_times_out() {
    let e = against(config, |mut s| async move {
        read_request(&mut s).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Timeout { method, .. } if method == "list_dbs"),
        "{e}"
    );
}

#[tokio::test]
async fn silent_server_is_declared_dead_by_the_probe() {
    let cfg = |p: &Path| {
        let mut c = config(p);
        c.request_timeout = Duration::from_secs(30);
        c.inactivity_probe = Some(Duration::from_millis(200));
        c
    };
    let t0 = std::time::Instant::now();
    let e = against(cfg, |mut s| async move {
        // Reads everything (including the echo probe) and never answers.
        let mut buf = [0u8; 4096];
        while s.read(&mut buf).await.unwrap_or(0) > 0 {}
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Disconnected { reason, .. } if reason.contains("presumed dead")),
        "{e}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn answers_server_echo_and_copes_with_byte_by_byte_replies() {
    let r = against(config, |mut s| async move {
        let req = read_request(&mut s).await;
        // The server probes us first; we must answer with the same params and id.
        s.write_all(br#"{"id":"probe-1","method":"echo","params":["x",{"y":"}"}]}"#).await.unwrap();
        let echo = read_request(&mut s).await;
        assert_eq!(echo["id"], "probe-1");
        assert_eq!(echo["result"], json!(["x", {"y": "}"}]));
        assert!(echo["error"].is_null());
        // Then the reply, one byte per write, with an update notification in front in the same stream.
        let reply = format!(
            r#"{{"id":null,"method":"update3","params":["unknown-monitor","00000000-0000-0000-0000-000000000000",{{}}]}}{{"id":{},"result":["Open_vSwitch","a\"}}b"],"error":null}}"#,
            req["id"]
        );
        for b in reply.as_bytes() {
            s.write_all(&[*b]).await.unwrap();
            s.flush().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await
    .unwrap();
    assert_eq!(r, vec!["Open_vSwitch".to_string(), "a\"}b".to_string()]);
}

#[tokio::test]
async fn replies_out_of_order_reach_their_callers() {
    let f = fake();
    let listener = f.listener;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut split = ovs::framing::JsonSplitter::new();
        let mut reqs = Vec::new();
        let mut buf = [0u8; 4096];
        while reqs.len() < 3 {
            let n = s.read(&mut buf).await.unwrap();
            for m in split.push(&buf[..n]).unwrap() {
                reqs.push(serde_json::from_slice::<Json>(&m).unwrap());
            }
        }
        // Answer in reverse, all in one write; each echo returns its own params.
        let mut out = String::new();
        for r in reqs.iter().rev() {
            out += &json!({"id": r["id"], "result": r["params"], "error": null}).to_string();
        }
        s.write_all(out.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let c = Client::connect(config(&f.path)).await.unwrap();
    let calls = (0..3).map(|i| {
        let c = c.clone();
        async move { c.call("echo", json!([i])).await.unwrap() }
    });
    let got = tokio::time::timeout(Duration::from_secs(5), futures_join(calls.collect()))
        .await
        .expect("replies matched");
    assert_eq!(got, vec![json!([0]), json!([1]), json!([2])]);
    server.abort();
}

async fn futures_join<F: std::future::Future<Output = Json> + Send + 'static>(
    fs: Vec<F>,
) -> Vec<Json> {
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn connect_refused_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Client::connect(config(&dir.path().join("none.sock")))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
}

#[tokio::test]
async fn falls_back_to_monitor_cond_and_follows_update2() {
    let schema: Json = serde_json::from_str(
        &std::fs::read_to_string(ovs::sandbox::VSWITCH_SCHEMA)
            .expect("FAIL: vswitch.ovsschema missing (apt-get install openvswitch-switch)"),
    )
    .unwrap();
    let f = fake();
    let listener = f.listener;
    let b1 = "11111111-1111-1111-1111-111111111111";
    let b2 = "22222222-2222-2222-2222-222222222222";
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut split = ovs::framing::JsonSplitter::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            for m in split.push(&buf[..n]).unwrap() {
                let req: Json = serde_json::from_slice(&m).unwrap();
                let id = req["id"].clone();
                let reply = match req["method"].as_str().unwrap() {
                    "get_schema" => json!({"id": id, "result": schema, "error": null}),
                    // An old server: no monitor_cond_since.
                    "monitor_cond_since" => {
                        json!({"id": id, "result": null, "error": "unknown method"})
                    }
                    "monitor_cond" => {
                        assert_eq!(req["params"][2]["Bridge"][0]["columns"], json!(["name"]));
                        let mon = req["params"][1].clone();
                        let initial = json!({"id": id, "error": null, "result":
                            {"Bridge": {b1: {"initial": {"name": "br-f"}}}}});
                        let upd = json!({"id": null, "method": "update2", "params": [mon,
                            {"Bridge": {b1: {"modify": {"name": "br-g"}}, b2: {"insert": {"name": "br-h"}}}}]});
                        // Reply and update in one write: the reply must be applied first.
                        let mut out = initial.to_string();
                        out += &upd.to_string();
                        s.write_all(out.as_bytes()).await.unwrap();
                        continue;
                    }
                    other => panic!("unexpected {other}"),
                };
                s.write_all(reply.to_string().as_bytes()).await.unwrap();
            }
        }
    });
    let c = Client::connect(config(&f.path)).await.unwrap();
    let r = c
        .monitor(
            "Open_vSwitch",
            vec![ovs::MonitorRequest::new("Bridge", &["name"])],
        )
        .await
        .unwrap();
    let s = r
        .wait_for(Duration::from_secs(5), |s| s.rows("Bridge").count() == 2)
        .await
        .expect("update2 applied");
    let b1 = uuid::Uuid::parse_str(b1).unwrap();
    assert_eq!(s.row("Bridge", &b1).unwrap().get_str("name"), Some("br-g"));
    assert_eq!(s.last_txn_id, None, "monitor_cond has no txn ids");
    assert_eq!(c.counters().monitor_full_syncs, 1);
    server.abort();
}

/// A request abandoned in the middle of its write (its future dropped while the server is not
/// reading) must not leave half a message on the stream: the session ends, the server sees
/// the connection closed, and the client's next session starts clean.
#[tokio::test]
async fn a_request_cancelled_mid_write_ends_the_session() {
    let f = fake();
    let mut cfg = config(&f.path);
    cfg.reconnect = true;
    cfg.request_timeout = Duration::from_secs(5);
    cfg.backoff_initial = Duration::from_millis(10);
    let listener = f.listener;
    let client = tokio::spawn(async move { Client::connect(cfg).await.unwrap() });
    // First session: accepted, never read until the client gave up on its write.
    let (mut first, _) = listener.accept().await.unwrap();
    let client = client.await.unwrap();
    let big = json!(["x".repeat(16 << 20)]);
    let c2 = client.clone();
    let cut = tokio::time::timeout(Duration::from_millis(200), async move {
        c2.call("echo", big).await
    })
    .await;
    assert!(cut.is_err(), "the write cannot finish: nobody reads");
    // The server now drains what was written, and must reach the end of the stream.
    let mut sink = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut total = 0usize;
        loop {
            match first.read(&mut sink).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the client must close a session with half a message on it");
    assert!(drained < (16 << 20), "only part of the message went out");
    // The client reconnects and its next request works on a clean stream.
    let (mut second, _) = listener.accept().await.unwrap();
    let server = tokio::spawn(async move {
        let req = read_request(&mut second).await;
        let reply = json!({"id": req["id"], "result": req["params"], "error": null});
        second
            .write_all(serde_json::to_vec(&reply).unwrap().as_slice())
            .await
            .unwrap();
        second
    });
    client.echo().await.unwrap();
    assert_eq!(client.counters().reconnects, 1);
    drop(server.await.unwrap());
}
