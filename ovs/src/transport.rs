//! Where the server is and how to open a byte stream to it. An enum rather than a trait
//! object at the API so endpoints stay plain data (parse, print, compare); SSL becomes one
//! more variant whose `connect` wraps the TCP stream.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

/// A byte stream to an OVSDB server.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// An OVSDB remote, in `ovs-vsctl --db=` syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `unix:PATH`
    Unix(PathBuf),
    /// `tcp:HOST:PORT`
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:PATH` or `tcp:HOST:PORT` (a bare path is taken as a unix socket).
    pub fn parse(s: &str) -> Result<Endpoint> {
        if let Some(p) = s.strip_prefix("unix:") {
            Ok(Endpoint::Unix(p.into()))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            if a.rsplit_once(':').is_none() {
                return Err(Error::Connect {
                    endpoint: s.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "tcp endpoint needs HOST:PORT",
                    ),
                });
            }
            Ok(Endpoint::Tcp(a.to_string()))
        } else if s.starts_with('/') {
            Ok(Endpoint::Unix(s.into()))
        } else {
            Err(Error::Connect {
                endpoint: s.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "expected unix:PATH or tcp:HOST:PORT (ssl: is not supported yet)",
                ),
            })
        }
    }

    /// Opens the stream, giving up after `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Box<dyn Stream>> {
        let fut = async {
            Ok::<Box<dyn Stream>, std::io::Error>(match self {
                Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
                Endpoint::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
            })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|source| Error::Connect {
                endpoint: self.to_string(),
                source,
            }),
            Err(_) => Err(Error::Connect {
                endpoint: self.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                ),
            }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        assert_eq!(
            Endpoint::parse("unix:/run/db.sock").unwrap(),
            Endpoint::Unix("/run/db.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:6640").unwrap().to_string(),
            "tcp:127.0.0.1:6640"
        );
        assert!(Endpoint::parse("ssl:1.2.3.4:6640").is_err());
        assert!(Endpoint::parse("tcp:nohost").is_err());
    }
}
