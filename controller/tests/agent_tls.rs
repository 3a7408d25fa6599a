//! The agent listener (issue 14): mutual TLS only, the client certificate names the node the
//! agent speaks for. Certificates from a CA made here (rcgen), a real rustls client.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::guide::{ok, pods};
use common::{Controller, Opts, ADMIN};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

/// A CA and what it signs, as PEM.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM) for a node (client) or for 127.0.0.1 (server).
    fn issue(&self, node: Option<&str>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = match node {
            Some(n) => {
                let mut p = CertificateParams::new(vec![n.to_string()]).unwrap();
                p.distinguished_name.push(DnType::CommonName, n);
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                p
            }
            None => {
                let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                p
            }
        };
        p.distinguished_name
            .push(DnType::OrganizationName, "crosspod test");
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A controller with the agent listener, its CA, and the pods of the guide.
fn start(ca: &Ca) -> Controller {
    let dir = tempfile::tempdir().unwrap().keep();
    let (cert, key) = ca.issue(None);
    let cert = write(&dir, "server.pem", &cert);
    let key = write(&dir, "server.key", &key);
    let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
    let c = Controller::start_opts(&Opts {
        extra: &[
            "--agent-port",
            "0",
            "--agent-tls-cert",
            &cert,
            "--agent-tls-key",
            &key,
            "--agent-ca",
            &ca_file,
        ],
        ..Opts::default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    pods(&c);
    c
}

/// One HTTP/1.1 request over TLS: `client` = (cert, key) PEM or none; the server must be
/// signed by `trust`. `Err` when the handshake fails.
fn tls_request(
    addr: SocketAddr,
    trust: &Ca,
    client: Option<&(String, String)>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trust.cert.pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer closing without close_notify after a full answer is fine.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no HTTP answer: {text:?}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("bad status line: {head:?}"))?;
    let json_start = rest.find(['{', '[']);
    let v = json_start
        .and_then(|i| serde_json::from_str(rest[i..].trim_end_matches(['\r', '\n', '0'])).ok())
        .unwrap_or(Value::Null);
    Ok((status, v))
}

fn registration(node: &str, pod: &str) -> Value {
    json!({"pod": pod, "node": node, "bridge_mappings": {"bridge": "br-vlan"}, "uplinks": ["bridge"]})
}

#[test]
fn a_node_certificate_speaks_for_its_node_only() {
    let ca = Ca::new("crosspod test CA");
    let c = start(&ca);
    let agent = c.agent.expect("the agent listener");
    let n1 = ca.issue(Some("node1"));
    let n2 = ca.issue(Some("node2"));
    let (s, v) = tls_request(
        agent,
        &ca,
        Some(&n1),
        "POST",
        "/v1.0/agents",
        Some(&registration("node1", "RegionOne")),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = tls_request(
        agent,
        &ca,
        Some(&n2),
        "POST",
        "/v1.0/agents",
        Some(&registration("node2", "RegionTwo")),
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = tls_request(
        agent,
        &ca,
        Some(&n1),
        "GET",
        "/v1.0/agents/node1/desired?since=0",
        None,
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(v["revision"].as_u64().is_some(), "{v}");
    // node1's certificate: not node2's state, report, or registration.
    let (s, v) = tls_request(
        agent,
        &ca,
        Some(&n1),
        "GET",
        "/v1.0/agents/node2/desired?since=0",
        None,
    )
    .unwrap();
    assert_eq!(s, 403, "{v}");
    let report = json!({"node": "node2", "revision_applied": 1, "ports": [], "routers": [], "probes": [], "errors": []});
    let (s, v) = tls_request(
        agent,
        &ca,
        Some(&n1),
        "PUT",
        "/v1.0/agents/node2/status",
        Some(&report),
    )
    .unwrap();
    assert_eq!(s, 403, "{v}");
    let (s, v) = tls_request(
        agent,
        &ca,
        Some(&n1),
        "POST",
        "/v1.0/agents",
        Some(&registration("node2", "RegionOne")),
    )
    .unwrap();
    assert_eq!(s, 403, "{v}");
    // Only the agent endpoints are served there (pods and jobs stay on the Tricircle port).
    let (s, _) = tls_request(agent, &ca, Some(&n1), "GET", "/v1.0/pods", None).unwrap();
    assert_eq!(s, 404);
    let listed = ok(c.t("GET", "/v1.0/agents", Some(ADMIN), None), "agents");
    assert_eq!(listed["agents"].as_array().unwrap().len(), 2, "{listed}");
}

#[test]
fn the_agent_listener_refuses_strangers_and_plain_http() {
    let ca = Ca::new("crosspod test CA");
    let c = start(&ca);
    let agent = c.agent.expect("the agent listener");
    // A certificate from another CA, and no certificate at all: no handshake.
    let stranger = Ca::new("someone else's CA").issue(Some("node1"));
    assert!(tls_request(
        agent,
        &ca,
        Some(&stranger),
        "GET",
        "/v1.0/agents/node1/desired?since=0",
        None
    )
    .is_err());
    assert!(tls_request(
        agent,
        &ca,
        None,
        "GET",
        "/v1.0/agents/node1/desired?since=0",
        None
    )
    .is_err());
    // An agent trusting only its own CA refuses a controller whose certificate another
    // CA signed.
    let other_ca = Ca::new("not the controller's CA");
    let n1 = other_ca.issue(Some("node1"));
    assert!(tls_request(
        agent,
        &other_ca,
        Some(&n1),
        "GET",
        "/v1.0/agents/node1/desired?since=0",
        None
    )
    .is_err());
    // Plain HTTP gets no HTTP answer.
    let mut s = TcpStream::connect(agent).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /v1.0/agents/node1/desired?since=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1.1"),
        "{raw:?}"
    );
    assert!(!String::from_utf8_lossy(&raw).contains("revision"));
}
