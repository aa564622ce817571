//! Helpers for the benchmarks of sio: a core server with many connected sockets driven in memory
//! (the microbenchmarks), and the load generator of the side-by-side runs ([`load`]).

pub mod load;
mod server;

pub use server::ServerProcess;

use std::time::Instant;

use bytestring::ByteString;
use sio_core::engine::{Frame, RequestId, Transmit};
use sio_core::socket::{Event, Server, ServerConfig};

/// A core server with `sockets` WebSocket clients connected to `/`, every output drained.
pub struct Loaded {
    /// The server.
    pub server: Server,
    /// The virtual time.
    pub now: Instant,
}

impl Loaded {
    /// Connects `sockets` in-memory WebSocket clients.
    pub fn new(sockets: usize) -> Loaded {
        #[allow(clippy::disallowed_methods)] // the benchmark's epoch
        let now = Instant::now();
        let config = ServerConfig {
            engine: sio_core::engine::EngineConfig {
                rng_seed: Some([9; 32]),
                ..Default::default()
            },
            ..ServerConfig::default()
        };
        let mut server = Server::new(config, now);
        let (head, ()) = http::Request::get("/socket.io/?EIO=4&transport=websocket")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap_or_default()
            .into_parts();
        for i in 0..sockets {
            let request = RequestId(i as u64 + 1);
            server.handle_request(now, request, &head, None);
            server.handle_ws_open(now, request);
            server.handle_ws_frame(now, request, Frame::Text(ByteString::from_static("40")));
            while let Some(event) = server.poll_event() {
                if let Event::Connect { socket, .. } = event {
                    let _ = server.accept(now, socket);
                }
            }
            while server.poll_transmit().is_some() {}
        }
        Loaded { server, now }
    }

    /// Drains the output; returns how many frames went out.
    pub fn drain(&mut self) -> usize {
        let mut frames = 0;
        while let Some(transmit) = self.server.poll_transmit() {
            if let Transmit::Frame { .. } = transmit {
                frames += 1;
            }
        }
        while self.server.poll_event().is_some() {}
        frames
    }
}
