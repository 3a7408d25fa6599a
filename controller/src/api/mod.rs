//! HTTP servers: the Tricircle pod API and the Neutron v2.0 API, two listeners in one
//! process sharing one [`App`]. Routing is explicit (method + path segments) so every
//! unknown path or method gets a Neutron-shaped 404/405, and every request is logged with
//! method, path, status and duration.

pub mod agents;
pub mod error;
pub mod jobs;
pub mod limits;
pub mod neutron;
pub mod openapi;
pub mod pods;
pub mod routes;
pub mod routings;
pub mod serve;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{Map, Value};

use crate::auth::{Identity, Role, TokenStore};
use crate::config::Config;
use crate::core::Core;
use crate::error::{DomainError, StoreError};
use crate::keystone::{Keystone, KeystoneError};

/// Largest request body accepted (larger gets 413).
pub const MAX_BODY: usize = 1024 * 1024;

/// Shared state of both APIs: the core (store, realizer, configuration, metrics) and what
/// only the HTTP edge needs (the credentials). Derefs to the [`Core`] for handlers' brevity.
pub struct App {
    /// The core the services work on.
    pub core: Arc<Core>,
    /// Token lookup in the tokens file (with Keystone: agents' node-bound tokens only).
    pub tokens: TokenStore,
    /// Keystone, when it authenticates people (`--auth-strategy keystone`).
    pub keystone: Option<Keystone>,
    /// Long-polls in progress, capped per node and per project.
    pub long_polls: limits::LongPolls,
}

impl crate::realize::Deps for App {
    fn store(&self) -> &crate::store::Store {
        &self.core.store
    }
    fn config(&self) -> &Config {
        &self.core.config
    }
    fn metrics(&self) -> &crate::metrics::ControllerMetrics {
        &self.core.metrics
    }
    fn realizer(&self) -> &crate::realize::Realizer {
        &self.core.realizer
    }
}

impl std::ops::Deref for App {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Failure to start the servers.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// The TLS material could not be loaded.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// The Keystone client could not be set up.
    #[error("{0}")]
    Keystone(#[from] KeystoneError),
    /// A listener could not bind.
    #[error("binding the {api} API on {addr}: {source}")]
    Bind {
        /// Which API.
        api: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Both APIs, bound and serving.
pub struct Running {
    /// Where the Neutron API listens.
    pub neutron_addr: SocketAddr,
    /// Where the Tricircle API listens.
    pub tricircle_addr: SocketAddr,
    /// Where the agent listener (mutual TLS) listens, when configured.
    pub agent_addr: Option<SocketAddr>,
    /// The shared state.
    pub app: Arc<App>,
    tasks: tokio::task::JoinSet<std::io::Result<()>>,
}

impl Running {
    /// Wait until a server stops (it only stops on an I/O error).
    pub async fn wait(mut self) -> std::io::Result<()> {
        match self.tasks.join_next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => Err(std::io::Error::other(e)),
            None => Ok(()),
        }
    }

    /// Stop serving.
    pub fn abort(&mut self) {
        self.tasks.abort_all();
    }
}

/// Open the store, bind both listeners and start serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let core = Core::open(config.clone()).await?;
    let tokens = TokenStore::new(config.tokens_file.clone());
    let keystone = match &config.keystone {
        Some(k) => {
            tracing::info!(url = %k.url, user = %k.username, cache_s = k.cache_ttl.as_secs(), "authenticating people with Keystone; the tokens file only for agents");
            Some(Keystone::new(k.clone())?)
        }
        None => None,
    };
    if let Err(e) = tokens.lookup("") {
        if keystone.is_none() {
            // Not fatal: the lab may write the file after the controller starts.
            tracing::warn!(error = %e, "tokens file not readable yet; every request gets 401 until it is");
        } else {
            tracing::info!(error = %e, "no tokens file: agents authenticate by client certificate only");
        }
    }
    let app = Arc::new(App {
        core: core.clone(),
        tokens,
        keystone,
        long_polls: limits::LongPolls::default(),
    });
    // Realize at start (resuming whatever a previous run left half done), after every write,
    // and every few seconds.
    tokio::spawn(crate::run::background(core));
    let n_addr = SocketAddr::new(config.bind, config.neutron_port);
    let t_addr = SocketAddr::new(config.bind, config.tricircle_port);
    let bind = |api: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { api, addr, source })
    };
    let n_listener = bind("Neutron", n_addr).await?;
    let t_listener = bind("Tricircle", t_addr).await?;
    let neutron_addr = n_listener.local_addr().unwrap_or(n_addr);
    let tricircle_addr = t_listener.local_addr().unwrap_or(t_addr);
    let timeouts = serve::Timeouts {
        header: config.header_timeout,
        idle: config.idle_timeout,
    };
    let user_tls = match &config.tls {
        Some(t) => Some(tls::server_config(&t.cert, &t.key, None)?),
        None => None,
    };
    // The agent listener: mutual TLS only, the client certificate names the node.
    let agent = match &config.agent_tls {
        Some(t) => {
            let cfg = tls::server_config(&t.cert, &t.key, Some(&t.ca))?;
            let addr = SocketAddr::new(config.bind, config.agent_port);
            let l = bind("agent", addr).await?;
            Some((l.local_addr().unwrap_or(addr), l, cfg))
        }
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let n_app = app.clone();
    tasks.spawn(serve::serve(
        n_listener,
        timeouts,
        user_tls.clone(),
        move |req| neutron::handle(State(n_app.clone()), req),
    ));
    let t_app = app.clone();
    tasks.spawn(serve::serve(t_listener, timeouts, user_tls, move |req| {
        pods::handle(State(t_app.clone()), req)
    }));
    let agent_addr = match agent {
        Some((addr, l, cfg)) => {
            let a_app = app.clone();
            tasks.spawn(serve::serve(l, timeouts, Some(cfg), move |req| {
                agents::handle_listener(State(a_app.clone()), req)
            }));
            Some(addr)
        }
        None => None,
    };
    let agent_listen = agent_addr.map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%neutron_addr, %tricircle_addr, agent_addr = %agent_listen, tls = config.tls.is_some(), "APIs listening");
    Ok(Running {
        neutron_addr,
        tricircle_addr,
        agent_addr,
        app,
        tasks,
    })
}

