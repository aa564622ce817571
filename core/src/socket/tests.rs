//! Socket.IO server tests in virtual time, over in-memory WebSockets (and polling where it matters).

use std::time::{Duration, Instant};

use ::http::Request;
use bytes::Bytes;
use bytestring::ByteString;
use serde_json::json;

use super::*;

const MS: Duration = Duration::from_millis(1);

struct Harness {
    server: Server,
    now: Instant,
    next_request: u64,
    transmits: Vec<Transmit>,
    events: Vec<Event>,
    /// The rooms each socket was in when its `Disconnecting` was drained.
    rooms_at_disconnecting: Vec<(SocketId, Vec<String>)>,
}

fn config() -> ServerConfig {
    ServerConfig {
        engine: EngineConfig {
            ping_interval: 300 * MS,
            ping_timeout: 200 * MS,
            rng_seed: Some([3; 32]),
            ..EngineConfig::default()
        },
        connect_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config())
    }

    fn with(config: ServerConfig) -> Harness {
        #[allow(clippy::disallowed_methods)] // the one read of the clock: the test's epoch
        let now = Instant::now();
        let mut server = Server::new(config, now);
        server.namespace("/custom");
        Harness {
            server,
            now,
            next_request: 0,
            transmits: Vec::new(),
            events: Vec::new(),
            rooms_at_disconnecting: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.server.poll_transmit() {
            self.transmits.push(t);
        }
        while let Some(e) = self.server.poll_event() {
            if let Event::Disconnecting { socket, .. } = &e {
                let rooms = self.server.rooms(*socket).map(str::to_owned).collect();
                self.rooms_at_disconnecting.push((*socket, rooms));
            }
            self.events.push(e);
            while let Some(t) = self.server.poll_transmit() {
                self.transmits.push(t);
            }
        }
        self.server.check_invariants().unwrap();
    }

    /// Opens a WebSocket session; the open packet is consumed.
    fn ws(&mut self) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let (head, ()) = Request::get("/socket.io/?EIO=4&transport=websocket")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap()
            .into_parts();
        self.server.handle_request(self.now, id, &head, None);
        self.server.handle_ws_open(self.now, id);
        self.drain();
        let (frames, _) = self.frames(id);
        assert!(frames[0].starts_with("0{"), "{frames:?}");
        id
    }

    fn send(&mut self, ws: RequestId, text: &str) {
        self.server
            .handle_ws_frame(self.now, ws, Frame::Text(ByteString::from(text)));
        self.drain();
    }

    fn send_binary(&mut self, ws: RequestId, data: &'static [u8]) {
        self.server
            .handle_ws_frame(self.now, ws, Frame::Binary(Bytes::from_static(data)));
        self.drain();
    }

    /// Frames sent on `ws` so far, and whether it was closed.
    fn frames(&mut self, ws: RequestId) -> (Vec<String>, bool) {
        let mut frames = Vec::new();
        let mut closed = false;
        self.transmits.retain(|t| match t {
            Transmit::Frame { request, frame } if *request == ws => {
                frames.push(match frame {
                    Frame::Text(t) => t.to_string(),
                    Frame::Binary(b) => format!("<bin:{:?}>", &b[..]),
                });
                false
            }
            Transmit::CloseWebSocket { request } if *request == ws => {
                closed = true;
                false
            }
            _ => true,
        });
        (frames, closed)
    }

    fn take_connect(&mut self) -> (SocketId, NspId, Value) {
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Connect { .. }))
            .expect("a connect event");
        match self.events.remove(i) {
            Event::Connect {
                socket, nsp, auth, ..
            } => (socket, nsp, auth),
            _ => unreachable!(),
        }
    }

    /// Connects `ws` to `nsp` and accepts; returns the socket and its public id.
    fn connect(&mut self, ws: RequestId, nsp: &str) -> (SocketId, String) {
        let packet = if nsp == "/" {
            "40".to_owned()
        } else {
            format!("40{nsp},")
        };
        self.send(ws, &packet);
        let (socket, _, _) = self.take_connect();
        self.server.accept(self.now, socket).unwrap();
        self.drain();
        let sid = self.server.socket_sid(socket).unwrap().to_string();
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        assert_eq!(
            self.frames(ws).0,
            vec![format!("40{prefix}{{\"sid\":\"{sid}\"}}")]
        );
        (socket, sid)
    }

    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(at) = self.server.poll_timeout() {
            if at > target {
                break;
            }
            self.now = at;
            self.server.handle_timeout(at);
            self.drain();
        }
        self.now = target;
    }

    fn disconnects(&mut self) -> Vec<(SocketId, DisconnectReason)> {
        let mut out = Vec::new();
        let mut disconnecting = Vec::new();
        self.events.retain(|e| match e {
            Event::Disconnecting { socket, reason } => {
                disconnecting.push((*socket, *reason));
                false
            }
            Event::Disconnect { socket, reason, .. } => {
                out.push((*socket, *reason));
                false
            }
            _ => true,
        });
        assert_eq!(
            out, disconnecting,
            "each disconnect is announced by disconnecting"
        );
        out
    }

    fn messages(&mut self) -> Vec<(SocketId, String, Payload, Option<u64>)> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            Event::Message {
                socket,
                event,
                args,
                ack,
            } => {
                out.push((*socket, event.clone(), args.clone(), *ack));
                false
            }
            _ => true,
        });
        out
    }

    fn acks(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            Event::AckReply { ack, args, .. } => {
                out.push(format!("reply {} {:?}", ack.wire_id(), args.args));
                false
            }
            Event::AckDone { ack, outcome } => {
                out.push(format!("done {} {outcome:?}", ack.wire_id()));
                false
            }
            _ => true,
        });
        out
    }

    fn to_all(&self, nsp: &str) -> Target {
        Target::Rooms {
            nsp: self.server.find_namespace(nsp).unwrap(),
            rooms: vec![],
            except: vec![],
        }
    }
}

