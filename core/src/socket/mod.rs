//! The Socket.IO v5 server as a sans-IO state machine, on top of [`crate::engine`].
//!
//! [`Server`] owns the Engine.IO sessions and, on them, namespaces, sockets, rooms and acks. It has the
//! engine's network inputs and drain contract, plus application commands: accept or reject a
//! connection (middlewares run in the application), emit to a socket or to rooms, answer an ack, join
//! and leave rooms, disconnect.
//!
//! A socket's `Disconnecting` event is drained while the socket is still in its rooms; it leaves them
//! when the application polls the next event, which is its `Disconnect`.

pub mod client_bundle;
pub mod outgoing;
pub mod packet;
pub mod payload;
pub mod recovery;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::request::Parts;
use bytes::Bytes;
use serde_json::{Map, Value};
use slab::Slab;

pub use self::client_bundle::ClientBundle;
pub use self::outgoing::{OutgoingArgs, Serialized};
use self::packet::{Decoder, Packet};
pub use self::packet::{PacketType, ParseError, RESERVED_EVENTS};
pub use self::payload::{Payload, PayloadError};
pub use self::recovery::RecoveryConfig;
use self::recovery::{KeptSession, Recovery};
use crate::IdMap;
use crate::engine::sid::IdGenerator;
use crate::engine::{
    BodyError, CloseReason, Engine, EngineConfig, EngineEvent, Frame, Handshake, Message,
    RequestId, SessionId, Sid, Transmit,
};

/// Options of the Socket.IO server. `Default` gives the reference values.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The Engine.IO options (`path` `/socket.io/` by default).
    pub engine: EngineConfig,
    /// How long a connection may stay without joining a namespace (45 s).
    pub connect_timeout: Duration,
    /// Most attachments a client packet may declare (10).
    pub max_attachments: usize,
    /// Connection state recovery; off (`None`) by default, as in the reference.
    pub connection_state_recovery: Option<RecoveryConfig>,
    /// The browser client served at `<path>socket.io.js` and the other names of the bundle.
    pub serve_client: Option<ClientBundle>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            engine: EngineConfig::default(),
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: 10,
            connection_state_recovery: None,
            serve_client: None,
        }
    }
}

/// Names a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NspId(u32);

/// Names a socket (one client in one namespace). A stale id never reaches a newer socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    index: u32,
    generation: u32,
}

/// Names an acknowledgement the server waits for (one emit, one or many recipients).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId {
    nsp: NspId,
    id: u64,
}

impl AckId {
    /// The id on the wire (per namespace, from 0).
    pub fn wire_id(self) -> u64 {
        self.id
    }
}

/// Why a socket disconnected, with the reference's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The transport closed.
    TransportClose,
    /// The transport failed.
    TransportError,
    /// No pong in time.
    PingTimeout,
    /// An Engine.IO packet could not be decoded.
    ParseError,
    /// The Engine.IO connection was closed by the server (e.g. after an invalid Socket.IO packet).
    ForcedClose,
    /// The Socket.IO layer closed the connection (connect timeout, a packet out of place).
    ForcedServerClose,
    /// The server disconnected the socket.
    ServerNamespaceDisconnect,
    /// The client disconnected the socket.
    ClientNamespaceDisconnect,
    /// The server is shutting down.
    ServerShuttingDown,
}

impl DisconnectReason {
    /// The reference's string for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerShuttingDown => "server shutting down",
        }
    }

    fn from_engine(reason: CloseReason) -> DisconnectReason {
        match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a server ack ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Every recipient replied.
    Complete,
    /// The timeout passed before every recipient replied.
    TimedOut,
    /// The one recipient disconnected before replying.
    Disconnected,
}

/// What the application learns from the server.
#[derive(Debug)]
pub enum Event {
    /// A client asks to join a namespace: run the middlewares, then [`Server::accept`] or
    /// [`Server::reject`].
    Connect {
        /// The socket it would be.
        socket: SocketId,
        /// The namespace.
        nsp: NspId,
        /// The CONNECT payload (`{}` when absent).
        auth: Value,
        /// The first request of the connection.
        handshake: Arc<Handshake>,
        /// The socket recovered a kept session: same id, its rooms back, missed packets queued.
        recovered: bool,
    },
    /// An event from a client.
    Message {
        /// The socket.
        socket: SocketId,
        /// The event name.
        event: String,
        /// Its arguments.
        args: Payload,
        /// The client's ack id: answer with [`Server::ack`].
        ack: Option<u64>,
    },
    /// A client answered a server ack.
    AckReply {
        /// The ack.
        ack: AckId,
        /// Who answered.
        socket: SocketId,
        /// The answer.
        args: Payload,
    },
    /// A server ack is over; no more replies will come for it.
    AckDone {
        /// The ack.
        ack: AckId,
        /// How it ended.
        outcome: AckOutcome,
    },
    /// A client packet could not be decoded; the connection is being closed.
    SocketError {
        /// A socket of the connection.
        socket: SocketId,
        /// What was wrong.
        error: ParseError,
    },
    /// The socket is disconnecting: it is still in its rooms.
    Disconnecting {
        /// The socket.
        socket: SocketId,
        /// Why.
        reason: DisconnectReason,
    },
    /// The socket disconnected and left its rooms; its id is dead from now on.
    Disconnect {
        /// The socket.
        socket: SocketId,
        /// Why.
        reason: DisconnectReason,
        /// The private id its session is kept under for recovery, if it is.
        kept: Option<Sid>,
    },
    /// A handshake waits for the application's word: answer with [`Server::allow_request`].
    AllowRequest {
        /// The request.
        request: RequestId,
        /// What it carried.
        handshake: Box<Handshake>,
    },
    /// A request was refused with an Engine.IO error (`connection_error` in the reference).
    ConnectionError {
        /// The error code.
        code: crate::engine::ErrorCode,
        /// The message sent to the client.
        message: String,
        /// The reference's name for the cause, when it has one.
        context: &'static str,
    },
    /// A client asks for a namespace that does not exist, and dynamic namespaces are on: answer
    /// with [`Server::namespace_verdict`] (creating it with [`Server::namespace`] to let it in).
    NamespaceRequest {
        /// The connection.
        session: SessionId,
        /// The namespace asked for.
        name: String,
        /// The CONNECT payload.
        auth: Value,
    },
    /// A kept session expired: it can no longer be recovered.
    SessionExpired {
        /// Its private id.
        pid: Sid,
    },
}

