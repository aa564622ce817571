//! Engine.IO options, with the reference server's defaults.

use std::sync::Arc;
use std::time::Duration;

/// An Engine.IO transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl Transport {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }

    /// Parses the `transport` query parameter.
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "polling" => Some(Transport::Polling),
            "websocket" => Some(Transport::WebSocket),
            _ => None,
        }
    }
}

/// Which transports the server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transports {
    /// Accept HTTP long-polling.
    pub polling: bool,
    /// Accept WebSocket (direct, or as an upgrade from polling).
    pub websocket: bool,
}

impl Transports {
    /// Both transports (the default).
    pub const ALL: Transports = Transports {
        polling: true,
        websocket: true,
    };

    /// Whether `transport` is enabled.
    pub fn contains(self, transport: Transport) -> bool {
        match transport {
            Transport::Polling => self.polling,
            Transport::WebSocket => self.websocket,
        }
    }
}

impl Default for Transports {
    fn default() -> Self {
        Transports::ALL
    }
}

/// Options of the Engine.IO server. `Default` gives the reference values.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Path the server answers on (prefix match), `/socket.io/` by default.
    pub path: String,
    /// How often the server pings (25 s).
    pub ping_interval: Duration,
    /// How long the server waits for a pong before closing with `ping timeout` (20 s).
    pub ping_timeout: Duration,
    /// How long an upgrade may take before the new transport is closed (10 s).
    pub upgrade_timeout: Duration,
    /// Largest polling body and WebSocket message accepted, in bytes; advertised as `maxPayload`
    /// (1,000,000).
    pub max_http_buffer_size: usize,
    /// Enabled transports (both).
    pub transports: Transports,
    /// Whether clients may upgrade from polling to WebSocket (true).
    pub allow_upgrades: bool,
    /// How long a server-initiated close waits for the client's next poll to deliver the `close`
    /// packet (30 s, as the reference's polling `closeTimeout`).
    pub close_timeout: Duration,
    /// Bytes a session may hold for a client that does not poll; past it the session is closed with
    /// `transport error` rather than growing without bound (10 MiB).
    pub max_buffered_bytes: usize,
    /// Seed of the session id generator; `None` seeds from the operating system. Set it in tests to
    /// get reproducible ids.
    pub rng_seed: Option<[u8; 32]>,
    /// Append a `/` to `path` when it has none (true). With false the path is used as given, and
    /// the prefix match then also takes `/socket.iofoo`, as in the reference.
    pub add_trailing_slash: bool,
    /// Ask the application before each handshake ([`crate::engine::EngineEvent::AllowRequest`]);
    /// a refusal is answered 403 with code 4 and the application's message.
    pub allow_request: bool,
    /// Sent as a `message` right after the `open` packet.
    pub initial_packet: Option<String>,
    /// Set a cookie holding the session id on the polling handshake response.
    pub cookie: Option<CookieConfig>,
    /// CORS headers on every response of the server's path, and answers to preflight requests.
    pub cors: Option<CorsConfig>,
    /// Adds headers to the responses of sessions, the 101 of WebSockets included (`headers` in
    /// the reference, and `initial_headers` for the first response of a session).
    pub headers: Option<HeadersHook>,
    /// Makes the session ids instead of the built-in generator (`generateId`); see [`IdHook`].
    pub generate_id: Option<IdHook>,
}

/// Makes a session id for a handshake: up to 32 URL-safe characters, unique among the open
/// sessions (ids must also be unique across a cluster). `Err`, or an id that is malformed or taken,
/// refuses the handshake with 400, code 3 (`ID_GENERATION_ERROR`).
#[derive(Clone)]
pub struct IdHook(pub Arc<IdFn>);

/// The function of an [`IdHook`].
pub type IdFn = dyn Fn(&crate::engine::Handshake) -> Result<String, String> + Send + Sync;

impl std::fmt::Debug for IdHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdHook(..)")
    }
}

/// Called with the response headers to fill, the request's headers, and whether the response is
/// the first of its session (the handshake).
#[derive(Clone)]
pub struct HeadersHook(pub Arc<HeadersFn>);

/// The function of a [`HeadersHook`].
pub type HeadersFn = dyn Fn(&mut http::HeaderMap, &http::HeaderMap, bool) + Send + Sync;

impl std::fmt::Debug for HeadersHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeadersHook(..)")
    }
}

/// The cookie of the polling handshake (used by load balancers for sticky sessions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieConfig {
    /// Its name (`io`).
    pub name: String,
    /// Its path (`/`).
    pub path: Option<String>,
    /// `HttpOnly` (true).
    pub http_only: bool,
    /// `SameSite` (`Lax`).
    pub same_site: Option<String>,
    /// `Max-Age` in seconds (none).
    pub max_age: Option<u64>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "io".into(),
            path: Some("/".into()),
            http_only: true,
            same_site: Some("Lax".into()),
            max_age: None,
        }
    }
}

/// Which origins CORS lets in.
#[derive(Clone)]
pub enum CorsOrigin {
    /// Any origin: `Access-Control-Allow-Origin: *`.
    Any,
    /// These origins, echoed back when they match.
    List(Vec<String>),
    /// Origins the predicate accepts, echoed back.
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl std::fmt::Debug for CorsOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorsOrigin::Any => f.write_str("Any"),
            CorsOrigin::List(list) => f.debug_tuple("List").field(list).finish(),
            CorsOrigin::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// CORS options, as the `cors` package the reference uses understands them.
#[derive(Clone, Debug)]
pub struct CorsConfig {
    /// Allowed origins.
    pub origin: CorsOrigin,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// Methods allowed in preflight answers (`GET,HEAD,PUT,PATCH,POST,DELETE`).
    pub methods: Vec<String>,
    /// Headers allowed in preflight answers; `None` echoes the request's
    /// `Access-Control-Request-Headers`.
    pub allowed_headers: Option<Vec<String>>,
    /// `Access-Control-Expose-Headers` on other answers.
    pub exposed_headers: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    pub max_age: Option<u64>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            origin: CorsOrigin::Any,
            credentials: false,
            methods: ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]
                .map(String::from)
                .to_vec(),
            allowed_headers: None,
            exposed_headers: Vec::new(),
            max_age: None,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_http_buffer_size: 1_000_000,
            transports: Transports::ALL,
            allow_upgrades: true,
            close_timeout: Duration::from_millis(30_000),
            max_buffered_bytes: 10 * 1024 * 1024,
            rng_seed: None,
            add_trailing_slash: true,
            allow_request: false,
            initial_packet: None,
            cookie: None,
            cors: None,
            headers: None,
            generate_id: None,
        }
    }
}
