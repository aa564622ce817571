//! The Socket.IO API: a server, namespaces, sockets and broadcasts that read like the Socket.IO
//! server documentation.
//!
//! Handlers are plain closures run on the driver task with a [`SocketRef`] (or [`IoRef`]) that acts
//! on the server at once: cheap, ordered, and a socket's connection handler has run before any of its
//! packets is dispatched. For long work, take a [`SocketHandle`] (`socket.handle()`) into a task of
//! your own, with the event's ack if it has one ([`SocketRef::ack_later`]), or register an async
//! handler with [`SocketRef::on_async`].

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sio_core::socket::{
    AckId, AckOutcome, CommandError, DisconnectReason, EmitOptions, Event, ParseError, Payload,
    PayloadError, Serialized, Server, ServerConfig, SocketId, Target,
};

use crate::driver::{App, Command, Limits, Shared};
use crate::handshake::{Handshake, LazyHandshake};
use crate::{BoxFuture, Runtime};

/// An emit could not be carried out.
#[derive(Debug)]
pub enum EmitError {
    /// The arguments could not be serialized.
    Payload(PayloadError),
    /// The server refused the command (reserved name, socket gone, ...).
    Command(CommandError),
    /// The server is not running.
    Closed,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::Payload(e) => write!(f, "invalid arguments: {e}"),
            EmitError::Command(e) => e.fmt(f),
            EmitError::Closed => f.write_str("the server is not running"),
        }
    }
}

impl std::error::Error for EmitError {}

impl From<PayloadError> for EmitError {
    fn from(e: PayloadError) -> Self {
        EmitError::Payload(e)
    }
}

impl From<CommandError> for EmitError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::InvalidArgs(e) => EmitError::Payload(e),
            e => EmitError::Command(e),
        }
    }
}

/// An ack from one socket did not come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckError {
    /// The timeout passed (`operation has timed out` in the reference).
    Timeout,
    /// The socket disconnected before answering.
    Disconnected,
    /// The emit itself failed.
    NotSent,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AckError::Timeout => "operation has timed out",
            AckError::Disconnected => "the socket disconnected",
            AckError::NotSent => "the emit failed",
        })
    }
}

impl std::error::Error for AckError {}

/// Not every recipient of a broadcast answered in time; the answers that came are here.
#[derive(Clone, Debug, PartialEq)]
pub struct AckTimeout {
    /// The answers received before the timeout.
    pub responses: Vec<Payload>,
}

/// The refusal of a namespace middleware: the client gets `connect_error` with `message` and
/// `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectError {
    /// `err.message` on the client.
    pub message: String,
    /// `err.data` on the client.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds data for the client.
    pub fn with_data(mut self, data: Value) -> ConnectError {
        self.data = Some(data);
        self
    }
}

/// An error event on a socket (`socket.on("error")` in the reference).
#[derive(Debug)]
pub enum SocketError {
    /// A packet middleware refused an event.
    Middleware(String),
    /// The arguments of an event did not fit the handler's type.
    Args {
        /// The event.
        event: String,
        /// Why.
        error: PayloadError,
    },
    /// The client sent a packet that could not be decoded; the connection is closing.
    Parse(ParseError),
}

