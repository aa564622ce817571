//! A Socket.IO server with non-default engine options, for the end-to-end tests: path `/rt` with
//! `add_trailing_slash: false` (so, as in the reference, the prefix match also takes `/rtx...`),
//! and `allow_upgrades: false` (polling clients stay on polling). Listens on 127.0.0.1 at `PORT`
//! (default 3000; `0` picks a free port).

use sio_tokio::{EngineConfig, Payload, ServerConfig, SocketIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let config = ServerConfig {
        engine: EngineConfig {
            path: "/rt".into(),
            add_trailing_slash: false,
            allow_upgrades: false,
            ..EngineConfig::default()
        },
        ..ServerConfig::default()
    };
    let io = SocketIo::new(config);
    io.on_connection(|socket| {
        socket.on("echo", |socket, args: Payload| {
            let _ = socket.ack(&args);
        });
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // Node's accept queue (511) instead of the 128 tokio asks for: a burst of connections waits
    // in the queue instead of having its SYNs dropped.
    sio_tokio::raise_listen_backlog(&listener)?;
    println!("listening on {}", listener.local_addr()?);
    io.serve(listener).await
}
