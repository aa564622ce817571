//! Deterministic simulation of the Socket.IO server: seeded runs of scripted clients (polling,
//! WebSocket, upgrade, two namespaces, rooms, acks both ways, binary, reconnects) over a simulated
//! network that delays messages, reorders independent HTTP requests, drops connections and stalls
//! readers, all in virtual time. After every step the server's invariants are checked; packets to a
//! socket must arrive in order and at most once (exactly once while the connection lives); every
//! server ack must end exactly once; once everyone left and the timeouts passed, nothing remains.
//!
//! A failure prints its seed; `SIO_SEED=<seed> cargo test -p sio-core --test simulation` replays it.
//! `SIO_SEEDS=<n>` sets how many seeds run (default 2000).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::{Value, json};
use sio_core::engine::{BodyError, EngineConfig, Frame, RequestId, Transmit};
use sio_core::socket::{
    AckId, AckOutcome, EmitOptions, Event, Payload, Server, ServerConfig, SocketId, Target,
};

/// SplitMix64: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Polling,
    WebSocket,
    Upgrade,
}

/// What travels from a client to the server.
#[derive(Debug)]
enum Up {
    Get(RequestId, String),
    Post(RequestId, String, String),
    WsRequest(RequestId, String),
    WsOpen(RequestId),
    WsFrame(RequestId, Frame),
    Closed(RequestId),
}

/// What travels from the server to a client.
#[derive(Debug)]
enum Down {
    Response(RequestId, u16, String),
    Accept(RequestId),
    Frame(RequestId, Frame),
    Close(RequestId),
}

#[derive(Default)]
struct Client {
    mode: Option<Mode>,
    dead: bool,
    stalled: bool,
    sid: Option<String>,
    get: Option<RequestId>,
    post: Option<RequestId>,
    ws: Option<RequestId>,
    /// The upgrade WebSocket while probing.
    probe: Option<RequestId>,
    /// `3probe` came: switch once the poll and the post in flight are done.
    probed: bool,
    on_ws: bool,
    outbox: Vec<String>,
    /// Namespace → connected (or waiting for the answer).
    nsps: BTreeMap<String, bool>,
    /// Per namespace: the next sequence number expected from the server.
    next_seq: HashMap<String, u64>,
    /// Per namespace: broadcast ids seen, to catch duplicates and reordering.
    last_broadcast: HashMap<String, u64>,
    pending_binary: Option<(String, usize, Vec<Bytes>)>,
}

/// What a run exercised, so that a harness that stopped exercising something is noticed.
#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    upgrades: u64,
    seq_received: u64,
    broadcasts_received: u64,
    binary_events: u64,
    acks_complete: u64,
    acks_timed_out: u64,
    acks_disconnected: u64,
    refused: u64,
    deaths: u64,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.upgrades += o.upgrades;
        self.seq_received += o.seq_received;
        self.broadcasts_received += o.broadcasts_received;
        self.binary_events += o.binary_events;
        self.acks_complete += o.acks_complete;
        self.acks_timed_out += o.acks_timed_out;
        self.acks_disconnected += o.acks_disconnected;
        self.refused += o.refused;
        self.deaths += o.deaths;
    }
}

