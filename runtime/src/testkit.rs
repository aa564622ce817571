//! Test your handlers with simulated time: the real server and your real handlers, in-memory clients,
//! a virtual clock, no sockets and no waiting.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use sio_runtime::testkit::TestKit;
//! use sio_runtime::{DisconnectReason, ServerConfig};
//!
//! let mut kit = TestKit::new(ServerConfig::default());
//! let reasons = Arc::new(Mutex::new(Vec::new()));
//! let seen = reasons.clone();
//! kit.io().on_connection(move |socket| {
//!     let seen = seen.clone();
//!     socket.on_disconnect(move |_, reason| seen.lock().unwrap().push(reason));
//!     socket.on("hello", |socket, name: String| {
//!         let _ = socket.emit("greeting", &format!("hello {name}"));
//!     });
//! });
//!
//! let client = kit.connect("/", serde_json::json!({})).unwrap();
//! kit.emit(client, "hello", &"kit");
//! assert_eq!(kit.received(client)[0].event, "greeting");
//!
//! // A client that stops answering pings is gone after ping interval + ping timeout (45 s).
//! kit.set_silent(client, true);
//! kit.advance(Duration::from_secs(45) - Duration::from_millis(1));
//! assert!(reasons.lock().unwrap().is_empty());
//! kit.advance(Duration::from_millis(1));
//! assert_eq!(*reasons.lock().unwrap(), vec![DisconnectReason::PingTimeout]);
//! ```

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::command_queue::Receiver;
use bytestring::ByteString;
use http::Request;
use serde::Serialize;
use serde_json::Value;
use sio_core::engine::{Frame, RequestId, Transmit};
use sio_core::socket::packet::{Decoder, PacketType, encode_ack, encode_event};
use sio_core::socket::{Payload, ServerConfig};

use crate::driver::{App, Command};
use crate::socketio::SioApp;
use crate::{BoxFuture, Runtime, SocketIo, Timer};

/// An in-memory client of a [`TestKit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(usize);

/// An event a client received.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// The namespace.
    pub nsp: String,
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub args: Payload,
    /// The server's ack id, to answer with [`TestKit::ack`].
    pub ack: Option<u64>,
}

/// A namespace refused the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused(pub Value);

#[derive(Default)]
struct Client {
    request: Option<RequestId>,
    decoder: Option<Decoder>,
    sids: HashMap<String, String>,
    pids: HashMap<String, String>,
    refusals: HashMap<String, Value>,
    received: Vec<Received>,
    acks: HashMap<u64, Payload>,
    next_ack: u64,
    silent: bool,
    closed: bool,
    outbox: VecDeque<Frame>,
}

/// The kit's runtime: spawned tasks wait in a list the kit polls; the clock is the kit's.
struct KitRuntime {
    now: Mutex<Instant>,
    tasks: Mutex<Vec<BoxFuture>>,
}

impl Runtime for KitRuntime {
    fn spawn(&self, future: BoxFuture) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(future);
        }
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(KitTimer { deadline })
    }

    fn now(&self) -> Instant {
        self.now.lock().map_or_else(|e| *e.into_inner(), |n| *n)
    }
}

/// Never fires by itself: the kit drives the core's timers directly.
struct KitTimer {
    deadline: Instant,
}

impl Timer for KitTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// The server with your handlers, driven in-process with a virtual clock.
pub struct TestKit {
    io: SocketIo,
    app: SioApp,
    commands: Receiver<Command<SioApp>>,
    runtime: Arc<KitRuntime>,
    clients: Vec<Client>,
    by_request: HashMap<RequestId, usize>,
    next_request: u64,
}

impl TestKit {
    /// A server with `config`. Register handlers on [`TestKit::io`].
    pub fn new(config: ServerConfig) -> TestKit {
        #[allow(clippy::disallowed_methods)] // the virtual clock's epoch
        let epoch = Instant::now();
        let runtime = Arc::new(KitRuntime {
            now: Mutex::new(epoch),
            tasks: Mutex::new(Vec::new()),
        });
        let (io, app, commands) = SocketIo::detached(runtime.clone(), config);
        TestKit {
            io,
            app,
            commands,
            runtime,
            clients: Vec::new(),
            by_request: HashMap::new(),
            next_request: 0,
        }
    }