impl std::fmt::Display for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketError::Middleware(m) => f.write_str(m),
            SocketError::Args { event, error } => {
                write!(f, "bad arguments for \"{event}\": {error}")
            }
            SocketError::Parse(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SocketError {}

type ConnectionHandler = Arc<dyn Fn(&mut SocketRef<'_>) + Send + Sync>;
type Middleware = Arc<dyn Fn(&mut SocketRef<'_>, &Value) -> Result<(), ConnectError> + Send + Sync>;
/// An event handler; `Err` when the arguments do not fit its type (reported to `on_error`).
type SyncHandler =
    Arc<dyn Fn(&mut SocketRef<'_>, Payload) -> Result<(), PayloadError> + Send + Sync>;
/// An async event handler: the task to spawn, or `Err` as for [`SyncHandler`].
type AsyncHandler = Arc<
    dyn Fn(SocketHandle, Payload, Option<AckSender>) -> Result<BoxFuture, PayloadError>
        + Send
        + Sync,
>;
type AnyHandler = Arc<dyn Fn(&mut SocketRef<'_>, &str, &Payload) + Send + Sync>;
type PacketMiddleware =
    Arc<dyn Fn(&mut SocketRef<'_>, &str, &Payload) -> Result<(), String> + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(&mut SocketRef<'_>, DisconnectReason) + Send + Sync>;
type ErrorHandler = Arc<dyn Fn(&mut SocketRef<'_>, &SocketError) + Send + Sync>;
type SingleAck = Box<dyn FnOnce(&mut IoRef<'_>, Result<Payload, AckError>) + Send>;
type AllowRequest = Arc<
    dyn Fn(sio_core::engine::Handshake) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;
type ConnectionErrorHandler = Arc<dyn Fn(sio_core::engine::ErrorCode, &str, &str) + Send + Sync>;
/// Decides whether a name (with the client's auth payload) belongs to a dynamic parent.
#[derive(Clone)]
enum NamespaceMatcher {
    Sync(Arc<SyncMatcher>),
    Async(Arc<AsyncMatcher>),
}

type SyncMatcher = dyn Fn(&str, &Value) -> bool + Send + Sync;
type AsyncMatcher =
    dyn Fn(String, Value) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync;

impl NamespaceMatcher {
    async fn matches(&self, name: &str, auth: &Value) -> bool {
        match self {
            NamespaceMatcher::Sync(f) => f(name, auth),
            NamespaceMatcher::Async(f) => f(name.to_owned(), auth.clone()).await,
        }
    }
}
type ServerSideHandler = Arc<dyn Fn(&mut IoRef<'_>, Payload) + Send + Sync>;

/// What the server needs from its adapter beyond its own sockets: the other servers of a cluster.
/// A cluster adapter implements it; the default is [`InMemoryAdapter`], a single server.
///
/// Every operation on a broadcast target is applied to this server's sockets by the core, then
/// handed to the adapter with [`AdapterOp`] so that a cluster adapter can publish it to the other
/// servers (the in-memory adapter has no one to tell).
pub trait Adapter: Send + 'static {
    /// How many servers the cluster has, this one included.
    fn server_count(&self) -> usize;
    /// An operation just applied locally, for the other servers (unless `local` was asked).
    fn publish(&mut self, op: &AdapterOp<'_>) {
        let _ = op;
    }
    /// Sends a server-side event to the other servers; `Ok` with their answers once every one
    /// answered or `timeout` passed (cluster adapters answer asynchronously through the driver).
    fn server_side_emit(
        &mut self,
        event: &str,
        args: &Payload,
        timeout: Duration,
    ) -> Result<Vec<Payload>, EmitError>;
}

/// An operation on the sockets a target reaches, as a cluster adapter publishes it.
#[derive(Debug)]
pub enum AdapterOp<'a> {
    /// An emit without ack.
    Broadcast {
        /// The target.
        target: AdapterTarget<'a>,
        /// The event.
        event: &'a str,
        /// Its arguments.
        args: &'a Payload,
    },
    /// `sockets_join`.
    SocketsJoin {
        /// The target.
        target: AdapterTarget<'a>,
        /// The room joined.
        room: &'a str,
    },
    /// `sockets_leave`.
    SocketsLeave {
        /// The target.
        target: AdapterTarget<'a>,
        /// The room left.
        room: &'a str,
    },
    /// `disconnect_sockets`.
    DisconnectSockets {
        /// The target.
        target: AdapterTarget<'a>,
        /// Whether the connections are closed too.
        close: bool,
    },
}

/// Who an [`AdapterOp`] is for: a namespace, rooms and exceptions, as on the wire of the
/// reference's cluster adapters.
#[derive(Debug)]
pub struct AdapterTarget<'a> {
    /// The namespace.
    pub nsp: &'a str,
    /// The rooms (all sockets when empty).
    pub rooms: &'a [String],
    /// The rooms left out.
    pub except: &'a [String],
    /// Volatile.
    pub volatile: bool,
}

/// The adapter of a single server: no other server to reach.
#[derive(Debug, Default)]
pub struct InMemoryAdapter;

impl Adapter for InMemoryAdapter {
    fn server_count(&self) -> usize {
        1
    }

    fn server_side_emit(
        &mut self,
        _: &str,
        _: &Payload,
        _: Duration,
    ) -> Result<Vec<Payload>, EmitError> {
        Ok(Vec::new())
    }
}
type NewNamespaceHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// A dynamic parent namespace: a matcher, the handlers its children copy when created, and the
/// children so far.
struct Parent {
    name: String,
    matcher: NamespaceMatcher,
    children: Vec<String>,
}
type BroadcastAck = Box<dyn FnOnce(&mut IoRef<'_>, Result<Vec<Payload>, AckTimeout>) + Send>;

#[derive(Clone)]
enum EventHandler {
    Sync(SyncHandler),
    Async(AsyncHandler),
}

/// Names a catch-all listener, to remove it with `off_any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerId(u64);

#[derive(Default, Clone)]
struct NamespaceHandlers {
    middlewares: Vec<Middleware>,
    on_connection: Vec<ConnectionHandler>,
}

struct SocketEntry {
    sid: String,
    nsp: String,
    handshake: LazyHandshake,
    events: EventHandlers,
    any: Vec<(ListenerId, AnyHandler)>,
    any_outgoing: Vec<(ListenerId, AnyHandler)>,
    middlewares: Vec<PacketMiddleware>,
    on_disconnecting: Vec<DisconnectHandler>,
    on_disconnect: Vec<DisconnectHandler>,
    on_error: Vec<ErrorHandler>,
    data: Option<Box<dyn SocketData>>,
}

/// A socket's event handlers. A socket has a handful, so a list beats a hash map: no hashing, one
/// allocation, and less memory per connection.
#[derive(Default)]
struct EventHandlers(Vec<(EventName, EventHandler)>);

impl EventHandlers {
    fn get(&self, event: &str) -> Option<&EventHandler> {
        self.0
            .iter()
            .find(|(name, _)| name.is(event))
            .map(|(_, handler)| handler)
    }

    /// Sets the handler of `event`, replacing the one it had.
    fn insert(&mut self, event: &str, handler: EventHandler) {
        match self.0.iter_mut().find(|(name, _)| name.is(event)) {
            Some((_, old)) => *old = handler,
            None => self.0.push((EventName::new(event), handler)),
        }
    }

    fn remove(&mut self, event: &str) {
        self.0.retain(|(name, _)| !name.is(event));
    }
}

/// The longest event name kept inline.
const INLINE_NAME: usize = 22;

/// An event name in a handler list: inline when short, as nearly all are, so that a socket's
/// handlers take one allocation and a lookup reads no memory of its own per name.
enum EventName {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Boxed(Box<str>),
}

impl EventName {
    fn new(name: &str) -> EventName {
        let mut bytes = [0; INLINE_NAME];
        match bytes.get_mut(..name.len()) {
            Some(inline) => {
                inline.copy_from_slice(name.as_bytes());
                EventName::Inline {
                    len: name.len() as u8,
                    bytes,
                }
            }
            None => EventName::Boxed(name.into()),
        }
    }

    fn is(&self, event: &str) -> bool {
        match self {
            EventName::Inline { len, bytes } => bytes[..usize::from(*len)] == *event.as_bytes(),
            EventName::Boxed(name) => **name == *event,
        }
    }
}

enum PendingAck {
    Single {
        reply: Option<Payload>,
        callback: SingleAck,
    },
    Broadcast {
        replies: Vec<Payload>,
        callback: BroadcastAck,
    },
}

/// A socket's application data: any serializable value, read back by type.
trait SocketData: Any + Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn to_json(&self) -> Value;
}

impl<T: Any + Send + Serialize> SocketData for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The application's side of the server: handlers and per-socket state.
struct State {
    namespaces: HashMap<String, NamespaceHandlers>,
    sockets: FxHashMap<SocketId, SocketEntry>,
    /// Sockets by public id (unique across namespaces).
    by_sid: HashMap<String, SocketId>,
    /// The data of sockets whose session is kept for recovery, by private id.
    kept_data: HashMap<sio_core::engine::Sid, Option<Box<dyn SocketData>>>,
    acks: FxHashMap<AckId, PendingAck>,
    /// How many sockets have an outgoing catch-all listener, so a broadcast without
    /// any skips resolving its recipients.
    outgoing_listening: usize,
    next_listener: u64,
    allow_request: Option<AllowRequest>,
    connection_errors: Vec<ConnectionErrorHandler>,
    parents: Vec<Parent>,
    new_namespace: Vec<NewNamespaceHandler>,
    cleanup_empty_children: bool,
    adapter: Box<dyn Adapter>,
    /// Handlers of events from the other servers (none arrive with the in-memory adapter).
    server_side: HashMap<String, ServerSideHandler>,
    runtime: Arc<dyn Runtime>,
    shared: Arc<OnceLock<Weak<Shared<SioApp>>>>,
}

impl State {
    fn remove_socket(&mut self, socket: SocketId) {
        if let Some(entry) = self.sockets.remove(&socket) {
            self.by_sid.remove(&entry.sid);
            if !entry.any_outgoing.is_empty() {
                self.outgoing_listening -= 1;
            }
        }
    }
}

/// The server and the application's state, owned by the driver task.
pub(crate) struct SioApp {
    pub(crate) server: Server,
    state: State,
}

impl SioApp {
    /// The application for `config`, whose handles will find their server through `cell`.
    pub(crate) fn new(
        config: ServerConfig,
        runtime: Arc<dyn Runtime>,
        cell: Arc<OnceLock<Weak<Shared<SioApp>>>>,
    ) -> SioApp {
        SioApp {
            server: Server::new(config, runtime.now()),
            state: State {
                namespaces: HashMap::new(),
                sockets: FxHashMap::default(),
                by_sid: HashMap::new(),
                kept_data: HashMap::new(),
                acks: FxHashMap::default(),
                outgoing_listening: 0,
                next_listener: 0,
                allow_request: None,
                connection_errors: Vec::new(),
                parents: Vec::new(),
                new_namespace: Vec::new(),
                cleanup_empty_children: false,
                adapter: Box::new(InMemoryAdapter),
                server_side: HashMap::new(),
                runtime,
                shared: cell,
            },
        }
    }
}

impl App for SioApp {
    type Core = Server;

    fn core(&mut self) -> &mut Server {
        &mut self.server
    }

    fn max_message_size(&self) -> usize {
        self.server.engine().config().max_http_buffer_size
    }

    fn path(&self) -> String {
        self.server.engine().config().path.clone()
    }

    fn handle_event(&mut self, now: Instant, event: Event) {
        let mut io = IoRef {
            server: &mut self.server,
            state: &mut self.state,
            now,
        };
        io.dispatch(event);
    }
}

/// The server, from inside a handler: acts on it at once.
pub struct IoRef<'a> {
    server: &'a mut Server,
    state: &'a mut State,
    now: Instant,
}

impl<'a> IoRef<'a> {
    fn reborrow(&mut self) -> IoRef<'_> {
        IoRef {
            server: &mut *self.server,
            state: &mut *self.state,
            now: self.now,
        }
    }

    fn socket_ref(&mut self, socket: SocketId, ack: Option<u64>) -> SocketRef<'_> {
        SocketRef {
            io: self.reborrow(),
            socket,
            ack,
        }
    }

    /// Emits to every socket of the main namespace.
    pub fn emit<T: Serialize + ?Sized>(&mut self, event: &str, args: &T) -> Result<(), EmitError> {
        self.of("/").emit(event, args)
    }

    /// A broadcast in namespace `nsp`.
    pub fn of(&mut self, nsp: &str) -> Broadcast<'_> {
        Broadcast {
            io: self.reborrow(),
            op: Operator::new(nsp),
        }
    }

    /// A broadcast to `room` of the main namespace.
    pub fn to(&mut self, room: impl Into<String>) -> Broadcast<'_> {
        self.of("/").to(room)
    }

    /// A broadcast to the main namespace without the members of `room`.
    pub fn except(&mut self, room: impl Into<String>) -> Broadcast<'_> {
        self.of("/").except(room)
    }

    /// A socket by its public id, in namespace `nsp`.
    pub fn socket(&mut self, nsp: &str, id: &str) -> Option<SocketRef<'_>> {
        let socket = *self.state.by_sid.get(id)?;
        if self.state.sockets.get(&socket)?.nsp != nsp {
            return None;
        }
        Some(self.socket_ref(socket, None))
    }

    /// The number of Engine.IO connections.
    pub fn client_count(&self) -> usize {
        self.server.client_count()
    }

    /// Shuts the server down: every socket disconnects with `server shutting down`.
    pub fn close(&mut self) {
        self.server.close(self.now);
    }

    fn shared(&self) -> Option<Arc<Shared<SioApp>>> {
        self.state.shared.get().and_then(Weak::upgrade)
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Connect {
                socket,
                nsp,
                auth,
                handshake,
                recovered,
            } => self.on_connect(socket, nsp, auth, handshake, recovered),
            Event::Message {
                socket,
                event,
                args,
                ack,
            } => self.on_message(socket, event, args, ack),
            Event::AckReply { ack, args, .. } => match self.state.acks.get_mut(&ack) {
                Some(PendingAck::Single { reply, .. }) => *reply = Some(args),
                Some(PendingAck::Broadcast { replies, .. }) => {
                    // The reference keeps the first argument of each answer.
                    replies.push(args)
                }
                None => {}
            },
            Event::AckDone { ack, outcome } => {
                let Some(pending) = self.state.acks.remove(&ack) else {
                    return;
                };
                match pending {
                    PendingAck::Single { reply, callback } => {
                        let result = match (outcome, reply) {
                            (AckOutcome::Complete, Some(reply)) => Ok(reply),
                            (AckOutcome::Complete, None) => Ok(Payload::default()),
                            (AckOutcome::TimedOut, _) => Err(AckError::Timeout),
                            (AckOutcome::Disconnected, _) => Err(AckError::Disconnected),
                        };
                        callback(self, result);
                    }
                    PendingAck::Broadcast { replies, callback } => {
                        let result = match outcome {
                            AckOutcome::Complete => Ok(replies),
                            _ => Err(AckTimeout { responses: replies }),
                        };
                        callback(self, result);
                    }
                }
            }
            Event::SocketError { socket, error } => {
                self.emit_error(socket, &SocketError::Parse(error));
            }
            Event::Disconnecting { socket, reason } => {
                let handlers = self
                    .state
                    .sockets
                    .get(&socket)
                    .map(|e| e.on_disconnecting.clone())
                    .unwrap_or_default();
                let mut socket = self.socket_ref(socket, None);
                for handler in handlers {
                    handler(&mut socket, reason);
                }
            }
            Event::AllowRequest { request, handshake } => {
                let Some(allow) = self.state.allow_request.clone() else {
                    self.server.allow_request(self.now, request, Ok(()));
                    return;
                };
                // Asked on a task of its own: the answer comes back as a command.
                let verdict = allow(*handshake);
                let shared = self.shared();
                self.state.runtime.spawn(Box::pin(async move {
                    let verdict = verdict.await;
                    if let Some(shared) = shared {
                        let command = Command::App(Box::new(move |app: &mut SioApp, now| {
                            app.server.allow_request(now, request, verdict);
                        }));
                        let _ = shared.commands.send(command).await;
                    }
                }));
            }
            Event::ConnectionError {
                code,
                message,
                context,
            } => {
                for handler in self.state.connection_errors.clone() {
                    handler(code, &message, context);
                }
            }
            Event::NamespaceRequest {
                session,
                name,
                auth,
            } => {
                let matchers: Vec<NamespaceMatcher> = self
                    .state
                    .parents
                    .iter()
                    .map(|p| p.matcher.clone())
                    .collect();
                if matchers
                    .iter()
                    .all(|m| matches!(m, NamespaceMatcher::Sync(_)))
                {
                    let parent = matchers.iter().position(|m| match m {
                        NamespaceMatcher::Sync(f) => f(&name, &auth),
                        NamespaceMatcher::Async(_) => false,
                    });
                    self.admit_child(session, &name, parent);
                    return;
                }
                // An async matcher: decided on a task, answered through a command.
                let shared = self.shared();
                self.state.runtime.spawn(Box::pin(async move {
                    let mut parent = None;
                    for (i, matcher) in matchers.iter().enumerate() {
                        if matcher.matches(&name, &auth).await {
                            parent = Some(i);
                            break;
                        }
                    }
                    if let Some(shared) = shared {
                        let command = Command::App(Box::new(move |app: &mut SioApp, now| {
                            let mut io = IoRef {
                                server: &mut app.server,
                                state: &mut app.state,
                                now,
                            };
                            io.admit_child(session, &name, parent);
                        }));
                        let _ = shared.commands.send(command).await;
                    }
                }));
            }
            Event::SessionExpired { pid } => {
                self.state.kept_data.remove(&pid);
            }
            Event::Disconnect {
                socket,
                reason,
                kept,
            } => {
                let handlers = self
                    .state
                    .sockets
                    .get(&socket)
                    .map(|e| e.on_disconnect.clone())
                    .unwrap_or_default();
                {
                    let mut socket = self.socket_ref(socket, None);
                    for handler in handlers {
                        handler(&mut socket, reason);
                    }
                }
                // A kept session keeps its data until it is recovered or expires.
                if let (Some(pid), Some(entry)) = (kept, self.state.sockets.get_mut(&socket)) {
                    self.state.kept_data.insert(pid, entry.data.take());
                }
                let nsp = self.state.sockets.get(&socket).map(|e| e.nsp.clone());
                self.state.remove_socket(socket);
                if let Some(nsp) = nsp {
                    self.cleanup_child(&nsp);
                }
            }
        }
    }

    /// Lets a client into `name` as a child of parent number `parent` (parents are tried in the
    /// order they were registered; the first match wins), or refuses it.
    fn admit_child(
        &mut self,
        session: sio_core::engine::SessionId,
        name: &str,
        parent: Option<usize>,
    ) {
        let Some(parent) = parent.filter(|p| *p < self.state.parents.len()) else {
            self.server
                .namespace_verdict(self.now, session, name, false);
            return;
        };
        if self.server.find_namespace(name).is_none() {
            // The child copies the parent's middlewares and connection handlers now.
            let handlers = self
                .state
                .namespaces
                .get(&self.state.parents[parent].name)
                .cloned()
                .unwrap_or_default();
            self.state.namespaces.insert(name.to_owned(), handlers);
            self.state.parents[parent].children.push(name.to_owned());
            self.server.namespace(name);
            for handler in self.state.new_namespace.clone() {
                handler(name);
            }
        }
        self.server.namespace_verdict(self.now, session, name, true);
    }

    /// Removes an empty child namespace when `cleanup_empty_child_namespaces` is on.
    fn cleanup_child(&mut self, name: &str) {
        if !self.state.cleanup_empty_children {
            return;
        }
        let Some(parent) = self
            .state
            .parents
            .iter_mut()
            .find(|p| p.children.iter().any(|c| c == name))
        else {
            return;
        };
        let Some(nsp) = self.server.find_namespace(name) else {
            return;
        };
        if self.server.remove_namespace(nsp) {
            parent.children.retain(|c| c != name);
            self.state.namespaces.remove(name);
        }
    }

    fn on_connect(
        &mut self,
        socket: SocketId,
        nsp: sio_core::socket::NspId,
        auth: Value,
        engine: Arc<sio_core::engine::Handshake>,
        recovered: bool,
    ) {
        let name = self.server.namespace_name(nsp).to_owned();
        let handlers = self
            .state
            .namespaces
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let sid = self
            .server
            .socket_sid(socket)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let handshake = LazyHandshake::new(engine, auth.clone(), SystemTime::now());
        self.state.by_sid.insert(sid.clone(), socket);
        self.state.sockets.insert(
            socket,
            SocketEntry {
                sid,
                nsp: name,
                handshake,
                events: EventHandlers::default(),
                any: Vec::new(),
                any_outgoing: Vec::new(),
                middlewares: Vec::new(),
                on_disconnecting: Vec::new(),
                on_disconnect: Vec::new(),
                on_error: Vec::new(),
                data: None,
            },
        );
        let pid = self.server.socket_pid(socket);
        if let (true, Some(pid)) = (recovered, pid) {
            let data = self.state.kept_data.remove(&pid).flatten();
            if let Some(entry) = self.state.sockets.get_mut(&socket) {
                entry.data = data;
            }
        }
        // With recovery's `skip_middlewares` (the reference's default), a recovered socket is let
        // in without the middlewares.
        let skip = recovered
            && self
                .server
                .recovery_config()
                .is_some_and(|c| c.skip_middlewares);
        let middlewares = if skip {
            &[][..]
        } else {
            &handlers.middlewares[..]
        };
        for middleware in middlewares {
            let result = middleware(&mut self.socket_ref(socket, None), &auth);
            if let Err(error) = result {
                self.state.remove_socket(socket);
                let mut body = Map::new();
                body.insert("message".into(), Value::String(error.message));
                if let Some(data) = error.data {
                    body.insert("data".into(), data);
                }
                let _ = self.server.reject(self.now, socket, Value::Object(body));
                return;
            }
        }
        if self.server.accept(self.now, socket).is_err() {
            self.state.remove_socket(socket);
            return;
        }
        let mut socket = self.socket_ref(socket, None);
        for handler in &handlers.on_connection {
            handler(&mut socket);
        }
    }

    fn on_message(&mut self, socket: SocketId, event: String, args: Payload, ack: Option<u64>) {
        let Some(entry) = self.state.sockets.get(&socket) else {
            return;
        };
        let any: Vec<AnyHandler> = entry.any.iter().map(|(_, h)| h.clone()).collect();
        let middlewares = entry.middlewares.clone();
        let handler = entry.events.get(&event).cloned();
        let mut socket_ref = self.socket_ref(socket, ack);
        // As in the reference, catch-all listeners run before the packet middlewares.
        for listener in any {
            listener(&mut socket_ref, &event, &args);
        }
        for middleware in middlewares {
            if let Err(message) = middleware(&mut socket_ref, &event, &args) {
                socket_ref
                    .io
                    .emit_error(socket, &SocketError::Middleware(message));
                return;
            }
        }
        if !socket_ref.connected() {
            return;
        }
        let fitted = match handler {
            Some(EventHandler::Sync(handler)) => handler(&mut socket_ref, args),
            Some(EventHandler::Async(handler)) => {
                let Some(handle) = socket_ref.handle() else {
                    return;
                };
                let ack = socket_ref.take_ack_for(&handle);
                handler(handle, args, ack).map(|task| self.state.runtime.spawn(task))
            }
            None => Ok(()),
        };
        if let Err(error) = fitted {
            self.emit_error(socket, &SocketError::Args { event, error });
        }
    }

    fn emit_error(&mut self, socket: SocketId, error: &SocketError) {
        let handlers = self
            .state
            .sockets
            .get(&socket)
            .map(|e| e.on_error.clone())
            .unwrap_or_default();
        let mut socket = self.socket_ref(socket, None);
        for handler in handlers {
            handler(&mut socket, error);
        }
    }

    /// Tells the outgoing catch-all listeners of every recipient.
    fn notify_outgoing(&mut self, recipients: &[SocketId], event: &str, payload: &Payload) {
        for socket in recipients {
            let listeners: Vec<AnyHandler> = match self.state.sockets.get(socket) {
                Some(e) if !e.any_outgoing.is_empty() => {
                    e.any_outgoing.iter().map(|(_, h)| h.clone()).collect()
                }
                _ => continue,
            };
            let mut socket = self.socket_ref(*socket, None);
            for listener in listeners {
                listener(&mut socket, event, payload);
            }
        }
    }

    fn any_outgoing(&self) -> bool {
        self.state.outgoing_listening > 0
    }
}