struct Sim {
    rng: Rng,
    seed: u64,
    now: Instant,
    server: Server,
    clients: Vec<Client>,
    /// In flight, by delivery time (ties by insertion order).
    network: BTreeMap<(Instant, u64), (usize, Result<Up, Down>)>,
    sequence: u64,
    /// Last delivery time per WebSocket, so its frames stay in order.
    ws_clock: HashMap<RequestId, Instant>,
    owner: HashMap<RequestId, usize>,
    next_request: u64,
    /// Server side: per socket, the next sequence number to send, and its client and namespace.
    sockets: HashMap<SocketId, (u64, String)>,
    acks: HashMap<AckId, bool>,
    broadcasts: u64,
    stats: Stats,
    /// POST bodies, handed over when the server asks for them.
    bodies: HashMap<RequestId, Vec<u8>>,
    log: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        #[allow(clippy::disallowed_methods)] // the simulation's epoch
        let now = Instant::now();
        let config = ServerConfig {
            engine: EngineConfig {
                ping_interval: Duration::from_millis(300),
                ping_timeout: Duration::from_millis(200),
                upgrade_timeout: Duration::from_millis(500),
                close_timeout: Duration::from_millis(1000),
                rng_seed: Some([seed as u8; 32]),
                ..EngineConfig::default()
            },
            connect_timeout: Duration::from_millis(800),
            // Every other seed keeps sessions and logs packets for recovery.
            connection_state_recovery: (seed % 2 == 1).then(|| sio_core::socket::RecoveryConfig {
                max_disconnection_duration: Duration::from_secs(5),
                max_packets: 50,
                ..Default::default()
            }),
            ..ServerConfig::default()
        };
        let mut server = Server::new(config, now);
        server.namespace("/a");
        Sim {
            rng: Rng(seed),
            seed,
            now,
            server,
            clients: Vec::new(),
            network: BTreeMap::new(),
            sequence: 0,
            ws_clock: HashMap::new(),
            owner: HashMap::new(),
            next_request: 0,
            sockets: HashMap::new(),
            acks: HashMap::new(),
            broadcasts: 0,
            bodies: HashMap::new(),
            stats: Stats::default(),
            log: Vec::new(),
        }
    }

    fn fail(&self, what: &str) -> ! {
        let tail = self.log.len().saturating_sub(30);
        panic!(
            "seed {}: {what}\nlast steps:\n{}\nreplay: SIO_SEED={} cargo test -p sio-core --test simulation",
            self.seed,
            self.log[tail..].join("\n"),
            self.seed
        );
    }

    fn request_id(&mut self, client: usize) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.owner.insert(id, client);
        id
    }

    fn send(&mut self, client: usize, message: Result<Up, Down>, ws: Option<RequestId>) {
        let delay = Duration::from_millis(self.rng.below(40));
        let mut at = self.now + delay;
        if let Some(ws) = ws {
            // One TCP connection: frames keep their order.
            let last = self.ws_clock.entry(ws).or_insert(at);
            at = at.max(*last);
            *last = at;
        }
        self.sequence += 1;
        self.network.insert((at, self.sequence), (client, message));
    }

    // ---- clients ----

    fn new_client(&mut self) {
        let index = self.clients.len();
        let mode = match self.rng.below(3) {
            0 => Mode::Polling,
            1 => Mode::WebSocket,
            _ => Mode::Upgrade,
        };
        self.clients.push(Client {
            mode: Some(mode),
            ..Client::default()
        });
        let request = self.request_id(index);
        if mode == Mode::WebSocket {
            self.clients[index].ws = Some(request);
            self.clients[index].on_ws = true;
            let uri = "/socket.io/?EIO=4&transport=websocket".to_owned();
            self.send(index, Ok(Up::WsRequest(request, uri)), None);
        } else {
            self.clients[index].get = Some(request);
            let uri = "/socket.io/?EIO=4&transport=polling".to_owned();
            self.send(index, Ok(Up::Get(request, uri)), None);
        }
        self.log.push(format!("client {index} opens ({mode:?})"));
    }

    /// Queues an Engine.IO packet from the client.
    fn client_send(&mut self, client: usize, packet: String) {
        let c = &mut self.clients[client];
        if c.dead {
            return;
        }
        if c.on_ws {
            let ws = c.ws;
            if let Some(ws) = ws {
                let frame = Frame::Text(ByteString::from(packet));
                self.send(client, Ok(Up::WsFrame(ws, frame)), Some(ws));
            }
        } else {
            c.outbox.push(packet);
            self.flush_post(client);
        }
    }

    fn flush_post(&mut self, client: usize) {
        let c = &self.clients[client];
        if c.dead || c.post.is_some() || c.outbox.is_empty() || c.on_ws {
            return;
        }
        let Some(sid) = c.sid.clone() else { return };
        let body = self.clients[client]
            .outbox
            .drain(..)
            .collect::<Vec<_>>()
            .join("\u{1e}");
        let request = self.request_id(client);
        self.clients[client].post = Some(request);
        let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        self.send(client, Ok(Up::Post(request, uri, body)), None);
    }

    fn poll(&mut self, client: usize) {
        let c = &self.clients[client];
        if c.dead || c.stalled || c.get.is_some() || c.on_ws || c.probe.is_some() {
            return;
        }
        let Some(sid) = c.sid.clone() else { return };
        let request = self.request_id(client);
        self.clients[client].get = Some(request);
        let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        self.send(client, Ok(Up::Get(request, uri)), None);
    }

    /// The network goes away under the client: the server sees its requests closed.
    fn kill(&mut self, client: usize) {
        let c = &mut self.clients[client];
        if c.dead {
            return;
        }
        c.dead = true;
        self.stats.deaths += 1;
        let requests: Vec<RequestId> = [c.get, c.post, c.ws, c.probe]
            .into_iter()
            .flatten()
            .collect();
        self.log.push(format!("client {client} dies"));
        for request in requests {
            self.send(client, Ok(Up::Closed(request)), None);
        }
    }

    fn client_action(&mut self, client: usize) {
        let c = &self.clients[client];
        if c.dead || c.sid.is_none() {
            return;
        }
        let connected: Vec<String> = c
            .nsps
            .iter()
            .filter(|(_, ok)| **ok)
            .map(|(n, _)| n.clone())
            .collect();
        let roll = self.rng.below(100);
        let nsp = if self.rng.chance(50) { "/" } else { "/a" }.to_owned();
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        match roll {
            0..=14 if !self.clients[client].nsps.contains_key(&nsp) => {
                self.clients[client].nsps.insert(nsp.clone(), false);
                self.client_send(client, format!("40{prefix}"));
            }
            15..=44 if connected.contains(&nsp) => {
                let event = ["seq", "join", "ask", "bcast"][self.rng.below(4) as usize];
                if self.rng.chance(20) {
                    // With a binary attachment.
                    self.client_send(
                        client,
                        format!("451-{prefix}[\"{event}\",{{\"_placeholder\":true,\"num\":0}}]"),
                    );
                    let packet = "bAQID".to_owned();
                    self.client_send(client, packet);
                } else {
                    self.client_send(client, format!("42{prefix}[\"{event}\"]"));
                }
            }
            45..=49 if connected.contains(&nsp) => {
                self.clients[client].nsps.remove(&nsp);
                self.clients[client].next_seq.remove(&nsp);
                self.clients[client].last_broadcast.remove(&nsp);
                self.client_send(client, format!("41{prefix}"));
            }
            50..=51 => self.kill(client),
            52..=53 => {
                self.log.push(format!("client {client} stalls"));
                self.clients[client].stalled = true;
            }
            _ => {}
        }
    }

    /// A packet arrived at the client (already split out of its payload).
    fn client_receive(&mut self, client: usize, packet: &str) {
        if self.clients[client].dead {
            return;
        }
        if let Some((nsp, count, mut parts)) = self.clients[client].pending_binary.take() {
            let data = packet
                .strip_prefix('b')
                .unwrap_or(packet)
                .as_bytes()
                .to_vec();
            parts.push(Bytes::from(data));
            if parts.len() < count {
                self.clients[client].pending_binary = Some((nsp, count, parts));
            }
            return;
        }
        match packet.as_bytes().first() {
            Some(b'0') => {
                let open: Value = serde_json::from_str(&packet[1..]).unwrap_or(Value::Null);
                self.clients[client].sid = open["sid"].as_str().map(str::to_owned);
            }
            Some(b'2') if !self.clients[client].stalled => {
                self.client_send(client, "3".into());
            }
            Some(b'3') if packet == "3probe" => {
                self.clients[client].probed = true;
                self.finish_upgrade(client);
            }
            Some(b'4') => self.client_socketio(client, &packet[1..]),
            _ => {}
        }
    }

    fn client_socketio(&mut self, client: usize, packet: &str) {
        let (kind, rest) = packet.split_at(1);
        let (nsp, rest) = match rest.strip_prefix('/') {
            Some(r) => {
                let end = r.find(',').unwrap_or(r.len());
                (format!("/{}", &r[..end]), r.get(end + 1..).unwrap_or(""))
            }
            None => ("/".to_owned(), rest),
        };
        let c = &mut self.clients[client];
        match kind {
            "0" => {
                c.nsps.insert(nsp.clone(), true);
                c.next_seq.insert(nsp, 0);
            }
            "4" => {
                c.nsps.remove(&nsp);
            }
            "1" => {
                c.nsps.remove(&nsp);
                c.next_seq.remove(&nsp);
            }
            "2" => {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let id = &rest[..digits];
                let data: Value = serde_json::from_str(&rest[digits..]).unwrap_or(Value::Null);
                match data[0].as_str() {
                    Some("seq") => {
                        let n = data[1].as_u64().unwrap_or(u64::MAX);
                        // Packets still in flight for a namespace the client left are dropped, as
                        // a real client does; a new CONNECT answer restarts the count.
                        let Some(expected) = c.next_seq.get(&nsp).copied() else {
                            return;
                        };
                        if expected != n {
                            let what =
                                format!("client {client} {nsp}: seq {n}, expected {expected}");
                            self.fail(&what);
                        }
                        c.next_seq.insert(nsp, n + 1);
                        self.stats.seq_received += 1;
                    }
                    Some("broadcast") => {
                        let n = data[1].as_u64().unwrap_or(0);
                        let last = c.last_broadcast.insert(nsp.clone(), n);
                        if last.is_some_and(|last| last >= n) {
                            self.fail(&format!(
                                "client {client} {nsp}: broadcast {n} after {last:?}"
                            ));
                        }
                        self.stats.broadcasts_received += 1;
                    }
                    // Answer most questions, some late or never.
                    Some("question") if !id.is_empty() && self.rng.chance(70) => {
                        let prefix = if nsp == "/" {
                            String::new()
                        } else {
                            format!("{nsp},")
                        };
                        self.client_send(client, format!("43{prefix}{id}[\"yes\"]"));
                    }
                    _ => {}
                }
            }
            "5" => {
                let count: usize = rest
                    .split('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                c.pending_binary = Some((nsp, count, Vec::new()));
            }
            _ => {}
        }
    }

    // ---- the server's application ----

    fn app(&mut self, event: Event) {
        match event {
            Event::Connect { socket, nsp, .. } => {
                let name = self.server.namespace_name(nsp).to_owned();
                if self.rng.chance(10) {
                    self.stats.refused += 1;
                    let _ = self
                        .server
                        .reject(self.now, socket, json!({ "message": "no" }));
                } else if self.server.accept(self.now, socket).is_ok() {
                    self.sockets.insert(socket, (0, name));
                }
            }
            Event::Message {
                socket,
                event,
                args,
                ..
            } => {
                let Some(nsp) = self.server.socket_nsp(socket) else {
                    return;
                };
                if !args.attachments.is_empty() {
                    self.stats.binary_events += 1;
                }
                match event.as_str() {
                    "seq" => self.emit_seq(socket),
                    "join" => self.server.join(socket, "room"),
                    "ask" => {
                        let options = EmitOptions {
                            ack: Some(Some(Duration::from_millis(self.rng.below(300) + 1))),
                            ..EmitOptions::default()
                        };
                        let target = Target::Socket(socket);
                        if let Ok(Some(ack)) = self.server.emit(
                            self.now,
                            &target,
                            "question",
                            &Payload::default(),
                            options,
                        ) {
                            self.acks.insert(ack, false);
                        }
                    }
                    _ => {
                        self.broadcasts += 1;
                        let target = Target::Rooms {
                            nsp,
                            rooms: vec!["room".into()],
                            except: vec![],
                        };
                        let args = Payload::from_args(&self.broadcasts).unwrap_or_default();
                        let _ = self.server.emit(
                            self.now,
                            &target,
                            "broadcast",
                            &args,
                            EmitOptions::default(),
                        );
                    }
                }
            }
            Event::AckReply { ack, .. } => match self.acks.get(&ack) {
                Some(false) => {}
                _ => self.fail(&format!("reply for {ack:?}, unknown or already ended")),
            },
            Event::AckDone { ack, outcome } => match self.acks.insert(ack, true) {
                Some(false) => match outcome {
                    AckOutcome::Complete => self.stats.acks_complete += 1,
                    AckOutcome::TimedOut => self.stats.acks_timed_out += 1,
                    AckOutcome::Disconnected => self.stats.acks_disconnected += 1,
                },
                _ => self.fail(&format!("{ack:?} ended twice or was never started")),
            },
            Event::Disconnect { socket, .. } => {
                self.sockets.remove(&socket);
            }
            Event::Disconnecting { .. }
            | Event::SocketError { .. }
            | Event::SessionExpired { .. }
            | Event::ConnectionError { .. } => {}
            Event::AllowRequest { request, .. } => {
                self.server.allow_request(self.now, request, Ok(()))
            }
            Event::NamespaceRequest { session, name, .. } => self
                .server
                .namespace_verdict(self.now, session, &name, false),
        }
    }

    fn emit_seq(&mut self, socket: SocketId) {
        let Some((next, _)) = self.sockets.get(&socket) else {
            return;
        };
        let args = Payload::from_args(next).unwrap_or_default();
        let target = Target::Socket(socket);
        if self
            .server
            .emit(self.now, &target, "seq", &args, EmitOptions::default())
            .is_ok()
        {
            if let Some((next, _)) = self.sockets.get_mut(&socket) {
                *next += 1;
            }
        }
    }

    // ---- the loop ----

    fn drain(&mut self) {
        loop {
            let mut moved = false;
            while let Some(transmit) = self.server.poll_transmit() {
                moved = true;
                self.route(transmit);
            }
            while let Some(event) = self.server.poll_event() {
                moved = true;
                self.app(event);
            }
            if !moved {
                break;
            }
        }
        if let Err(error) = self.server.check_invariants() {
            self.fail(&error);
        }
    }

    fn route(&mut self, transmit: Transmit) {
        let (request, down) = match transmit {
            Transmit::Response { request, response } => {
                let body = String::from_utf8_lossy(response.body()).into_owned();
                (
                    request,
                    Down::Response(request, response.status().as_u16(), body),
                )
            }
            Transmit::ReadBody { request, limit } => {
                // The body was sent with the head; hand it over now.
                let body = self.bodies.remove(&request).unwrap_or_default();
                let body = if body.len() > limit {
                    Err(BodyError::TooLarge)
                } else {
                    Ok(Bytes::from(body))
                };
                self.server.handle_request_body(self.now, request, body);
                return;
            }
            Transmit::Abort { request } => (request, Down::Response(request, 0, String::new())),
            Transmit::AcceptWebSocket { request, .. } => (request, Down::Accept(request)),
            Transmit::Frame { request, frame } => (request, Down::Frame(request, frame)),
            Transmit::CloseWebSocket { request } => (request, Down::Close(request)),
        };
        let Some(&client) = self.owner.get(&request) else {
            return;
        };
        let ws = matches!(down, Down::Frame(..) | Down::Close(_)).then_some(request);
        self.send(client, Err(down), ws);
    }
}

