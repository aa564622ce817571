//! The Engine.IO v4 server as a sans-IO state machine.
//!
//! [`Engine`] owns every session: long-polling with parked GETs, WebSocket, the upgrade from one to
//! the other, heartbeats and every refusal of the reference server. It reads no clock and does no
//! I/O: the caller feeds it requests, frames and the current time, and drains what it has to send.
//!
//! # The drain contract
//!
//! After every call that takes input (`handle_*`, [`Engine::send`], [`Engine::close`]), drain
//! [`Engine::poll_transmit`] and [`Engine::poll_event`] until both return `None`, then call
//! [`Engine::handle_timeout`] no later than [`Engine::poll_timeout`]. Spurious timeouts are harmless.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sio_core::engine::{Engine, EngineConfig, RequestId, Transmit};
//!
//! let now = Instant::now();
//! let mut engine = Engine::new(EngineConfig::default(), now);
//! let request = http::Request::get("/socket.io/?EIO=4&transport=polling").body(()).unwrap();
//! let (head, _) = request.into_parts();
//! engine.handle_request(now, RequestId(1), &head, None);
//! let Some(Transmit::Response { response, .. }) = engine.poll_transmit() else { panic!() };
//! assert!(response.body().starts_with(b"0{\"sid\":\""));
//! assert_eq!(engine.poll_timeout(), Some(now + Duration::from_secs(25)));
//! ```

pub mod config;
pub mod http;
pub mod packet;
pub mod payload;
mod session;
pub mod sid;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use ::http::request::Parts;
use ::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use bytes::Bytes;
use bytestring::ByteString;
use slab::Slab;

pub use self::config::{
    CookieConfig, CorsConfig, CorsOrigin, EngineConfig, HeadersHook, IdHook, Transport, Transports,
};
pub use self::http::ErrorCode;
use self::http::Query;
pub use self::packet::{DecodeError, Frame, Message, Packet};
use self::session::{Session, TimerKind, Upgrade};
use self::sid::IdGenerator;
pub use self::sid::Sid;
use crate::IdMap;

/// Names one HTTP request, and after a 101 the WebSocket it became. Chosen by the caller; it must be
/// unique among the requests and WebSockets in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Names a session. A stale id never reaches a newer session that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    index: u32,
    generation: u32,
}

/// The first request of a session, kept as compact owned values (no HTTP buffer outlives its
/// request).
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Path and query of the request.
    pub uri: Uri,
    /// Its headers.
    pub headers: HeaderMap,
    /// The peer's address, when the caller knows it.
    pub remote_addr: Option<SocketAddr>,
    /// The transport the session opened with.
    pub transport: Transport,
}

/// Why a session closed, with the reference's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed the connection or sent a `close` packet.
    TransportClose,
    /// A transport failed or broke the protocol (see the description).
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// A packet could not be decoded.
    ParseError,
    /// The server closed the session.
    ForcedClose,
}

impl CloseReason {
    /// The reference's string for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the application learns from the engine.
#[derive(Debug)]
pub enum EngineEvent {
    /// A session opened.
    Open {
        /// The new session.
        session: SessionId,
        /// Its first request.
        handshake: Box<Handshake>,
    },
    /// A message arrived.
    Message {
        /// The session it arrived on.
        session: SessionId,
        /// The data.
        message: Message,
    },
    /// The session moved from polling to WebSocket.
    Upgrade {
        /// The session.
        session: SessionId,
    },
    /// A handshake waits for the application's word ([`EngineConfig::allow_request`]): answer
    /// with [`Engine::allow_request`].
    AllowRequest {
        /// The request.
        request: RequestId,
        /// What the request carried.
        handshake: Box<Handshake>,
    },
    /// A request was refused with an Engine.IO error (`connection_error` in the reference).
    ConnectionError {
        /// The error code (0 to 5).
        code: ErrorCode,
        /// The message sent to the client.
        message: String,
        /// What went wrong, when the reference names it (`TRANSPORT_MISMATCH`, ...).
        context: &'static str,
    },
    /// The session closed; its id is dead from now on.
    Close {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
        /// Details of a transport error, empty otherwise.
        description: &'static str,
    },
}

/// What the caller must send.
#[derive(Debug)]
pub enum Transmit {
    /// Answer an HTTP request.
    Response {
        /// The request.
        request: RequestId,
        /// The response; the caller adds `Content-Length`. Boxed, as the rarer and larger
        /// variants are: every frame of every socket is a `Transmit` moved through a queue.
        response: Box<Response<Bytes>>,
    },
    /// Read the body of this POST, at most `limit` bytes, and pass it to
    /// [`Engine::handle_request_body`].
    ReadBody {
        /// The request.
        request: RequestId,
        /// The largest body accepted.
        limit: usize,
    },
    /// Drop this request's connection without an answer (the reference destroys it).
    Abort {
        /// The request.
        request: RequestId,
    },
    /// Accept this WebSocket upgrade with a 101 (the caller derives `Sec-WebSocket-Accept`), then
    /// call [`Engine::handle_ws_open`].
    AcceptWebSocket {
        /// The request.
        request: RequestId,
        /// Extra headers for the 101.
        headers: Box<HeaderMap>,
    },
    /// Send a frame on a WebSocket.
    Frame {
        /// The WebSocket.
        request: RequestId,
        /// The frame.
        frame: Frame,
    },
    /// Close a WebSocket.
    CloseWebSocket {
        /// The WebSocket.
        request: RequestId,
    },
}

/// The body of a POST could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit of [`Transmit::ReadBody`].
    TooLarge,
}

