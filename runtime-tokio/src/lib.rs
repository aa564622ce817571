//! **sio** on tokio: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported.
//!
//! ```no_run
//! use sio_tokio::{EngineConfig, EngineHandler, EngineServer, EngineSocket, Message};
//!
//! struct Echo;
//!
//! impl EngineHandler for Echo {
//!     fn on_message(&mut self, mut socket: EngineSocket<'_>, message: Message) {
//!         let _ = socket.send(message);
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let server = EngineServer::new(EngineConfig::default(), Echo);
//!     server.listen("127.0.0.1:3000").await
//! }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

pub use sio_runtime::*;
use tokio::net::{TcpListener, ToSocketAddrs};

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

/// A Socket.IO server on tokio; every method of [`sio_runtime::SocketIo`] is available through
/// `Deref`.
///
/// ```no_run
/// use sio_tokio::{Payload, ServerConfig, SocketIo};
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let io = SocketIo::new(ServerConfig::default());
///     io.on_connection(|socket| {
///         socket.on("chat message", |socket, msg: String| {
///             let _ = socket.io().emit("chat message", &msg);
///         });
///         socket.on("echo", |socket, args: Payload| {
///             let _ = socket.ack(&args);
///         });
///     });
///     io.listen("127.0.0.1:3000").await
/// }
/// ```
#[derive(Clone)]
pub struct SocketIo {
    inner: sio_runtime::SocketIo,
}

impl std::ops::Deref for SocketIo {
    type Target = sio_runtime::SocketIo;
    fn deref(&self) -> &sio_runtime::SocketIo {
        &self.inner
    }
}

impl SocketIo {
    /// Starts a server on the current tokio runtime.
    pub fn new(config: ServerConfig) -> SocketIo {
        SocketIo::with_limits(config, Limits::default())
    }

    /// Like [`SocketIo::new`], with explicit bounds for the glue's queues.
    pub fn with_limits(config: ServerConfig, limits: Limits) -> SocketIo {
        let inner = sio_runtime::SocketIo::start(Arc::new(TokioRuntime), config, limits);
        SocketIo { inner }
    }

    /// Binds `addr` and serves until an accept error.
    pub async fn listen(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener).await
    }

    /// Serves connections from an existing listener until an accept error.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, remote) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let io = self.inner.clone();
            tokio::spawn(async move {
                io.serve_connection(hyper_util::rt::TokioIo::new(stream), Some(remote))
                    .await
            });
        }
    }
}

/// An Engine.IO server on tokio.
pub struct EngineServer {
    service: EngineService,
}

impl EngineServer {
    /// Starts the engine with `handler` on the current tokio runtime.
    pub fn new(config: EngineConfig, handler: impl EngineHandler) -> EngineServer {
        EngineServer::with_limits(config, handler, Limits::default())
    }

    /// Like [`EngineServer::new`], with explicit bounds for the glue's queues.
    pub fn with_limits(
        config: EngineConfig,
        handler: impl EngineHandler,
        limits: Limits,
    ) -> EngineServer {
        let service = EngineService::start(Arc::new(TokioRuntime), config, handler, limits);
        EngineServer { service }
    }

    /// A handle to act on sessions from any task.
    pub fn handle(&self) -> EngineHandle {
        self.service.handle()
    }

    /// Binds `addr` and serves until an accept error.
    pub async fn listen(self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener).await
    }

    /// Serves connections from an existing listener until an accept error.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, remote) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let service = self.service.clone();
            tokio::spawn(async move {
                service
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), Some(remote))
                    .await
            });
        }
    }
}

/// The examples of the README compile.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