/// Who a broadcast reaches.
#[derive(Clone, Debug)]
struct Operator {
    nsp: String,
    rooms: Vec<String>,
    except: Vec<String>,
    volatile: bool,
    /// Not published to the other servers.
    local: bool,
    timeout: Option<Duration>,
}

impl Operator {
    fn new(nsp: &str) -> Operator {
        Operator {
            nsp: nsp.to_owned(),
            rooms: Vec::new(),
            except: Vec::new(),
            volatile: false,
            local: false,
            timeout: None,
        }
    }

    fn target(&self, server: &Server) -> Result<Target, EmitError> {
        let nsp = server
            .find_namespace(&self.nsp)
            .ok_or(CommandError::UnknownNamespace)?;
        Ok(Target::Rooms {
            nsp,
            rooms: self.rooms.clone(),
            except: self.except.clone(),
        })
    }

    fn emit(&self, io: &mut IoRef<'_>, event: &str, payload: &Payload) -> Result<(), EmitError> {
        // A dynamic parent broadcasts to each of its children.
        let children = io
            .state
            .parents
            .iter()
            .find(|p| p.name == self.nsp)
            .map(|p| p.children.clone());
        if let Some(children) = children {
            for child in children {
                let mut op = self.clone();
                op.nsp = child;
                op.emit(io, event, payload)?;
            }
            return Ok(());
        }
        let target = self.target(io.server)?;
        if io.any_outgoing() {
            let recipients = io.server.recipients_of(&target)?;
            io.notify_outgoing(&recipients, event, payload);
        }
        let options = EmitOptions {
            volatile: self.volatile,
            ack: None,
        };
        io.server.emit(io.now, &target, event, payload, options)?;
        let op = AdapterOp::Broadcast {
            target: self.adapter_target(),
            event,
            args: payload,
        };
        self.publish(io, op);
        Ok(())
    }