/// A message could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The session is closed (or never existed).
    UnknownSession,
    /// The session is closing.
    Closing,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::UnknownSession => "unknown session",
            SendError::Closing => "session is closing",
        })
    }
}

impl std::error::Error for SendError {}

/// What a request in flight is to the engine.
#[derive(Debug)]
enum Role {
    /// A parked long-polling GET.
    Poll(SessionId),
    /// A POST waiting for its body.
    Post(SessionId),
    /// An accepted WebSocket that will open a new session with this id.
    WsHandshake(Box<Handshake>, Sid),
    /// An accepted WebSocket that will try to upgrade the session with this id.
    WsUpgradePending(Sid),
    /// An accepted WebSocket that is closed as soon as it opens.
    WsReject,
    /// A handshake waiting for the application's word.
    AwaitingApproval(Box<PendingHandshake>),
    /// A WebSocket upgrading a session.
    WsUpgrade(SessionId),
    /// The WebSocket carrying a session.
    WebSocket(SessionId),
}

/// A handshake held while the application decides.
#[derive(Debug)]
struct PendingHandshake {
    handshake: Box<Handshake>,
    upgrade: bool,
    eio: Option<String>,
    ws_error: Option<&'static str>,
}

/// The Engine.IO server state machine. See the [module docs](self) for the drain contract.
pub struct Engine {
    config: EngineConfig,
    ids: IdGenerator,
    sessions: Slab<Session>,
    next_generation: u32,
    by_sid: HashMap<Sid, SessionId>,
    requests: IdMap<RequestId, Role>,
    timers: BTreeSet<(Instant, SessionId, TimerKind)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EngineEvent>,
    /// Polling sessions with packets for a parked GET, flushed in this order.
    dirty: Vec<SessionId>,
    /// Headers to add to a request's response (CORS, the cookie), until it is answered.
    extra_headers: IdMap<RequestId, HeaderMap>,
    /// The open packet's JSON after the sid, for a session that may not upgrade (0) and one that
    /// may (1): the same for every session, so formatted once rather than per handshake.
    open_tails: [Box<str>; 2],
}

