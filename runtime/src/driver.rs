//! The driver task: the one owner of the core. Connections reach it through a bounded channel; after
//! every input it drains the core's output to the connections and the application, then sleeps until
//! the next input or the core's next timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::command_queue::{self, Receiver, Sender, TrySendError};
use bytes::Bytes;
use futures_lite::future;
use http::HeaderMap;
use http::request::Parts;
use rustc_hash::FxHashMap;
use sio_core::engine::{BodyError, Engine, EngineEvent, Frame, RequestId, Transmit};
use sio_core::socket::Server;

use crate::Runtime;
use crate::outbox::{Outbox, OutboxHandle, Pushed};
use crate::reply::ReplySender;

/// The network side of a sans-IO state machine, as the driver feeds it (see the drain contract of
/// `sio_core::engine`).
pub trait Core: Send + 'static {
    /// What the core tells the application.
    type Event: Send;
    /// See `Engine::handle_request`.
    fn handle_request(
        &mut self,
        now: Instant,
        request: RequestId,
        head: &Parts,
        remote: Option<SocketAddr>,
    );
    /// See `Engine::handle_request_body`.
    fn handle_request_body(
        &mut self,
        now: Instant,
        request: RequestId,
        body: Result<Bytes, BodyError>,
    );
    /// See `Engine::handle_closed`.
    fn handle_closed(&mut self, now: Instant, request: RequestId);
    /// See `Engine::handle_ws_open`.
    fn handle_ws_open(&mut self, now: Instant, request: RequestId);
    /// See `Engine::handle_ws_frame`.
    fn handle_ws_frame(&mut self, now: Instant, request: RequestId, frame: Frame);
    /// See `Engine::handle_ws_error`.
    fn handle_ws_error(&mut self, now: Instant, request: RequestId, description: &'static str);
    /// See `Engine::handle_timeout`.
    fn handle_timeout(&mut self, now: Instant);
    /// See `Engine::poll_transmit`.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// See `Engine::poll_event`.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// See `Engine::poll_timeout`.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Forwards the network side of a core type to its inherent methods.
macro_rules! forward_core {
    ($core:ty, $event:ty) => {
        impl Core for $core {
            type Event = $event;
            fn handle_request(
                &mut self,
                now: Instant,
                request: RequestId,
                head: &Parts,
                remote: Option<SocketAddr>,
            ) {
                <$core>::handle_request(self, now, request, head, remote)
            }
            fn handle_request_body(
                &mut self,
                now: Instant,
                request: RequestId,
                body: Result<Bytes, BodyError>,
            ) {
                <$core>::handle_request_body(self, now, request, body)
            }
            fn handle_closed(&mut self, now: Instant, request: RequestId) {
                <$core>::handle_closed(self, now, request)
            }
            fn handle_ws_open(&mut self, now: Instant, request: RequestId) {
                <$core>::handle_ws_open(self, now, request)
            }
            fn handle_ws_frame(&mut self, now: Instant, request: RequestId, frame: Frame) {
                <$core>::handle_ws_frame(self, now, request, frame)
            }
            fn handle_ws_error(
                &mut self,
                now: Instant,
                request: RequestId,
                description: &'static str,
            ) {
                <$core>::handle_ws_error(self, now, request, description)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$core>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self) -> Option<Transmit> {
                <$core>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<$event> {
                <$core>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$core>::poll_timeout(self)
            }
        }
    };
}

forward_core!(Engine, EngineEvent);
forward_core!(Server, sio_core::socket::Event);

/// The application: owns the core and reacts to its events. Commands from outside the driver run
/// on it too, so they reach the core and the application's own state.
pub trait App: Send + 'static {
    /// The state machine it drives.
    type Core: Core;
    /// The core.
    fn core(&mut self) -> &mut Self::Core;
    /// The largest WebSocket message accepted.
    fn max_message_size(&self) -> usize;
    /// The path the core serves.
    fn path(&self) -> String;
    /// Handles one event of the core.
    fn handle_event(&mut self, now: Instant, event: <Self::Core as Core>::Event);
}

/// A command from outside the driver: runs on the driver with the application.
pub type AppCommand<A> = Box<dyn FnOnce(&mut A, Instant) + Send>;

/// Bounds of the glue's queues and buffers.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Inputs waiting for the driver.
    pub driver_queue: usize,
    /// Frames waiting to be written to one WebSocket; a client that reads slower than this is
    /// disconnected with `transport error`. The queue takes memory only while frames wait.
    pub ws_queue: usize,
    /// WebSockets the driver writes to itself after each batch of inputs, without waking their
    /// tasks; the tasks of the others write. Writing on the driver costs the least CPU, and it
    /// is what a single-threaded runtime wants. On a runtime with several worker threads, a lower
    /// bound spreads the system calls of a large broadcast over the workers, at the cost of a
    /// task wake-up per socket past the bound.
    pub driver_writes: usize,
    /// The most a WebSocket reads in one call when no frame is half read. Reads of up to 16 KiB
    /// go through a buffer of the thread, so connections hold none between messages; the rest of
    /// a larger frame is read straight into the connection's buffer, up to 64 KiB (or this) a
    /// call. 8 KiB by default: no connection keeps it, so it need not be small.
    pub ws_read_buffer: usize,
    /// Largest request head.
    pub max_header_size: usize,
    /// Time a client has to send a request head.
    pub header_read_timeout: std::time::Duration,
    /// Time a WebSocket has, once the server closed it, to take the frames still queued and the
    /// close frame; then the connection is dropped with whatever is left (the `closeTimeout` of
    /// the reference's `ws` library). Without it, a client that stops reading would hold its
    /// connection and its queue for as long as it keeps the TCP connection open.
    pub ws_close_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            driver_queue: 4096,
            ws_queue: 1024,
            driver_writes: usize::MAX,
            ws_read_buffer: 8 * 1024,
            max_header_size: 16 * 1024,
            header_read_timeout: std::time::Duration::from_secs(30),
            ws_close_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// What the driver tells a request's handler.
pub(crate) enum Outcome {
    Response(http::Response<Bytes>),
    ReadBody(usize),
    Abort,
    /// Answer with a 101 carrying these extra headers, then write what the outbox holds: the
    /// session is open already, so its first frames are queued before the 101 is written.
    AcceptWebSocket(HeaderMap, Arc<Outbox>),
}

/// An input for the driver.
pub(crate) enum Command<A: App> {
    Request {
        id: RequestId,
        head: Box<Parts>,
        remote: Option<SocketAddr>,
        reply: ReplySender,
    },
    Body {
        id: RequestId,
        body: Result<Bytes, BodyError>,
    },
    Closed {
        id: RequestId,
    },
    WsFrame {
        id: RequestId,
        frame: Frame,
    },
    WsError {
        id: RequestId,
        description: &'static str,
    },
    App(AppCommand<A>),
}

/// Where the driver sends what the core produced for one request.
enum Slot {
    Http(ReplySender),
    Ws(OutboxHandle),
}

/// Answers the HTTP requests that are not for the server's path (a page, an API of the app).
pub type Fallback = Arc<dyn Fn(&Parts, Bytes) -> http::Response<Bytes> + Send + Sync>;

/// The shared handle to a running driver.
pub(crate) struct Shared<A: App> {
    pub runtime: Arc<dyn Runtime>,
    pub commands: Sender<Command<A>>,
    pub limits: Limits,
    pub max_message_size: usize,
    /// The path the core serves; other requests go to the fallback.
    pub path: String,
    pub fallback: std::sync::OnceLock<Fallback>,
    /// Closed when the server shuts down: accept loops stop.
    pub shutdown: (async_channel::Sender<()>, async_channel::Receiver<()>),
    next_request: AtomicU64,
}

impl<A: App> Shared<A> {
    pub fn next_request_id(&self) -> RequestId {
        RequestId(self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a command that must not be lost even from a context that cannot wait (a `Drop`).
    pub fn send_now(&self, command: Command<A>) {
        match self.commands.try_send(command) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(command)) => {
                let commands = self.commands.clone();
                self.runtime.spawn(Box::pin(async move {
                    let _ = commands.send(command).await;
                }));
            }
        }
    }
}

/// The handle and the command queue of an application, without a driver yet.
pub(crate) fn channel<A: App>(
    runtime: Arc<dyn Runtime>,
    app: &A,
    limits: Limits,
) -> (Arc<Shared<A>>, Receiver<Command<A>>) {
    let (tx, rx) = command_queue::bounded(limits.driver_queue);
    let shared = Arc::new(Shared {
        runtime,
        commands: tx,
        max_message_size: app.max_message_size(),
        path: app.path(),
        fallback: std::sync::OnceLock::new(),
        shutdown: async_channel::bounded(1),
        limits,
        next_request: AtomicU64::new(1),
    });
    (shared, rx)
}

/// Starts the driver for `app` on `runtime`.
pub(crate) fn spawn<A: App>(runtime: Arc<dyn Runtime>, app: A, limits: Limits) -> Arc<Shared<A>> {
    let (shared, rx) = channel(runtime.clone(), &app, limits.clone());
    let driver = Driver {
        app,
        runtime: runtime.clone(),
        commands: rx,
        slots: FxHashMap::default(),
        ws_queue: limits.ws_queue,
        driver_writes: limits.driver_writes,
        write_later: Vec::new(),
    };
    runtime.spawn(Box::pin(driver.run()));
    shared
}

struct Driver<A: App> {
    app: A,
    runtime: Arc<dyn Runtime>,
    commands: Receiver<Command<A>>,
    /// Keyed by our own sequential ids, so a fast non-keyed hash is safe.
    slots: FxHashMap<RequestId, Slot>,
    /// The bound of each WebSocket's outbox.
    ws_queue: usize,
    /// See `Limits::driver_writes`.
    driver_writes: usize,
    /// Outboxes the driver writes to their sockets once the current batch of inputs is handled:
    /// several frames for one connection then go out in one write.
    write_later: Vec<Arc<Outbox>>,
}

impl<A: App> Driver<A> {
    async fn run(mut self) {
        let mut timer = self.runtime.new_timer(self.runtime.now());
        let mut armed: Option<Instant> = None;
        loop {
            self.drain();
            let budget = self.driver_writes;
            for (n, outbox) in self.write_later.drain(..).enumerate() {
                if n < budget {
                    outbox.write_direct();
                } else {
                    outbox.hand_over();
                }
            }
            if self.write_later.capacity() > 1024 {
                // A broadcast to many sockets should not leave its list behind.
                self.write_later = Vec::new();
            }
            let deadline = self.app.core().poll_timeout();
            // Check the clock before the timer: a timer may report Pending past its deadline.
            if let Some(at) = deadline {
                let now = self.runtime.now();
                if at <= now {
                    self.app.core().handle_timeout(now);
                    continue;
                }
                if armed != Some(at) {
                    timer.as_mut().reset(at);
                    armed = Some(at);
                }
            }
            let next = future::or(async { self.commands.recv().await.ok() }, async {
                match deadline {
                    Some(_) => {
                        future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
                        None
                    }
                    None => future::pending().await,
                }
            })
            .await;
            match next {
                Some(command) => {
                    // Let the other tasks that are ready run first: their inputs join this batch,
                    // so that a connection gets several frames per write.
                    future::yield_now().await;
                    self.handle(command);
                    // Take what else is already waiting, draining after each input. When the
                    // executor wants the thread back, give it and go on with the batch: its
                    // frames still leave together, after it.
                    for _ in 0..64 {
                        if crate::coop::slice_spent() {
                            future::yield_now().await;
                        }
                        let Some(command) = self.commands.try_recv() else {
                            break;
                        };
                        self.drain();
                        self.handle(command);
                    }
                }
                None if deadline.is_none() => {}
                None => {
                    armed = None;
                    let now = self.runtime.now();
                    self.app.core().handle_timeout(now);
                }
            }
            if self.commands.is_closed() && self.commands.is_empty() && self.slots.is_empty() {
                return;
            }
        }
    }

    fn handle(&mut self, command: Command<A>) {
        let now = self.runtime.now();
        match command {
            Command::Request {
                id,
                head,
                remote,
                reply,
            } => {
                self.slots.insert(id, Slot::Http(reply));
                self.app.core().handle_request(now, id, &head, remote);
            }
            Command::Body { id, body } => self.app.core().handle_request_body(now, id, body),
            Command::Closed { id } => {
                self.slots.remove(&id);
                self.app.core().handle_closed(now, id);
            }
            Command::WsFrame { id, frame } => self.app.core().handle_ws_frame(now, id, frame),
            Command::WsError { id, description } => {
                self.slots.remove(&id);
                self.app.core().handle_ws_error(now, id, description);
            }
            Command::App(command) => command(&mut self.app, now),
        }
    }

    /// Drains the core until it has nothing more to say.
    fn drain(&mut self) {
        // Only inputs make outputs: an event's handler feeds the core (and its events are taken
        // in this same loop), a transmit rarely does (`route` says when). Polling events first
        // takes one round for the usual input, not three.
        loop {
            while let Some(event) = self.app.core().poll_event() {
                let now = self.runtime.now();
                self.app.handle_event(now, event);
            }
            let mut fed = false;
            while let Some(transmit) = self.app.core().poll_transmit() {
                fed |= self.route(transmit);
            }
            if !fed {
                return;
            }
        }
    }

    /// Carries out `transmit`; whether that fed the core an input (which may have outputs).
    fn route(&mut self, transmit: Transmit) -> bool {
        match transmit {
            Transmit::Response { request, response } => {
                if let Some(Slot::Http(reply)) = self.slots.remove(&request) {
                    reply.send(Outcome::Response(*response));
                }
                false
            }
            Transmit::ReadBody { request, limit } => {
                if let Some(Slot::Http(reply)) = self.slots.get(&request) {
                    reply.send(Outcome::ReadBody(limit));
                }
                false
            }
            Transmit::Abort { request } => {
                if let Some(Slot::Http(reply)) = self.slots.remove(&request) {
                    reply.send(Outcome::Abort);
                }
                false
            }
            Transmit::AcceptWebSocket { request, headers } => {
                if let Some(Slot::Http(reply)) = self.slots.remove(&request) {
                    // Open the session now rather than after the upgrade: the open packet waits in
                    // the outbox for the 101, and the connection saves a trip through the driver.
                    // A connection that goes away before its upgrade reports `Closed`.
                    let out = Outbox::new(self.ws_queue);
                    reply.send(Outcome::AcceptWebSocket(*headers, out.clone()));
                    self.slots.insert(request, Slot::Ws(OutboxHandle(out)));
                    let now = self.runtime.now();
                    self.app.core().handle_ws_open(now, request);
                    return true;
                }
                false
            }
            Transmit::Frame { request, frame } => {
                if let Some(Slot::Ws(out)) = self.slots.get(&request) {
                    let pushed = out.0.push(frame);
                    if pushed == Ok(Pushed::WriteLater) {
                        self.write_later.push(out.0.clone());
                    } else if pushed.is_err() {
                        // The client reads slower than we write: cut it off rather than buffer
                        // without bound (dropping the handle closes the outbox).
                        self.slots.remove(&request);
                        let now = self.runtime.now();
                        self.app
                            .core()
                            .handle_ws_error(now, request, "send queue full");
                        return true;
                    }
                }
                false
            }
            Transmit::CloseWebSocket { request } => {
                // Dropping the handle closes the outbox once its frames are written.
                self.slots.remove(&request);
                false
            }
        }
    }
}
