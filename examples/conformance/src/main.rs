//! The server the official Socket.IO v5 protocol test suite expects: path `/socket.io/`, ping
//! interval 300 ms, ping timeout 200 ms, connect timeout 1 s, max payload 1e6; namespaces `/` and
//! `/custom`, each emitting `auth` with the client's auth payload on connection, answering
//! `message` with `message-back` and the same arguments, and acking `message-with-ack` with the
//! same arguments. Listens on 127.0.0.1 at `PORT` (default 3000; `0` picks a free port) and prints
//! the address it bound.

use std::time::Duration;

use sio_tokio::{EngineConfig, Payload, ServerConfig, SocketIo, SocketRef};
use tokio::net::TcpListener;

fn handlers(socket: &mut SocketRef<'_>) {
    let auth = socket
        .handshake()
        .map(|h| h.auth.clone())
        .unwrap_or_default();
    let _ = socket.emit("auth", &auth);
    socket.on("message", |socket, args: Payload| {
        let _ = socket.emit("message-back", &args);
    });
    socket.on("message-with-ack", |socket, args: Payload| {
        let _ = socket.ack(&args);
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let config = ServerConfig {
        engine: EngineConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_http_buffer_size: 1_000_000,
            ..EngineConfig::default()
        },
        connect_timeout: Duration::from_millis(1000),
        ..ServerConfig::default()
    };
    let io = SocketIo::new(config);
    io.on_connection(handlers);
    io.of("/custom").on_connection(handlers);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    io.serve(listener).await
}