    fn sockets_join(&self, io: &mut IoRef<'_>, room: &str) -> Result<(), EmitError> {
        let target = self.target(io.server)?;
        io.server.sockets_join(&target, &[room.to_owned()])?;
        let op = AdapterOp::SocketsJoin {
            target: self.adapter_target(),
            room,
        };
        self.publish(io, op);
        Ok(())
    }

    fn sockets_leave(&self, io: &mut IoRef<'_>, room: &str) -> Result<(), EmitError> {
        let target = self.target(io.server)?;
        io.server.sockets_leave(&target, &[room.to_owned()])?;
        let op = AdapterOp::SocketsLeave {
            target: self.adapter_target(),
            room,
        };
        self.publish(io, op);
        Ok(())
    }

    fn disconnect_sockets(&self, io: &mut IoRef<'_>, close: bool) -> Result<(), EmitError> {
        let target = self.target(io.server)?;
        io.server.disconnect_sockets(io.now, &target, close)?;
        let op = AdapterOp::DisconnectSockets {
            target: self.adapter_target(),
            close,
        };
        self.publish(io, op);
        Ok(())
    }

    /// Who the operation is for, as the adapter sees it.
    fn adapter_target(&self) -> AdapterTarget<'_> {
        AdapterTarget {
            nsp: &self.nsp,
            rooms: &self.rooms,
            except: &self.except,
            volatile: self.volatile,
        }
    }

    /// Hands an operation applied locally to the adapter (unless `local`).
    fn publish(&self, io: &mut IoRef<'_>, op: AdapterOp<'_>) {
        if !self.local {
            io.state.adapter.publish(&op);
        }
    }

    fn fetch(&self, io: &mut IoRef<'_>) -> Result<Vec<FetchedSocket>, EmitError> {
        let target = self.target(io.server)?;
        let shared = io.shared();
        let sockets = io.server.recipients_of(&target)?;
        Ok(sockets
            .into_iter()
            .filter_map(|socket| {
                let entry = io.state.sockets.get(&socket)?;
                Some(FetchedSocket {
                    id: entry.sid.clone(),
                    nsp: entry.nsp.clone(),
                    rooms: io.server.rooms(socket).map(str::to_owned).collect(),
                    handshake: entry.handshake.get(),
                    data: entry.data.as_ref().map_or(Value::Null, |d| d.to_json()),
                    handle: shared.clone().map(|shared| SocketHandle {
                        shared,
                        socket,
                        id: entry.sid.as_str().into(),
                    }),
                })
            })
            .collect())
    }

    fn emit_with_ack(
        &self,
        io: &mut IoRef<'_>,
        event: &str,
        payload: &Payload,
        callback: BroadcastAck,
    ) -> Result<(), EmitError> {
        let target = self.target(io.server)?;
        let timeout = self.timeout.ok_or(CommandError::TimeoutRequired)?;
        let options = EmitOptions {
            volatile: self.volatile,
            ack: Some(Some(timeout)),
        };
        if io.any_outgoing() {
            let recipients = io.server.recipients_of(&target)?;
            io.notify_outgoing(&recipients, event, payload);
        }
        // Register first: the ack may be over at once (no recipient).
        let ack = io.server.emit(io.now, &target, event, payload, options)?;
        if let Some(ack) = ack {
            io.state.acks.insert(
                ack,
                PendingAck::Broadcast {
                    replies: Vec::new(),
                    callback,
                },
            );
        }
        Ok(())
    }
}

/// A broadcast from inside a handler: `io.to("room").except("other").emit(...)`.
pub struct Broadcast<'a> {
    io: IoRef<'a>,
    op: Operator,
}

impl Broadcast<'_> {
    /// Also reach the members of `room` (the union of all rooms named).
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.op.rooms.push(room.into());
        self
    }

    /// Same as [`Broadcast::to`].
    pub fn in_(self, room: impl Into<String>) -> Self {
        self.to(room)
    }

    /// Leave out the members of `room`.
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.op.except.push(room.into());
        self
    }

    /// Drop the packet for recipients that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.op.volatile = true;
        self
    }

    /// Only this server: the operation is not handed to the adapter for the other servers.
    pub fn local(mut self) -> Self {
        self.op.local = true;
        self
    }

    /// The time to wait for acks.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.op.timeout = Some(timeout);
        self
    }

    /// Emits to every recipient; the packet is encoded once.
    pub fn emit<T: Serialize + ?Sized>(mut self, event: &str, args: &T) -> Result<(), EmitError> {
        let payload = Payload::from_args(args)?;
        self.op.emit(&mut self.io, event, &payload)
    }

    /// The sockets this broadcast reaches (`fetchSockets` in the reference).
    pub fn fetch_sockets(mut self) -> Result<Vec<FetchedSocket>, EmitError> {
        self.op.fetch(&mut self.io)
    }

    /// Adds the sockets this broadcast reaches to `room` (`socketsJoin`).
    pub fn sockets_join(mut self, room: &str) -> Result<(), EmitError> {
        self.op.sockets_join(&mut self.io, room)
    }

    /// Removes the sockets this broadcast reaches from `room` (`socketsLeave`).
    pub fn sockets_leave(mut self, room: &str) -> Result<(), EmitError> {
        self.op.sockets_leave(&mut self.io, room)
    }

    /// Disconnects the sockets this broadcast reaches; with `close`, their connections too
    /// (`disconnectSockets`).
    pub fn disconnect_sockets(mut self, close: bool) -> Result<(), EmitError> {
        self.op.disconnect_sockets(&mut self.io, close)
    }

    /// Emits and collects one answer per recipient; `callback` runs once, with every answer or
    /// with the answers that came before the timeout (a timeout is required).
    pub fn emit_with_ack<T, F>(
        mut self,
        event: &str,
        args: &T,
        callback: F,
    ) -> Result<(), EmitError>
    where
        T: Serialize + ?Sized,
        F: FnOnce(&mut IoRef<'_>, Result<Vec<Payload>, AckTimeout>) + Send + 'static,
    {
        let payload = Payload::from_args(args)?;
        self.op
            .emit_with_ack(&mut self.io, event, &payload, Box::new(callback))
    }
}

/// A socket, from inside a handler: acts on the server at once.
pub struct SocketRef<'a> {
    io: IoRef<'a>,
    socket: SocketId,
    /// The client's ack id of the event being handled, until answered.
    ack: Option<u64>,
}

impl<'a> SocketRef<'a> {
    fn entry(&self) -> Option<&SocketEntry> {
        self.io.state.sockets.get(&self.socket)
    }

    fn entry_mut(&mut self) -> Option<&mut SocketEntry> {
        self.io.state.sockets.get_mut(&self.socket)
    }

    /// The socket's public id (20 characters; not the secret Engine.IO id).
    pub fn id(&self) -> &str {
        self.entry().map_or("", |e| e.sid.as_str())
    }

    /// The namespace's name.
    pub fn nsp(&self) -> &str {
        self.entry().map_or("", |e| e.nsp.as_str())
    }

