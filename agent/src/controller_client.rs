//! The agent's side of the controller's agent API (on the Tricircle port, under `/v1.0/agents`):
//! register, watch this node's desired state by revision (long-poll), report status.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors talking to the controller; each names the request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: controller unreachable at {url}: {source}")]
    Unreachable {
        what: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("{what}: controller answered {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{what}: bad answer from the controller: {source}")]
    Decode {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("loading {what} for the agent's TLS: {source}")]
    Tls {
        what: &'static str,
        source: reqwest::Error,
    },
}

impl ClientError {
    /// True when the controller says our pod does not exist (yet): the agent waits for it.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status: 404, .. })
    }
}

/// A handle on the controller's agent API for one node.
#[derive(Debug, Clone)]
pub struct ControllerClient {
    http: reqwest::Client,
    base: String,
    node: String,
    token: String,
}

impl ControllerClient {
    /// With a node-bound token. `base` is the controller's Tricircle-side URL, e.g.
    /// `http://127.0.0.1:19999`.
    pub fn new(base: &str, node: &str, token: &str) -> Self {
        let http = Self::builder()
            .build()
            .expect("a reqwest client with only timeouts set always builds");
        Self::with_http(http, base, node, token)
    }

    /// With this node's certificate (`identity_pem`: certificate then key) over mutual TLS,
    /// trusting only `ca_pem` for the controller's certificate. `base` is the agent
    /// listener's URL, e.g. `https://127.0.0.1:19998`.
    pub fn with_tls(
        base: &str,
        node: &str,
        identity_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<Self, ClientError> {
        let identity =
            reqwest::Identity::from_pem(identity_pem).map_err(|source| ClientError::Tls {
                what: "the node certificate and key",
                source,
            })?;
        let ca = reqwest::Certificate::from_pem(ca_pem).map_err(|source| ClientError::Tls {
            what: "the CA certificate",
            source,
        })?;
        let http = Self::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .https_only(true)
            .build()
            .map_err(|source| ClientError::Tls {
                what: "the TLS client",
                source,
            })?;
        Ok(Self::with_http(http, base, node, ""))
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Below the controller's idle timeout (60 s by default), so the agent drops an idle
            // connection before the controller does and never reuses one being closed.
            .pool_idle_timeout(Duration::from_secs(30))
    }

    fn with_http(http: reqwest::Client, base: &str, node: &str, token: &str) -> Self {
        ControllerClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            node: node.to_string(),
            token: token.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `POST /v1.0/agents`: announces this node (pod, mappings). 404 while the pod is missing.
    pub async fn register<B: Serialize, R: DeserializeOwned>(
        &self,
        body: &B,
    ) -> Result<R, ClientError> {
        let url = self.url("/v1.0/agents");
        let req = self
            .http
            .post(&url)
            .json(body)
            .timeout(Duration::from_secs(30));
        self.send("register", url, req).await
    }

    /// `GET /v1.0/agents/{node}/desired?since=R&timeout=S`: returns at once when the node's
    /// revision is past `since`, else after up to `wait` with `None`.
    pub async fn watch<R: DeserializeOwned>(
        &self,
        since: u64,
        wait: Duration,
    ) -> Result<Option<R>, ClientError> {
        let url = self.url(&format!(
            "/v1.0/agents/{}/desired?since={since}&timeout={}",
            self.node,
            wait.as_secs()
        ));
        let req = self.http.get(&url).timeout(wait + Duration::from_secs(15));
        let resp = self.exec("watch", &url, req).await?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let resp = check("watch", resp).await?;
        resp.json()
            .await
            .map(Some)
            .map_err(|source| ClientError::Decode {
                what: "watch",
                source,
            })
    }

    /// `PUT /v1.0/agents/{node}/status`: ports bound, routers ready/failed, probes, the revision
    /// applied.
    pub async fn report<B: Serialize>(&self, body: &B) -> Result<(), ClientError> {
        let url = self.url(&format!("/v1.0/agents/{}/status", self.node));
        let req = self
            .http
            .put(&url)
            .json(body)
            .timeout(Duration::from_secs(30));
        let resp = self.exec("report", &url, req).await?;
        check("report", resp).await.map(|_| ())
    }

    async fn send<R: DeserializeOwned>(
        &self,
        what: &'static str,
        url: String,
        req: reqwest::RequestBuilder,
    ) -> Result<R, ClientError> {
        let resp = self.exec(what, &url, req).await?;
        let resp = check(what, resp).await?;
        resp.json()
            .await
            .map_err(|source| ClientError::Decode { what, source })
    }

    async fn exec(
        &self,
        what: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        if self.token.is_empty() {
            // Mutual TLS: the certificate is the credential.
            req
        } else {
            req.header("X-Auth-Token", &self.token)
        }
        .send()
        .await
        .map_err(|source| ClientError::Unreachable {
            what,
            url: url.to_string(),
            source,
        })
    }
}

async fn check(
    what: &'static str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(ClientError::Status {
        what,
        status: status.as_u16(),
        body: body.chars().take(500).collect(),
    })
}

/// Capped exponential backoff: 0.5 s doubling to `cap`, reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(500),
            cap,
        }
    }

    /// The delay to wait now; the following one is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(500);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(3));
        let seen: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, vec![500, 1000, 2000, 3000, 3000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    /// A TLS server on loopback whose certificate `ca` signed; answers every request with a
    /// 200 JSON body (when the handshake succeeds). Returns its address.
    async fn tls_server(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> std::net::SocketAddr {
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, ca, ca_key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                .unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut buf = [0u8; 4096];
                        let _ = tls.read(&mut buf).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                            .await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap(), key)
    }

    fn node_identity(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["node1".to_string()]).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, ca, ca_key).unwrap();
        format!("{}\n{}", cert.pem(), key.serialize_pem()).into_bytes()
    }

    #[tokio::test]
    async fn the_agent_trusts_only_its_ca_for_the_controller() {
        let (ours, ours_key) = ca("our CA");
        let (theirs, theirs_key) = ca("someone else's CA");
        let identity = node_identity(&ours, &ours_key);
        // A controller whose certificate our CA signed: the request goes through.
        let good = tls_server(&ours, &ours_key).await;
        let c = ControllerClient::with_tls(
            &format!("https://{good}"),
            "node1",
            &identity,
            ours.pem().as_bytes(),
        )
        .unwrap();
        let r: serde_json::Value = c.register(&serde_json::json!({})).await.unwrap();
        assert_eq!(r, serde_json::json!({}));
        // One another CA signed: refused before anything is sent.
        let bad = tls_server(&theirs, &theirs_key).await;
        let c = ControllerClient::with_tls(
            &format!("https://{bad}"),
            "node1",
            &identity,
            ours.pem().as_bytes(),
        )
        .unwrap();
        let e = c
            .register::<_, serde_json::Value>(&serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        // Plain http is refused by the TLS client outright.
        let c = ControllerClient::with_tls(
            &format!("http://{good}"),
            "node1",
            &identity,
            ours.pem().as_bytes(),
        )
        .unwrap();
        assert!(c
            .register::<_, serde_json::Value>(&serde_json::json!({}))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn an_unreachable_controller_is_named_in_the_error() {
        // Port 9 on loopback: nothing listens there.
        let c = ControllerClient::new("http://127.0.0.1:9", "n1", "t");
        let e = c.report(&serde_json::json!({})).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    }
}
