//! An Engine.IO server on `/engine.io/` that echoes every message, text and binary, with the settings
//! of the official Engine.IO v4 protocol test suite (ping interval 300 ms, ping timeout 200 ms, max
//! payload 1e6). Listens on 127.0.0.1 at `PORT` (default 3000; `0` picks a free port) and prints the
//! address it bound. `INITIAL_PACKET` sets a message sent right after `open`; `TRANSPORTS`
//! (`polling,websocket`) the transports it accepts.

use std::time::Duration;

use sio_tokio::{EngineConfig, EngineHandler, EngineServer, EngineSocket, Message, Transports};
use tokio::net::TcpListener;

struct Echo;

impl EngineHandler for Echo {
    fn on_message(&mut self, mut socket: EngineSocket<'_>, message: Message) {
        let _ = socket.send(message);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let mut config = EngineConfig {
        path: "/engine.io/".into(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_http_buffer_size: 1_000_000,
        ..EngineConfig::default()
    };
    // Options for the end-to-end tests: a message sent right after `open`, and the transports.
    config.initial_packet = std::env::var("INITIAL_PACKET").ok();
    if let Ok(transports) = std::env::var("TRANSPORTS") {
        config.transports = Transports {
            polling: transports.split(',').any(|t| t == "polling"),
            websocket: transports.split(',').any(|t| t == "websocket"),
        };
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    // Node's accept queue (511) instead of the 128 tokio asks for: a burst of connections waits
    // in the queue instead of having its SYNs dropped.
    sio_tokio::raise_listen_backlog(&listener)?;
    println!("listening on {}", listener.local_addr()?);
    EngineServer::new(config, Echo).serve(listener).await
}