// The POST bodies travel with their heads; the server asks for them with ReadBody.
impl Sim {
    fn deliver(&mut self, client: usize, message: Result<Up, Down>) {
        match message {
            Ok(up) => self.deliver_up(up),
            Err(down) => self.deliver_down(client, down),
        }
        self.drain();
    }

    fn deliver_up(&mut self, up: Up) {
        let now = self.now;
        let head = |method: &str, uri: &str, upgrade: bool| {
            let mut builder = http::Request::builder().method(method).uri(uri);
            if upgrade {
                builder = builder
                    .header("connection", "Upgrade")
                    .header("upgrade", "websocket")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                    .header("sec-websocket-version", "13");
            }
            builder.body(()).unwrap().into_parts().0
        };
        self.log.push(format!("up {up:?}"));
        match up {
            Up::Get(request, uri) => {
                self.server
                    .handle_request(now, request, &head("GET", &uri, false), None)
            }
            Up::Post(request, uri, body) => {
                self.bodies.insert(request, body.into_bytes());
                self.server
                    .handle_request(now, request, &head("POST", &uri, false), None)
            }
            Up::WsRequest(request, uri) => {
                self.server
                    .handle_request(now, request, &head("GET", &uri, true), None)
            }
            Up::WsOpen(request) => self.server.handle_ws_open(now, request),
            Up::WsFrame(request, frame) => self.server.handle_ws_frame(now, request, frame),
            Up::Closed(request) => self.server.handle_closed(now, request),
        }
    }

