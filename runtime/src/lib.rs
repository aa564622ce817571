//! Runtime-agnostic glue of **sio**: one driver task owns the sans-IO core (`sio-core`), hyper serves
//! HTTP/1.1, each WebSocket's task reads its frames and the driver writes them, and everything
//! reaches the executor through the small [`Runtime`] trait. The runtime crates (`sio-tokio`, ...)
//! implement that trait, accept TCP connections and re-export this crate's API.
//!
//! No Engine.IO or Socket.IO rule lives here: the glue moves bytes and time between the network
//! and the core, framing them as WebSocket (RFC 6455) on the way.
#![forbid(unsafe_code)]

#[cfg(feature = "async-io")]
mod async_io;
#[cfg(feature = "async-io")]
mod block_on;
mod bundle;
mod command_queue;
mod coop;
mod driver;
mod engine;
mod handshake;
mod header_timer;
mod http;
mod io;
mod listener;
mod outbox;
mod reply;
mod servers;
mod socketio;
pub mod testkit;
mod upgrade_io;
mod ws;
mod ws_decoder;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[cfg(feature = "async-io")]
pub use async_io::{
    AsyncIoListener, AsyncIoStream, AsyncIoTimer, REACTOR_HELPER_NICE,
    lower_reactor_helper_priority,
};
#[cfg(feature = "async-io")]
pub use block_on::{REACTOR_POLL_INTERVAL, block_on, current_executor};
pub use bundle::{DEFAULT_CLIENT_DIR, load_client_bundle};
pub use driver::{App, Core, Fallback, Limits};
pub use engine::{EngineHandle, EngineHandler, EngineService, EngineSocket};
pub use handshake::Handshake;
pub use http::Aborted;
pub use io::{Compat, JOIN_BYTES, read_into, send_joined, send_vectored, write_joined};
pub use listener::{
    FD_TABLE_RESERVE, LISTEN_BACKLOG, Listener, SocketWriter, nodelay_for_accepted,
    raise_listen_backlog, reserve_fd_table,
};
pub use sio_core;
pub use sio_core::engine::Handshake as EngineHandshake;
pub use sio_core::engine::{
    CloseReason, CookieConfig, CorsConfig, CorsOrigin, EngineConfig, ErrorCode, Frame, HeadersHook,
    Message, SessionId, Sid, Transport, Transports,
};
pub use sio_core::socket::{
    ClientBundle, DisconnectReason, Payload, PayloadError, RecoveryConfig, ServerConfig,
};
pub use socketio::{
    AckError, AckSender, AckTimeout, Adapter, AdapterOp, AdapterTarget, Broadcast, BroadcastHandle,
    ConnectError, EmitError, FetchedSocket, InMemoryAdapter, IoRef, ListenerId, Namespace,
    SocketEmitter, SocketError, SocketHandle, SocketIo, SocketRef,
};

/// A boxed future the runtime runs to completion.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the glue needs from an async runtime: spawning, timers and the clock.
///
/// The clock goes through the runtime so that a runtime with simulated time (tokio's paused clock)
/// drives the core's timers too.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `future` in the background.
    fn spawn(&self, future: BoxFuture);
    /// A timer that fires at `deadline`.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>>;
    /// The current time.
    fn now(&self) -> Instant;
}

/// Locks `mutex`. Nothing in the glue panics while holding a lock, so a poisoned lock still holds
/// consistent data.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the waker of the task that polls in `slot`, cloning it only when it changed.
pub(crate) fn register_waker(slot: &mut Option<std::task::Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A resettable timer.
pub trait Timer: Send + Sync + 'static {
    /// Moves the deadline.
    fn reset(self: Pin<&mut Self>, deadline: Instant);
    /// Ready once the deadline has passed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

#[cfg(test)]
pub(crate) mod test_waker {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    /// A waker that counts how often it was woken.
    #[derive(Default)]
    pub(crate) struct CountingWaker(AtomicUsize);

    impl CountingWaker {
        /// A counter and a waker that counts into it.
        pub fn new() -> (Arc<CountingWaker>, Waker) {
            let counter = Arc::new(CountingWaker::default());
            let waker = Waker::from(counter.clone());
            (counter, waker)
        }

        /// The wake-ups so far.
        pub fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
