//! sio inside an axum application: the `Router` keeps its own routes (`/` and `/api/clients`), and
//! `io.layer()` sends the Socket.IO requests (polling, WebSocket upgrades, the client bundle) to
//! sio. Listens on 127.0.0.1 at `PORT` (default 3000; `0` picks a free port).

use axum::Router;
use axum::routing::get;
use sio_tokio::{Payload, ServerConfig, SocketIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let io = SocketIo::new(ServerConfig::default());
    io.on_connection(|socket| {
        socket.on("echo", |socket, args: Payload| {
            let _ = socket.ack(&args);
        });
    });
    let clients = io.clone();
    let app = Router::new()
        .route("/", get(|| async { "an axum route beside Socket.IO" }))
        .route(
            "/api/clients",
            get(move || {
                let io = clients.clone();
                async move { io.client_count().await.to_string() }
            }),
        )
        .layer(io.layer());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