    /// The server, to register handlers and emit as in production.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.runtime.now()
    }

    /// Opens a WebSocket connection and connects it to `nsp` with `auth`.
    pub fn connect(&mut self, nsp: &str, auth: Value) -> Result<ClientId, Refused> {
        self.run();
        let id = ClientId(self.clients.len());
        self.next_request += 1;
        let request = RequestId(self.next_request);
        self.clients.push(Client {
            request: Some(request),
            decoder: Some(Decoder::new(usize::MAX)),
            ..Client::default()
        });
        self.by_request.insert(request, id.0);
        let (head, ()) = Request::get("/socket.io/?EIO=4&transport=websocket")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap_or_default()
            .into_parts();
        let now = self.now();
        self.app.core().handle_request(now, request, &head, None);
        self.app.core().handle_ws_open(now, request);
        self.run();
        self.join(id, nsp, auth).map(|_| id)
    }

    /// Connects an open client to one more namespace.
    pub fn join(&mut self, client: ClientId, nsp: &str, auth: Value) -> Result<String, Refused> {
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        self.send_text(client, &format!("0{prefix}{auth}"));
        let c = &mut self.clients[client.0];
        if let Some(error) = c.refusals.remove(nsp) {
            return Err(Refused(error));
        }
        c.sids
            .get(nsp)
            .cloned()
            .ok_or(Refused(Value::String("no answer".into())))
    }

    /// The socket id the server gave the client in `nsp`.
    pub fn sid(&self, client: ClientId, nsp: &str) -> Option<&str> {
        self.clients[client.0].sids.get(nsp).map(String::as_str)
    }

    /// The private session id the server gave the client in `nsp` (with connection state
    /// recovery), to send back in `auth` with the last offset when reconnecting.
    pub fn pid(&self, client: ClientId, nsp: &str) -> Option<&str> {
        self.clients[client.0].pids.get(nsp).map(String::as_str)
    }

    /// Emits `event` from the client on the main namespace.
    pub fn emit<T: Serialize + ?Sized>(&mut self, client: ClientId, event: &str, args: &T) {
        self.emit_to(client, "/", event, args, None);
    }

    /// Emits with an ack and returns the server's answer, if it came before the kit went idle.
    pub fn emit_with_ack<T: Serialize + ?Sized>(
        &mut self,
        client: ClientId,
        event: &str,
        args: &T,
    ) -> Option<Payload> {
        let c = &mut self.clients[client.0];
        let id = c.next_ack;
        c.next_ack += 1;
        self.emit_to(client, "/", event, args, Some(id));
        self.clients[client.0].acks.remove(&id)
    }

    /// Emits from the client on namespace `nsp`, with an optional ack id.
    pub fn emit_to<T: Serialize + ?Sized>(
        &mut self,
        client: ClientId,
        nsp: &str,
        event: &str,
        args: &T,
        ack: Option<u64>,
    ) {
        let payload = Payload::from_args(args).unwrap_or_default();
        let text = encode_event(nsp, event, &payload, ack);
        self.send_packet(client, &text, &payload);
    }

    /// Answers an event the server sent with an ack id.
    pub fn ack<T: Serialize + ?Sized>(&mut self, client: ClientId, nsp: &str, id: u64, args: &T) {
        let payload = Payload::from_args(args).unwrap_or_default();
        let text = encode_ack(nsp, id, &payload);
        self.send_packet(client, &text, &payload);
    }

    /// Takes the events the client received so far.
    pub fn received(&mut self, client: ClientId) -> Vec<Received> {
        self.run();
        std::mem::take(&mut self.clients[client.0].received)
    }

    /// Stops (or resumes) answering the server's pings.
    pub fn set_silent(&mut self, client: ClientId, silent: bool) {
        self.clients[client.0].silent = silent;
    }

    /// Whether the server closed the client's connection.
    pub fn is_closed(&self, client: ClientId) -> bool {
        self.clients[client.0].closed
    }

    /// Leaves a namespace (`socket.disconnect()` on the client).
    pub fn leave(&mut self, client: ClientId, nsp: &str) {
        let packet = if nsp == "/" {
            "1".to_owned()
        } else {
            format!("1{nsp},")
        };
        self.send_text(client, &packet);
        self.clients[client.0].sids.remove(nsp);
    }

    /// Drops the connection without a goodbye (the network went away).
    pub fn drop_connection(&mut self, client: ClientId) {
        if let Some(request) = self.clients[client.0].request.take() {
            self.clients[client.0].closed = true;
            let now = self.now();
            self.app.core().handle_closed(now, request);
            self.run();
        }
    }

    /// Runs a future of the server's async API (`kit.io().to("room").emit(...)`, ...) to its end,
    /// letting the server work in between. Panics if it cannot finish without the clock moving.
    pub fn block_on<F: std::future::Future>(&mut self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            self.run();
        }
        panic!("the future did not finish: does it wait for time to pass?");
    }

    /// Moves the virtual clock forward, firing each timer at its own instant.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now() + by;
        self.run();
        while let Some(at) = self.app.core().poll_timeout() {
            if at > target {
                break;
            }
            self.set_now(at);
            self.app.core().handle_timeout(at);
            self.run();
        }
        self.set_now(target);
        self.run();
    }

    fn set_now(&self, at: Instant) {
        if let Ok(mut now) = self.runtime.now.lock() {
            *now = at;
        }
    }

    /// Sends a Socket.IO packet with no attachments.
    fn send_text(&mut self, client: ClientId, text: &str) {
        self.clients[client.0]
            .outbox
            .push_back(Frame::Text(ByteString::from(format!("4{text}"))));
        self.run();
    }

    fn send_packet(&mut self, client: ClientId, text: &str, payload: &Payload) {
        let c = &mut self.clients[client.0];
        c.outbox
            .push_back(Frame::Text(ByteString::from(format!("4{text}"))));
        for attachment in &payload.attachments {
            c.outbox.push_back(Frame::Binary(attachment.clone()));
        }
        self.run();
    }

    /// Runs everything until nothing moves: commands from handles, spawned tasks, the server's
    /// output, and the clients' frames and automatic pongs.
    fn run(&mut self) {
        loop {
            let mut progressed = self.poll_tasks();
            while let Some(command) = self.commands.try_recv() {
                progressed = true;
                let now = self.now();
                // Network commands only come from the glue, which the kit does not run.
                if let Command::App(command) = command {
                    command(&mut self.app, now);
                }
            }
            progressed |= self.drain();
            for i in 0..self.clients.len() {
                while let Some(frame) = self.clients[i].outbox.pop_front() {
                    progressed = true;
                    if let Some(request) = self.clients[i].request {
                        let now = self.now();
                        self.app.core().handle_ws_frame(now, request, frame);
                        self.drain();
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn poll_tasks(&mut self) -> bool {
        let tasks = match self.runtime.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return false,
        };
        if tasks.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut pending = Vec::new();
        let mut progressed = false;
        for mut task in tasks {
            match task.as_mut().poll(&mut cx) {
                Poll::Ready(()) => progressed = true,
                Poll::Pending => pending.push(task),
            }
        }
        if let Ok(mut tasks) = self.runtime.tasks.lock() {
            // A task that sent a command makes progress once the command has run; count the
            // commands as the progress and keep polling while they come.
            progressed |= !self.commands.is_empty();
            tasks.extend(pending);
        }
        progressed
    }

    /// Delivers the server's output; true if there was any.
    fn drain(&mut self) -> bool {
        let mut progressed = false;
        loop {
            let mut moved = false;
            while let Some(transmit) = self.app.core().poll_transmit() {
                moved = true;
                self.deliver(transmit);
            }
            while let Some(event) = self.app.core().poll_event() {
                moved = true;
                let now = self.now();
                self.app.handle_event(now, event);
            }
            if !moved {
                return progressed;
            }
            progressed = true;
        }
    }

    fn deliver(&mut self, transmit: Transmit) {
        let (request, frame) = match transmit {
            Transmit::Frame { request, frame } => (request, frame),
            Transmit::CloseWebSocket { request } => {
                if let Some(&i) = self.by_request.get(&request) {
                    self.clients[i].closed = true;
                    self.clients[i].request = None;
                    let now = self.now();
                    self.app.core().handle_closed(now, request);
                }
                return;
            }
            _ => return,
        };
        let Some(&i) = self.by_request.get(&request) else {
            return;
        };
        let client = &mut self.clients[i];
        let packet = match frame {
            Frame::Text(text) => match text.as_bytes().first() {
                Some(b'2') if !client.silent => {
                    client
                        .outbox
                        .push_back(Frame::Text(ByteString::from_static("3")));
                    return;
                }
                Some(b'4') => client
                    .decoder
                    .as_mut()
                    .and_then(|d| d.decode_text(&text[1..]).ok().flatten()),
                _ => return,
            },
            Frame::Binary(data) => client
                .decoder
                .as_mut()
                .and_then(|d| d.decode_binary(data).ok().flatten()),
        };
        let Some(packet) = packet else {
            return;
        };
        let payload = |data: Option<Value>, attachments| Payload {
            args: match data {
                Some(Value::Array(args)) => args,
                _ => Vec::new(),
            },
            attachments,
        };
        match packet.kind {
            PacketType::Connect => {
                if let Some(pid) = packet
                    .data
                    .as_ref()
                    .and_then(|d| d.get("pid"))
                    .and_then(Value::as_str)
                {
                    client.pids.insert(packet.nsp.to_string(), pid.to_owned());
                }
                let sid = packet
                    .data
                    .as_ref()
                    .and_then(|d| d.get("sid"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                client.sids.insert(packet.nsp.into_owned(), sid);
            }
            PacketType::ConnectError => {
                client
                    .refusals
                    .insert(packet.nsp.into_owned(), packet.data.unwrap_or(Value::Null));
            }
            PacketType::Disconnect => {
                client.sids.remove(&*packet.nsp);
            }
            PacketType::Event => {
                let mut args = payload(packet.data, packet.attachments);
                if args.args.is_empty() {
                    return;
                }
                let event = match args.args.remove(0) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                client.received.push(Received {
                    nsp: packet.nsp.into_owned(),
                    event,
                    args,
                    ack: packet.id,
                });
            }
            PacketType::Ack => {
                if let Some(id) = packet.id {
                    client
                        .acks
                        .insert(id, payload(packet.data, packet.attachments));
                }
            }
            PacketType::BinaryEvent | PacketType::BinaryAck => {}
        }
    }
}