impl Engine {
    /// A server with `config`, starting at `now`.
    pub fn new(mut config: EngineConfig, now: Instant) -> Engine {
        let _ = now;
        if config.add_trailing_slash && !config.path.ends_with('/') {
            config.path.push('/');
        }
        let open_tail = |upgrades: &str| {
            format!(
                "\",\"upgrades\":{upgrades},\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
                config.ping_interval.as_millis(),
                config.ping_timeout.as_millis(),
                config.max_http_buffer_size,
            )
            .into_boxed_str()
        };
        let open_tails = [open_tail("[]"), open_tail("[\"websocket\"]")];
        Engine {
            open_tails,
            ids: IdGenerator::new(config.rng_seed),
            config,
            sessions: Slab::new(),
            next_generation: 0,
            by_sid: HashMap::new(),
            requests: IdMap::default(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            extra_headers: IdMap::default(),
        }
    }

    /// Turns on or off asking the application before each handshake.
    pub fn set_allow_request(&mut self, ask: bool) {
        self.config.allow_request = ask;
    }

    /// Sets the hook that makes session ids (`None`: the built-in generator).
    pub fn set_generate_id(&mut self, hook: Option<IdHook>) {
        self.config.generate_id = hook;
    }

    /// Sets the hook that adds headers to the responses of sessions.
    pub fn set_headers_hook(&mut self, hook: Option<HeadersHook>) {
        self.config.headers = hook;
    }

    /// Lets the application's hook add headers to the response of `request`.
    fn hook_headers(&mut self, request: RequestId, request_headers: &HeaderMap, initial: bool) {
        if let Some(hook) = self.config.headers.clone() {
            let mut headers = HeaderMap::new();
            (hook.0)(&mut headers, request_headers, initial);
            self.add_headers(request, headers);
        }
    }

    /// The application's word on a handshake announced by [`EngineEvent::AllowRequest`]: `Err`
    /// refuses it with 403, code 4 and the message.
    pub fn allow_request(&mut self, now: Instant, request: RequestId, verdict: Result<(), String>) {
        let Some(Role::AwaitingApproval(_)) = self.requests.get(&request) else {
            return;
        };
        let Some(Role::AwaitingApproval(pending)) = self.requests.remove(&request) else {
            return;
        };
        match verdict {
            Err(message) => {
                let message = if message.is_empty() {
                    ErrorCode::Forbidden.message().to_owned()
                } else {
                    message
                };
                self.refuse(
                    request,
                    pending.upgrade,
                    ErrorCode::Forbidden,
                    Some(&message),
                    "",
                );
            }
            Ok(()) => self.handshake(now, request, *pending),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether a request for `path` is for this server (prefix match on the configured path).
    pub fn accepts(&self, path: &str) -> bool {
        path.starts_with(&self.config.path)
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The id of a session, if it is open.
    pub fn sid(&self, session: SessionId) -> Option<Sid> {
        self.session(session).map(|s| s.sid)
    }

    /// The current transport of a session, if it is open.
    pub fn transport(&self, session: SessionId) -> Option<Transport> {
        self.session(session).map(|s| s.transport)
    }

    /// Whether a packet queued now leaves at once: a poll is parked, or the session is on WebSocket.
    /// Volatile packets are dropped otherwise.
    pub fn is_writable(&self, session: SessionId) -> bool {
        self.session(session).is_some_and(|s| {
            !s.closing
                && match s.transport {
                    Transport::Polling => s.get.is_some() && s.upgrade.is_none(),
                    Transport::WebSocket => s.ws.is_some(),
                }
        })
    }

    /// The next outgoing item.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.dirty.is_empty() {
            for id in std::mem::take(&mut self.dirty) {
                if let Some(s) = self.session_mut(id) {
                    s.dirty = false;
                    self.flush(id, false);
                }
            }
        }
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// Queues a message for a session.
    pub fn send(&mut self, session: SessionId, message: Message) -> Result<(), SendError> {
        let frame = match message {
            Message::Text(text) => Frame::text_message(&text),
            Message::Binary(data) => Frame::Binary(data),
        };
        self.send_frame(session, frame)
    }

    /// Queues an already encoded message packet, e.g. one encoded once for many sessions.
    pub fn send_frame(&mut self, session: SessionId, frame: Frame) -> Result<(), SendError> {
        let s = self.session(session).ok_or(SendError::UnknownSession)?;
        if s.closing {
            return Err(SendError::Closing);
        }
        self.queue(session, frame);
        let over = self
            .session(session)
            .is_some_and(|s| s.buffered_bytes > self.config.max_buffered_bytes);
        if over {
            self.close_session(
                session,
                CloseReason::TransportError,
                "write buffer full",
                false,
            );
        }
        Ok(())
    }

    /// Closes a session from the server side (`forced close`): what is queued still reaches the
    /// client, then the `close` packet.
    pub fn close(&mut self, now: Instant, session: SessionId) {
        let Some(s) = self.session_mut(session) else {
            return;
        };
        if s.closing {
            return;
        }
        s.closing = true;
        self.cancel_upgrade(session, true);
        let Some(s) = self.session(session) else {
            return;
        };
        match s.transport {
            Transport::WebSocket => {
                self.close_session(session, CloseReason::ForcedClose, "", false);
            }
            Transport::Polling => {
                if s.get.is_some() {
                    self.flush(session, false);
                } else {
                    let at = now + self.config.close_timeout;
                    self.set_timer(session, TimerKind::Close, Some(at));
                }
            }
        }
    }

    /// Closes every session at once (`forced close`), as the reference's `engine.close()`: a parked
    /// poll gets the `close` packet, a WebSocket is closed, nothing waits for the next poll.
    pub fn close_all(&mut self, now: Instant) {
        let _ = now;
        let sessions: Vec<SessionId> = self
            .sessions
            .iter()
            .map(|(index, s)| SessionId {
                index: index as u32,
                generation: s.generation,
            })
            .collect();
        for session in sessions {
            self.close_session(session, CloseReason::ForcedClose, "", false);
        }
    }

    /// An HTTP request arrived (its body, for a POST, is asked for with [`Transmit::ReadBody`]).
    pub fn handle_request(
        &mut self,
        now: Instant,
        request: RequestId,
        head: &Parts,
        remote_addr: Option<SocketAddr>,
    ) {
        if !self.accepts(head.uri.path()) {
            self.respond(request, self::http::empty_response(StatusCode::NOT_FOUND));
            return;
        }
        if let Some(cors) = &self.config.cors {
            // The reference's `cors` middleware answers preflights before any Engine.IO logic.
            if head.method == Method::OPTIONS {
                let headers = self::http::cors_headers(cors, &head.headers, true);
                let mut response = self::http::empty_response(StatusCode::NO_CONTENT);
                *response.headers_mut() = headers;
                self.respond(request, response);
                return;
            }
            let headers = self::http::cors_headers(cors, &head.headers, false);
            self.add_headers(request, headers);
        }
        let query = Query::parse(head.uri.query());
        let upgrade = self::http::is_upgrade(&head.headers);
        let refuse = |engine: &mut Engine, code: ErrorCode, context: &'static str| {
            engine.refuse(request, upgrade, code, None, context);
        };

        let Some(transport) = query
            .transport
            .as_deref()
            .and_then(Transport::parse)
            .filter(|t| self.config.transports.contains(*t))
        else {
            return refuse(self, ErrorCode::UnknownTransport, "");
        };
        if self::http::origin_is_invalid(&head.headers) {
            return refuse(self, ErrorCode::BadRequest, "INVALID_ORIGIN");
        }

        if let Some(sid) = query.sid.as_deref() {
            // A malformed id is an unknown id: it never opens a session.
            let Some(session) = Sid::parse(sid).and_then(|sid| self.by_sid.get(&sid).copied())
            else {
                return refuse(self, ErrorCode::UnknownSid, "");
            };
            let current = self.session(session).map(|s| s.transport);
            if !upgrade && current != Some(transport) {
                return refuse(self, ErrorCode::BadRequest, "TRANSPORT_MISMATCH");
            }
            if query.eio.as_deref() != Some("4") {
                return refuse(self, ErrorCode::BadRequest, "PROTOCOL_MISMATCH");
            }
            if upgrade {
                if let Some(message) =
                    self::http::websocket_handshake_error(&head.method, &head.headers)
                {
                    self.respond(request, self::http::upgrade_error_response(message));
                    return;
                }
                let role = match (transport, self.sid(session)) {
                    (Transport::WebSocket, Some(sid)) => Role::WsUpgradePending(sid),
                    _ => Role::WsReject,
                };
                self.hook_headers(request, &head.headers, false);
                self.accept_websocket(request, role);
                return;
            }
            self.hook_headers(request, &head.headers, false);
            match head.method {
                Method::GET => self.on_poll(request, session),
                Method::POST => self.on_post(request, session, &head.headers),
                _ => self.respond(
                    request,
                    self::http::empty_response(StatusCode::INTERNAL_SERVER_ERROR),
                ),
            }
            return;
        }

        if head.method != Method::GET {
            return refuse(self, ErrorCode::BadHandshakeMethod, "");
        }
        if transport == Transport::WebSocket && !upgrade {
            return refuse(self, ErrorCode::BadRequest, "TRANSPORT_HANDSHAKE_ERROR");
        }
        let pending = PendingHandshake {
            handshake: Box::new(Handshake {
                uri: copy_uri(&head.uri),
                headers: copy_headers(&head.headers),
                remote_addr,
                transport,
            }),
            upgrade,
            eio: query.eio.map(Cow::into_owned),
            ws_error: upgrade
                .then(|| self::http::websocket_handshake_error(&head.method, &head.headers))
                .flatten(),
        };
        if self.config.allow_request {
            // As in the reference, the application is asked before the protocol version check.
            self.events.push_back(EngineEvent::AllowRequest {
                request,
                handshake: pending.handshake.clone(),
            });
            self.requests
                .insert(request, Role::AwaitingApproval(Box::new(pending)));
            return;
        }
        self.handshake(now, request, pending);
    }

    /// Opens a session for an allowed handshake (or refuses it for its protocol version).
    fn handshake(&mut self, now: Instant, request: RequestId, pending: PendingHandshake) {
        if pending.eio.as_deref() != Some("4") {
            return self.refuse(
                request,
                pending.upgrade,
                ErrorCode::UnsupportedProtocolVersion,
                None,
                "",
            );
        }
        let transport = pending.handshake.transport;
        if pending.upgrade {
            if let Some(message) = pending.ws_error {
                self.respond(request, self::http::upgrade_error_response(message));
                return;
            }
        }
        let Some(sid) = self.new_sid(&pending.handshake) else {
            return self.refuse(
                request,
                pending.upgrade,
                ErrorCode::BadRequest,
                None,
                "ID_GENERATION_ERROR",
            );
        };
        self.hook_headers(request, &pending.handshake.headers, true);
        if pending.upgrade {
            let role = match transport {
                Transport::WebSocket => Role::WsHandshake(pending.handshake, sid),
                Transport::Polling => Role::WsReject,
            };
            self.accept_websocket(request, role);
            return;
        }
        let session = self.open_session(now, request, Transport::Polling, pending.handshake, sid);
        self.flush(session, false);
    }

    /// A fresh session id: the application's, or from the generator.
    fn new_sid(&mut self, handshake: &Handshake) -> Option<Sid> {
        if let Some(hook) = &self.config.generate_id {
            let sid = (hook.0)(handshake).ok().and_then(|id| Sid::parse(&id))?;
            return (!self.by_sid.contains_key(&sid)).then_some(sid);
        }
        let mut sid = self.ids.next_sid();
        // Ids are random; a collision with a live session is astronomically unlikely but cheap to
        // rule out.
        while self.by_sid.contains_key(&sid) {
            sid = self.ids.next_sid();
        }
        Some(sid)
    }

    /// The body of a POST that the engine asked for with [`Transmit::ReadBody`].
    pub fn handle_request_body(
        &mut self,
        now: Instant,
        request: RequestId,
        body: Result<Bytes, BodyError>,
    ) {
        let Some(Role::Post(session)) = self.requests.get(&request) else {
            return;
        };
        let session = *session;
        let body = match body {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                self.requests.remove(&request);
                if let Some(s) = self.session_mut(session) {
                    s.post = None;
                }
                self.respond(
                    request,
                    self::http::empty_response(StatusCode::PAYLOAD_TOO_LARGE),
                );
                return;
            }
        };
        // Node reads the body as UTF-8 text, replacing invalid sequences.
        let text = match ByteString::try_from(body.clone()) {
            Ok(text) => text,
            Err(_) => ByteString::from(String::from_utf8_lossy(&body).into_owned()),
        };
        let mut closed_by_client = false;
        for packet in self::payload::decode_payload(&text) {
            match packet {
                Ok(Packet::Close) => {
                    closed_by_client = true;
                    self.close_session(session, CloseReason::TransportClose, "", true);
                    break;
                }
                Ok(packet) => self.on_packet(now, session, packet),
                Err(DecodeError) => {
                    self.close_session(session, CloseReason::ParseError, "", false);
                    break;
                }
            }
            if self.session(session).is_none() {
                break;
            }
        }
        if self.session(session).is_some() || closed_by_client {
            self.requests.remove(&request);
            if let Some(s) = self.session_mut(session) {
                s.post = None;
            }
            self.respond(request, self::http::post_ok_response());
        }
    }

    /// The client went away from a request or WebSocket before the engine was done with it.
    pub fn handle_closed(&mut self, now: Instant, request: RequestId) {
        let _ = now;
        self.end_request(request, None);
    }

    /// Reading a WebSocket failed (protocol violation, message over the limit, I/O error).
    pub fn handle_ws_error(&mut self, now: Instant, request: RequestId, description: &'static str) {
        let _ = now;
        self.end_request(request, Some(description));
    }

    /// The WebSocket accepted with [`Transmit::AcceptWebSocket`] is open.
    pub fn handle_ws_open(&mut self, now: Instant, request: RequestId) {
        let Some(role) = self.requests.remove(&request) else {
            return;
        };
        match role {
            Role::WsHandshake(handshake, sid) => {
                // A custom id taken meanwhile: the session cannot open.
                if self.by_sid.contains_key(&sid) {
                    self.transmits
                        .push_back(Transmit::CloseWebSocket { request });
                    return;
                }
                self.open_session(now, request, Transport::WebSocket, handshake, sid);
            }
            Role::WsUpgradePending(sid) => {
                let usable = self.by_sid.get(&sid).copied().filter(|id| {
                    self.session(*id).is_some_and(|s| {
                        s.transport == Transport::Polling
                            && s.upgrade.is_none()
                            && !s.upgraded
                            && !s.closing
                    })
                });
                let Some(session) = usable else {
                    self.transmits
                        .push_back(Transmit::CloseWebSocket { request });
                    return;
                };
                if let Some(s) = self.session_mut(session) {
                    s.upgrade = Some(Upgrade {
                        ws: request,
                        probed: false,
                    });
                }
                self.requests.insert(request, Role::WsUpgrade(session));
                let at = now + self.config.upgrade_timeout;
                self.set_timer(session, TimerKind::Upgrade, Some(at));
            }
            Role::WsReject => {
                self.transmits
                    .push_back(Transmit::CloseWebSocket { request });
            }
            other => {
                self.requests.insert(request, other);
            }
        }
    }

    /// A frame arrived on a WebSocket.
    pub fn handle_ws_frame(&mut self, now: Instant, request: RequestId, frame: Frame) {
        match self.requests.get(&request) {
            Some(Role::WebSocket(session)) => {
                let session = *session;
                match Packet::decode_frame(&frame) {
                    Ok(Packet::Close) => {
                        self.close_session(session, CloseReason::TransportClose, "", true)
                    }
                    Ok(packet) => self.on_packet(now, session, packet),
                    Err(DecodeError) => {
                        self.close_session(session, CloseReason::ParseError, "", false)
                    }
                }
            }
            Some(Role::WsUpgrade(session)) => {
                let session = *session;
                self.on_upgrade_frame(session, request, &frame);
            }
            _ => {}
        }
    }

    /// Time passed: fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, session, kind)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(s) = self.session_mut(session) {
                s.timers[kind as usize] = None;
            }
            match kind {
                TimerKind::Ping => self.send_ping(now, session),
                TimerKind::PingTimeout => {
                    self.close_session(session, CloseReason::PingTimeout, "", false)
                }
                TimerKind::Upgrade => self.cancel_upgrade(session, true),
                TimerKind::Close => {
                    self.close_session(session, CloseReason::ForcedClose, "", false)
                }
            }
        }
    }

    fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }

    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.sessions
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }

    fn respond(&mut self, request: RequestId, mut response: Response<Bytes>) {
        if let Some(extra) = self.extra_headers.remove(&request) {
            for (name, value) in &extra {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        self.transmits.push_back(Transmit::Response {
            request,
            response: Box::new(response),
        });
    }

    /// Adds headers to the eventual response of `request`.
    fn add_headers(&mut self, request: RequestId, headers: HeaderMap) {
        if headers.is_empty() {
            return;
        }
        let entry = self.extra_headers.entry(request).or_default();
        for (name, value) in &headers {
            entry.append(name.clone(), value.clone());
        }
    }

    /// Refuses a request with an Engine.IO error, as JSON (or, for an upgrade, plain text).
    fn refuse(
        &mut self,
        request: RequestId,
        upgrade: bool,
        code: ErrorCode,
        message: Option<&str>,
        context: &'static str,
    ) {
        let text = message.unwrap_or(code.message());
        let response = if upgrade {
            self::http::upgrade_error_response(text)
        } else {
            self::http::error_response(code, Some(text))
        };
        self.events.push_back(EngineEvent::ConnectionError {
            code,
            message: text.to_owned(),
            context,
        });
        self.respond(request, response);
    }

    fn accept_websocket(&mut self, request: RequestId, role: Role) {
        self.requests.insert(request, role);
        let headers = self.extra_headers.remove(&request).unwrap_or_default();
        self.transmits.push_back(Transmit::AcceptWebSocket {
            request,
            headers: Box::new(headers),
        });
    }

    /// Opens a session carried by `request`: the handshake GET or the WebSocket.
    fn open_session(
        &mut self,
        now: Instant,
        request: RequestId,
        transport: Transport,
        handshake: Box<Handshake>,
        sid: Sid,
    ) -> SessionId {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let mut session = Session::new(sid, generation, transport);
        match transport {
            Transport::Polling => session.get = Some(request),
            Transport::WebSocket => session.ws = Some(request),
        }
        let index = self.sessions.insert(session);
        let id = SessionId {
            index: index as u32,
            generation,
        };
        self.by_sid.insert(sid, id);
        let role = match transport {
            Transport::Polling => Role::Poll(id),
            Transport::WebSocket => Role::WebSocket(id),
        };
        self.requests.insert(request, role);
        let may_upgrade = transport == Transport::Polling
            && self.config.allow_upgrades
            && self.config.transports.websocket;
        // The open packet, `0` and its JSON, written straight into its frame.
        let tail = &self.open_tails[usize::from(may_upgrade)];
        let mut open = String::with_capacity(9 + sid.as_str().len() + tail.len());
        open.push_str("0{\"sid\":\"");
        open.push_str(sid.as_str());
        open.push_str(tail);
        self.queue(id, Frame::Text(ByteString::from(open)));
        if let Some(initial) = &self.config.initial_packet {
            let frame = Frame::text_message(initial);
            self.queue(id, frame);
        }
        if let (Transport::Polling, Some(cookie)) = (transport, &self.config.cookie) {
            let value = self::http::set_cookie(cookie, sid.as_str());
            if let Ok(value) = HeaderValue::from_str(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(::http::header::SET_COOKIE, value);
                self.add_headers(request, headers);
            }
        }
        let at = now + self.config.ping_interval;
        self.set_timer(id, TimerKind::Ping, Some(at));
        self.events.push_back(EngineEvent::Open {
            session: id,
            handshake,
        });
        id
    }

    /// Queues a frame: WebSocket frames leave at once, polling frames wait for a GET.
    fn queue(&mut self, id: SessionId, frame: Frame) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        match (s.transport, s.ws) {
            (Transport::WebSocket, Some(ws)) => {
                self.transmits
                    .push_back(Transmit::Frame { request: ws, frame });
            }
            _ => {
                s.buffered_bytes += frame.payload_item_len() + 1;
                s.buffer.push_back(frame);
                if !s.dirty && s.get.is_some() {
                    s.dirty = true;
                    self.dirty.push(id);
                }
            }
        }
    }

    /// Answers the parked GET with the buffered packets (and the `close` packet when the server is
    /// closing), or with a `noop` when `noop_if_empty`.
    fn flush(&mut self, id: SessionId, noop_if_empty: bool) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        let Some(get) = s.get else {
            return;
        };
        if s.buffer.is_empty() && !s.closing && !noop_if_empty {
            return;
        }
        let closing = s.closing;
        if s.buffer.is_empty() && !closing {
            s.buffer.push_back(Packet::Noop.encode());
        }
        if closing {
            s.buffer.push_back(Packet::Close.encode());
        }
        let body = self::payload::encode_payload(&s.buffer);
        s.buffer.clear();
        s.buffered_bytes = 0;
        s.get = None;
        self.requests.remove(&get);
        self.respond(get, self::http::payload_response(body));
        if closing {
            self.close_session(id, CloseReason::ForcedClose, "", false);
        }
    }

    fn on_poll(&mut self, request: RequestId, id: SessionId) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        if s.get.is_some() {
            self.close_session(
                id,
                CloseReason::TransportError,
                "overlap from client",
                false,
            );
            self.respond(request, self::http::empty_response(StatusCode::BAD_REQUEST));
            return;
        }
        s.get = Some(request);
        let probed = s.upgrade.as_ref().is_some_and(|u| u.probed);
        self.requests.insert(request, Role::Poll(id));
        self.flush(id, probed);
    }

    fn on_post(&mut self, request: RequestId, id: SessionId, headers: &HeaderMap) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        let description = if s.post.is_some() {
            "data request overlap from client"
        } else if headers
            .get(::http::header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/octet-stream")
        {
            "invalid content"
        } else {
            s.post = Some(request);
            self.requests.insert(request, Role::Post(id));
            self.transmits.push_back(Transmit::ReadBody {
                request,
                limit: self.config.max_http_buffer_size,
            });
            return;
        };
        self.close_session(id, CloseReason::TransportError, description, false);
        self.respond(request, self::http::empty_response(StatusCode::BAD_REQUEST));
    }

    /// A packet on the session's current transport.
    fn on_packet(&mut self, now: Instant, id: SessionId, packet: Packet) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        if let Packet::Pong(_) = packet {
            s.awaiting_pong = false;
            self.set_timer(id, TimerKind::PingTimeout, None);
            let at = now + self.config.ping_interval;
            self.set_timer(id, TimerKind::Ping, Some(at));
            return;
        }
        // engine.io 6.6.12: any other packet while a pong is awaited extends the timeout once, so
        // a busy client is not dropped for a pong stuck behind its own data.
        if s.awaiting_pong && !s.ping_timeout_extended {
            s.ping_timeout_extended = true;
            let at = now + self.config.ping_timeout;
            self.set_timer(id, TimerKind::PingTimeout, Some(at));
        }
        match packet {
            Packet::Ping(_) => self.close_session(
                id,
                CloseReason::TransportError,
                "invalid heartbeat direction",
                false,
            ),
            Packet::Message(message) => self.events.push_back(EngineEvent::Message {
                session: id,
                message,
            }),
            // Open, upgrade and noop mean nothing on an established transport; close is handled by
            // the transports.
            _ => {}
        }
    }

    fn on_upgrade_frame(&mut self, id: SessionId, ws: RequestId, frame: &Frame) {
        match Packet::decode_frame(frame) {
            Ok(Packet::Ping(data)) if &*data == "probe" => {
                self.transmits.push_back(Transmit::Frame {
                    request: ws,
                    frame: Packet::Pong(ByteString::from_static("probe")).encode(),
                });
                if let Some(s) = self.session_mut(id) {
                    if let Some(upgrade) = s.upgrade.as_mut() {
                        upgrade.probed = true;
                    }
                }
                // Release the parked poll so the client can pause polling and send `5`.
                self.flush(id, true);
            }
            Ok(Packet::Upgrade) => self.complete_upgrade(id, ws),
            _ => self.cancel_upgrade(id, true),
        }
    }

    fn complete_upgrade(&mut self, id: SessionId, ws: RequestId) {
        self.set_timer(id, TimerKind::Upgrade, None);
        // A poll still parked is released; the client has discarded that transport.
        self.flush(id, true);
        let Some(s) = self.session_mut(id) else {
            return;
        };
        s.upgrade = None;
        s.upgraded = true;
        s.transport = Transport::WebSocket;
        s.ws = Some(ws);
        let closing = s.closing;
        let buffered: Vec<Frame> = s.buffer.drain(..).collect();
        s.buffered_bytes = 0;
        self.requests.insert(ws, Role::WebSocket(id));
        for frame in buffered {
            self.transmits
                .push_back(Transmit::Frame { request: ws, frame });
        }
        self.events.push_back(EngineEvent::Upgrade { session: id });
        if closing {
            self.close_session(id, CloseReason::ForcedClose, "", false);
        }
    }

    /// Abandons an upgrade in progress; the session goes on with polling.
    fn cancel_upgrade(&mut self, id: SessionId, close_ws: bool) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        let Some(upgrade) = s.upgrade.take() else {
            return;
        };
        self.requests.remove(&upgrade.ws);
        self.set_timer(id, TimerKind::Upgrade, None);
        if close_ws {
            self.transmits.push_back(Transmit::CloseWebSocket {
                request: upgrade.ws,
            });
        }
    }

    fn send_ping(&mut self, now: Instant, id: SessionId) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        s.awaiting_pong = true;
        s.ping_timeout_extended = false;
        let at = now + self.config.ping_timeout;
        self.set_timer(id, TimerKind::PingTimeout, Some(at));
        self.queue(id, Packet::Ping(ByteString::new()).encode());
    }

    /// The client is gone from `request`; `error` is set when a WebSocket failed rather than closed.
    fn end_request(&mut self, request: RequestId, error: Option<&'static str>) {
        self.extra_headers.remove(&request);
        let Some(role) = self.requests.remove(&request) else {
            return;
        };
        match role {
            Role::Poll(id) => {
                if let Some(s) = self.session_mut(id) {
                    s.get = None;
                }
                self.close_session(
                    id,
                    CloseReason::TransportError,
                    "poll connection closed prematurely",
                    false,
                );
            }
            Role::Post(id) => {
                if let Some(s) = self.session_mut(id) {
                    s.post = None;
                }
                self.close_session(
                    id,
                    CloseReason::TransportError,
                    "data request connection closed prematurely",
                    false,
                );
            }
            Role::WebSocket(id) => {
                if let Some(s) = self.session_mut(id) {
                    s.ws = None;
                }
                match error {
                    Some(description) => {
                        self.close_session(id, CloseReason::TransportError, description, false)
                    }
                    None => self.close_session(id, CloseReason::TransportClose, "", false),
                }
            }
            Role::WsUpgrade(id) => {
                self.requests.insert(request, Role::WsUpgrade(id));
                self.cancel_upgrade(id, false);
            }
            Role::WsHandshake(..)
            | Role::WsUpgradePending(_)
            | Role::WsReject
            | Role::AwaitingApproval(_) => {}
        }
    }

    /// Closes a session for good and tells the application. `by_client_close` is set when the client
    /// sent `close`: a parked poll then gets `noop` instead of `close`.
    fn close_session(
        &mut self,
        id: SessionId,
        reason: CloseReason,
        description: &'static str,
        by_client_close: bool,
    ) {
        self.cancel_upgrade(id, true);
        if self.session(id).is_none() {
            return;
        }
        let s = self.sessions.remove(id.index as usize);
        self.by_sid.remove(&s.sid);
        for (kind, at) in s.timers.iter().enumerate() {
            if let Some(at) = at {
                self.timers.remove(&(*at, id, timer_kind(kind)));
            }
        }
        if let Some(get) = s.get {
            self.requests.remove(&get);
            let last = if by_client_close {
                Packet::Noop
            } else {
                Packet::Close
            };
            let body = self::payload::encode_payload(&[last.encode()]);
            self.respond(get, self::http::payload_response(body));
        }
        if let Some(post) = s.post {
            // The reference destroys a POST still being processed, except when it carried the
            // client's own `close`.
            if !by_client_close {
                self.requests.remove(&post);
                self.extra_headers.remove(&post);
                self.transmits.push_back(Transmit::Abort { request: post });
            }
        }
        if let Some(ws) = s.ws {
            if self.requests.remove(&ws).is_some() {
                self.transmits
                    .push_back(Transmit::CloseWebSocket { request: ws });
            }
        }
        self.events.push_back(EngineEvent::Close {
            session: id,
            reason,
            description,
        });
    }

    fn set_timer(&mut self, id: SessionId, kind: TimerKind, at: Option<Instant>) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut s.timers[kind as usize], at);
        if let Some(old) = old {
            self.timers.remove(&(old, id, kind));
        }
        if let Some(at) = at {
            self.timers.insert((at, id, kind));
        }
    }
}

