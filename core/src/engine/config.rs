//! Engine.IO options, with the reference server's defaults.

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
        }
    }
}