/// One parsed request: what both APIs' handlers work on.
pub struct Ctx {
    /// Method.
    pub method: Method,
    /// Path segments after stripping a trailing `/` and a `.json` suffix.
    pub segments: Vec<String>,
    /// Raw path.
    pub path: String,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes (at most [`MAX_BODY`]).
    pub body: axum::body::Bytes,
    /// The node a mutual-TLS client certificate names (the agent listener only).
    pub peer_node: Option<String>,
}

impl Ctx {
    /// The path segments as `&str`s, for matching.
    pub fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// `http://host` as the client addressed us (for links).
    pub fn base_url(&self) -> String {
        let host = self
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// Authenticate by `X-Auth-Token`: the tokens file, or Keystone (the tokens file then
    /// still serves agents' node-bound tokens: agents keep their credential whoever
    /// authenticates people).
    pub async fn identity(&self, app: &App) -> Result<Identity, DomainError> {
        let token = self
            .headers
            .get("x-auth-token")
            .and_then(|t| t.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                DomainError::unauthorized("Authentication required: no X-Auth-Token header")
            })?;
        let Some(keystone) = &app.keystone else {
            return match app.tokens.lookup(token) {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(DomainError::unauthorized(
                    "The request you have made requires authentication: unknown token",
                )),
                Err(e) => {
                    tracing::error!(error = %e, "tokens file unreadable");
                    Err(DomainError::unauthorized(
                        "Authentication is unavailable: the controller cannot read its credentials; see its log",
                    ))
                }
            };
        };
        match app.tokens.lookup(token) {
            // Only a node-bound agent line counts, and only as the agent: people's lines in
            // the file do not bypass Keystone.
            Ok(Some(id)) if id.roles.contains(&Role::Agent) && id.node.is_some() => {
                return Ok(Identity {
                    roles: vec![Role::Agent],
                    ..id
                })
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "no tokens file for agents"),
        }
        keystone.validate(token).await.map_err(|e| match e {
            KeystoneError::Invalid(m) => DomainError::unauthorized(m),
            KeystoneError::NoRole(m) => DomainError::new(
                crate::error::ErrorClass::Forbidden,
                "PolicyNotAuthorized",
                m,
            ),
            KeystoneError::Unavailable(m) | KeystoneError::Setup(m) => DomainError::new(
                crate::error::ErrorClass::Unavailable,
                "ServiceUnavailable",
                m,
            ),
        })
    }