    fn deliver_down(&mut self, client: usize, down: Down) {
        self.log.push(format!("down {client} {down:?}"));
        if self.clients[client].dead {
            return;
        }
        match down {
            Down::Response(request, status, body) => {
                let c = &mut self.clients[client];
                let was_get = c.get == Some(request);
                if was_get {
                    c.get = None;
                } else if c.post == Some(request) {
                    c.post = None;
                }
                if status != 200 {
                    // Refused or aborted: this client is done.
                    self.kill(client);
                    return;
                }
                if was_get {
                    for packet in body.split('\u{1e}').map(str::to_owned).collect::<Vec<_>>() {
                        if packet == "1" {
                            self.kill(client);
                            return;
                        }
                        self.client_receive(client, &packet);
                    }
                    if self.clients[client].mode == Some(Mode::Upgrade)
                        && self.clients[client].probe.is_none()
                        && !self.clients[client].on_ws
                        && self.rng.chance(30)
                    {
                        self.start_upgrade(client);
                    }
                    self.poll(client);
                } else {
                    self.flush_post(client);
                }
                self.finish_upgrade(client);
            }
            Down::Accept(request) => {
                self.send(client, Ok(Up::WsOpen(request)), Some(request));
                if self.clients[client].probe == Some(request) {
                    let frame = Frame::Text(ByteString::from_static("2probe"));
                    self.send(client, Ok(Up::WsFrame(request, frame)), Some(request));
                }
            }
            Down::Frame(request, frame) => {
                if self.clients[client].stalled {
                    return;
                }
                let text = match frame {
                    Frame::Text(t) => t.to_string(),
                    Frame::Binary(b) => format!("b{}", String::from_utf8_lossy(&b)),
                };
                if self.clients[client].probe == Some(request) && text != "3probe" {
                    return;
                }
                self.client_receive(client, &text);
            }
            Down::Close(request) => {
                let c = &mut self.clients[client];
                if c.probe == Some(request) {
                    c.probe = None;
                    c.probed = false;
                    self.poll(client);
                } else if c.ws == Some(request) {
                    c.dead = true;
                }
            }
        }
    }

