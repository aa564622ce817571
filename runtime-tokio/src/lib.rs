//! **sio** on tokio: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for smol and async-std have the same API.
//!
//! ```no_run
//! use sio_tokio::{Payload, ServerConfig, SocketIo};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let io = SocketIo::new(ServerConfig::default());
//!     io.on_connection(|socket| {
//!         socket.on("chat message", |socket, msg: String| {
//!             let _ = socket.io().emit("chat message", &msg);
//!         });
//!         socket.on("echo", |socket, args: Payload| {
//!             let _ = socket.ack(&args);
//!         });
//!     });
//!     io.listen("127.0.0.1:3000").await
//! }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use sio_runtime::*;

mod tower;
pub use tower::{SioLayer, SioMiddleware, SioService};

impl SocketIo {
    /// A tower `Service` answering the Socket.IO requests, to route under the server's path
    /// (`axum::Router::route_service("/socket.io/", io.service())`; the layer also covers the
    /// client bundle under the path).
    pub fn service(&self) -> SioService {
        SioService::new(self)
    }

    /// A tower `Layer` sending the Socket.IO requests to sio and the others to the inner service
    /// (`axum::Router::layer(io.layer())`).
    pub fn layer(&self) -> SioLayer {
        SioLayer::new(self)
    }
}

/// The tokio [`Runtime`]: spawns on the current tokio runtime and reads tokio's clock, so that
/// tokio's paused time drives sio's timers too.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn spawn(&self, future: BoxFuture) {
        tokio::spawn(future);
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(TokioTimer {
            sleep: tokio::time::sleep_until(deadline.into()),
        })
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

pin_project_lite::pin_project! {
    struct TokioTimer {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl Timer for TokioTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.project().sleep.reset(deadline.into())
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

/// A tokio listener as a [`Listener`].
pub struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    type Io = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((hyper_util::rt::TokioIo::new(stream), peer))
    }
}

fn wrap(listener: tokio::net::TcpListener) -> io::Result<TokioListener> {
    Ok(TokioListener(listener))
}

sio_runtime::runtime_servers! {
    runtime: TokioRuntime,
    listener: tokio::net::TcpListener,
    addrs: tokio::net::ToSocketAddrs,
    bind: tokio::net::TcpListener::bind,
    wrap: wrap,
}

/// The examples of the README compile.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
