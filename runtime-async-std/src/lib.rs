//! **sio** on async-std: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for tokio and smol have the same API.
//!
//! **Legacy.** async-std is discontinued upstream (RUSTSEC-2025-0052); this crate is kept for
//! programs that still run on it. New code should use `sio-smol`, which runs on the same async-io
//! reactor. Nothing else in the workspace depends on this crate.
//!
//! Run the server with [`block_on`], as on smol: the calling thread runs the server's tasks and
//! drives the reactor, polling it often enough that async-io's helper thread does not preempt it.
//! Those tasks are not async-std tasks (`async_std::task::current()` is not available in them);
//! `async_std::task::spawn` from a handler still works. Outside `block_on`, the server's tasks are
//! spawned as async-std tasks, on its executor (`ASYNC_STD_THREAD_COUNT` threads, one per core by
//! default); spawn the server there too and have the main thread only wait
//! (`futures_lite::future::block_on(async_std::task::spawn(..))`).
//!
//! ```no_run
//! use sio_async_std::{Payload, ServerConfig, SocketIo};
//!
//! fn main() -> std::io::Result<()> {
//!     sio_async_std::block_on(async {
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
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

pub use sio_runtime::*;

/// The async-std [`Runtime`]: spawns async-std tasks, or on the executor of the enclosing
/// [`block_on`]; uses async-io's timers (async-std's own reactor).
#[derive(Clone, Debug)]
pub struct AsyncStdRuntime {
    executor: Option<Arc<async_executor::Executor<'static>>>,
}

impl Default for AsyncStdRuntime {
    /// Spawns on the executor of the [`block_on`] running on this thread, if any, else as
    /// async-std tasks.
    fn default() -> AsyncStdRuntime {
        AsyncStdRuntime {
            executor: current_executor(),
        }
    }
}

impl Runtime for AsyncStdRuntime {
    fn spawn(&self, future: BoxFuture) {
        match &self.executor {
            Some(executor) => executor.spawn(future).detach(),
            None => {
                async_std::task::spawn(future);
            }
        }
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
    Ok(AsyncIoListener::new(Arc::new(async_io::Async::new(
        listener,
    )?)))
}

sio_runtime::runtime_servers! {
    runtime: AsyncStdRuntime::default(),
    listener: async_std::net::TcpListener,
    addrs: async_std::net::ToSocketAddrs,
    bind: async_std::net::TcpListener::bind,
    wrap: wrap,
}
