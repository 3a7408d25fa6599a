//! A small blocking HTTP/1.1 client for the controller's JSON APIs (one request per
//! connection). `https://` URLs speak TLS (rustls), trusting only the CA named by
//! [`trust`] (the lab's), `CROSSPOD_CA` or `OS_CACERT` — never a system store.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static TRUSTED_CA: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Trust `ca` (PEM) for `https://` URLs from now on (a lab brought up with `--tls`).
pub fn trust(ca: &Path) {
    *TRUSTED_CA.lock().unwrap_or_else(|e| e.into_inner()) = Some(ca.to_path_buf());
}

fn trusted_ca() -> Option<PathBuf> {
    TRUSTED_CA
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .or_else(|| std::env::var_os("CROSSPOD_CA").map(PathBuf::from))
        .or_else(|| std::env::var_os("OS_CACERT").map(PathBuf::from))
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let ca = trusted_ca().ok_or("an https URL needs a CA: set CROSSPOD_CA or OS_CACERT")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca)
        .map_err(|e| format!("reading {}: {e}", ca.display()))?
    {
        let c = c.map_err(|e| format!("reading {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("using {} as a CA: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A plain or TLS connection.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// What can go wrong talking to an HTTP endpoint; each variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not of the form `http(s)://host:port/path`.
    #[error("unsupported URL {url:?}: only http(s)://HOST[:PORT]/PATH is supported")]
    BadUrl { url: String },
    /// TLS could not be set up (no CA, an unreadable CA file, a bad host name).
    #[error("{url}: {detail}")]
    Tls { url: String, detail: String },
    /// Connecting or reading/writing failed.
    #[error("{method} {url}: {source}")]
    Io {
        method: String,
        url: String,
        source: std::io::Error,
    },
    /// The answer was not HTTP or not the JSON announced.
    #[error("{method} {url}: malformed response: {detail}")]
    Malformed {
        method: String,
        url: String,
        detail: String,
    },
}

/// A response: status code and body text.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON (`Null` for an empty body).
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        if self.body.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&self.body)
    }
}

/// Splits `http(s)://host:port/path` into (`host:port`, `/path`, TLS?).
fn split_url(url: &str) -> Result<(String, String, bool), HttpError> {
    let bad = || HttpError::BadUrl {
        url: url.to_string(),
    };
    let (rest, tls) = match url.strip_prefix("https://") {
        Some(r) => (r, true),
        None => (url.strip_prefix("http://").ok_or_else(bad)?, false),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else if tls {
        format!("{authority}:443")
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string(), tls))
}

/// Sends one request and reads the whole answer. `token` goes in `X-Auth-Token`.
pub fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    request_with(method, url, token, &[], body, timeout)
}

/// [`request`] with extra headers (Keystone's `X-Subject-Token`).
pub fn request_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let (authority, path, tls) = split_url(url)?;
    let io = |source| HttpError::Io {
        method: method.to_string(),
        url: url.to_string(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HttpError::BadUrl {
            url: url.to_string(),
        })?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut stream: Box<dyn Stream> = if tls {
        let tls_err = |detail: String| HttpError::Tls {
            url: url.to_string(),
            detail,
        };
        let host = authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&authority)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| tls_err(format!("host name: {e}")))?;
        let conn = rustls::ClientConnection::new(tls_config().map_err(tls_err)?, name)
            .map_err(|e| tls_err(e.to_string()))?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: crosspod-cli\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("X-Auth-Token: {t}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(payload.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;
    read_response(BufReader::new(stream), method, url)
}

fn read_response<R: BufRead>(mut r: R, method: &str, url: &str) -> Result<Response, HttpError> {
    let malformed = |detail: String| HttpError::Malformed {
        method: method.to_string(),
        url: url.to_string(),
        detail,
    };
    let io = |source| HttpError::Io {
        method: method.to_string(),
        url: url.to_string(),
        source,
    };
    let mut line = String::new();
    r.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("bad status line {line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(io)? == 0 {
            return Err(malformed("headers cut short".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
            headers.push((k, v.to_string()));
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| malformed(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(io)?;
            line.clear();
            r.read_line(&mut line).map_err(io)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else {
        r.read_to_end(&mut body).map_err(io)?;
    }
    let body = String::from_utf8(body).map_err(|e| malformed(format!("body not UTF-8: {e}")))?;
    Ok(Response {
        status,
        body,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:20001/v2.0/ports").unwrap(),
            ("127.0.0.1:20001".into(), "/v2.0/ports".into(), false)
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/".into(), false)
        );
        assert_eq!(
            split_url("https://x/").unwrap(),
            ("x:443".into(), "/".into(), true)
        );
        assert!(split_url("ftp://x/").is_err());
    }

    #[test]
    fn chunked_and_sized_bodies_are_read() {
        let raw = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let r = read_response(raw.as_bytes(), "GET", "u").unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.json().unwrap()["a"], 1);
        let raw = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}extra";
        let r = read_response(raw.as_bytes(), "GET", "u").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{}"));
        assert!(!r.ok());
    }
}