    /// Whether the socket recovered its session after a disconnection (same id, rooms and data;
    /// the packets it missed were sent before the connection was confirmed).
    pub fn recovered(&self) -> bool {
        self.io.server.is_recovered(self.socket)
    }

    /// Whether the socket is connected.
    pub fn connected(&self) -> bool {
        self.io.server.is_connected(self.socket)
    }

    /// The handshake of the connection.
    pub fn handshake(&self) -> Option<Arc<Handshake>> {
        self.entry().map(|e| e.handshake.get())
    }

    /// The server.
    pub fn io(&mut self) -> &mut IoRef<'a> {
        &mut self.io
    }

    /// The application's data for this socket, if set and of type `T`.
    pub fn data<T: Any + Send>(&self) -> Option<&T> {
        self.entry()?.data.as_ref()?.as_any().downcast_ref()
    }

    /// The application's data for this socket, created with `T::default()` when missing or of
    /// another type.
    pub fn data_mut<T: Any + Send + Serialize + Default>(&mut self) -> Option<&mut T> {
        let entry = self.entry_mut()?;
        if !entry.data.as_ref().is_some_and(|d| d.as_any().is::<T>()) {
            entry.data = Some(Box::new(T::default()));
        }
        entry.data.as_mut()?.as_any_mut().downcast_mut()
    }

    /// Sets the application's data for this socket (`socket.data`). It is serializable, as in the
    /// reference: `fetch_sockets` reports it as JSON.
    pub fn set_data<T: Any + Send + Serialize>(&mut self, data: T) {
        if let Some(entry) = self.entry_mut() {
            entry.data = Some(Box::new(data));
        }
    }

    /// Listens to `event`; the arguments are read as `T` (see [`Payload`] for the mapping; use
    /// `Payload` itself for the raw arguments). Arguments that do not fit `T` go to the
    /// [`on_error`](Self::on_error) listeners as [`SocketError::Args`] instead.
    ///
    /// A socket has one handler per event: a second `on` (or `on_async`) for the same event
    /// replaces the first.
    pub fn on<T, F>(&mut self, event: &str, handler: F)
    where
        T: DeserializeOwned + 'static,
        F: Fn(&mut SocketRef<'_>, T) + Send + Sync + 'static,
    {
        let wrapped: SyncHandler = Arc::new(move |socket, payload: Payload| {
            payload.into_args::<T>().map(|args| handler(socket, args))
        });
        if let Some(entry) = self.entry_mut() {
            entry.events.insert(event, EventHandler::Sync(wrapped));
        }
    }

    /// Listens to `event` with an async handler, spawned on the runtime for each event. It gets a
    /// [`SocketHandle`] and, when the client asked for one, an [`AckSender`]. Arguments that do
    /// not fit `T` go to the [`on_error`](Self::on_error) listeners, as with [`on`](Self::on).
    pub fn on_async<T, F, Fut>(&mut self, event: &str, handler: F)
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(SocketHandle, T, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let wrapped: AsyncHandler = Arc::new(move |socket, payload: Payload, ack| {
            let args = payload.into_args::<T>()?;
            Ok(Box::pin(handler(socket, args, ack)) as BoxFuture)
        });
        if let Some(entry) = self.entry_mut() {
            entry.events.insert(event, EventHandler::Async(wrapped));
        }
    }

    /// Stops listening to `event`.
    pub fn off(&mut self, event: &str) {
        if let Some(entry) = self.entry_mut() {
            entry.events.remove(event);
        }
    }

    fn next_listener(&mut self) -> ListenerId {
        self.io.state.next_listener += 1;
        ListenerId(self.io.state.next_listener)
    }

    /// Adds a catch-all listener, incoming or outgoing, last or first.
    fn add_listener(&mut self, outgoing: bool, first: bool, listener: AnyHandler) -> ListenerId {
        let id = self.next_listener();
        let Some(entry) = self.entry_mut() else {
            return id;
        };
        let list = if outgoing {
            &mut entry.any_outgoing
        } else {
            &mut entry.any
        };
        let at = if first { 0 } else { list.len() };
        list.insert(at, (id, listener));
        if outgoing && list.len() == 1 {
            self.io.state.outgoing_listening += 1;
        }
        id
    }

    /// Removes one catch-all listener, or all of them with `None`.
    fn remove_listener(&mut self, outgoing: bool, id: Option<ListenerId>) {
        let Some(entry) = self.entry_mut() else {
            return;
        };
        let list = if outgoing {
            &mut entry.any_outgoing
        } else {
            &mut entry.any
        };
        let had = !list.is_empty();
        list.retain(|(l, _)| id.is_some_and(|id| id != *l));
        if outgoing && had && list.is_empty() {
            self.io.state.outgoing_listening -= 1;
        }
    }

    /// Listens to every incoming event (before the packet middlewares, as in the reference).
    pub fn on_any<F>(&mut self, listener: F) -> ListenerId
    where
        F: Fn(&mut SocketRef<'_>, &str, &Payload) + Send + Sync + 'static,
    {
        self.add_listener(false, false, Arc::new(listener))
    }

    /// Like [`SocketRef::on_any`], called before the others.
    pub fn prepend_any<F>(&mut self, listener: F) -> ListenerId
    where
        F: Fn(&mut SocketRef<'_>, &str, &Payload) + Send + Sync + 'static,
    {
        self.add_listener(false, true, Arc::new(listener))
    }

    /// Removes one catch-all listener, or all of them with `None`.
    pub fn off_any(&mut self, id: Option<ListenerId>) {
        self.remove_listener(false, id)
    }

    /// Listens to every outgoing event of this socket, broadcasts included.
    pub fn on_any_outgoing<F>(&mut self, listener: F) -> ListenerId
    where
        F: Fn(&mut SocketRef<'_>, &str, &Payload) + Send + Sync + 'static,
    {
        self.add_listener(true, false, Arc::new(listener))
    }

    /// Like [`SocketRef::on_any_outgoing`], called before the others.
    pub fn prepend_any_outgoing<F>(&mut self, listener: F) -> ListenerId
    where
        F: Fn(&mut SocketRef<'_>, &str, &Payload) + Send + Sync + 'static,
    {
        self.add_listener(true, true, Arc::new(listener))
    }

    /// Removes one outgoing catch-all listener, or all of them with `None`.
    pub fn off_any_outgoing(&mut self, id: Option<ListenerId>) {
        self.remove_listener(true, id)
    }

    /// A packet middleware (`socket.use` in the reference): runs for each incoming event before its
    /// handler; an `Err` drops the event and becomes an `error` on the socket.
    pub fn use_<F>(&mut self, middleware: F)
    where
        F: Fn(&mut SocketRef<'_>, &str, &Payload) -> Result<(), String> + Send + Sync + 'static,
    {
        if let Some(entry) = self.entry_mut() {
            entry.middlewares.push(Arc::new(middleware));
        }
    }

    /// Called while the socket disconnects, still in its rooms.
    pub fn on_disconnecting<F>(&mut self, handler: F)
    where
        F: Fn(&mut SocketRef<'_>, DisconnectReason) + Send + Sync + 'static,
    {
        if let Some(entry) = self.entry_mut() {
            entry.on_disconnecting.push(Arc::new(handler));
        }
    }

    /// Called once the socket disconnected and left its rooms.
    pub fn on_disconnect<F>(&mut self, handler: F)
    where
        F: Fn(&mut SocketRef<'_>, DisconnectReason) + Send + Sync + 'static,
    {
        if let Some(entry) = self.entry_mut() {
            entry.on_disconnect.push(Arc::new(handler));
        }
    }

    /// Called for errors on the socket (refused by a packet middleware, bad arguments, a packet that
    /// could not be decoded).
    pub fn on_error<F>(&mut self, handler: F)
    where
        F: Fn(&mut SocketRef<'_>, &SocketError) + Send + Sync + 'static,
    {
        if let Some(entry) = self.entry_mut() {
            entry.on_error.push(Arc::new(handler));
        }
    }

    /// Emits to this socket.
    pub fn emit<T: Serialize + ?Sized>(&mut self, event: &str, args: &T) -> Result<(), EmitError> {
        self.emitter().emit(event, args)
    }

    /// Emits `message` (`socket.send` in the reference).
    pub fn send<T: Serialize + ?Sized>(&mut self, args: &T) -> Result<(), EmitError> {
        self.emit("message", args)
    }

    fn emitter(&mut self) -> SocketEmitter<'_> {
        SocketEmitter {
            socket: self.socket,
            io: self.io.reborrow(),
            volatile: false,
            timeout: None,
        }
    }

    /// The next emit is dropped if the transport cannot take it right now.
    pub fn volatile(&mut self) -> SocketEmitter<'_> {
        let mut emitter = self.emitter();
        emitter.volatile = true;
        emitter
    }

    /// The next emit waits this long for the client's ack.
    pub fn timeout(&mut self, timeout: Duration) -> SocketEmitter<'_> {
        let mut emitter = self.emitter();
        emitter.timeout = Some(timeout);
        emitter
    }

    /// Emits and calls `callback` once with the client's answer (no timeout: waits until the
    /// answer or the disconnection).
    pub fn emit_with_ack<T, F>(
        &mut self,
        event: &str,
        args: &T,
        callback: F,
    ) -> Result<(), EmitError>
    where
        T: Serialize + ?Sized,
        F: FnOnce(&mut IoRef<'_>, Result<Payload, AckError>) + Send + 'static,
    {
        self.emitter().emit_with_ack(event, args, callback)
    }

    /// Answers the ack the client asked for with the event being handled; only the first answer is
    /// sent. Returns `false` when there is nothing to answer.
    pub fn ack<T: Serialize + ?Sized>(&mut self, args: &T) -> Result<bool, EmitError> {
        let Some(id) = self.ack.take() else {
            return Ok(false);
        };
        self.io
            .server
            .ack(self.io.now, self.socket, id, &Serialized(args))?;
        Ok(true)
    }

    /// Whether the event being handled asked for an ack not yet sent.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Takes the ack the client asked for with the event being handled, to answer it later from a
    /// task of your own, as a Node handler may call its callback after an `await`. `None` when
    /// there is none, or it was answered already; afterwards [`ack`](Self::ack) has nothing to
    /// answer. A client that set a timeout on its ack still gives up on its own.
    pub fn ack_later(&mut self) -> Option<AckSender> {
        // No handle is made for an event that asked for no ack.
        self.ack?;
        let socket = self.handle()?;
        self.take_ack_for(&socket)
    }

    /// The pending ack, taken, as an [`AckSender`] answering through `socket` (this socket's
    /// handle): for `ack_later` and for async handlers.
    fn take_ack_for(&mut self, socket: &SocketHandle) -> Option<AckSender> {
        let id = self.ack.take()?;
        Some(AckSender {
            socket: socket.clone(),
            id,
        })
    }

    fn broadcast_op(&self) -> Operator {
        let mut op = Operator::new(self.nsp());
        op.except.push(self.id().to_owned());
        op
    }

    /// A broadcast to `room`, without this socket.
    pub fn to(&mut self, room: impl Into<String>) -> Broadcast<'_> {
        let op = self.broadcast_op();
        Broadcast {
            io: self.io.reborrow(),
            op,
        }
        .to(room)
    }

    /// Same as [`SocketRef::to`].
    pub fn in_(&mut self, room: impl Into<String>) -> Broadcast<'_> {
        self.to(room)
    }

    /// A broadcast to the namespace without the members of `room` and without this socket.
    pub fn except(&mut self, room: impl Into<String>) -> Broadcast<'_> {
        let op = self.broadcast_op();
        Broadcast {
            io: self.io.reborrow(),
            op,
        }
        .except(room)
    }

    /// A broadcast to every other socket of the namespace.
    pub fn broadcast(&mut self) -> Broadcast<'_> {
        let op = self.broadcast_op();
        Broadcast {
            io: self.io.reborrow(),
            op,
        }
    }

    /// Joins a room.
    pub fn join(&mut self, room: &str) {
        self.io.server.join(self.socket, room);
    }

    /// Leaves a room.
    pub fn leave(&mut self, room: &str) {
        self.io.server.leave(self.socket, room);
    }

    /// The rooms of the socket (its own id among them).
    pub fn rooms(&self) -> Vec<String> {
        self.io
            .server
            .rooms(self.socket)
            .map(str::to_owned)
            .collect()
    }

    /// Disconnects the socket (`server namespace disconnect`); with `close`, the whole connection.
    pub fn disconnect(&mut self, close: bool) {
        let _ = self.io.server.disconnect(self.io.now, self.socket, close);
    }

    /// A handle for tasks of your own.
    pub fn handle(&self) -> Option<SocketHandle> {
        let shared = self.io.shared()?;
        Some(SocketHandle {
            shared,
            socket: self.socket,
            id: self.id().into(),
        })
    }
}

/// A socket found by `fetch_sockets`: what it is, and a handle to act on it.
#[derive(Clone)]
pub struct FetchedSocket {
    /// The socket's public id.
    pub id: String,
    /// Its namespace.
    pub nsp: String,
    /// Its rooms, its own id among them.
    pub rooms: Vec<String>,
    /// Its handshake.
    pub handshake: Arc<Handshake>,
    /// Its application data, as JSON (`Null` when it has none).
    pub data: Value,
    handle: Option<SocketHandle>,
}

impl std::fmt::Debug for FetchedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedSocket")
            .field("id", &self.id)
            .field("nsp", &self.nsp)
            .field("rooms", &self.rooms)
            .finish()
    }
}