    /// Like the real client: once polling is paused (no poll, no post in flight), send `5` and
    /// move to the WebSocket.
    fn finish_upgrade(&mut self, client: usize) {
        let c = &self.clients[client];
        if !c.probed || c.get.is_some() || c.post.is_some() || c.dead {
            return;
        }
        let Some(ws) = self.clients[client].probe.take() else {
            return;
        };
        let c = &mut self.clients[client];
        c.probed = false;
        c.ws = Some(ws);
        c.on_ws = true;
        self.stats.upgrades += 1;
        let queued: Vec<String> = c.outbox.drain(..).collect();
        let frame = Frame::Text(ByteString::from_static("5"));
        self.send(client, Ok(Up::WsFrame(ws, frame)), Some(ws));
        for packet in queued {
            self.client_send(client, packet);
        }
    }

    fn start_upgrade(&mut self, client: usize) {
        let Some(sid) = self.clients[client].sid.clone() else {
            return;
        };
        let request = self.request_id(client);
        self.clients[client].probe = Some(request);
        let uri = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
        self.send(client, Ok(Up::WsRequest(request, uri)), None);
    }

    fn run(&mut self, steps: usize) -> Stats {
        for _ in 0..3 {
            self.new_client();
        }
        for _ in 0..steps {
            // Next: a network delivery, a server timer, or a client action after a short pause.
            let action_at = self.now + Duration::from_millis(self.rng.below(30) + 1);
            let network_at = self.network.keys().next().map(|(at, _)| *at);
            let timer_at = self.server.poll_timeout();
            let at = [Some(action_at), network_at, timer_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(action_at);
            self.now = at;
            if network_at == Some(at) {
                let (_, (client, message)) = self.network.pop_first().expect("a delivery");
                self.deliver(client, message);
            } else if timer_at == Some(at) {
                self.server.handle_timeout(at);
                self.drain();
            } else {
                if self.rng.chance(5) && self.clients.len() < 12 {
                    self.new_client();
                }
                let client = self.rng.below(self.clients.len() as u64) as usize;
                self.client_action(client);
                self.drain();
            }
        }
        // Everyone leaves; the network settles and every timeout passes.
        for client in 0..self.clients.len() {
            self.kill(client);
        }
        let end = self.now + Duration::from_secs(120);
        loop {
            let network_at = self.network.keys().next().map(|(at, _)| *at);
            let timer_at = self.server.poll_timeout();
            let Some(at) = [network_at, timer_at].into_iter().flatten().min() else {
                break;
            };
            if at > end {
                break;
            }
            self.now = at;
            if network_at == Some(at) {
                let (_, (client, message)) = self.network.pop_first().expect("a delivery");
                self.deliver(client, message);
            } else {
                self.server.handle_timeout(at);
                self.drain();
            }
        }
        let census = self.server.census();
        let totals = (
            census.sessions,
            census.clients,
            census.sockets,
            census.room_members,
            census.acks,
            census.timers,
        );
        if totals != (0, 0, 0, 0, 0, 0) {
            self.fail(&format!("left behind: {census:?}"));
        }
        if let Some((ack, _)) = self.acks.iter().find(|(_, done)| !**done) {
            self.fail(&format!("{ack:?} never ended"));
        }
        self.stats
    }
}

#[test]
fn seeded_runs_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("SIO_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIO_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("SIO_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(2000);
            (1..=n).collect()
        }
    };
    let many = seeds.len() > 100;
    let mut total = Stats::default();
    for seed in seeds {
        total.add(Sim::new(seed).run(400));
    }
    println!("{total:?}");
    if many {
        // The runs must exercise every path, or the harness has stopped testing something.
        let t = total;
        for (what, count) in [
            ("upgrades", t.upgrades),
            ("seq packets", t.seq_received),
            ("broadcasts", t.broadcasts_received),
            ("binary events", t.binary_events),
            ("completed acks", t.acks_complete),
            ("timed out acks", t.acks_timed_out),
            ("acks ended by a disconnect", t.acks_disconnected),
            ("refused connections", t.refused),
        ] {
            assert!(count > 0, "no {what} in the whole run: {t:?}");
        }
    }
}