    /// The body as a JSON object holding exactly one `key` object (`{"network": {...}}`).
    pub fn resource_body(&self, key: &str) -> Result<Map<String, Value>, DomainError> {
        if self.body.is_empty() {
            return Err(DomainError::bad_request(format!(
                "Resource body required: expected {{\"{key}\": {{...}}}}"
            )));
        }
        let v: Value = serde_json::from_slice(&self.body).map_err(|e| {
            DomainError::bad_request(format!("Malformed JSON in request body: {e}"))
        })?;
        let Value::Object(mut top) = v else {
            return Err(DomainError::bad_request(format!(
                "Request body must be a JSON object {{\"{key}\": {{...}}}}"
            )));
        };
        let inner = top.remove(key);
        if let Some(extra) = top.keys().next() {
            return Err(DomainError::bad_request(format!("Unrecognized attribute(s) '{extra}' at the top level of the body; expected only '{key}'")));
        }
        match inner {
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(DomainError::invalid_input(
                key,
                "the body's resource must be a JSON object",
            )),
            None => Err(DomainError::bad_request(format!(
                "Resource body required: expected {{\"{key}\": {{...}}}}"
            ))),
        }
    }
}

/// Read the request into a [`Ctx`] (413 beyond [`MAX_BODY`]).
pub async fn read_ctx(req: Request) -> Result<Ctx, DomainError> {
    let (parts, body) = req.into_parts();
    let too_large = || {
        DomainError::new(
            crate::error::ErrorClass::TooLarge,
            "RequestEntityTooLarge",
            format!("Request body is larger than the limit of {MAX_BODY} bytes"),
        )
    };
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| too_large())?;
    let path = parts.uri.path().to_string();
    let trimmed = path.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".json").unwrap_or(trimmed);
    let segments = trimmed
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .collect();
    let query = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let peer_node = parts.extensions.get::<tls::PeerNode>().map(|p| p.0.clone());
    Ok(Ctx {
        method: parts.method,
        segments,
        path,
        query,
        headers: parts.headers,
        body,
        peer_node,
    })
}

/// A JSON response.
pub fn json(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON response from already serialised bytes.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// 204 with no body.
pub fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_default()
}

/// 405 naming the method and path.
pub fn method_not_allowed(ctx: &Ctx) -> DomainError {
    DomainError::new(
        crate::error::ErrorClass::MethodNotAllowed,
        "HTTPMethodNotAllowed",
        format!("Method {} is not allowed on {}", ctx.method, ctx.path),
    )
}

/// Run a handler with logging; errors become Neutron-shaped responses.
pub(crate) async fn dispatch<F, Fut>(
    api: &'static str,
    app: Arc<App>,
    req: Request,
    f: F,
) -> Response
where
    F: FnOnce(Arc<App>, Ctx) -> Fut,
    Fut: std::future::Future<Output = Result<Response, DomainError>>,
{
    let started = Instant::now();
    let app_for_kick = app.clone();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let body_timeout = app.config.body_timeout;
    let read = match tokio::time::timeout(body_timeout, read_ctx(req)).await {
        Ok(r) => r,
        Err(_) => Err(DomainError::new(
            crate::error::ErrorClass::RequestTimeout,
            "RequestTimeout",
            format!(
                "The request body did not arrive within {} s",
                body_timeout.as_secs()
            ),
        )),
    };
    let resp = match read {
        // A panic in a handler is a bug; answer a Neutron-shaped 500 instead of dropping
        // the connection, and log it.
        Ok(ctx) => match std::panic::AssertUnwindSafe(f(app, ctx))
            .catch_unwind()
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => e.into_response(),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(%method, uri = %uri, panic = %what, "handler panicked");
                DomainError::internal("internal error").into_response()
            }
        },
        Err(e) => e.into_response(),
    };
    let mut resp = resp;
    if resp.status() == StatusCode::REQUEST_TIMEOUT {
        // The rest of a stalled body may never come: do not wait for it to reuse the connection.
        resp.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    let status = resp.status().as_u16();
    if method != axum::http::Method::GET && resp.status().is_success() {
        app_for_kick.realizer.kick();
    }
    app_for_kick.metrics.record_request(
        api,
        routes::method_label(&method),
        routes::template(api, uri.path()),
        status,
        started.elapsed(),
    );
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(api, %method, uri = %uri, status, ms, "request");
    } else {
        tracing::info!(api, %method, uri = %uri, status, ms, "request");
    }
    resp
}