/// Who receives an emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One socket.
    Socket(SocketId),
    /// The sockets of a namespace that are in any of `rooms` (all of them when `rooms` is empty) and
    /// in none of `except`.
    Rooms {
        /// The namespace.
        nsp: NspId,
        /// Rooms to reach; empty means every socket.
        rooms: Vec<String>,
        /// Rooms whose members are left out.
        except: Vec<String>,
    },
}

/// Options of one emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitOptions {
    /// Drop the packet for recipients whose transport cannot take it right now.
    pub volatile: bool,
    /// Ask for acknowledgements, ending after this long at the latest (`Some(None)`: no timeout,
    /// allowed for a single socket only).
    pub ack: Option<Option<Duration>>,
}

/// A command could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The socket is not connected (or never was).
    UnknownSocket,
    /// The socket is not waiting for [`Server::accept`] or [`Server::reject`].
    NotPending,
    /// The event name is reserved.
    ReservedEvent(String),
    /// Acks from several sockets need a timeout.
    TimeoutRequired,
    /// The namespace does not exist.
    UnknownNamespace,
    /// The arguments could not be serialized.
    InvalidArgs(PayloadError),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::UnknownSocket => f.write_str("the socket is not connected"),
            CommandError::NotPending => f.write_str("the socket is not waiting to connect"),
            CommandError::ReservedEvent(e) => write!(f, "\"{e}\" is a reserved event name"),
            CommandError::TimeoutRequired => f.write_str("acks from a broadcast need a timeout"),
            CommandError::UnknownNamespace => f.write_str("unknown namespace"),
            CommandError::InvalidArgs(e) => write!(f, "invalid arguments: {e}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// The sockets an emit reaches: one socket needs no list, which keeps the emit to a single socket
/// (every handler's reply) free of an allocation.
struct Recipients {
    one: std::option::IntoIter<SocketId>,
    many: std::vec::IntoIter<SocketId>,
}

impl Recipients {
    fn one(socket: SocketId) -> Recipients {
        Recipients {
            one: Some(socket).into_iter(),
            many: Vec::new().into_iter(),
        }
    }

    fn many(list: Vec<SocketId>) -> Recipients {
        Recipients {
            one: None.into_iter(),
            many: list.into_iter(),
        }
    }
}

impl Iterator for Recipients {
    type Item = SocketId;

    fn next(&mut self) -> Option<SocketId> {
        self.one.next().or_else(|| self.many.next())
    }
}

#[derive(Debug)]
struct Namespace {
    name: String,
    /// Connected sockets, in connection order of their slots.
    sockets: BTreeSet<SocketId>,
    rooms: HashMap<String, BTreeSet<SocketId>>,
    next_ack: u64,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum SocketState {
    /// Waiting for the application's accept or reject.
    Pending,
    Connected,
    /// `Disconnecting` was queued; leaves its rooms at `Disconnect`.
    Disconnecting,
}

#[derive(Debug)]
struct Socket {
    generation: u32,
    sid: Sid,
    nsp: NspId,
    session: SessionId,
    state: SocketState,
    rooms: BTreeSet<String>,
    /// Server acks awaiting this socket's reply, by wire id.
    acks: BTreeSet<u64>,
    /// The private session id (with connection state recovery).
    pid: Option<Sid>,
    /// A recovered session: the rooms to rejoin and the packets to send before the CONNECT reply.
    restored: Option<(BTreeSet<String>, Vec<Frame>)>,
    recovered: bool,
}

/// One Engine.IO connection seen by the Socket.IO layer.
#[derive(Debug)]
struct Client {
    decoder: Decoder,
    /// Its sockets, pending or connected.
    sockets: Vec<SocketId>,
    handshake: Arc<Handshake>,
    connect_deadline: Option<Instant>,
    /// The connection is being closed; nothing more is dispatched.
    closing: bool,
    /// CONNECTs to unknown namespaces waiting for the application's word, with their payload.
    asking: Vec<(String, Option<Value>)>,
}

#[derive(Debug)]
struct AckRequest {
    /// Sockets whose reply is still awaited.
    waiting: BTreeSet<SocketId>,
    deadline: Option<Instant>,
    single: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Connect(SessionId),
    Ack(AckId),
    Recovery,
}

#[derive(Debug)]
enum Queued {
    Event(Event),
    /// Leave the rooms, then report `Disconnect`.
    Finalize(SocketId, DisconnectReason, Option<Sid>),
}

/// The Socket.IO server state machine. The drain contract is the engine's (see
/// [`crate::engine`]): after every input drain [`Server::poll_transmit`] and [`Server::poll_event`],
/// then honour [`Server::poll_timeout`].
pub struct Server {
    engine: Engine,
    connect_timeout: Duration,
    max_attachments: usize,
    ids: IdGenerator,
    namespaces: Vec<Namespace>,
    by_name: HashMap<String, NspId>,
    clients: IdMap<SessionId, Client>,
    sockets: Slab<Socket>,
    next_generation: u32,
    acks: IdMap<AckId, AckRequest>,
    timers: BTreeSet<(Instant, TimerKey)>,
    events: VecDeque<Queued>,
    recovery: Option<Recovery>,
    /// When the recovery timer is armed.
    recovery_timer: Option<Instant>,
    /// Ask the application about unknown namespaces instead of refusing them.
    dynamic_namespaces: bool,
    /// Slots of removed namespaces, reused by new ones.
    free_namespaces: Vec<NspId>,
    client_bundle: Option<ClientBundle>,
    /// Responses of the Socket.IO layer itself (the client bundle).
    transmits: VecDeque<Transmit>,
    /// Where outgoing packets are written before they are copied into their frame.
    scratch: Vec<u8>,
}

impl Server {
    /// A server with `config`, starting at `now`. The main namespace `/` exists from the start.
    pub fn new(config: ServerConfig, now: Instant) -> Server {
        // Socket ids come from their own generator, independent of the secret session ids.
        let seed = config.engine.rng_seed.map(|mut s| {
            s[0] ^= 0x5a;
            s
        });
        let mut server = Server {
            engine: Engine::new(config.engine, now),
            connect_timeout: config.connect_timeout,
            max_attachments: config.max_attachments,
            ids: IdGenerator::new(seed),
            namespaces: Vec::new(),
            by_name: HashMap::new(),
            clients: IdMap::default(),
            sockets: Slab::new(),
            next_generation: 0,
            acks: IdMap::default(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            recovery: config.connection_state_recovery.map(Recovery::new),
            recovery_timer: None,
            dynamic_namespaces: false,
            free_namespaces: Vec::new(),
            client_bundle: config.serve_client,
            transmits: VecDeque::new(),
            scratch: Vec::new(),
        };
        server.namespace("/");
        server
    }

    /// The Engine.IO layer.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The namespace called `name` (a leading `/` is added when missing), created if needed.
    pub fn namespace(&mut self, name: &str) -> NspId {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        if let Some(id) = self.by_name.get(&name) {
            return *id;
        }
        let id = match self.free_namespaces.pop() {
            Some(id) => {
                // The ack counter goes on, so that no id is reused while an old ack may be pending.
                let slot = &mut self.namespaces[id.0 as usize];
                slot.name = name.clone();
                id
            }
            None => {
                self.namespaces.push(Namespace {
                    name: name.clone(),
                    sockets: BTreeSet::new(),
                    rooms: HashMap::new(),
                    next_ack: 0,
                });
                NspId(self.namespaces.len() as u32 - 1)
            }
        };
        self.by_name.insert(name, id);
        id
    }

    /// Removes a namespace that has no socket left (`cleanupEmptyChildNamespaces`); false if it
    /// still has sockets or is the main namespace.
    pub fn remove_namespace(&mut self, nsp: NspId) -> bool {
        let Some(namespace) = self.namespaces.get(nsp.0 as usize) else {
            return false;
        };
        let pending = self.sockets.iter().any(|(_, s)| s.nsp == nsp);
        if namespace.name == "/" || namespace.name.is_empty() || pending {
            return false;
        }
        let name = std::mem::take(&mut self.namespaces[nsp.0 as usize].name);
        self.by_name.remove(&name);
        self.free_namespaces.push(nsp);
        true
    }

    /// Turns on asking the application about unknown namespaces ([`Event::NamespaceRequest`]).
    pub fn set_dynamic_namespaces(&mut self, on: bool) {
        self.dynamic_namespaces = on;
    }

    /// The application's word on a [`Event::NamespaceRequest`]: with `true` (and the namespace
    /// created) the connection goes on as for any namespace; with `false` the client gets
    /// `Invalid namespace`.
    pub fn namespace_verdict(
        &mut self,
        now: Instant,
        session: SessionId,
        name: &str,
        allowed: bool,
    ) {
        let Some(client) = self.clients.get_mut(&session) else {
            return;
        };
        let Some(i) = client.asking.iter().position(|(n, _)| n == name) else {
            return;
        };
        let (name, auth) = client.asking.remove(i);
        let packet = Packet {
            kind: PacketType::Connect,
            nsp: name.into(),
            id: None,
            data: auth,
            attachments: Vec::new(),
        };
        if allowed && self.find_namespace(&packet.nsp).is_some() {
            self.on_connect(now, session, packet);
        } else {
            self.invalid_namespace(session, &packet.nsp);
        }
        self.pump(now);
    }

    fn invalid_namespace(&mut self, session: SessionId, name: &str) {
        let mut error = Map::new();
        error.insert("message".into(), Value::String("Invalid namespace".into()));
        let text =
            packet::encode_control(name, PacketType::ConnectError, Some(&Value::Object(error)));
        let _ = self.engine.send_frame(session, Frame::text_message(&text));
    }

    /// The namespace called `name`, if it exists.
    pub fn find_namespace(&self, name: &str) -> Option<NspId> {
        self.by_name.get(name).copied()
    }

    /// The name of a namespace.
    pub fn namespace_name(&self, nsp: NspId) -> &str {
        self.namespaces
            .get(nsp.0 as usize)
            .map_or("", |n| n.name.as_str())
    }

    /// The connected sockets of a namespace.
    pub fn sockets(&self, nsp: NspId) -> impl Iterator<Item = SocketId> + '_ {
        self.namespaces
            .get(nsp.0 as usize)
            .into_iter()
            .flat_map(|n| n.sockets.iter().copied())
    }

    /// The public id of a socket (20 characters, not the secret Engine.IO id).
    pub fn socket_sid(&self, socket: SocketId) -> Option<Sid> {
        self.socket(socket).map(|s| s.sid)
    }

    /// The namespace of a socket.
    pub fn socket_nsp(&self, socket: SocketId) -> Option<NspId> {
        self.socket(socket).map(|s| s.nsp)
    }

    /// The Engine.IO session a socket belongs to.
    pub fn socket_session(&self, socket: SocketId) -> Option<SessionId> {
        self.socket(socket).map(|s| s.session)
    }

    /// The private session id of a socket (with connection state recovery).
    pub fn socket_pid(&self, socket: SocketId) -> Option<Sid> {
        self.socket(socket).and_then(|s| s.pid)
    }

    /// Whether the socket recovered a kept session.
    pub fn is_recovered(&self, socket: SocketId) -> bool {
        self.socket(socket).is_some_and(|s| s.recovered)
    }

    /// The connection state recovery options, when it is on.
    pub fn recovery_config(&self) -> Option<&RecoveryConfig> {
        self.recovery.as_ref().map(|r| &r.config)
    }

    /// Whether the socket is connected (not pending, not disconnecting).
    pub fn is_connected(&self, socket: SocketId) -> bool {
        self.socket(socket)
            .is_some_and(|s| s.state == SocketState::Connected)
    }

    /// The rooms of a socket, its own id first among them in sorted order.
    pub fn rooms(&self, socket: SocketId) -> impl Iterator<Item = &str> + '_ {
        self.socket(socket)
            .into_iter()
            .flat_map(|s| s.rooms.iter().map(String::as_str))
    }

    /// The connected sockets an emit to `target` would reach, in delivery order.
    pub fn recipients_of(&self, target: &Target) -> Result<Vec<SocketId>, CommandError> {
        self.recipients(target).map(|(_, list)| list.collect())
    }

    /// The number of Engine.IO connections.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    // ---- network input (see the engine) ----

    /// See [`Engine::handle_request`].
    pub fn handle_request(
        &mut self,
        now: Instant,
        request: RequestId,
        head: &Parts,
        remote_addr: Option<SocketAddr>,
    ) {
        if let Some(bundle) = &self.client_bundle {
            let path = self.engine.config().path.as_str();
            let response = head
                .uri
                .path()
                .strip_prefix(path)
                .and_then(|name| bundle.respond(name, &head.headers));
            if let Some(response) = response {
                self.transmits.push_back(Transmit::Response {
                    request,
                    response: Box::new(response),
                });
                return;
            }
        }
        self.engine.handle_request(now, request, head, remote_addr);
        self.pump(now);
    }

    /// Turns on or off asking the application before each handshake.
    pub fn set_allow_request(&mut self, ask: bool) {
        self.engine.set_allow_request(ask);
    }

    /// See [`Engine::set_generate_id`].
    pub fn set_generate_id(&mut self, hook: Option<crate::engine::IdHook>) {
        self.engine.set_generate_id(hook);
    }

    /// See [`Engine::set_headers_hook`].
    pub fn set_headers_hook(&mut self, hook: Option<crate::engine::HeadersHook>) {
        self.engine.set_headers_hook(hook);
    }

    /// See [`Engine::allow_request`].
    pub fn allow_request(&mut self, now: Instant, request: RequestId, verdict: Result<(), String>) {
        self.engine.allow_request(now, request, verdict);
        self.pump(now);
    }

    /// See [`Engine::handle_request_body`].
    pub fn handle_request_body(
        &mut self,
        now: Instant,
        request: RequestId,
        body: Result<Bytes, BodyError>,
    ) {
        self.engine.handle_request_body(now, request, body);
        self.pump(now);
    }

    /// See [`Engine::handle_closed`].
    pub fn handle_closed(&mut self, now: Instant, request: RequestId) {
        self.engine.handle_closed(now, request);
        self.pump(now);
    }

    /// See [`Engine::handle_ws_open`].
    pub fn handle_ws_open(&mut self, now: Instant, request: RequestId) {
        self.engine.handle_ws_open(now, request);
        self.pump(now);
    }

    /// See [`Engine::handle_ws_frame`].
    pub fn handle_ws_frame(&mut self, now: Instant, request: RequestId, frame: Frame) {
        self.engine.handle_ws_frame(now, request, frame);
        self.pump(now);
    }

    /// See [`Engine::handle_ws_error`].
    pub fn handle_ws_error(&mut self, now: Instant, request: RequestId, description: &'static str) {
        self.engine.handle_ws_error(now, request, description);
        self.pump(now);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        while let Some(&(at, key)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match key {
                TimerKey::Connect(session) => {
                    let idle = self.clients.get(&session).is_some_and(|c| {
                        c.connect_deadline == Some(at)
                            && !c.sockets.iter().any(|s| self.is_connected(*s))
                    });
                    if idle {
                        self.close_client(now, session, DisconnectReason::ForcedServerClose);
                    }
                }
                TimerKey::Recovery => {
                    self.recovery_timer = None;
                    let expired = self
                        .recovery
                        .as_mut()
                        .map(|r| r.purge(now))
                        .unwrap_or_default();
                    for pid in expired {
                        self.push(Event::SessionExpired { pid });
                    }
                    self.rearm_recovery();
                }
                TimerKey::Ack(ack) => {
                    if let Some(request) = self.acks.remove(&ack) {
                        for socket in &request.waiting {
                            if let Some(s) = self.socket_mut(*socket) {
                                s.acks.remove(&ack.id);
                            }
                        }
                        self.push(Event::AckDone {
                            ack,
                            outcome: AckOutcome::TimedOut,
                        });
                    }
                }
            }
        }
        self.pump(now);
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.engine.poll_transmit())
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        match self.events.pop_front()? {
            Queued::Event(event) => Some(event),
            Queued::Finalize(socket, reason, kept) => {
                self.finalize(socket);
                Some(Event::Disconnect {
                    socket,
                    reason,
                    kept,
                })
            }
        }
    }

    /// When [`Server::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.first().map(|(at, _)| *at);
        match (self.engine.poll_timeout(), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- application commands ----

    /// Lets a pending socket in: it joins its own room and the client gets the CONNECT reply.
    pub fn accept(&mut self, now: Instant, socket: SocketId) -> Result<(), CommandError> {
        let s = self.socket(socket).ok_or(CommandError::UnknownSocket)?;
        if s.state != SocketState::Pending {
            return Err(CommandError::NotPending);
        }
        let (nsp, session, sid) = (s.nsp, s.session, s.sid);
        let client_open = self.clients.get(&session).is_some_and(|c| !c.closing);
        if !client_open {
            self.remove_socket(socket);
            return Err(CommandError::UnknownSocket);
        }
        let (restored, pid) = match self.socket_mut(socket) {
            Some(s) => {
                s.state = SocketState::Connected;
                (s.restored.take(), s.pid)
            }
            None => (None, None),
        };
        self.namespaces[nsp.0 as usize].sockets.insert(socket);
        self.join(socket, sid.as_str());
        if let Some((rooms, missed)) = restored {
            for room in rooms {
                self.join(socket, &room);
            }
            // Missed packets go out before the CONNECT reply, as in the reference.
            for frame in missed {
                let _ = self.engine.send_frame(session, frame);
            }
        }
        if let Some(client) = self.clients.get_mut(&session) {
            if let Some(at) = client.connect_deadline.take() {
                self.timers.remove(&(at, TimerKey::Connect(session)));
            }
        }
        let name = &self.namespaces[nsp.0 as usize].name;
        let Ok(reply) = Frame::try_text_message_in(&mut self.scratch, |out| {
            packet::write_connect_reply(out, name, sid.as_str(), pid.as_ref().map(Sid::as_str));
            Ok::<(), std::convert::Infallible>(())
        });
        let _ = self.engine.send_frame(session, reply);
        self.pump(now);
        Ok(())
    }

    /// Refuses a pending socket: the client gets CONNECT_ERROR with `error` (the reference sends
    /// `{"message": ..., "data": ...}`).
    pub fn reject(
        &mut self,
        now: Instant,
        socket: SocketId,
        error: Value,
    ) -> Result<(), CommandError> {
        let s = self.socket(socket).ok_or(CommandError::UnknownSocket)?;
        if s.state != SocketState::Pending {
            return Err(CommandError::NotPending);
        }
        let (nsp, session) = (s.nsp, s.session);
        self.remove_socket(socket);
        let name = &self.namespaces[nsp.0 as usize].name;
        let text = packet::encode_control(name, PacketType::ConnectError, Some(&error));
        let _ = self.engine.send_frame(session, Frame::text_message(&text));
        self.pump(now);
        Ok(())
    }

    /// Emits `event` to `target`; the packet is encoded once for every recipient. With
    /// `options.ack`, returns the ack whose replies arrive as [`Event::AckReply`], ended by
    /// [`Event::AckDone`].
    pub fn emit(
        &mut self,
        now: Instant,
        target: &Target,
        event: &str,
        args: &dyn OutgoingArgs,
        options: EmitOptions,
    ) -> Result<Option<AckId>, CommandError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(CommandError::ReservedEvent(event.to_owned()));
        }
        let (nsp, recipients) = self.recipients(target)?;
        let single = matches!(target, Target::Socket(_));
        if let Some(None) = options.ack {
            if !single {
                return Err(CommandError::TimeoutRequired);
            }
        }
        let namespace = &self.namespaces[nsp.0 as usize];
        let ack = options.ack.map(|timeout| {
            (
                AckId {
                    nsp,
                    id: namespace.next_ack,
                },
                timeout,
            )
        });
        let name = &namespace.name;
        // With recovery, every event without ack that is not volatile carries an offset as its
        // last argument and is logged, so that a socket that comes back gets what it missed.
        let offset = match &self.recovery {
            Some(recovery) if ack.is_none() && !options.volatile => Some(recovery.next_offset()),
            _ => None,
        };
        let logged = offset.is_some();
        let ack_id = ack.map(|(a, _)| a.id);
        let mut attachments = Vec::new();
        let message = Frame::try_text_message_in(&mut self.scratch, |out| {
            packet::write_event(
                out,
                name,
                event,
                args,
                offset.as_deref(),
                ack_id,
                &mut attachments,
            )
        })
        .map_err(CommandError::InvalidArgs)?;
        if ack.is_some() {
            self.namespaces[nsp.0 as usize].next_ack += 1;
        }
        // Attachments follow the message; without any, this allocates nothing.
        let attachments: Vec<Frame> = attachments.into_iter().map(Frame::Binary).collect();
        if logged {
            let mut frames = Vec::with_capacity(1 + attachments.len());
            frames.push(message.clone());
            frames.extend(attachments.iter().cloned());
            let (rooms, except) = match target {
                Target::Socket(socket) => {
                    let sid = self.socket(*socket).map(|s| s.sid.to_string());
                    (sid.into_iter().collect(), Vec::new())
                }
                Target::Rooms { rooms, except, .. } => (rooms.clone(), except.clone()),
            };
            if let Some(recovery) = self.recovery.as_mut() {
                recovery.log(now, nsp, rooms, except, frames);
            }
            self.rearm_recovery();
        }
        let mut reached = BTreeSet::new();
        let mut message = Some(message);
        let mut recipients = recipients.peekable();
        while let Some(socket) = recipients.next() {
            let Some(s) = self.socket(socket) else {
                continue;
            };
            let session = s.session;
            if options.volatile && !self.engine.is_writable(session) {
                continue;
            }
            // The last recipient takes the frame itself: a single socket's frame is never cloned,
            // which keeps its bytes unshared (freed without a shared header).
            let frame = if recipients.peek().is_some() {
                message.clone()
            } else {
                message.take()
            };
            if let Some(frame) = frame {
                let _ = self.engine.send_frame(session, frame);
            }
            for frame in &attachments {
                let _ = self.engine.send_frame(session, frame.clone());
            }
            if let Some((ack, _)) = ack {
                if let Some(s) = self.socket_mut(socket) {
                    s.acks.insert(ack.id);
                }
                reached.insert(socket);
            }
        }
        if let Some((ack, timeout)) = ack {
            if reached.is_empty() {
                let outcome = if single {
                    AckOutcome::Disconnected
                } else {
                    AckOutcome::Complete
                };
                self.push(Event::AckDone { ack, outcome });
            } else {
                let deadline = timeout.map(|t| now + t);
                if let Some(at) = deadline {
                    self.timers.insert((at, TimerKey::Ack(ack)));
                }
                self.acks.insert(
                    ack,
                    AckRequest {
                        waiting: reached,
                        deadline,
                        single,
                    },
                );
            }
        }
        self.pump(now);
        Ok(ack.map(|(a, _)| a))
    }

    /// Answers the client's ack `id` on `socket`.
    pub fn ack(
        &mut self,
        now: Instant,
        socket: SocketId,
        id: u64,
        args: &dyn OutgoingArgs,
    ) -> Result<(), CommandError> {
        let s = self
            .socket(socket)
            .filter(|s| s.state == SocketState::Connected)
            .ok_or(CommandError::UnknownSocket)?;
        let session = s.session;
        let name = &self.namespaces[s.nsp.0 as usize].name;
        let mut attachments = Vec::new();
        let message = Frame::try_text_message_in(&mut self.scratch, |out| {
            packet::write_ack(out, name, id, args, &mut attachments)
        })
        .map_err(CommandError::InvalidArgs)?;
        let _ = self.engine.send_frame(session, message);
        for attachment in attachments {
            let _ = self.engine.send_frame(session, Frame::Binary(attachment));
        }
        self.pump(now);
        Ok(())
    }

    /// Adds a socket to a room.
    pub fn join(&mut self, socket: SocketId, room: &str) {
        let Some(s) = self.socket_mut(socket) else {
            return;
        };
        if s.state == SocketState::Pending || !s.rooms.insert(room.to_owned()) {
            return;
        }
        let nsp = s.nsp;
        let rooms = &mut self.namespaces[nsp.0 as usize].rooms;
        // A room that exists takes the member without a copy of its name.
        match rooms.get_mut(room) {
            Some(members) => {
                members.insert(socket);
            }
            None => {
                rooms.insert(room.to_owned(), BTreeSet::from([socket]));
            }
        }
    }

    /// Removes a socket from a room.
    pub fn leave(&mut self, socket: SocketId, room: &str) {
        let Some(s) = self.socket_mut(socket) else {
            return;
        };
        if !s.rooms.remove(room) {
            return;
        }
        let nsp = s.nsp;
        let rooms = &mut self.namespaces[nsp.0 as usize].rooms;
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&socket);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Disconnects a socket (`server namespace disconnect`); with `close`, every socket of its
    /// connection, then the connection itself.
    pub fn disconnect(
        &mut self,
        now: Instant,
        socket: SocketId,
        close: bool,
    ) -> Result<(), CommandError> {
        let s = self
            .socket(socket)
            .filter(|s| s.state == SocketState::Connected)
            .ok_or(CommandError::UnknownSocket)?;
        let session = s.session;
        let targets: Vec<SocketId> = if close {
            self.clients
                .get(&session)
                .map(|c| c.sockets.clone())
                .unwrap_or_default()
        } else {
            vec![socket]
        };
        for socket in targets {
            let Some(s) = self
                .socket(socket)
                .filter(|s| s.state == SocketState::Connected)
            else {
                continue;
            };
            let name = &self.namespaces[s.nsp.0 as usize].name;
            let text = packet::encode_control(name, PacketType::Disconnect, None);
            let _ = self.engine.send_frame(session, Frame::text_message(&text));
            self.start_disconnect(now, socket, DisconnectReason::ServerNamespaceDisconnect);
        }
        if close {
            self.close_client(now, session, DisconnectReason::ForcedServerClose);
        }
        self.pump(now);
        Ok(())
    }

    /// Adds every socket `target` reaches to `rooms` (`socketsJoin` in the reference).
    pub fn sockets_join(&mut self, target: &Target, rooms: &[String]) -> Result<(), CommandError> {
        for socket in self.recipients_of(target)? {
            for room in rooms {
                self.join(socket, room);
            }
        }
        Ok(())
    }

    /// Removes every socket `target` reaches from `rooms` (`socketsLeave` in the reference).
    pub fn sockets_leave(&mut self, target: &Target, rooms: &[String]) -> Result<(), CommandError> {
        for socket in self.recipients_of(target)? {
            for room in rooms {
                self.leave(socket, room);
            }
        }
        Ok(())
    }

    /// Disconnects every socket `target` reaches (`disconnectSockets` in the reference); with
    /// `close`, their connections too.
    pub fn disconnect_sockets(
        &mut self,
        now: Instant,
        target: &Target,
        close: bool,
    ) -> Result<(), CommandError> {
        for socket in self.recipients_of(target)? {
            let _ = self.disconnect(now, socket, close);
        }
        Ok(())
    }

    /// Shuts down: every socket disconnects with `server shutting down`, then every connection is
    /// closed at once (parked polls are answered with `close`).
    pub fn close(&mut self, now: Instant) {
        let sessions: Vec<SessionId> = {
            let mut s: Vec<SessionId> = self.clients.keys().copied().collect();
            s.sort();
            s
        };
        for session in sessions {
            if let Some(client) = self.clients.get_mut(&session) {
                client.closing = true;
            }
            self.drop_sockets(now, session, DisconnectReason::ServerShuttingDown);
        }
        self.engine.close_all(now);
        self.pump(now);
    }

    // ---- internals ----

    fn socket(&self, id: SocketId) -> Option<&Socket> {
        self.sockets
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }

    fn socket_mut(&mut self, id: SocketId) -> Option<&mut Socket> {
        self.sockets
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }

    fn push(&mut self, event: Event) {
        self.events.push_back(Queued::Event(event));
    }

    /// Handles what the engine reported.
    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                EngineEvent::Open { session, handshake } => {
                    let at = now + self.connect_timeout;
                    self.timers.insert((at, TimerKey::Connect(session)));
                    self.clients.insert(
                        session,
                        Client {
                            decoder: Decoder::new(self.max_attachments),
                            sockets: Vec::new(),
                            handshake: Arc::from(handshake),
                            connect_deadline: Some(at),
                            closing: false,
                            asking: Vec::new(),
                        },
                    );
                }
                EngineEvent::Message { session, message } => self.on_message(now, session, message),
                EngineEvent::Upgrade { .. } => {}
                EngineEvent::AllowRequest { request, handshake } => {
                    self.push(Event::AllowRequest { request, handshake })
                }
                EngineEvent::ConnectionError {
                    code,
                    message,
                    context,
                } => self.push(Event::ConnectionError {
                    code,
                    message,
                    context,
                }),
                EngineEvent::Close {
                    session, reason, ..
                } => {
                    self.drop_client(now, session, DisconnectReason::from_engine(reason));
                }
            }
        }
    }

    fn on_message(&mut self, now: Instant, session: SessionId, message: Message) {
        let Some(client) = self.clients.get_mut(&session) else {
            return;
        };
        if client.closing {
            return;
        }
        let decoded = match message {
            Message::Text(text) => client.decoder.decode_text(&text),
            Message::Binary(data) => client.decoder.decode_binary(data),
        };
        match decoded {
            Ok(Some(packet)) => self.on_packet(now, session, packet),
            Ok(None) => {}
            Err(error) => {
                // The reference tells every socket (`error`) and closes the connection; the sockets
                // disconnect when it is closed (`forced close`).
                let sockets = self.clients.get(&session).map(|c| c.sockets.clone());
                for socket in sockets.unwrap_or_default() {
                    if self.is_connected(socket) {
                        self.push(Event::SocketError {
                            socket,
                            error: error.clone(),
                        });
                    }
                }
                if let Some(client) = self.clients.get_mut(&session) {
                    client.closing = true;
                }
                self.engine.close(now, session);
            }
        }
    }

    fn on_packet(&mut self, now: Instant, session: SessionId, packet: Packet) {
        let connected = self.clients.get(&session).and_then(|c| {
            c.sockets.iter().copied().find(|s| {
                self.socket(*s).is_some_and(|s| {
                    s.state == SocketState::Connected
                        && self.namespaces[s.nsp.0 as usize].name == packet.nsp
                })
            })
        });
        match (connected, packet.kind) {
            (None, PacketType::Connect) => self.on_connect(now, session, packet),
            (Some(socket), PacketType::Event) => self.on_event(socket, packet),
            (Some(socket), PacketType::Ack) => self.on_ack(socket, packet),
            (Some(socket), PacketType::Disconnect) => {
                self.start_disconnect(now, socket, DisconnectReason::ClientNamespaceDisconnect)
            }
            // A packet for a namespace not joined, a second CONNECT, a CONNECT_ERROR from the
            // client: the reference closes the connection.
            _ => self.close_client(now, session, DisconnectReason::ForcedServerClose),
        }
    }

    fn on_connect(&mut self, now: Instant, session: SessionId, packet: Packet) {
        let Some(client) = self.clients.get(&session) else {
            return;
        };
        let pending = client.sockets.iter().any(|s| {
            self.socket(*s).is_some_and(|s| {
                s.state == SocketState::Pending
                    && self.namespaces[s.nsp.0 as usize].name == packet.nsp
            })
        });
        if pending {
            // Already being decided; the first CONNECT gets the answer.
            return;
        }
        let handshake = client.handshake.clone();
        let Some(nsp) = self.find_namespace(&packet.nsp) else {
            if !self.dynamic_namespaces {
                return self.invalid_namespace(session, &packet.nsp);
            }
            let asked = client.asking.iter().any(|(n, _)| *n == packet.nsp);
            // Bounded: a client asking for many names at once waits for the answers.
            if asked || client.asking.len() >= 16 {
                return;
            }
            let auth = packet
                .data
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new()));
            if let Some(client) = self.clients.get_mut(&session) {
                client.asking.push((packet.nsp.to_string(), packet.data));
            }
            self.push(Event::NamespaceRequest {
                session,
                name: packet.nsp.into_owned(),
                auth,
            });
            return;
        };
        let auth = packet.data.unwrap_or_else(|| Value::Object(Map::new()));
        // The client asks to recover with the private id and the last offset it received.
        let restored = match (&mut self.recovery, auth.get("pid"), auth.get("offset")) {
            (Some(recovery), Some(Value::String(pid)), Some(Value::String(offset))) => recovery
                .restore(now, nsp, pid, offset)
                .map(|r| (Sid::parse(pid), r)),
            _ => None,
        };
        let (sid, pid, restored) = match restored {
            Some((pid, r)) => (r.sid, pid, Some((r.rooms, r.missed))),
            None => {
                let sid = self.ids.next_sid();
                let pid = self.recovery.is_some().then(|| self.ids.next_sid());
                (sid, pid, None)
            }
        };
        let recovered = restored.is_some();
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.sockets.insert(Socket {
            generation,
            sid,
            nsp,
            session,
            state: SocketState::Pending,
            rooms: BTreeSet::new(),
            acks: BTreeSet::new(),
            pid,
            restored,
            recovered,
        });
        let socket = SocketId {
            index: index as u32,
            generation,
        };
        if let Some(client) = self.clients.get_mut(&session) {
            client.sockets.push(socket);
        }
        self.push(Event::Connect {
            socket,
            nsp,
            auth,
            handshake,
            recovered,
        });
    }

    fn on_event(&mut self, socket: SocketId, packet: Packet) {
        let Some(Value::Array(mut data)) = packet.data else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let event = match data.remove(0) {
            Value::String(name) => name,
            other => other.to_string(),
        };
        self.push(Event::Message {
            socket,
            event,
            args: Payload {
                args: data,
                attachments: packet.attachments,
            },
            ack: packet.id,
        });
    }

    fn on_ack(&mut self, socket: SocketId, packet: Packet) {
        let (Some(id), Some(s)) = (packet.id, self.socket_mut(socket)) else {
            return;
        };
        if !s.acks.remove(&id) {
            return;
        }
        let ack = AckId { nsp: s.nsp, id };
        let args = match packet.data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        self.push(Event::AckReply {
            ack,
            socket,
            args: Payload {
                args,
                attachments: packet.attachments,
            },
        });
        let done = self.acks.get_mut(&ack).is_some_and(|r| {
            r.waiting.remove(&socket);
            r.waiting.is_empty()
        });
        if done {
            if let Some(request) = self.acks.remove(&ack) {
                if let Some(at) = request.deadline {
                    self.timers.remove(&(at, TimerKey::Ack(ack)));
                }
            }
            self.push(Event::AckDone {
                ack,
                outcome: AckOutcome::Complete,
            });
        }
    }

    /// The sockets an emit reaches, in a deterministic order.
    fn recipients(&self, target: &Target) -> Result<(NspId, Recipients), CommandError> {
        match target {
            Target::Socket(socket) => {
                let s = self
                    .socket(*socket)
                    .filter(|s| s.state == SocketState::Connected)
                    .ok_or(CommandError::UnknownSocket)?;
                Ok((s.nsp, Recipients::one(*socket)))
            }
            Target::Rooms { nsp, rooms, except } => {
                let namespace = self
                    .namespaces
                    .get(nsp.0 as usize)
                    .ok_or(CommandError::UnknownNamespace)?;
                let excluded: BTreeSet<SocketId> = except
                    .iter()
                    .filter_map(|r| namespace.rooms.get(r))
                    .flatten()
                    .copied()
                    .collect();
                let keep = |s: &SocketId| !excluded.contains(s) && self.is_connected(*s);
                // One room (or the whole namespace) is already sorted and unique: no set to build,
                // which is the common broadcast. The list is sized for every member up front: a
                // large room would otherwise grow it a dozen times.
                let sorted = |members: &BTreeSet<SocketId>| {
                    let mut list = Vec::with_capacity(members.len());
                    list.extend(members.iter().copied().filter(keep));
                    list
                };
                let list = match rooms.as_slice() {
                    [] => sorted(&namespace.sockets),
                    [room] => namespace.rooms.get(room).map(sorted).unwrap_or_default(),
                    _ => {
                        let mut set = BTreeSet::new();
                        for room in rooms {
                            if let Some(members) = namespace.rooms.get(room) {
                                set.extend(members.iter().copied());
                            }
                        }
                        set.into_iter().filter(keep).collect()
                    }
                };
                Ok((*nsp, Recipients::many(list)))
            }
        }
    }

    /// Queues `Disconnecting` now and `Disconnect` (with the cleanup) behind it; keeps the session
    /// for recovery when the reason allows it.
    fn start_disconnect(&mut self, now: Instant, socket: SocketId, reason: DisconnectReason) {
        let Some(s) = self.socket_mut(socket) else {
            return;
        };
        if s.state != SocketState::Connected {
            return;
        }
        s.state = SocketState::Disconnecting;
        let mut kept = None;
        let recoverable = !matches!(
            reason,
            DisconnectReason::ParseError
                | DisconnectReason::ClientNamespaceDisconnect
                | DisconnectReason::ServerNamespaceDisconnect
        );
        if let (Some(recovery), Some(s)) = (
            self.recovery.as_mut(),
            self.sockets.get(socket.index as usize),
        ) {
            if let (true, Some(pid)) = (recoverable, s.pid) {
                recovery.keep(
                    pid,
                    KeptSession {
                        sid: s.sid,
                        nsp: s.nsp,
                        rooms: s.rooms.clone(),
                        disconnected_at: now,
                    },
                );
                kept = Some(pid);
            }
        }
        if kept.is_some() {
            self.rearm_recovery();
        }
        self.push(Event::Disconnecting { socket, reason });
        self.events
            .push_back(Queued::Finalize(socket, reason, kept));
    }

    /// Arms the recovery timer for the next expiry.
    fn rearm_recovery(&mut self) {
        let next = self.recovery.as_ref().and_then(Recovery::next_expiry);
        if next == self.recovery_timer {
            return;
        }
        if let Some(at) = self.recovery_timer.take() {
            self.timers.remove(&(at, TimerKey::Recovery));
        }
        if let Some(at) = next {
            self.timers.insert((at, TimerKey::Recovery));
            self.recovery_timer = Some(at);
        }
    }

    /// Closes the Engine.IO connection from the Socket.IO layer; its sockets disconnect with
    /// `reason` at once.
    fn close_client(&mut self, now: Instant, session: SessionId, reason: DisconnectReason) {
        let Some(client) = self.clients.get_mut(&session) else {
            return;
        };
        client.closing = true;
        self.drop_sockets(now, session, reason);
        self.engine.close(now, session);
    }

    /// The Engine.IO connection closed.
    fn drop_client(&mut self, now: Instant, session: SessionId, reason: DisconnectReason) {
        self.drop_sockets(now, session, reason);
        if let Some(client) = self.clients.remove(&session) {
            if let Some(at) = client.connect_deadline {
                self.timers.remove(&(at, TimerKey::Connect(session)));
            }
            for socket in client.sockets {
                // Pending sockets vanish without events, as in the reference.
                if self
                    .socket(socket)
                    .is_some_and(|s| s.state == SocketState::Pending)
                {
                    self.remove_socket(socket);
                }
            }
        }
    }

    fn drop_sockets(&mut self, now: Instant, session: SessionId, reason: DisconnectReason) {
        let sockets = self
            .clients
            .get(&session)
            .map(|c| c.sockets.clone())
            .unwrap_or_default();
        for socket in sockets {
            self.start_disconnect(now, socket, reason);
        }
    }

    /// Leaves every room and frees the socket; acks it owed are resolved.
    fn finalize(&mut self, socket: SocketId) {
        let rooms: Vec<String> = self.rooms(socket).map(str::to_owned).collect();
        for room in rooms {
            self.leave(socket, &room);
        }
        let Some(s) = self.socket(socket) else {
            return;
        };
        let nsp = s.nsp;
        let owed: Vec<u64> = s.acks.iter().copied().collect();
        for id in owed {
            let ack = AckId { nsp, id };
            let single = self.acks.get_mut(&ack).is_some_and(|r| {
                r.waiting.remove(&socket);
                r.single
            });
            if single {
                if let Some(request) = self.acks.remove(&ack) {
                    if let Some(at) = request.deadline {
                        self.timers.remove(&(at, TimerKey::Ack(ack)));
                    }
                }
                self.push(Event::AckDone {
                    ack,
                    outcome: AckOutcome::Disconnected,
                });
            }
        }
        self.remove_socket(socket);
    }

    fn remove_socket(&mut self, socket: SocketId) {
        let Some(s) = self.socket(socket) else {
            return;
        };
        let (nsp, session) = (s.nsp, s.session);
        self.namespaces[nsp.0 as usize].sockets.remove(&socket);
        if let Some(client) = self.clients.get_mut(&session) {
            client.sockets.retain(|s| *s != socket);
        }
        self.sockets.remove(socket.index as usize);
    }
}

