//! **sio** on async-std: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for tokio and smol have the same API.
//!
//! **Legacy.** async-std is discontinued upstream (RUSTSEC-2025-0052); this crate is kept for
//! programs that still run on it. New code should use `sio-smol`, which runs on the same async-io
//! reactor. Nothing else in the workspace depends on this crate.
//!
//! ```no_run
//! use sio_async_std::{Payload, ServerConfig, SocketIo};
//!
//! fn main() -> std::io::Result<()> {
//!     async_std::task::block_on(async {
//!         let io = SocketIo::new(ServerConfig::default());
//!         io.on_connection(|socket| {
//!             socket.on("echo", |socket, args: Payload| {
//!                 let _ = socket.ack(&args);
//!             });
//!         });
//!         io.listen("127.0.0.1:3000").await
//!     })
//! }
//! ```
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

pub use sio_runtime::*;

/// The async-std [`Runtime`]: spawns async-std tasks and uses async-io's timers (async-std's own
/// reactor).
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
    fn spawn(&self, future: BoxFuture) {
        async_std::task::spawn(future);
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(AsyncIoTimer::at(deadline))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// An async-std listener as a [`Listener`].
pub struct AsyncStdListener(async_std::net::TcpListener);

impl Listener for AsyncStdListener {
    type Io = Compat<async_std::net::TcpStream>;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((Compat::new(stream), peer))
    }
}

sio_runtime::runtime_servers! {
    runtime: AsyncStdRuntime,
    listener: async_std::net::TcpListener,
    addrs: async_std::net::ToSocketAddrs,
    bind: async_std::net::TcpListener::bind,
    wrap: AsyncStdListener,
}
