//! **sio** on smol: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for tokio and async-std have the same API.
//!
//! Run the server with [`block_on`]: the calling thread runs the server's tasks and drives the
//! reactor, as tokio's current-thread runtime does, and a `SocketIo` made inside spawns there.
//! Between two polls of the reactor it runs tasks for [`REACTOR_POLL_INTERVAL`] at first and for
//! longer as async-io's helper thread backs off, which keeps that thread from taking the reactor
//! over on a busy server (async-io issue #40): with `smol::block_on(executor.run(..))` or smol's
//! global executor, the reactor is polled every 200 tasks, and the helper preempts the executor's
//! thread for every event (`bench/README.md` measures it). For several threads, give each its own
//! `block_on`, or spawn on an executor of your own ([`SmolRuntime::with_executor`]). Outside
//! `block_on`, the server's tasks go to smol's global executor.
//!
//! ```no_run
//! use sio_smol::{Payload, ServerConfig, SocketIo};
//!
//! fn main() -> std::io::Result<()> {
//!     sio_smol::block_on(async {
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

/// The smol [`Runtime`]: spawns on the executor of the enclosing [`block_on`], on an executor
/// you give it, or else on smol's global executor; uses async-io's timers.
#[derive(Clone)]
pub struct SmolRuntime {
    executor: Option<Arc<smol::Executor<'static>>>,
}

impl Default for SmolRuntime {
    /// Spawns on the executor of the [`block_on`] running on this thread, if any, else on smol's
    /// global executor.
    fn default() -> SmolRuntime {
        SmolRuntime {
            executor: current_executor(),
        }
    }
}

impl SmolRuntime {
    /// Spawns on `executor` instead of the global one.
    pub fn with_executor(executor: Arc<smol::Executor<'static>>) -> SmolRuntime {
        SmolRuntime {
            executor: Some(executor),
        }
    }
}

impl Runtime for SmolRuntime {
    fn spawn(&self, future: BoxFuture) {
        match &self.executor {
            Some(executor) => executor.spawn(future).detach(),
            None => smol::spawn(future).detach(),
        }
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(AsyncIoTimer::at(deadline))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Serves a smol listener through the shared async-io [`Listener`].
fn wrap(listener: async_net::TcpListener) -> io::Result<AsyncIoListener> {
    Ok(AsyncIoListener::new(listener.into()))
}

sio_runtime::runtime_servers! {
    runtime: SmolRuntime::default(),
    listener: async_net::TcpListener,
    addrs: async_net::AsyncToSocketAddrs,
    bind: async_net::TcpListener::bind,
    wrap: wrap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_runtime_spawns_on_the_given_executor() {
        let executor = Arc::new(smol::Executor::new());
        assert!(executor.is_empty());
        let _io = SocketIo::with_runtime(
            SmolRuntime::with_executor(executor.clone()),
            ServerConfig::default(),
            Limits::default(),
        );
        // The driver task waits on this executor, not on smol's global one.
        assert!(!executor.is_empty());
    }
}
