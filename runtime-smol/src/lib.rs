//! **sio** on smol: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for tokio and async-std have the same API.
//!
//! The server's tasks run on smol's global executor. Spawn the server there too, and have the main
//! thread only wait (`smol::future::block_on` parks it): with `smol::block_on`, the main thread
//! would drive the reactor and hand every event over to the executor's thread, which costs a
//! thread wake-up per event.
//!
//! async-io also runs a helper thread that takes the reactor over whenever the executor's threads
//! have not polled it for a while, which happens when they are busy. On a server limited to one
//! core that thread preempts the executor (async-io issue #40); `bench/README.md` measures it.
//! [`lower_reactor_helper_priority`] puts the helper at nice 19, where it stops preempting them: a
//! trade-off (less CPU per message, later events when one task keeps the executor busy), described
//! on the function.
//!
//! ```no_run
//! use sio_smol::{Payload, ServerConfig, SocketIo};
//!
//! fn main() -> std::io::Result<()> {
//!     smol::future::block_on(smol::spawn(async {
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
use std::sync::Arc;
use std::time::Instant;

pub use sio_runtime::*;

/// The smol [`Runtime`]: spawns on smol's global executor (or on an executor you give it) and uses
/// async-io's timers.
#[derive(Clone, Default)]
pub struct SmolRuntime {
    executor: Option<Arc<smol::Executor<'static>>>,
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