impl FetchedSocket {
    /// A handle to emit to it, ask it with an ack, make it join or leave rooms, or disconnect it,
    /// from any task.
    pub fn handle(&self) -> Option<&SocketHandle> {
        self.handle.as_ref()
    }
}

/// One emit to one socket: `socket.volatile()` or `socket.timeout(d)`.
pub struct SocketEmitter<'a> {
    socket: SocketId,
    io: IoRef<'a>,
    volatile: bool,
    timeout: Option<Duration>,
}

impl SocketEmitter<'_> {
    /// Drop the packet if the transport cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Wait this long for the ack.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Emits.
    pub fn emit<T: Serialize + ?Sized>(mut self, event: &str, args: &T) -> Result<(), EmitError> {
        let options = EmitOptions {
            volatile: self.volatile,
            ack: None,
        };
        let target = Target::Socket(self.socket);
        // Outgoing listeners read the arguments as a payload; without them, none is built.
        if self.io.any_outgoing() {
            let payload = Payload::from_args(args)?;
            self.io.notify_outgoing(&[self.socket], event, &payload);
            self.io
                .server
                .emit(self.io.now, &target, event, &payload, options)?;
        } else {
            self.io
                .server
                .emit(self.io.now, &target, event, &Serialized(args), options)?;
        }
        Ok(())
    }

    /// Emits and calls `callback` once with the answer, a timeout or the disconnection.
    pub fn emit_with_ack<T, F>(
        mut self,
        event: &str,
        args: &T,
        callback: F,
    ) -> Result<(), EmitError>
    where
        T: Serialize + ?Sized,
        F: FnOnce(&mut IoRef<'_>, Result<Payload, AckError>) + Send + 'static,
    {
        let payload = Payload::from_args(args)?;
        self.io.notify_outgoing(&[self.socket], event, &payload);
        let options = EmitOptions {
            volatile: self.volatile,
            ack: Some(self.timeout),
        };
        let ack = self.io.server.emit(
            self.io.now,
            &Target::Socket(self.socket),
            event,
            &payload,
            options,
        )?;
        if let Some(ack) = ack {
            self.io.state.acks.insert(
                ack,
                PendingAck::Single {
                    reply: None,
                    callback: Box::new(callback),
                },
            );
        }
        Ok(())
    }
}

// ---- handles: the same operations from any task -------------------------------------------------

/// Runs `f` on the driver and returns its result.
async fn on_driver<R: Send + 'static>(
    shared: &Shared<SioApp>,
    f: impl FnOnce(&mut IoRef<'_>) -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = async_channel::bounded(1);
    let command = Command::App(Box::new(move |app: &mut SioApp, now| {
        let mut io = IoRef {
            server: &mut app.server,
            state: &mut app.state,
            now,
        };
        let _ = tx.try_send(f(&mut io));
    }));
    shared.commands.send(command).await.ok()?;
    rx.recv().await.ok()
}

/// A socket, from any task.
#[derive(Clone)]
pub struct SocketHandle {
    shared: Arc<Shared<SioApp>>,
    socket: SocketId,
    id: Arc<str>,
}

impl SocketHandle {
    /// The socket's public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SocketRef<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        let socket = self.socket;
        on_driver(&self.shared, move |io| {
            io.state
                .sockets
                .contains_key(&socket)
                .then(|| f(&mut io.socket_ref(socket, None)))
        })
        .await
        .flatten()
    }

    /// Emits to the socket.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &T,
    ) -> Result<(), EmitError> {
        let payload = Payload::from_args(args)?;
        let event = event.to_owned();
        self.with(move |s| s.emit(&event, &payload))
            .await
            .unwrap_or(Err(EmitError::Command(CommandError::UnknownSocket)))
    }

    /// Emits and waits for the answer (forever without a timeout, or until the disconnection).
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &T,
        timeout: Option<Duration>,
    ) -> Result<Payload, AckError> {
        let payload = Payload::from_args(args).map_err(|_| AckError::NotSent)?;
        let event = event.to_owned();
        let (tx, rx) = async_channel::bounded(1);
        let sent = self
            .with(move |s| {
                let callback = move |_: &mut IoRef<'_>, result| {
                    let _ = tx.try_send(result);
                };
                let emitter = match timeout {
                    Some(t) => s.timeout(t),
                    None => s.emitter(),
                };
                emitter.emit_with_ack(&event, &payload, callback).is_ok()
            })
            .await;
        if sent != Some(true) {
            return Err(AckError::NotSent);
        }
        rx.recv().await.unwrap_or(Err(AckError::Disconnected))
    }

    /// Joins a room.
    pub async fn join(&self, room: &str) {
        let room = room.to_owned();
        self.with(move |s| s.join(&room)).await;
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) {
        let room = room.to_owned();
        self.with(move |s| s.leave(&room)).await;
    }

    /// The rooms of the socket.
    pub async fn rooms(&self) -> Vec<String> {
        self.with(|s| s.rooms()).await.unwrap_or_default()
    }

    /// Disconnects the socket.
    pub async fn disconnect(&self, close: bool) {
        self.with(move |s| s.disconnect(close)).await;
    }
}