fn args(value: impl serde::Serialize) -> Payload {
    Payload::from_args(&value).unwrap()
}

#[test]
fn connect_to_main_and_custom_namespaces_with_auth() {
    let mut h = Harness::new();
    let ws = h.ws();
    h.send(ws, "40{\"token\":\"123\"}");
    let (socket, nsp, auth) = h.take_connect();
    assert_eq!(h.server.namespace_name(nsp), "/");
    assert_eq!(auth, json!({"token": "123"}));
    assert!(!h.server.is_connected(socket), "pending until accepted");
    assert!(h.frames(ws).0.is_empty());
    h.server.accept(h.now, socket).unwrap();
    h.drain();
    let sid = h.server.socket_sid(socket).unwrap().to_string();
    assert_eq!(h.frames(ws).0, vec![format!("40{{\"sid\":\"{sid}\"}}")]);
    assert_eq!(
        h.server.rooms(socket).collect::<Vec<_>>(),
        vec![sid.as_str()]
    );

    h.send(ws, "40/custom,");
    let (custom, nsp, auth) = h.take_connect();
    assert_eq!(h.server.namespace_name(nsp), "/custom");
    assert_eq!(auth, json!({}));
    h.server.accept(h.now, custom).unwrap();
    h.drain();
    let custom_sid = h.server.socket_sid(custom).unwrap().to_string();
    assert_ne!(custom_sid, sid);
    assert_eq!(
        h.frames(ws).0,
        vec![format!("40/custom,{{\"sid\":\"{custom_sid}\"}}")]
    );
}

#[test]
fn unknown_namespace_gets_connect_error_and_the_session_stays() {
    let mut h = Harness::new();
    let ws = h.ws();
    h.send(ws, "40/nope,");
    assert_eq!(
        h.frames(ws),
        (
            vec!["44/nope,{\"message\":\"Invalid namespace\"}".to_owned()],
            false
        )
    );
    assert!(h.events.is_empty());
    h.connect(ws, "/");
}

#[test]
fn rejection_sends_message_and_data() {
    let mut h = Harness::new();
    let ws = h.ws();
    h.send(ws, "40");
    let (socket, _, _) = h.take_connect();
    h.server
        .reject(
            h.now,
            socket,
            json!({"message": "not authorized", "data": {"code": 7}}),
        )
        .unwrap();
    h.drain();
    assert_eq!(
        h.frames(ws),
        (
            vec!["44{\"message\":\"not authorized\",\"data\":{\"code\":7}}".to_owned()],
            false
        )
    );
    assert_eq!(
        h.server.accept(h.now, socket),
        Err(CommandError::UnknownSocket)
    );
    // A retry is a fresh attempt.
    h.connect(ws, "/");
}

