//! The accept loop of both listeners: HTTP/1.1 on hyper with crosspod's own clock per
//! connection, so no client holds a connection (and its task) forever.
//!
//! - header timeout: once the first byte of a request arrived, the whole head must follow
//!   within it, else the connection is dropped (slow-header clients);
//! - idle timeout: a connection with no request in progress and no byte of a new one is
//!   closed after it. A request in progress (a long-poll waiting server-side) is never idle;
//! - the body timeout is enforced where the body is read ([`super::dispatch`]), answering 408.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a keep-alive connection
//! waits for its next request, which would make the idle timeout the header timeout.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The connection timeouts (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From a request's first byte to the end of its head.
    pub header: Duration,
    /// Between requests on one connection.
    pub idle: Duration,
}

/// What the connection's watchdog reads: whether a request is in progress, since when the
/// connection is idle, and since when a new head is arriving.
struct Clock {
    in_flight: usize,
    idle_since: Instant,
    head_since: Option<Instant>,
}

struct Shared {
    clock: Mutex<Clock>,
    /// Wakes the watchdog when the clock changes (a head starts, a request ends).
    changed: Notify,
}

impl Shared {
    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The socket, noting when bytes of a new request start to arrive.
struct Tracked<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut c = self.shared.clock();
            if c.in_flight == 0 && c.head_since.is_none() {
                c.head_since = Some(Instant::now());
                drop(c);
                self.shared.changed.notify_one();
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request in progress; its end (or cancellation) starts the idle clock.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn start(shared: Arc<Shared>) -> InFlight {
        {
            let mut c = shared.clock();
            c.in_flight += 1;
            c.head_since = None;
        }
        shared.changed.notify_one();
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut c = self.0.clock();
            c.in_flight = c.in_flight.saturating_sub(1);
            c.idle_since = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// Serve `listener` until it fails for good: every connection on its own task, each request
/// through `handle`. With `tls`, each connection first completes a TLS handshake (within the
/// header timeout); a verified client certificate's node goes into every request's
/// extensions as [`super::tls::PeerNode`].
pub async fn serve<H, Fut>(
    listener: TcpListener,
    timeouts: Timeouts,
    tls: Option<Arc<rustls::ServerConfig>>,
    handle: H,
) -> io::Result<()>
where
    H: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::error!(error = %e, "accept failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        match &acceptor {
            None => {
                tokio::spawn(connection(stream, peer, timeouts, None, handle));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let accepted =
                        tokio::time::timeout(timeouts.header, acceptor.accept(stream)).await;
                    let tls = match accepted {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let node = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(super::tls::node_of)
                        .map(super::tls::PeerNode);
                    connection(tls, peer, timeouts, node, handle).await
                });
            }
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: hyper's HTTP/1.1 state machine next to a watchdog that drops it when a
/// head is too slow or the connection idles too long.
async fn connection<S, H, Fut>(
    stream: S,
    peer: std::net::SocketAddr,
    timeouts: Timeouts,
    node: Option<super::tls::PeerNode>,
    handle: H,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    let shared = Arc::new(Shared {
        clock: Mutex::new(Clock {
            in_flight: 0,
            idle_since: Instant::now(),
            head_since: None,
        }),
        changed: Notify::new(),
    });
    let io = TokioIo::new(Tracked {
        inner: stream,
        shared: shared.clone(),
    });
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::start(svc_shared.clone());
        let handle = handle.clone();
        let mut req = req.map(Body::new);
        if let Some(n) = &node {
            req.extensions_mut().insert(n.clone());
        }
        async move {
            let resp = handle(req).await;
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let deadline = {
            let c = shared.clock();
            if c.in_flight > 0 {
                None
            } else if let Some(h) = c.head_since {
                Some((h + timeouts.header, "header"))
            } else {
                Some((c.idle_since + timeouts.idle, "idle"))
            }
        };
        if let Some((at, why)) = deadline {
            if Instant::now() >= at {
                tracing::debug!(%peer, timeout = why, "closing the connection");
                // Dropping the connection closes the socket.
                return;
            }
        }
        let expired = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shared.changed.notified() => {}
            _ = expired => {}
        }
    }
}
