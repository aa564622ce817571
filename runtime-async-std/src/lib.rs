//! **sio** on async-std: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for tokio and smol have the same API.
//!
//! **Legacy.** async-std is discontinued upstream (RUSTSEC-2025-0052); this crate is kept for
//! programs that still run on it. New code should use `sio-smol`, which runs on the same async-io
//! reactor. Nothing else in the workspace depends on this crate.
//!
//! The server's tasks run on async-std's executor (`ASYNC_STD_THREAD_COUNT` threads, one per core
//! by default). Spawn the server there too, and have the main thread only wait
//! (`futures_lite::future::block_on` parks it): with `async_std::task::block_on`, the main thread
//! would drive the reactor and hand every event over to an executor thread. As on smol, async-io's
//! helper thread preempts busy executor threads; [`lower_reactor_helper_priority`] stops that, at
//! a cost described on the function.
//!
//! ```no_run
//! use sio_async_std::{Payload, ServerConfig, SocketIo};
//!
//! fn main() -> std::io::Result<()> {
//!     futures_lite::future::block_on(async_std::task::spawn(async {
//!         let io = SocketIo::new(ServerConfig::default());
//!         io.on_connection(|socket| {
//!             socket.on("echo", |socket, args: Payload| {
//!                 let _ = socket.ack(&args);
//!             });
//!         });
//!         io.listen("127.0.0.1:3000").await
//!     }))
//! }
//! ```
#![forbid(unsafe_code)]

use std::io;
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

/// Serves an async-std listener through the shared async-io [`Listener`]: async-std runs on the
/// async-io reactor, so the listener moves to it as a plain socket.
fn wrap(listener: async_std::net::TcpListener) -> io::Result<AsyncIoListener> {
    let listener = std::net::TcpListener::try_from(listener)?;
    Ok(AsyncIoListener::new(std::sync::Arc::new(
        async_io::Async::new(listener)?,
    )))
}

sio_runtime::runtime_servers! {
    runtime: AsyncStdRuntime,
    listener: async_std::net::TcpListener,
    addrs: async_std::net::ToSocketAddrs,
    bind: async_std::net::TcpListener::bind,
    wrap: wrap,
}