#[test]
fn invalid_handshake_payload_closes_the_connection() {
    let mut h = Harness::new();
    let ws = h.ws();
    h.send(ws, "40[1]");
    assert_eq!(h.frames(ws), (vec![], true));
    assert_eq!(h.server.census().sessions, 0);
}

#[test]
fn no_connect_within_the_timeout_closes_the_connection() {
    let mut base = config();
    base.engine.ping_interval = Duration::from_secs(25);
    let mut h = Harness::with(base);
    let ws = h.ws();
    h.advance(999 * MS);
    assert!(!h.frames(ws).1);
    h.advance(MS);
    assert!(h.frames(ws).1);
    // A connection that joined a namespace is not affected.
    let ws = h.ws();
    h.connect(ws, "/");
    h.advance(Duration::from_secs(5));
    assert!(!h.frames(ws).1);
}

#[test]
fn events_and_binary_events_reach_the_application() {
    let mut h = Harness::new();
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.send(ws, "42[\"message\",1,\"2\",{\"3\":[false]}]");
    h.send(ws, "4212[\"message-with-ack\",1]");
    h.send(ws, "42[42,\"numeric name\"]");
    h.send(ws, "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]");
    assert!(
        h.messages().len() == 3,
        "the binary event waits for its attachment"
    );
    h.send_binary(ws, &[1, 2, 3]);
    let messages = h.messages();
    assert_eq!(messages.len(), 1);
    let (s, event, payload, ack) = &messages[0];
    assert_eq!((*s, event.as_str(), *ack), (socket, "bin", None));
    let (data,): (Bytes,) = payload.to_args().unwrap();
    assert_eq!(&data[..], &[1, 2, 3]);
}

#[test]
fn event_args_and_ack_ids_are_passed_exactly() {
    let mut h = Harness::new();
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.send(ws, "42[\"message\",1,\"2\",{\"3\":[false]}]");
    h.send(ws, "4212[\"message-with-ack\",1]");
    h.send(ws, "42[42,\"numeric name\"]");
    let messages = h.messages();
    assert_eq!(messages[0].1, "message");
    assert_eq!(
        messages[0].2.args,
        vec![json!(1), json!("2"), json!({"3": [false]})]
    );
    assert_eq!(messages[0].3, None);
    assert_eq!(
        (messages[1].1.as_str(), messages[1].3),
        ("message-with-ack", Some(12))
    );
    assert_eq!(messages[2].1, "42");
    h.server.ack(h.now, socket, 12, &args((1, "2"))).unwrap();
    h.drain();
    assert_eq!(h.frames(ws).0, vec!["4312[1,\"2\"]".to_owned()]);
    h.server
        .ack(h.now, socket, 13, &args((Bytes::from_static(&[7]),)))
        .unwrap();
    h.drain();
    assert_eq!(
        h.frames(ws).0,
        vec![
            "461-13[{\"_placeholder\":true,\"num\":0}]".to_owned(),
            "<bin:[7]>".to_owned()
        ]
    );
}

