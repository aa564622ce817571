//! socketioxide, latest from crates.io with its default settings, serving the handlers of the sio
//! bench server (bench/src/bin/sio-bench-server.rs). Listens on 127.0.0.1 at `PORT` (default 0)
//! and prints `listening on <addr>`.

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

fn main() -> std::io::Result<()> {
    // One thread, as the sio tokio bench server: the server is pinned to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let (service, io) = SocketIo::new_svc();
    io.ns("/", async |socket: SocketRef| {
        socket.on("echo", async |socket: SocketRef, Data::<Value>(data)| {
            let _ = socket.emit("echo", &data);
        });
        socket.on(
            "echo-ack",
            async |Data::<Value>(data), ack: AckSender| {
                let _ = ack.send(&data);
            },
        );
        socket.on(
            "join",
            async |socket: SocketRef, Data::<String>(room), ack: AckSender| {
                socket.join(room);
                let _ = ack.send(&());
            },
        );
        socket.on(
            "broadcast",
            async |socket: SocketRef, Data::<Value>(data)| {
                let _ = socket.within("bench").emit("broadcast", &data).await;
            },
        );
    });
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // Node's backlog (511), as the other servers of the benchmark: tokio's `bind` asks for 128,
    // and a connection burst that overflows the accept queue waits a second for a SYN retry.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    let listener = socket.listen(511)?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
