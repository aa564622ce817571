//! The sio server of the load benchmarks, on the runtime named by the first argument (`tokio`,
//! `smol` or `async-std`). The Node and socketioxide bench servers have the same handlers:
//!
//! - `echo`: emits `echo` back to the sender with the same arguments;
//! - `echo-ack`: acknowledges with the same arguments;
//! - `join`: joins the room given as argument, then acknowledges with no arguments;
//! - `broadcast`: emits `broadcast` with the same arguments to the room `bench`, sender included.
//!
//! Listens on 127.0.0.1 at `PORT` (default 0: a free port), with the accept queue of
//! `SocketIo::listen` and of Node (511 connections), and prints `listening on <addr>`.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let runtime = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tokio".to_owned());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match runtime.as_str() {
        "tokio" => tokio_server(addr),
        "smol" => smol_server(addr),
        "async-std" => async_std_server(addr),
        other => Err(std::io::Error::other(format!(
            "unknown runtime {other:?} (tokio, smol or async-std)"
        ))),
    }
}

/// The handlers, written once for the three runtimes (their `SocketIo` derefs to the same type).
fn install(io: &sio_runtime::SocketIo) {
    use sio_runtime::Payload;
    io.on_connection(|socket| {
        socket.on("echo", |socket, args: Payload| {
            let _ = socket.emit("echo", &args);
        });
        socket.on("echo-ack", |socket, args: Payload| {
            let _ = socket.ack(&args);
        });
        socket.on("join", |socket, room: String| {
            socket.join(&room);
            let _ = socket.ack(&());
        });
        socket.on("broadcast", |socket, args: Payload| {
            let _ = socket.io().to("bench").emit("broadcast", &args);
        });
    });
}

fn announce(addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

fn tokio_server(addr: std::net::SocketAddr) -> std::io::Result<()> {
    // One thread: the server is pinned to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let io = sio_tokio::SocketIo::new(sio_tokio::ServerConfig::default());
        install(&io);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        sio_runtime::raise_listen_backlog(&listener)?;
        announce(listener.local_addr()?);
        io.serve(listener).await
    })
}

// smol and async-std: the server runs on `block_on` of its runtime crate, on the main thread,
// which also drives the reactor, as tokio's current-thread runtime does.

/// `SIO_BENCH_LOWER_HELPER=1` measures the opt-in that puts async-io's helper thread at nice 19
/// (a trade-off, see `bench/README.md`); the default measures what a server gets without it.
fn lower_helper_if_asked(lower: fn() -> std::io::Result<bool>) -> std::io::Result<()> {
    if std::env::var_os("SIO_BENCH_LOWER_HELPER").is_some_and(|v| v == "1") {
        lower()?;
    }
    Ok(())
}

fn smol_server(addr: std::net::SocketAddr) -> std::io::Result<()> {
    lower_helper_if_asked(sio_smol::lower_reactor_helper_priority)?;
    sio_smol::block_on(async move {
        let io = sio_smol::SocketIo::new(sio_smol::ServerConfig::default());
        install(&io);
        let listener = async_net::TcpListener::bind(addr).await?;
        sio_runtime::raise_listen_backlog(&listener)?;
        announce(listener.local_addr()?);
        io.serve(listener).await
    })
}

fn async_std_server(addr: std::net::SocketAddr) -> std::io::Result<()> {
    lower_helper_if_asked(sio_async_std::lower_reactor_helper_priority)?;
    sio_async_std::block_on(async move {
        let io = sio_async_std::SocketIo::new(sio_async_std::ServerConfig::default());
        install(&io);
        let listener = async_std::net::TcpListener::bind(addr).await?;
        sio_runtime::raise_listen_backlog(&listener)?;
        announce(listener.local_addr()?);
        io.serve(listener).await
    })
}