#[test]
fn broadcasts_reach_each_recipient_once_and_skip_the_excluded() {
    let mut h = Harness::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let ws = h.ws();
        let (socket, sid) = h.connect(ws, "/");
        clients.push((ws, socket, sid));
    }
    h.server.join(clients[0].1, "a");
    h.server.join(clients[1].1, "a");
    h.server.join(clients[1].1, "b");
    h.server.join(clients[2].1, "b");
    h.server.join(clients[3].1, "c");
    let nsp = h.server.find_namespace("/").unwrap();
    // To rooms a and b (client 1 is in both: one copy), except room c and the sender (client 2).
    let target = Target::Rooms {
        nsp,
        rooms: vec!["a".into(), "b".into()],
        except: vec!["c".into(), clients[2].2.clone()],
    };
    let payload = args(("hi", Bytes::from_static(&[1])));
    h.server
        .emit(h.now, &target, "news", &payload, EmitOptions::default())
        .unwrap();
    h.drain();
    let expected = vec![
        "451-[\"news\",\"hi\",{\"_placeholder\":true,\"num\":0}]".to_owned(),
        "<bin:[1]>".to_owned(),
    ];
    for (i, (ws, _, _)) in clients.clone().into_iter().enumerate() {
        let frames = h.frames(ws).0;
        if i < 2 {
            assert_eq!(frames, expected, "client {i}");
        } else {
            assert!(frames.is_empty(), "client {i}");
        }
    }
    // To everyone in the namespace.
    let all = h.to_all("/");
    h.server
        .emit(
            h.now,
            &all,
            "all",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.drain();
    for (ws, _, _) in clients {
        assert_eq!(h.frames(ws).0, vec!["42[\"all\"]".to_owned()]);
    }
    assert_eq!(
        h.server.emit(
            h.now,
            &h.to_all("/"),
            "disconnect",
            &Payload::default(),
            EmitOptions::default()
        ),
        Err(CommandError::ReservedEvent("disconnect".into()))
    );
}

#[test]
fn namespaces_do_not_leak_into_each_other() {
    let mut h = Harness::new();
    let ws = h.ws();
    h.connect(ws, "/");
    let (custom, _) = h.connect(ws, "/custom");
    h.server
        .emit(
            h.now,
            &h.to_all("/custom"),
            "x",
            &args(1),
            EmitOptions::default(),
        )
        .unwrap();
    h.server
        .emit(
            h.now,
            &Target::Socket(custom),
            "y",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.drain();
    assert_eq!(
        h.frames(ws).0,
        vec![
            "42/custom,[\"x\",1]".to_owned(),
            "42/custom,[\"y\"]".to_owned()
        ]
    );
}

#[test]
fn server_acks_resolve_once_by_reply_timeout_or_disconnect() {
    let mut h = Harness::new();
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    let with_ack = |timeout| EmitOptions {
        ack: Some(timeout),
        ..EmitOptions::default()
    };
    // Reply.
    let ack = h
        .server
        .emit(
            h.now,
            &Target::Socket(socket),
            "q",
            &Payload::default(),
            with_ack(Some(100 * MS)),
        )
        .unwrap()
        .unwrap();
    h.drain();
    assert_eq!(ack.wire_id(), 0);
    assert_eq!(h.frames(ws).0, vec!["420[\"q\"]".to_owned()]);
    h.send(ws, "430[\"answer\"]");
    h.send(ws, "430[\"again\"]");
    assert_eq!(
        h.acks(),
        vec!["reply 0 [String(\"answer\")]", "done 0 Complete"]
    );
    // Timeout.
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "q",
            &Payload::default(),
            with_ack(Some(100 * MS)),
        )
        .unwrap();
    h.drain();
    h.advance(99 * MS);
    assert!(h.acks().is_empty());
    h.advance(MS);
    assert_eq!(h.acks(), vec!["done 1 TimedOut"]);
    h.send(ws, "431[\"late\"]");
    assert!(h.acks().is_empty(), "a late reply is ignored");
    // Disconnect, with and without a timeout.
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "q",
            &Payload::default(),
            with_ack(None),
        )
        .unwrap();
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "q",
            &Payload::default(),
            with_ack(Some(Duration::from_secs(9))),
        )
        .unwrap();
    h.drain();
    h.send(ws, "41");
    assert_eq!(h.acks(), vec!["done 2 Disconnected", "done 3 Disconnected"]);
    assert_eq!(h.server.census().acks, 0);
}