/// For tests and the simulation: counts of everything the server holds.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub struct Census {
    /// Engine.IO sessions.
    pub sessions: usize,
    /// Socket.IO clients.
    pub clients: usize,
    /// Sockets, pending or connected.
    pub sockets: usize,
    /// Memberships summed over every room.
    pub room_members: usize,
    /// Server acks awaiting replies.
    pub acks: usize,
    /// Armed timers of the Socket.IO layer, plus one if the engine has any.
    pub timers: usize,
    /// Sessions kept for recovery.
    pub kept_sessions: usize,
    /// Packets logged for recovery.
    pub logged_packets: usize,
}

impl Server {
    /// Checks the server's internal consistency (for tests and the simulation): the engine's
    /// invariants, sockets and their connections, rooms in both directions, and acks.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.engine.check_invariants()?;
        for (session, client) in &self.clients {
            if self.engine.sid(*session).is_none() {
                return Err(format!("client of the closed session {session:?}"));
            }
            for socket in &client.sockets {
                match self.socket(*socket) {
                    Some(s) if s.session == *session => {}
                    _ => return Err(format!("client lists {socket:?}, not its socket")),
                }
            }
        }
        for (index, s) in &self.sockets {
            let id = SocketId {
                index: index as u32,
                generation: s.generation,
            };
            let listed = self
                .clients
                .get(&s.session)
                .is_some_and(|c| c.sockets.contains(&id));
            if !listed && s.state != SocketState::Disconnecting {
                return Err(format!("{id:?} belongs to no client"));
            }
            let namespace = &self.namespaces[s.nsp.0 as usize];
            if (s.state == SocketState::Connected) != namespace.sockets.contains(&id) {
                return Err(format!(
                    "{id:?} in state {:?} and namespace list disagree",
                    s.state
                ));
            }
            for room in &s.rooms {
                if !namespace.rooms.get(room).is_some_and(|m| m.contains(&id)) {
                    return Err(format!("{id:?} thinks it is in {room}"));
                }
            }
            for ack in &s.acks {
                let key = AckId {
                    nsp: s.nsp,
                    id: *ack,
                };
                if !self.acks.get(&key).is_some_and(|r| r.waiting.contains(&id)) {
                    return Err(format!("{id:?} owes {key:?}, which does not wait for it"));
                }
            }
        }
        for namespace in &self.namespaces {
            for (room, members) in &namespace.rooms {
                if members.is_empty() {
                    return Err(format!("empty room {room} kept"));
                }
                for member in members {
                    if !self.socket(*member).is_some_and(|s| s.rooms.contains(room)) {
                        return Err(format!("{room} lists {member:?}, not in it"));
                    }
                }
            }
        }
        for (ack, request) in &self.acks {
            for socket in &request.waiting {
                if !self
                    .socket(*socket)
                    .is_some_and(|s| s.acks.contains(&ack.id))
                {
                    return Err(format!(
                        "{ack:?} waits for {socket:?}, which does not owe it"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Counts of everything the server holds.
    #[doc(hidden)]
    pub fn census(&self) -> Census {
        Census {
            sessions: self.engine.session_count(),
            clients: self.clients.len(),
            sockets: self.sockets.len(),
            room_members: self
                .namespaces
                .iter()
                .flat_map(|n| n.rooms.values())
                .map(BTreeSet::len)
                .sum(),
            acks: self.acks.len(),
            timers: self.timers.len() + usize::from(self.engine.poll_timeout().is_some()),
            kept_sessions: self.recovery.as_ref().map_or(0, |r| r.sizes().0),
            logged_packets: self.recovery.as_ref().map_or(0, |r| r.sizes().1),
        }
    }
}

#[cfg(test)]
mod tests;