impl Engine {
    /// Checks the engine's internal consistency (for tests and the simulation): every request in
    /// flight belongs to the session that points back at it, at most one poll is parked per
    /// session, and every armed timer is in the timer table.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut armed = 0;
        for (index, s) in &self.sessions {
            let id = SessionId {
                index: index as u32,
                generation: s.generation,
            };
            if self.by_sid.get(&s.sid) != Some(&id) {
                return Err(format!("{id:?} is not indexed by its sid"));
            }
            let owned = [
                (s.get, "poll"),
                (s.post, "post"),
                (s.ws, "websocket"),
                (s.upgrade.as_ref().map(|u| u.ws), "upgrade"),
            ];
            for (request, what) in owned {
                let Some(request) = request else { continue };
                let back = match self.requests.get(&request) {
                    Some(Role::Poll(r))
                    | Some(Role::Post(r))
                    | Some(Role::WebSocket(r))
                    | Some(Role::WsUpgrade(r)) => Some(*r),
                    _ => None,
                };
                if back != Some(id) {
                    return Err(format!(
                        "{id:?}'s {what} {request:?} is not in the request table"
                    ));
                }
            }
            for (kind, at) in s.timers.iter().enumerate() {
                if let Some(at) = at {
                    armed += 1;
                    if !self.timers.contains(&(*at, id, timer_kind(kind))) {
                        return Err(format!("{id:?} timer {kind} is not in the timer table"));
                    }
                }
            }
        }
        if armed != self.timers.len() {
            return Err(format!(
                "{} timers armed, {} in the table",
                armed,
                self.timers.len()
            ));
        }
        if self.by_sid.len() != self.sessions.len() {
            return Err("stale sid index".into());
        }
        let mut polls = std::collections::HashSet::new();
        for (request, role) in &self.requests {
            let (id, field) = match role {
                Role::Poll(id) => (*id, self.session(*id).map(|s| s.get)),
                Role::Post(id) => (*id, self.session(*id).map(|s| s.post)),
                Role::WebSocket(id) => (*id, self.session(*id).map(|s| s.ws)),
                Role::WsUpgrade(id) => (
                    *id,
                    self.session(*id).map(|s| s.upgrade.as_ref().map(|u| u.ws)),
                ),
                _ => continue,
            };
            if field != Some(Some(*request)) {
                return Err(format!(
                    "{request:?} points at {id:?}, which does not own it"
                ));
            }
            if matches!(role, Role::Poll(_)) && !polls.insert(id) {
                return Err(format!("two parked polls for {id:?}"));
            }
        }
        Ok(())
    }
}

fn timer_kind(index: usize) -> TimerKind {
    match index {
        0 => TimerKind::Ping,
        1 => TimerKind::PingTimeout,
        2 => TimerKind::Upgrade,
        _ => TimerKind::Close,
    }
}

/// Copies a URI into a fresh allocation so it pins no buffer of the HTTP server.
fn copy_uri(uri: &Uri) -> Uri {
    let s = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    Uri::try_from(s).unwrap_or_default()
}

/// Copies headers into a fresh allocation so they pin no buffer of the HTTP server: one buffer
/// for all the values, which the copies share, rather than one allocation each.
fn copy_headers(headers: &HeaderMap) -> HeaderMap {
    let mut values = Vec::with_capacity(headers.values().map(|v| v.len()).sum());
    for value in headers.values() {
        values.extend_from_slice(value.as_bytes());
    }
    let values = Bytes::from(values);
    let mut out = HeaderMap::with_capacity(headers.len());
    let mut start = 0;
    for (name, value) in headers {
        let end = start + value.len();
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(values.slice(start..end)) {
            copy.set_sensitive(value.is_sensitive());
            out.append(name.clone(), copy);
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests;