#[test]
fn broadcast_acks_collect_one_reply_per_recipient() {
    let mut h = Harness::new();
    let a = h.ws();
    h.connect(a, "/");
    let b = h.ws();
    h.connect(b, "/");
    let options = EmitOptions {
        ack: Some(Some(100 * MS)),
        ..EmitOptions::default()
    };
    let ack = h
        .server
        .emit(h.now, &h.to_all("/"), "poll", &Payload::default(), options)
        .unwrap()
        .unwrap();
    h.drain();
    assert_eq!(
        h.frames(a).0,
        vec![format!("42{}[\"poll\"]", ack.wire_id())]
    );
    h.send(a, "430[1]");
    assert_eq!(h.acks(), vec!["reply 0 [Number(1)]"]);
    h.send(b, "430[2]");
    assert_eq!(h.acks(), vec!["reply 0 [Number(2)]", "done 0 Complete"]);
    // Partial: b never answers.
    h.server
        .emit(h.now, &h.to_all("/"), "poll", &Payload::default(), options)
        .unwrap();
    h.drain();
    h.send(a, "431[1]");
    h.advance(100 * MS);
    assert_eq!(h.acks(), vec!["reply 1 [Number(1)]", "done 1 TimedOut"]);
    let no_timeout = EmitOptions {
        ack: Some(None),
        ..EmitOptions::default()
    };
    assert_eq!(
        h.server.emit(
            h.now,
            &h.to_all("/"),
            "poll",
            &Payload::default(),
            no_timeout
        ),
        Err(CommandError::TimeoutRequired)
    );
}

#[test]
fn disconnecting_sees_the_rooms_and_disconnect_has_left_them() {
    let mut h = Harness::new();
    let ws = h.ws();
    let (socket, sid) = h.connect(ws, "/");
    h.server.join(socket, "lobby");
    h.send(ws, "41");
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::ClientNamespaceDisconnect)]
    );
    assert_eq!(
        h.rooms_at_disconnecting,
        vec![(
            socket,
            vec!["lobby".to_owned(), sid]
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        )]
    );
    assert_eq!(h.server.rooms(socket).count(), 0);
    assert_eq!(h.server.census().room_members, 0);
    // The connection itself stays; the client may connect again.
    h.connect(ws, "/");
}

#[test]
fn every_disconnect_reason_the_server_produces() {
    let mut h = Harness::new();
    // server namespace disconnect: the client gets `41` on that namespace.
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/custom");
    h.server.disconnect(h.now, socket, false).unwrap();
    h.drain();
    assert_eq!(h.frames(ws), (vec!["41/custom,".to_owned()], false));
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::ServerNamespaceDisconnect)]
    );
    // disconnect(close): every socket of the connection, then the connection.
    let ws = h.ws();
    let (main, _) = h.connect(ws, "/");
    let (custom, _) = h.connect(ws, "/custom");
    h.server.disconnect(h.now, main, true).unwrap();
    h.drain();
    assert_eq!(
        h.frames(ws),
        (vec!["41".to_owned(), "41/custom,".to_owned()], true)
    );
    assert_eq!(
        h.disconnects(),
        vec![
            (main, DisconnectReason::ServerNamespaceDisconnect),
            (custom, DisconnectReason::ServerNamespaceDisconnect)
        ]
    );
    // transport close.
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.server.handle_closed(h.now, ws);
    h.drain();
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::TransportClose)]
    );
    // ping timeout.
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.advance(500 * MS);
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::PingTimeout)]
    );
    // An invalid Socket.IO packet: `error` on the socket, then forced close.
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.send(ws, "42abc");
    assert!(matches!(
        h.events.remove(0),
        Event::SocketError { socket: s, error: ParseError::InvalidPayload } if s == socket
    ));
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::ForcedClose)]
    );
    assert!(h.frames(ws).1);
    // A packet for a namespace the client did not join.
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.send(ws, "42/custom,[\"x\"]");
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::ForcedServerClose)]
    );
    assert!(h.frames(ws).1);
    // Shutdown.
    let ws = h.ws();
    let (socket, _) = h.connect(ws, "/");
    h.server.close(h.now);
    h.drain();
    assert_eq!(
        h.disconnects(),
        vec![(socket, DisconnectReason::ServerShuttingDown)]
    );
    assert!(h.frames(ws).1);
    h.advance(Duration::from_secs(60));
    let census = h.server.census();
    assert_eq!(
        (
            census.sessions,
            census.clients,
            census.sockets,
            census.room_members,
            census.acks,
            census.timers
        ),
        (0, 0, 0, 0, 0, 0)
    );
}

