//! Runtime-agnostic glue of **sio**: one driver task owns the sans-IO core (`sio-core`), hyper serves
//! HTTP/1.1, async-tungstenite serves WebSocket, and everything reaches the executor through the
//! small [`Runtime`] trait. The runtime crates (`sio-tokio`, ...) implement that trait, accept TCP
//! connections and re-export this crate's API.
//!
//! No protocol rule lives here: the glue moves bytes and time between the network and the core.
#![forbid(unsafe_code)]

mod bundle;
mod driver;
mod engine;
mod handshake;
mod http;
mod io;
mod listener;
mod outbox;
mod servers;
mod socketio;
pub mod testkit;
mod ws;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use bundle::{DEFAULT_CLIENT_DIR, load_client_bundle};
pub use driver::{App, Core, Fallback, Limits};
pub use engine::{EngineHandle, EngineHandler, EngineService, EngineSocket};
pub use handshake::Handshake;
pub use http::Aborted;
pub use io::Compat;
pub use listener::Listener;
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

/// A resettable timer.
pub trait Timer: Send + Sync + 'static {
    /// Moves the deadline.
    fn reset(self: Pin<&mut Self>, deadline: Instant);
    /// Ready once the deadline has passed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// The async-io reactor's timer as a [`Timer`] (smol, async-std).
#[cfg(feature = "async-io")]
pub struct AsyncIoTimer {
    timer: async_io::Timer,
}

#[cfg(feature = "async-io")]
impl AsyncIoTimer {
    /// A timer firing at `deadline`.
    pub fn at(deadline: Instant) -> AsyncIoTimer {
        AsyncIoTimer {
            timer: async_io::Timer::at(deadline),
        }
    }
}

#[cfg(feature = "async-io")]
impl Timer for AsyncIoTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.timer.set_at(deadline)
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}

/// Adapts a [`Timer`] to `hyper::rt::Sleep`.
struct HyperSleep(Pin<Box<dyn Timer>>);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

/// Gives hyper the runtime's timers (needed for the header-read timeout).
#[derive(Clone)]
struct HyperTimer(std::sync::Arc<dyn Runtime>);

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(self.0.new_timer(self.0.now() + duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(self.0.new_timer(deadline)))
    }
}