/// Answers a client's ack from an async handler; only the first answer is sent.
pub struct AckSender {
    socket: SocketHandle,
    id: u64,
}

impl AckSender {
    /// Sends the answer.
    pub async fn send<T: Serialize + ?Sized>(self, args: &T) -> Result<(), EmitError> {
        let payload = Payload::from_args(args)?;
        let (socket, id) = (self.socket.socket, self.id);
        on_driver(&self.socket.shared, move |io| {
            io.server
                .ack(io.now, socket, id, &payload)
                .map_err(EmitError::from)
        })
        .await
        .unwrap_or(Err(EmitError::Closed))
    }
}

/// A running Socket.IO server: register handlers, hand it connections, emit from any task. Cheap to
/// clone.
#[derive(Clone)]
pub struct SocketIo {
    shared: Arc<Shared<SioApp>>,
}

impl SocketIo {
    /// Starts the server's driver task on `runtime`.
    ///
    /// As in the reference, the browser client is served by default: when `config.serve_client` is
    /// `None`, the bundle is read from [`crate::DEFAULT_CLIENT_DIR`] if it is there.
    pub fn start(runtime: Arc<dyn Runtime>, mut config: ServerConfig, limits: Limits) -> SocketIo {
        if config.serve_client.is_none() {
            config.serve_client = crate::load_client_bundle(crate::DEFAULT_CLIENT_DIR).ok();
        }
        let cell = Arc::new(OnceLock::new());
        let app = SioApp::new(config, runtime.clone(), cell.clone());
        let shared = crate::driver::spawn(runtime, app, limits);
        let _ = cell.set(Arc::downgrade(&shared));
        SocketIo { shared }
    }

    /// A server whose application the caller drives itself (the test kit).
    pub(crate) fn detached(
        runtime: Arc<dyn Runtime>,
        config: ServerConfig,
    ) -> (
        SocketIo,
        SioApp,
        crate::command_queue::Receiver<Command<SioApp>>,
    ) {
        let cell = Arc::new(OnceLock::new());
        let app = SioApp::new(config, runtime.clone(), cell.clone());
        let (shared, commands) = crate::driver::channel(runtime, &app, Limits::default());
        let _ = cell.set(Arc::downgrade(&shared));
        (SocketIo { shared }, app, commands)
    }

    /// Runs a registration on the driver, in order with everything else sent to it.
    fn register(&self, f: impl FnOnce(&mut SioApp) + Send + 'static) {
        self.shared
            .send_now(Command::App(Box::new(move |app: &mut SioApp, _| f(app))));
    }

    /// The namespace `name`, created if needed.
    pub fn of(&self, name: &str) -> Namespace {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        let created = name.clone();
        self.register(move |app| {
            app.server.namespace(&created);
        });
        Namespace {
            io: self.clone(),
            name,
        }
    }

    /// `io.on("connection")` on the main namespace.
    pub fn on_connection<F>(&self, handler: F)
    where
        F: Fn(&mut SocketRef<'_>) + Send + Sync + 'static,
    {
        self.of("/").on_connection(handler);
    }

    /// Decides whether each handshake may go on (`allowRequest` in the reference); the `Err`
    /// message is sent to the client with 403 and code 4. The decision may be asynchronous (a
    /// database lookup, say).
    pub fn allow_request<F, Fut>(&self, decide: F)
    where
        F: Fn(sio_core::engine::Handshake) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let decide: AllowRequest = Arc::new(move |handshake| Box::pin(decide(handshake)));
        self.register(move |app| {
            app.state.allow_request = Some(decide);
            app.server.set_allow_request(true);
        });
    }

    /// A dynamic namespace (`io.of(regex or function)` in the reference): any namespace asked for
    /// whose name (and auth payload) `matcher` accepts is created on demand, with the middlewares
    /// and connection handlers registered on the returned parent at that moment.
    pub fn of_dynamic<F>(&self, matcher: F) -> Namespace
    where
        F: Fn(&str, &Value) -> bool + Send + Sync + 'static,
    {
        self.add_parent(NamespaceMatcher::Sync(Arc::new(matcher)))
    }

    /// Like [`SocketIo::of_dynamic`], with a matcher that may wait (a lookup in a database, say);
    /// it gets the name and the client's auth payload.
    pub fn of_dynamic_async<F, Fut>(&self, matcher: F) -> Namespace
    where
        F: Fn(String, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let matcher =
            NamespaceMatcher::Async(Arc::new(move |name, auth| Box::pin(matcher(name, auth))));
        self.add_parent(matcher)
    }

    fn add_parent(&self, matcher: NamespaceMatcher) -> Namespace {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("/_{n}");
        let parent = Parent {
            name: name.clone(),
            matcher,
            children: Vec::new(),
        };
        self.register(move |app| {
            app.state.parents.push(parent);
            app.server.set_dynamic_namespaces(true);
        });
        Namespace {
            io: self.clone(),
            name,
        }
    }

    /// Called with the name of each namespace created on demand (`new_namespace`).
    pub fn on_new_namespace<F>(&self, handler: F)
    where
        F: Fn(&str) + Send + Sync + 'static,
    {
        let handler: NewNamespaceHandler = Arc::new(handler);
        self.register(move |app| app.state.new_namespace.push(handler));
    }

    /// Removes a child of a dynamic namespace when its last socket leaves.
    pub fn cleanup_empty_child_namespaces(&self, on: bool) {
        self.register(move |app| app.state.cleanup_empty_children = on);
    }

    /// Sends an event to the other servers of the cluster (`serverSideEmit`); their handlers
    /// registered with [`SocketIo::on_server_side`] get it. With the in-memory adapter there is no
    /// other server: nothing is sent, as in the reference. `connect`, `connection` and
    /// `new_namespace` are refused.
    pub async fn server_side_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &T,
    ) -> Result<(), EmitError> {
        self.server_side_emit_with_ack(event, args, Duration::ZERO)
            .await
            .map(|_| ())
    }

    /// Like [`SocketIo::server_side_emit`], collecting one answer per other server until
    /// `timeout`; with the in-memory adapter the answer is at once an empty list.
    pub async fn server_side_emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &T,
        timeout: Duration,
    ) -> Result<Vec<Payload>, EmitError> {
        const RESERVED: [&str; 3] = ["connect", "connection", "new_namespace"];
        if RESERVED.contains(&event) {
            return Err(EmitError::Command(CommandError::ReservedEvent(
                event.to_owned(),
            )));
        }
        let payload = Payload::from_args(args)?;
        let event = event.to_owned();
        on_driver(&self.shared, move |io| {
            io.state.adapter.server_side_emit(&event, &payload, timeout)
        })
        .await
        .unwrap_or(Err(EmitError::Closed))
    }

    /// Replaces the adapter (the in-memory one by default): the seam for a cluster adapter.
    pub fn set_adapter(&self, adapter: impl Adapter) {
        let adapter: Box<dyn Adapter> = Box::new(adapter);
        self.register(move |app| app.state.adapter = adapter);
    }

    /// Handles an event another server sent with `server_side_emit`.
    pub fn on_server_side<F>(&self, event: &str, handler: F)
    where
        F: Fn(&mut IoRef<'_>, Payload) + Send + Sync + 'static,
    {
        let event = event.to_owned();
        let handler: ServerSideHandler = Arc::new(handler);
        self.register(move |app| {
            app.state.server_side.insert(event, handler);
        });
    }

    /// The number of servers in the cluster (1 with the in-memory adapter).
    pub async fn server_count(&self) -> usize {
        self.with(|io| io.state.adapter.server_count())
            .await
            .unwrap_or(1)
    }

    /// Makes the Engine.IO session ids (`generateId`): up to 32 URL-safe characters, unique; an
    /// `Err`, a malformed or a taken id refuses the handshake with 400 and code 3.
    pub fn generate_id<F>(&self, generate: F)
    where
        F: Fn(&sio_core::engine::Handshake) -> Result<String, String> + Send + Sync + 'static,
    {
        let hook = sio_core::engine::IdHook(Arc::new(generate));
        self.register(move |app| app.server.set_generate_id(Some(hook)));
    }

    /// Adds headers to the responses of sessions, the WebSocket 101 included (`headers` and,
    /// when `initial` is true, `initial_headers` in the reference). Gets the headers to fill, the
    /// request's headers, and whether the response is the first of its session.
    pub fn on_headers<F>(&self, hook: F)
    where
        F: Fn(&mut http::HeaderMap, &http::HeaderMap, bool) + Send + Sync + 'static,
    {
        let hook = sio_core::engine::HeadersHook(Arc::new(hook));
        self.register(move |app| app.server.set_headers_hook(Some(hook)));
    }

    /// Called for each request refused with an Engine.IO error (`connection_error` in the
    /// reference): the code, the message sent, and the cause when the reference names one.
    pub fn on_connection_error<F>(&self, handler: F)
    where
        F: Fn(sio_core::engine::ErrorCode, &str, &str) + Send + Sync + 'static,
    {
        let handler: ConnectionErrorHandler = Arc::new(handler);
        self.register(move |app| app.state.connection_errors.push(handler));
    }

    /// A middleware of the main namespace (`io.use` in the reference).
    pub fn use_<F>(&self, middleware: F)
    where
        F: Fn(&mut SocketRef<'_>, &Value) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        self.of("/").use_(middleware);
    }

    /// Emits to every socket of the main namespace.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &T,
    ) -> Result<(), EmitError> {
        self.of("/").emit(event, args).await
    }

    /// A broadcast to `room` of the main namespace.
    pub fn to(&self, room: impl Into<String>) -> BroadcastHandle {
        BroadcastHandle {
            shared: self.shared.clone(),
            op: Operator::new("/"),
        }
        .to(room)
    }

    /// Runs `f` on the driver with the server at hand, and returns its result.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut IoRef<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        on_driver(&self.shared, f).await
    }

    /// The number of Engine.IO connections.
    pub async fn client_count(&self) -> usize {
        self.with(|io| io.client_count()).await.unwrap_or(0)
    }

    /// Shuts down: every socket disconnects with `server shutting down`, every connection is closed
    /// (parked polls answered), and `serve` stops accepting and returns.
    pub async fn close(&self) {
        self.with(|io| io.close()).await;
        self.shared.shutdown.0.close();
    }

    /// Serves one accepted connection (HTTP/1.1 with WebSocket upgrades) until it closes.
    pub async fn serve_connection<I>(&self, io: I, remote: Option<SocketAddr>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    {
        crate::http::serve_connection(self.shared.clone(), io, remote, None).await
    }

    /// Handles one request of any HTTP server (the entry point for mounting sio in a server of
    /// your own). A WebSocket upgrade needs the server's `hyper::upgrade::OnUpgrade` in the
    /// request's extensions, as hyper-based servers (axum, ...) put it. `Err` means: close the
    /// connection without an answer, as the reference does for some bad requests.
    pub async fn handle_request<B>(
        &self,
        request: http::Request<B>,
        remote: Option<SocketAddr>,
    ) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, crate::Aborted>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The server's own I/O type is not known here: the WebSocket stays in hyper's wrapper.
        crate::http::handle::<_, _, hyper::upgrade::Upgraded>(
            self.shared.clone(),
            request,
            remote,
            None,
            None,
        )
        .await
    }

    /// The path the server answers on (`/socket.io/` by default).
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// Answers every HTTP request outside the server's path (by default they get 404): the
    /// application's page, say. Set it once, before serving.
    pub fn fallback<F>(&self, handler: F)
    where
        F: Fn(&http::request::Parts, bytes::Bytes) -> http::Response<bytes::Bytes>
            + Send
            + Sync
            + 'static,
    {
        let _ = self.shared.fallback.set(Arc::new(handler));
    }

    /// Serves every connection `listener` accepts, until the server shuts down.
    pub async fn serve_listener<L: crate::Listener>(&self, listener: L) {
        crate::listener::serve(&self.shared, listener).await
    }

    /// The runtime the server runs on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.shared.runtime
    }
}