impl Harness {
    fn http(&mut self, method: &str, uri: &str, body: &str) -> Option<String> {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let (head, ()) = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        self.server.handle_request(self.now, id, &head, None);
        if method == "POST" {
            self.server.handle_request_body(
                self.now,
                id,
                Ok(Bytes::copy_from_slice(body.as_bytes())),
            );
        }
        self.drain();
        let i = self
            .transmits
            .iter()
            .position(|t| matches!(t, Transmit::Response { request, .. } if *request == id))?;
        match self.transmits.remove(i) {
            Transmit::Response { response, .. } => {
                Some(String::from_utf8(response.body().to_vec()).unwrap())
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn volatile_packets_skip_a_polling_client_with_no_poll_parked() {
    let mut h = Harness::new();
    let open = h
        .http("GET", "/socket.io/?EIO=4&transport=polling", "")
        .unwrap();
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={}", &open[9..29]);
    assert_eq!(h.http("POST", &uri, "40").as_deref(), Some("ok"));
    let (socket, _, _) = h.take_connect();
    h.server.accept(h.now, socket).unwrap();
    h.drain();
    let sid = h.server.socket_sid(socket).unwrap();
    assert_eq!(
        h.http("GET", &uri, ""),
        Some(format!("40{{\"sid\":\"{sid}\"}}"))
    );
    let volatile = EmitOptions {
        volatile: true,
        ..EmitOptions::default()
    };
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "dropped",
            &Payload::default(),
            volatile,
        )
        .unwrap();
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "kept",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.drain();
    assert_eq!(h.http("GET", &uri, "").as_deref(), Some("42[\"kept\"]"));
    // With a poll parked, a volatile packet goes out.
    assert_eq!(h.http("GET", &uri, ""), None);
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "sent",
            &Payload::default(),
            volatile,
        )
        .unwrap();
    h.drain();
    let body = h.transmits.iter().find_map(|t| match t {
        Transmit::Response { response, .. } => {
            Some(String::from_utf8(response.body().to_vec()).unwrap())
        }
        _ => None,
    });
    assert_eq!(body.as_deref(), Some("42[\"sent\"]"));
}

fn recovery_harness() -> Harness {
    let mut base = config();
    base.engine.ping_interval = Duration::from_secs(25);
    base.engine.ping_timeout = Duration::from_secs(20);
    base.connect_timeout = Duration::from_secs(45);
    base.connection_state_recovery = Some(RecoveryConfig::default());
    Harness::with(base)
}

impl Harness {
    /// Connects with recovery on: returns the socket, its id, its pid.
    fn connect_recoverable(
        &mut self,
        ws: RequestId,
        auth: &str,
    ) -> (SocketId, String, String, bool) {
        self.send(ws, &format!("40{auth}"));
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Connect { .. }))
            .unwrap();
        let Event::Connect {
            socket, recovered, ..
        } = self.events.remove(i)
        else {
            unreachable!()
        };
        self.server.accept(self.now, socket).unwrap();
        self.drain();
        let sid = self.server.socket_sid(socket).unwrap().to_string();
        let pid = self.server.socket_pid(socket).unwrap().to_string();
        (socket, sid, pid, recovered)
    }
}

#[test]
fn recovery_sends_a_pid_and_offsets_and_restores_what_was_missed() {
    let mut h = recovery_harness();
    let ws = h.ws();
    let (socket, sid, pid, recovered) = h.connect_recoverable(ws, "");
    assert!(!recovered);
    assert_eq!(
        h.frames(ws).0,
        vec![format!("40{{\"sid\":\"{sid}\",\"pid\":\"{pid}\"}}")]
    );
    h.server.join(socket, "news");
    // Events get an offset as their last argument; acked and volatile ones do not.
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "hi",
            &args(1),
            EmitOptions::default(),
        )
        .unwrap();
    let with_ack = EmitOptions {
        ack: Some(Some(Duration::from_secs(1))),
        ..EmitOptions::default()
    };
    h.server
        .emit(
            h.now,
            &Target::Socket(socket),
            "q",
            &Payload::default(),
            with_ack,
        )
        .unwrap();
    h.drain();
    assert_eq!(
        h.frames(ws).0,
        vec!["42[\"hi\",1,\"1\"]".to_owned(), "420[\"q\"]".to_owned()]
    );

    // The transport drops; meanwhile the room and the socket get packets.
    h.server.handle_closed(h.now, ws);
    h.drain();
    let disconnects: Vec<_> = h
        .events
        .drain(..)
        .filter_map(|e| match e {
            Event::Disconnect { kept, reason, .. } => Some((reason, kept.map(|k| k.to_string()))),
            _ => None,
        })
        .collect();
    assert_eq!(
        disconnects,
        vec![(DisconnectReason::TransportClose, Some(pid.clone()))]
    );
    let other = h.ws();
    let (other_socket, _, _, _) = h.connect_recoverable(other, "");
    let news = Target::Rooms {
        nsp: h.server.find_namespace("/").unwrap(),
        rooms: vec!["news".into()],
        except: vec![],
    };
    h.server
        .emit(h.now, &news, "news", &args("a"), EmitOptions::default())
        .unwrap();
    h.server
        .emit(
            h.now,
            &h.to_all("/"),
            "all",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.server
        .emit(
            h.now,
            &Target::Socket(other_socket),
            "private",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.drain();
    h.advance(Duration::from_secs(60));

    // Back within the window with its pid and last offset.
    let ws = h.ws();
    let auth = format!("{{\"pid\":\"{pid}\",\"offset\":\"1\",\"token\":\"t\"}}");
    let (socket, new_sid, new_pid, recovered) = h.connect_recoverable(ws, &auth);
    assert!(recovered);
    assert_eq!(
        (new_sid.as_str(), new_pid.as_str()),
        (sid.as_str(), pid.as_str())
    );
    assert!(h.server.is_recovered(socket));
    assert_eq!(
        h.frames(ws).0,
        vec![
            "42[\"news\",\"a\",\"2\"]".to_owned(),
            "42[\"all\",\"3\"]".to_owned(),
            format!("40{{\"sid\":\"{sid}\",\"pid\":\"{pid}\"}}"),
        ]
    );
    let mut rooms: Vec<&str> = h.server.rooms(socket).collect();
    rooms.sort();
    let mut expected = vec!["news", sid.as_str()];
    expected.sort();
    assert_eq!(rooms, expected);
}

#[test]
fn no_recovery_after_the_window_nor_after_a_deliberate_disconnect() {
    let mut h = recovery_harness();
    let ws = h.ws();
    let (_, _, pid, _) = h.connect_recoverable(ws, "");
    h.server
        .emit(
            h.now,
            &h.to_all("/"),
            "x",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.drain();
    h.server.handle_closed(h.now, ws);
    h.drain();
    h.advance(Duration::from_secs(120));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::SessionExpired { pid: p } if p.to_string() == pid))
    );
    let ws = h.ws();
    let auth = format!("{{\"pid\":\"{pid}\",\"offset\":\"1\"}}");
    let (_, _, new_pid, recovered) = h.connect_recoverable(ws, &auth);
    assert!(!recovered);
    assert_ne!(new_pid, pid);

    // A client namespace disconnect is not recoverable.
    h.server
        .emit(
            h.now,
            &h.to_all("/"),
            "y",
            &Payload::default(),
            EmitOptions::default(),
        )
        .unwrap();
    h.drain();
    h.send(ws, "41");
    let auth = format!("{{\"pid\":\"{new_pid}\",\"offset\":\"2\"}}");
    let (_, _, _, recovered) = h.connect_recoverable(ws, &auth);
    assert!(!recovered);
    // An offset no longer (or never) in the log is not recoverable either.
    h.server.handle_closed(h.now, ws);
    h.drain();
    let ws = h.ws();
    let (_, _, _, recovered) =
        h.connect_recoverable(ws, "{\"pid\":\"AAAAAAAAAAAAAAAAAAAA\",\"offset\":\"999\"}");
    assert!(!recovered);
    h.server.handle_closed(h.now, ws);
    h.drain();
    h.advance(Duration::from_secs(200));
    let census = h.server.census();
    assert_eq!(
        (
            census.sessions,
            census.sockets,
            census.kept_sessions,
            census.logged_packets,
            census.timers
        ),
        (0, 0, 0, 0, 0)
    );
}