/// A namespace of a running server.
#[derive(Clone)]
pub struct Namespace {
    io: SocketIo,
    name: String,
}

impl Namespace {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Called for each socket that connects, after the middlewares accepted it.
    pub fn on_connection<F>(&self, handler: F) -> &Self
    where
        F: Fn(&mut SocketRef<'_>) + Send + Sync + 'static,
    {
        let name = self.name.clone();
        let handler: ConnectionHandler = Arc::new(handler);
        self.io.register(move |app| {
            app.state
                .namespaces
                .entry(name)
                .or_default()
                .on_connection
                .push(handler);
        });
        self
    }

    /// A middleware run for each socket before it connects; an `Err` refuses it with
    /// `connect_error`.
    pub fn use_<F>(&self, middleware: F) -> &Self
    where
        F: Fn(&mut SocketRef<'_>, &Value) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        let name = self.name.clone();
        let middleware: Middleware = Arc::new(middleware);
        self.io.register(move |app| {
            app.state
                .namespaces
                .entry(name)
                .or_default()
                .middlewares
                .push(middleware);
        });
        self
    }

    /// Emits to every socket of the namespace; for a dynamic parent, to every socket of every
    /// child.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &T,
    ) -> Result<(), EmitError> {
        self.broadcast().emit(event, args).await
    }

    /// The children of a dynamic parent created so far.
    pub async fn children(&self) -> Vec<String> {
        let name = self.name.clone();
        on_driver(&self.io.shared, move |io| {
            io.state
                .parents
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.children.clone())
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }

    /// A broadcast to the namespace.
    pub fn broadcast(&self) -> BroadcastHandle {
        BroadcastHandle {
            shared: self.io.shared.clone(),
            op: Operator::new(&self.name),
        }
    }

    /// A broadcast to `room` of the namespace.
    pub fn to(&self, room: impl Into<String>) -> BroadcastHandle {
        self.broadcast().to(room)
    }
}

/// A broadcast from any task: `io.to("room").emit(...).await`.
#[derive(Clone)]
pub struct BroadcastHandle {
    shared: Arc<Shared<SioApp>>,
    op: Operator,
}

impl BroadcastHandle {
    /// Also reach the members of `room`.
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.op.rooms.push(room.into());
        self
    }

    /// Leave out the members of `room`.
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.op.except.push(room.into());
        self
    }

    /// Drop the packet for recipients that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.op.volatile = true;
        self
    }

    /// Only this server: the operation is not handed to the adapter for the other servers.
    pub fn local(mut self) -> Self {
        self.op.local = true;
        self
    }

    /// The time to wait for acks.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.op.timeout = Some(timeout);
        self
    }

    /// Emits to every recipient.
    pub async fn emit<T: Serialize + ?Sized>(self, event: &str, args: &T) -> Result<(), EmitError> {
        let payload = Payload::from_args(args)?;
        let event = event.to_owned();
        let op = self.op;
        on_driver(&self.shared, move |io| op.emit(io, &event, &payload))
            .await
            .unwrap_or(Err(EmitError::Closed))
    }

    /// The sockets this broadcast reaches (`fetchSockets` in the reference).
    pub async fn fetch_sockets(self) -> Result<Vec<FetchedSocket>, EmitError> {
        let op = self.op;
        on_driver(&self.shared, move |io| op.fetch(io))
            .await
            .unwrap_or(Err(EmitError::Closed))
    }

    /// Adds the sockets this broadcast reaches to `room` (`socketsJoin`).
    pub async fn sockets_join(self, room: &str) -> Result<(), EmitError> {
        let (op, room) = (self.op, room.to_owned());
        on_driver(&self.shared, move |io| op.sockets_join(io, &room))
            .await
            .unwrap_or(Err(EmitError::Closed))
    }

    /// Removes the sockets this broadcast reaches from `room` (`socketsLeave`).
    pub async fn sockets_leave(self, room: &str) -> Result<(), EmitError> {
        let (op, room) = (self.op, room.to_owned());
        on_driver(&self.shared, move |io| op.sockets_leave(io, &room))
            .await
            .unwrap_or(Err(EmitError::Closed))
    }

    /// Disconnects the sockets this broadcast reaches; with `close`, their connections too.
    pub async fn disconnect_sockets(self, close: bool) -> Result<(), EmitError> {
        let op = self.op;
        on_driver(&self.shared, move |io| op.disconnect_sockets(io, close))
            .await
            .unwrap_or(Err(EmitError::Closed))
    }

    /// Emits and collects one answer per recipient (a timeout is required).
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        self,
        event: &str,
        args: &T,
    ) -> Result<Result<Vec<Payload>, AckTimeout>, EmitError> {
        let payload = Payload::from_args(args)?;
        let event = event.to_owned();
        let op = self.op;
        let (tx, rx) = async_channel::bounded(1);
        let callback: BroadcastAck = Box::new(move |_, result| {
            let _ = tx.try_send(result);
        });
        on_driver(&self.shared, move |io| {
            op.emit_with_ack(io, &event, &payload, callback)
        })
        .await
        .unwrap_or(Err(EmitError::Closed))?;
        rx.recv().await.map_err(|_| EmitError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> EventHandler {
        EventHandler::Sync(Arc::new(|_, _| Ok(())))
    }

    /// Names up to the inline length and past it, empty and not ASCII, are found by their exact
    /// bytes only; a second handler for a name replaces the first.
    #[test]
    fn event_handlers_are_found_by_their_whole_name() {
        let long = "x".repeat(INLINE_NAME + 1);
        let full = "y".repeat(INLINE_NAME);
        let names = ["", "echo", "héllo", full.as_str(), long.as_str()];
        let mut handlers = EventHandlers::default();
        for name in names {
            handlers.insert(name, handler());
        }
        handlers.insert("echo", handler());
        assert_eq!(handlers.0.len(), names.len());
        for name in names {
            assert!(handlers.get(name).is_some(), "{name:?}");
        }
        for other in ["ech", "echo ", "hello", &full[1..], &long[1..], "\0"] {
            assert!(handlers.get(other).is_none(), "{other:?}");
        }
        assert!(matches!(handlers.0[3].0, EventName::Inline { .. }));
        assert!(matches!(handlers.0[4].0, EventName::Boxed(_)));
        handlers.remove("echo");
        assert!(handlers.get("echo").is_none());
        assert_eq!(handlers.0.len(), names.len() - 1);
    }
}