#[test]
fn the_client_bundle_is_served_with_its_etag_and_nothing_else() {
    let mut base = config();
    base.serve_client = Some(ClientBundle::new(
        "4.8.4",
        [
            ("socket.io.js".to_owned(), Bytes::from_static(b"js")),
            ("socket.io.min.js.map".to_owned(), Bytes::from_static(b"{}")),
            ("secret.txt".to_owned(), Bytes::from_static(b"no")),
        ],
    ));
    let mut h = Harness::with(base);
    let get = |h: &mut Harness, path: &str, etag: Option<&str>| {
        h.next_request += 1;
        let id = RequestId(h.next_request);
        let mut builder = Request::get(path);
        if let Some(etag) = etag {
            builder = builder.header("if-none-match", etag);
        }
        let (head, ()) = builder.body(()).unwrap().into_parts();
        h.server.handle_request(h.now, id, &head, None);
        h.drain();
        let i = h
            .transmits
            .iter()
            .position(|t| matches!(t, Transmit::Response { request, .. } if *request == id))
            .unwrap();
        match h.transmits.remove(i) {
            Transmit::Response { response, .. } => response,
            _ => unreachable!(),
        }
    };
    let js = get(&mut h, "/socket.io/socket.io.js", None);
    assert_eq!(js.status(), 200);
    assert_eq!(&js.body()[..], b"js");
    assert_eq!(js.headers()["etag"], "\"4.8.4\"");
    assert_eq!(js.headers()["cache-control"], "public, max-age=0");
    assert_eq!(
        js.headers()["content-type"],
        "application/javascript; charset=utf-8"
    );
    let map = get(&mut h, "/socket.io/socket.io.min.js.map", None);
    assert_eq!(
        map.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    for etag in ["\"4.8.4\"", "W/\"4.8.4\""] {
        let cached = get(&mut h, "/socket.io/socket.io.js", Some(etag));
        assert_eq!(cached.status(), 304);
        assert!(cached.body().is_empty());
    }
    assert_eq!(
        get(&mut h, "/socket.io/socket.io.js", Some("\"old\"")).status(),
        200
    );
    // Not in the allow-list, or not in the bundle: the engine answers as usual.
    for path in [
        "/socket.io/secret.txt",
        "/socket.io/socket.io.min.js",
        "/socket.io/../Cargo.toml",
    ] {
        let res = get(&mut h, path, None);
        assert_eq!(res.status(), 400, "{path}");
        assert_eq!(
            &res.body()[..],
            br#"{"code":0,"message":"Transport unknown"}"#
        );
    }
}

#[test]
fn dynamic_namespaces_are_asked_for_and_can_be_removed_when_empty() {
    let mut h = Harness::new();
    h.server.set_dynamic_namespaces(true);
    let ws = h.ws();
    h.send(ws, "40/dyn-1,{\"k\":1}");
    let Some(Event::NamespaceRequest {
        session,
        name,
        auth,
    }) = h.events.pop()
    else {
        panic!("{:?}", h.events)
    };
    assert_eq!((name.as_str(), auth), ("/dyn-1", json!({"k": 1})));
    assert!(
        h.frames(ws).0.is_empty(),
        "held until the application answers"
    );
    // Refused.
    h.server.namespace_verdict(h.now, session, "/dyn-1", false);
    h.drain();
    assert_eq!(
        h.frames(ws).0,
        vec!["44/dyn-1,{\"message\":\"Invalid namespace\"}".to_owned()]
    );
    // Asked again and allowed: created, then connected as any namespace.
    h.send(ws, "40/dyn-1,{\"k\":1}");
    h.events.clear();
    let nsp = h.server.namespace("/dyn-1");
    h.server.namespace_verdict(h.now, session, "/dyn-1", true);
    h.drain();
    let (socket, _, auth) = h.take_connect();
    assert_eq!(auth, json!({"k": 1}));
    h.server.accept(h.now, socket).unwrap();
    h.drain();
    assert!(h.frames(ws).0[0].starts_with("40/dyn-1,{\"sid\":"));
    assert!(!h.server.remove_namespace(nsp), "not while it has a socket");
    h.send(ws, "41/dyn-1,");
    assert!(h.server.remove_namespace(nsp));
    assert_eq!(h.server.find_namespace("/dyn-1"), None);
    // The slot is reused by the next namespace.
    assert_eq!(h.server.namespace("/dyn-2"), nsp);
    assert!(
        !h.server
            .remove_namespace(h.server.find_namespace("/").unwrap())
    );
}
