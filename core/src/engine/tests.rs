//! Engine tests in virtual time: no sockets, no sleeping, every byte checked.

use std::time::{Duration, Instant};

use ::http::{Request, Response};
use bytes::Bytes;
use bytestring::ByteString;
use proptest::prelude::*;

use super::*;

const MS: Duration = Duration::from_millis(1);

struct Harness {
    engine: Engine,
    now: Instant,
    next_request: u64,
    transmits: Vec<Transmit>,
    events: Vec<EngineEvent>,
}

fn config() -> EngineConfig {
    EngineConfig {
        path: "/engine.io/".into(),
        ping_interval: 300 * MS,
        ping_timeout: 200 * MS,
        rng_seed: Some([1; 32]),
        ..EngineConfig::default()
    }
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config())
    }

    fn with(config: EngineConfig) -> Harness {
        #[allow(clippy::disallowed_methods)] // the one read of the clock: the test's epoch
        let now = Instant::now();
        Harness {
            engine: Engine::new(config, now),
            now,
            next_request: 0,
            transmits: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            self.transmits.push(t);
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e);
        }
        self.engine.check_invariants().unwrap();
    }

    fn request(&mut self, method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (head, ()) = builder.body(()).unwrap().into_parts();
        self.engine.handle_request(self.now, id, &head, None);
        self.drain();
        id
    }

    fn get(&mut self, uri: &str) -> RequestId {
        self.request("GET", uri, &[])
    }

    fn poll(&mut self, sid: &str) -> RequestId {
        self.get(&format!("/engine.io/?EIO=4&transport=polling&sid={sid}"))
    }

    /// The response to `request`, which must have been produced.
    fn response(&mut self, request: RequestId) -> Response<Bytes> {
        self.try_response(request)
            .unwrap_or_else(|| panic!("no response for {request:?}: {:?}", self.transmits))
    }

    fn try_response(&mut self, request: RequestId) -> Option<Response<Bytes>> {
        let i = self
            .transmits
            .iter()
            .position(|t| matches!(t, Transmit::Response { request: r, .. } if *r == request))?;
        match self.transmits.remove(i) {
            Transmit::Response { response, .. } => Some(*response),
            _ => unreachable!(),
        }
    }

    fn body(&mut self, request: RequestId) -> String {
        let res = self.response(request);
        assert_eq!(res.status(), 200, "{res:?}");
        String::from_utf8(res.body().to_vec()).unwrap()
    }

    fn handshake(&mut self) -> (SessionId, String) {
        let r = self.get("/engine.io/?EIO=4&transport=polling");
        let body = self.body(r);
        let sid = body[9..29].to_owned();
        let Some(EngineEvent::Open { session, .. }) = self.events.pop() else {
            panic!("no open event")
        };
        (session, sid)
    }

    fn post(&mut self, sid: &str, body: &str) -> RequestId {
        let r = self.request(
            "POST",
            &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
            &[],
        );
        let i = self
            .transmits
            .iter()
            .position(|t| matches!(t, Transmit::ReadBody { request, .. } if *request == r));
        if let Some(i) = i {
            let Transmit::ReadBody { limit, .. } = self.transmits.remove(i) else {
                unreachable!()
            };
            let body = Bytes::copy_from_slice(body.as_bytes());
            let body = if body.len() > limit {
                Err(BodyError::TooLarge)
            } else {
                Ok(body)
            };
            self.engine.handle_request_body(self.now, r, body);
            self.drain();
        }
        r
    }

    fn ws_headers() -> [(&'static str, &'static str); 4] {
        [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]
    }

    /// Opens a WebSocket at `uri`; `None` if it was refused with a response.
    fn ws(&mut self, uri: &str) -> RequestId {
        let r = self.request("GET", uri, &Harness::ws_headers());
        let i = self
            .transmits
            .iter()
            .position(|t| matches!(t, Transmit::AcceptWebSocket { request, .. } if *request == r))
            .unwrap_or_else(|| panic!("websocket not accepted: {:?}", self.transmits));
        self.transmits.remove(i);
        self.engine.handle_ws_open(self.now, r);
        self.drain();
        r
    }

    fn send_ws(&mut self, ws: RequestId, text: &str) {
        self.engine
            .handle_ws_frame(self.now, ws, Frame::Text(ByteString::from(text)));
        self.drain();
    }

    /// Frames sent on `ws` so far (text frames as strings, binary as `<bin:...>`), and whether it
    /// was closed.
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

    /// Moves virtual time forward, firing each timer at its own instant.
    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(at) = self.engine.poll_timeout() {
            if at > target {
                break;
            }
            self.now = at;
            self.engine.handle_timeout(at);
            self.drain();
        }
        self.now = target;
    }

    fn closes(&mut self) -> Vec<(SessionId, CloseReason, &'static str)> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            EngineEvent::Close {
                session,
                reason,
                description,
            } => {
                out.push((*session, *reason, *description));
                false
            }
            _ => true,
        });
        out
    }

    fn messages(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            EngineEvent::Message { message, .. } => {
                out.push(message.clone());
                false
            }
            _ => true,
        });
        out
    }
}

impl Harness {
    fn engine_session(&self, sid: &str) -> SessionId {
        *self.engine.by_sid.get(&Sid::parse(sid).unwrap()).unwrap()
    }
}

fn error_body(res: &Response<Bytes>) -> (u16, &str) {
    (
        res.status().as_u16(),
        std::str::from_utf8(res.body()).unwrap(),
    )
}

#[test]
fn polling_handshake_sends_the_exact_open_packet() {
    let mut h = Harness::new();
    let r = h.get("/engine.io/?EIO=4&transport=polling&t=abc");
    let res = h.response(r);
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=UTF-8");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = std::str::from_utf8(res.body()).unwrap();
    let sid = &body[9..29];
    assert_eq!(
        body,
        format!(
            "0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}}"
        )
    );
    assert!(Sid::parse(sid).is_some());
    let Some(EngineEvent::Open { session, handshake }) = h.events.pop() else {
        panic!()
    };
    assert_eq!(handshake.transport, Transport::Polling);
    assert_eq!(
        handshake.uri.to_string(),
        "/engine.io/?EIO=4&transport=polling&t=abc"
    );
    assert_eq!(h.engine.sid(session).unwrap().as_str(), sid);
    assert_eq!(h.engine.session_count(), 1);
}

#[test]
fn session_ids_are_reproducible_from_the_seed() {
    let (_, a) = Harness::new().handshake();
    let (_, b) = Harness::new().handshake();
    assert_eq!(a, b);
    let mut h = Harness::new();
    let (_, first) = h.handshake();
    let (_, second) = h.handshake();
    assert_ne!(first, second);
}

#[test]
fn websocket_handshake_sends_open_without_upgrades() {
    let mut h = Harness::new();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    let (frames, closed) = h.frames(ws);
    assert!(!closed);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].starts_with("0{\"sid\":\""));
    assert!(frames[0].ends_with(
        "\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}"
    ));
    h.send_ws(ws, "4hello");
    assert_eq!(h.messages(), vec![Message::Text("hello".into())]);
    h.engine
        .handle_ws_frame(h.now, ws, Frame::Binary(Bytes::from_static(&[1, 2])));
    h.drain();
    assert_eq!(
        h.messages(),
        vec![Message::Binary(Bytes::from_static(&[1, 2]))]
    );
}

#[test]
fn refusals_have_the_reference_status_and_body() {
    let mut h = Harness::new();
    let cases: &[(&str, &str, (u16, &str))] = &[
        (
            "GET",
            "/engine.io/?EIO=4",
            (400, r#"{"code":0,"message":"Transport unknown"}"#),
        ),
        (
            "GET",
            "/engine.io/?EIO=4&transport=abc",
            (400, r#"{"code":0,"message":"Transport unknown"}"#),
        ),
        (
            "GET",
            "/engine.io/?transport=polling",
            (
                400,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
        ),
        (
            "GET",
            "/engine.io/?EIO=abc&transport=polling",
            (
                400,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
        ),
        (
            "GET",
            "/engine.io/?EIO=3&transport=polling",
            (
                400,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
        ),
        (
            "POST",
            "/engine.io/?EIO=4&transport=polling",
            (400, r#"{"code":2,"message":"Bad handshake method"}"#),
        ),
        (
            "PUT",
            "/engine.io/?EIO=4&transport=polling",
            (400, r#"{"code":2,"message":"Bad handshake method"}"#),
        ),
        (
            "GET",
            "/engine.io/?EIO=4&transport=websocket",
            (400, r#"{"code":3,"message":"Bad request"}"#),
        ),
        (
            "GET",
            "/engine.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
        ),
        (
            "GET",
            "/engine.io/?EIO=4&transport=polling&sid=not-a-sid",
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
        ),
        (
            "GET",
            "/engine.io/?EIO=4&transport=polling&sid=",
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
        ),
        (
            "POST",
            "/engine.io/?EIO=4&transport=polling&sid=%00%ff",
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
        ),
    ];
    for (method, uri, expected) in cases {
        let r = h.request(method, uri, &[]);
        let res = h.response(r);
        assert_eq!(error_body(&res), *expected, "{method} {uri}");
        assert_eq!(res.headers()["content-type"], "application/json");
    }
    assert_eq!(h.engine.session_count(), 0, "no refusal opens a session");
    // Each refusal is reported as a connection error with its code and message.
    let errors: Vec<(u8, String)> = h
        .events
        .drain(..)
        .map(|e| match e {
            EngineEvent::ConnectionError { code, message, .. } => (code as u8, message),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(errors.len(), cases.len());
    assert_eq!(errors[0], (0, "Transport unknown".to_owned()));
    assert_eq!(errors[7], (3, "Bad request".to_owned()));

    let r = h.get("/other");
    assert_eq!(h.response(r).status(), 404);
}

#[test]
fn refused_upgrades_answer_400_text_html_and_close() {
    let mut h = Harness::new();
    let headers = Harness::ws_headers();
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
        &headers,
    );
    let res = h.response(r);
    assert_eq!(error_body(&res), (400, "Session ID unknown"));
    assert_eq!(res.headers()["content-type"], "text/html");
    assert_eq!(res.headers()["connection"], "close");
    let r = h.request("GET", "/engine.io/?EIO=abc&transport=websocket", &headers);
    assert_eq!(
        error_body(&h.response(r)),
        (400, "Unsupported protocol version")
    );
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4&transport=websocket",
        &[("connection", "Upgrade"), ("upgrade", "websocket")],
    );
    assert_eq!(
        error_body(&h.response(r)),
        (400, "Missing or invalid Sec-WebSocket-Key header")
    );
    assert_eq!(h.engine.session_count(), 0);
}

#[test]
fn transport_mismatch_is_bad_request() {
    let mut h = Harness::new();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    let (frames, _) = h.frames(ws);
    let sid = &frames[0][9..29];
    let r = h.poll(sid);
    assert_eq!(
        error_body(&h.response(r)),
        (400, r#"{"code":3,"message":"Bad request"}"#)
    );
    // A protocol mismatch on a known session too.
    let (_, sid) = h.handshake();
    let r = h.get(&format!("/engine.io/?EIO=3&transport=polling&sid={sid}"));
    assert_eq!(
        error_body(&h.response(r)),
        (400, r#"{"code":3,"message":"Bad request"}"#)
    );
}

#[test]
fn a_parked_poll_is_answered_with_everything_queued_since() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let r = h.poll(&sid);
    assert!(h.try_response(r).is_none(), "the GET is parked");
    h.engine
        .send(session, Message::Text("hello".into()))
        .unwrap();
    h.engine
        .send(session, Message::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        .unwrap();
    h.engine.send(session, Message::Text("é".into())).unwrap();
    h.drain();
    assert_eq!(h.body(r), "4hello\x1ebAQIDBA==\x1e4é");
    // Queued while no GET is parked: delivered on the next one at once.
    h.engine
        .send(session, Message::Text("later".into()))
        .unwrap();
    h.drain();
    let r = h.poll(&sid);
    assert_eq!(h.body(r), "4later");
}

#[test]
fn posts_deliver_messages_and_answer_ok() {
    let mut h = Harness::new();
    let (_, sid) = h.handshake();
    let r = h.post(&sid, "4hello\x1ebAQIDBA==\x1e4world");
    let res = h.response(r);
    assert_eq!(res.status(), 200);
    assert_eq!(&res.body()[..], b"ok");
    assert_eq!(res.headers()["content-type"], "text/html");
    assert_eq!(
        h.messages(),
        vec![
            Message::Text("hello".into()),
            Message::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Message::Text("world".into()),
        ]
    );
}

#[test]
fn an_oversized_post_gets_413_and_the_session_lives_on() {
    let mut h = Harness::with(EngineConfig {
        max_http_buffer_size: 10,
        ..config()
    });
    let (_, sid) = h.handshake();
    let r = h.post(&sid, "4aaaaaaaaaaaaaaaaaaaa");
    let res = h.response(r);
    assert_eq!(res.status(), 413);
    assert!(res.body().is_empty());
    assert!(h.messages().is_empty());
    let r = h.post(&sid, "4ok");
    assert_eq!(h.body(r), "ok");
    assert_eq!(h.messages(), vec![Message::Text("ok".into())]);
}

#[test]
fn an_octet_stream_post_is_refused_and_closes_the_session() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let r = h.request(
        "POST",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        &[("content-type", "application/octet-stream")],
    );
    assert_eq!(h.response(r).status(), 400);
    assert_eq!(
        h.closes(),
        vec![(session, CloseReason::TransportError, "invalid content")]
    );
}

#[test]
fn an_overlapping_poll_closes_the_session() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let first = h.poll(&sid);
    let second = h.poll(&sid);
    let res = h.response(second);
    assert_eq!(res.status(), 400);
    assert!(res.body().is_empty());
    assert_eq!(h.body(first), "1");
    assert_eq!(
        h.closes(),
        vec![(session, CloseReason::TransportError, "overlap from client")]
    );
    let third = h.poll(&sid);
    assert_eq!(
        error_body(&h.response(third)),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    assert_eq!(h.engine.session_count(), 0);
}

#[test]
fn an_aborted_poll_closes_the_session() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let r = h.poll(&sid);
    h.engine.handle_closed(h.now, r);
    h.drain();
    assert_eq!(
        h.closes(),
        vec![(
            session,
            CloseReason::TransportError,
            "poll connection closed prematurely"
        )]
    );
    assert!(h.try_response(r).is_none());
}

#[test]
fn a_close_packet_releases_the_poll_with_noop() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let get = h.poll(&sid);
    let post = h.post(&sid, "1");
    assert_eq!(h.body(get), "6");
    assert_eq!(h.body(post), "ok");
    assert_eq!(h.closes(), vec![(session, CloseReason::TransportClose, "")]);
    let r = h.poll(&sid);
    assert_eq!(h.response(r).status(), 400);
}

#[test]
fn an_invalid_packet_closes_with_parse_error_and_drops_the_post() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let get = h.poll(&sid);
    let post = h.post(&sid, "4before\x1e9garbage");
    assert_eq!(h.messages(), vec![Message::Text("before".into())]);
    assert_eq!(h.closes(), vec![(session, CloseReason::ParseError, "")]);
    assert_eq!(h.body(get), "1");
    assert!(h.try_response(post).is_none());
    assert!(
        h.transmits
            .iter()
            .any(|t| matches!(t, Transmit::Abort { request } if *request == post))
    );
}

#[test]
fn other_methods_on_a_session_get_500() {
    let mut h = Harness::new();
    let (_, sid) = h.handshake();
    let r = h.request(
        "DELETE",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        &[],
    );
    let res = h.response(r);
    assert_eq!(res.status(), 500);
    assert!(res.body().is_empty());
}

#[test]
fn heartbeat_pings_on_schedule_and_restarts_from_the_pong() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let get = h.poll(&sid);
    h.advance(299 * MS);
    assert!(h.try_response(get).is_none());
    h.advance(MS);
    assert_eq!(h.body(get), "2");
    h.advance(150 * MS);
    let post = h.post(&sid, "3");
    assert_eq!(h.body(post), "ok");
    // The next ping is ping_interval after the pong, not after the previous ping.
    let get = h.poll(&sid);
    h.advance(299 * MS);
    assert!(h.try_response(get).is_none());
    h.advance(MS);
    assert_eq!(h.body(get), "2");
    assert!(h.closes().is_empty());
    assert!(h.engine.sid(session).is_some());
}

#[test]
fn no_pong_closes_with_ping_timeout_after_interval_plus_timeout() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let get = h.poll(&sid);
    h.advance(499 * MS);
    assert_eq!(h.body(get), "2");
    assert!(h.closes().is_empty());
    let get = h.poll(&sid);
    h.advance(MS);
    assert_eq!(h.closes(), vec![(session, CloseReason::PingTimeout, "")]);
    assert_eq!(h.body(get), "1");
    assert_eq!(
        h.engine.poll_timeout(),
        None,
        "no timer outlives its session"
    );
}

#[test]
fn a_message_while_awaiting_pong_extends_the_timeout_once() {
    let mut h = Harness::new();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.advance(300 * MS);
    let (frames, _) = h.frames(ws);
    assert_eq!(frames.last().map(String::as_str), Some("2"));
    h.advance(150 * MS);
    h.send_ws(ws, "4busy");
    h.advance(150 * MS);
    h.send_ws(ws, "4busy again");
    assert!(h.closes().is_empty(), "extended to 650 ms");
    h.advance(50 * MS);
    let closes = h.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].1, CloseReason::PingTimeout);
}

#[test]
fn a_client_ping_is_a_transport_error() {
    let mut h = Harness::new();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.send_ws(ws, "2");
    let closes = h.closes();
    assert_eq!(closes[0].1, CloseReason::TransportError);
    assert_eq!(closes[0].2, "invalid heartbeat direction");
}

#[test]
fn websocket_close_packet_and_close_frame_are_transport_close() {
    let mut h = Harness::new();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.send_ws(ws, "1");
    assert_eq!(h.closes()[0].1, CloseReason::TransportClose);
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.engine.handle_closed(h.now, ws);
    h.drain();
    assert_eq!(h.closes()[0].1, CloseReason::TransportClose);
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.engine.handle_ws_error(h.now, ws, "message too large");
    h.drain();
    let closes = h.closes();
    assert_eq!(
        (closes[0].1, closes[0].2),
        (CloseReason::TransportError, "message too large")
    );
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.send_ws(ws, "x");
    assert_eq!(h.closes()[0].1, CloseReason::ParseError);
    let (_, closed) = h.frames(ws);
    assert!(closed);
}

#[test]
fn upgrade_dance_moves_the_session_and_keeps_order() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let get = h.poll(&sid);
    let ws = h.ws(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(h.frames(ws), (vec![], false));
    h.send_ws(ws, "2probe");
    assert_eq!(h.frames(ws), (vec!["3probe".to_owned()], false));
    assert_eq!(h.body(get), "6", "the parked poll is released");
    // Queued during the upgrade, with no poll parked: goes out on the WebSocket in order.
    h.engine.send(session, Message::Text("a".into())).unwrap();
    h.engine
        .send(session, Message::Binary(Bytes::from_static(&[9])))
        .unwrap();
    h.drain();
    h.send_ws(ws, "5");
    assert_eq!(
        h.frames(ws),
        (vec!["4a".to_owned(), "<bin:[9]>".to_owned()], false)
    );
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, EngineEvent::Upgrade { session: s } if *s == session))
    );
    assert_eq!(h.engine.transport(session), Some(Transport::WebSocket));
    h.engine.send(session, Message::Text("b".into())).unwrap();
    h.drain();
    assert_eq!(h.frames(ws), (vec!["4b".to_owned()], false));

    // Polling after the upgrade is refused.
    let r = h.poll(&sid);
    assert_eq!(
        error_body(&h.response(r)),
        (400, r#"{"code":3,"message":"Bad request"}"#)
    );
    // A second WebSocket for the session is closed right after opening.
    let second = h.ws(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(h.frames(second), (vec![], true));
    assert!(h.closes().is_empty());
    // Heartbeats continue on the WebSocket.
    h.advance(300 * MS);
    assert_eq!(h.frames(ws), (vec!["2".to_owned()], false));
}

#[test]
fn polls_during_a_probed_upgrade_are_released_at_once() {
    let mut h = Harness::new();
    let (_, sid) = h.handshake();
    let ws = h.ws(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.send_ws(ws, "2probe");
    let get = h.poll(&sid);
    assert_eq!(h.body(get), "6");
}

#[test]
fn upgrade_timeout_closes_only_the_new_transport() {
    let mut h = Harness::with(EngineConfig {
        ping_interval: Duration::from_secs(100),
        ..config()
    });
    let (session, sid) = h.handshake();
    let ws = h.ws(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.send_ws(ws, "2probe");
    h.advance(Duration::from_millis(9_999));
    assert_eq!(h.frames(ws), (vec!["3probe".to_owned()], false));
    h.advance(MS);
    assert_eq!(h.frames(ws), (vec![], true));
    assert!(h.closes().is_empty());
    assert_eq!(h.engine.transport(session), Some(Transport::Polling));
    let get = h.poll(&sid);
    h.engine
        .send(session, Message::Text("still here".into()))
        .unwrap();
    h.drain();
    assert_eq!(h.body(get), "4still here");
    // The session can try again.
    let ws = h.ws(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.send_ws(ws, "2probe");
    assert_eq!(h.frames(ws), (vec!["3probe".to_owned()], false));
}

#[test]
fn any_other_packet_aborts_the_upgrade() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    let ws = h.ws(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.send_ws(ws, "4too early");
    assert_eq!(h.frames(ws), (vec![], true));
    assert!(h.messages().is_empty());
    assert_eq!(h.engine.transport(session), Some(Transport::Polling));
    assert!(h.closes().is_empty());
}

#[test]
fn server_close_on_polling_waits_for_the_next_poll() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    h.engine.send(session, Message::Text("bye".into())).unwrap();
    h.engine.close(h.now, session);
    h.drain();
    assert_eq!(
        h.engine.send(session, Message::Text("x".into())),
        Err(SendError::Closing)
    );
    assert!(h.closes().is_empty());
    let get = h.poll(&sid);
    assert_eq!(h.body(get), "4bye\x1e1");
    assert_eq!(h.closes(), vec![(session, CloseReason::ForcedClose, "")]);
}

#[test]
fn server_close_without_a_poll_ends_after_the_close_timeout() {
    let mut h = Harness::new();
    let (session, sid) = h.handshake();
    // Keep the client answering pings so only the close timeout can end the session.
    h.engine.close(h.now, session);
    h.drain();
    for _ in 0..119 {
        h.advance(250 * MS);
        let _ = h.post(&sid, "3");
    }
    assert_eq!(h.closes(), vec![], "29.75 s");
    h.advance(250 * MS);
    assert_eq!(h.closes(), vec![(session, CloseReason::ForcedClose, "")]);
}

#[test]
fn server_close_on_websocket_closes_it() {
    let mut h = Harness::new();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    let Some(EngineEvent::Open { session, .. }) = h.events.pop() else {
        panic!()
    };
    h.engine.send(session, Message::Text("bye".into())).unwrap();
    h.engine.close(h.now, session);
    h.drain();
    let (frames, closed) = h.frames(ws);
    assert_eq!(frames.last().map(String::as_str), Some("4bye"));
    assert!(closed);
    assert_eq!(h.closes(), vec![(session, CloseReason::ForcedClose, "")]);
}

#[test]
fn a_stale_session_id_never_reaches_a_new_session() {
    let mut h = Harness::new();
    let (old, sid) = h.handshake();
    let post = h.post(&sid, "1");
    assert_eq!(h.body(post), "ok");
    let (new, _) = h.handshake();
    assert_eq!(
        h.engine.send(old, Message::Text("x".into())),
        Err(SendError::UnknownSession)
    );
    assert!(h.engine.sid(new).is_some());
}

#[test]
fn a_client_that_never_polls_is_cut_off_at_the_buffer_limit() {
    let mut h = Harness::with(EngineConfig {
        max_buffered_bytes: 100,
        ..config()
    });
    let (session, _) = h.handshake();
    let chunk = "x".repeat(40);
    h.engine
        .send(session, Message::Text(chunk.clone().into()))
        .unwrap();
    h.engine
        .send(session, Message::Text(chunk.clone().into()))
        .unwrap();
    assert!(h.engine.sid(session).is_some());
    h.engine.send(session, Message::Text(chunk.into())).unwrap();
    h.drain();
    assert_eq!(
        h.closes(),
        vec![(session, CloseReason::TransportError, "write buffer full")]
    );
}

#[test]
fn after_everyone_leaves_nothing_remains() {
    let mut h = Harness::new();
    for _ in 0..5 {
        h.handshake();
        h.ws("/engine.io/?EIO=4&transport=websocket");
    }
    h.advance(Duration::from_secs(1));
    assert_eq!(h.closes().len(), 10);
    assert_eq!(h.engine.session_count(), 0);
    assert_eq!(h.engine.poll_timeout(), None);
    assert!(h.engine.requests.is_empty());
    assert!(h.engine.by_sid.is_empty());
}

proptest! {
    /// Arbitrary requests, bodies and frames never panic, never open a session without a valid
    /// handshake, and leave nothing behind once the sessions time out.
    #[test]
    fn arbitrary_input_is_answered_and_never_panics(
        inputs in proptest::collection::vec(
            (0u8..6, "[a-zA-Z0-9=&%?._/-]{0,40}", ".{0,40}"),
            1..40,
        )
    ) {
        let mut h = Harness::new();
        let (_, sid) = h.handshake();
        let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
        for (kind, query, body) in inputs {
            match kind {
                0 => { h.get(&format!("/engine.io/?{query}")); }
                1 => { h.post(&sid, &body); }
                2 => h.send_ws(ws, &body),
                3 => { h.request("POST", &format!("/engine.io/?{query}"), &[]); }
                4 => { h.request("GET", &format!("/engine.io/?{query}"), &Harness::ws_headers()); }
                _ => h.advance(Duration::from_millis(body.len() as u64 * 10)),
            }
        }
        h.advance(Duration::from_secs(60));
        prop_assert_eq!(h.engine.session_count(), 0);
        prop_assert_eq!(h.engine.poll_timeout(), None);
        prop_assert!(!h.engine.requests.values().any(|r| matches!(r, Role::Poll(_) | Role::Post(_) | Role::WebSocket(_) | Role::WsUpgrade(_))));
    }
}

#[test]
fn close_all_answers_parked_polls_and_closes_websockets_at_once() {
    let mut h = Harness::new();
    let (polling, sid) = h.handshake();
    let get = h.poll(&sid);
    let (idle, _) = h.handshake();
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    h.engine.close_all(h.now);
    h.drain();
    assert_eq!(h.body(get), "1");
    assert!(h.frames(ws).1);
    let closes = h.closes();
    assert_eq!(closes.len(), 3);
    assert!(
        closes
            .iter()
            .all(|(_, reason, _)| *reason == CloseReason::ForcedClose)
    );
    assert!(
        closes.iter().any(|(s, _, _)| *s == polling) && closes.iter().any(|(s, _, _)| *s == idle)
    );
    assert_eq!(h.engine.session_count(), 0);
    assert_eq!(h.engine.poll_timeout(), None);
}

#[test]
fn allow_request_asks_the_application_before_the_version_check() {
    let mut h = Harness::with(EngineConfig {
        allow_request: true,
        ..config()
    });
    let r = h.get("/engine.io/?EIO=4&transport=polling&t=1");
    assert!(
        h.try_response(r).is_none(),
        "held until the application answers"
    );
    let Some(EngineEvent::AllowRequest { request, handshake }) = h.events.pop() else {
        panic!("{:?}", h.events)
    };
    assert_eq!(request, r);
    assert_eq!(
        handshake.uri.to_string(),
        "/engine.io/?EIO=4&transport=polling&t=1"
    );
    h.engine.allow_request(h.now, r, Err("go away".into()));
    h.drain();
    let res = h.response(r);
    assert_eq!(error_body(&res), (403, r#"{"code":4,"message":"go away"}"#));
    // Allowed: the handshake goes on (and the version is checked after the application).
    let r = h.get("/engine.io/?EIO=4&transport=polling");
    h.engine.allow_request(h.now, r, Ok(()));
    h.drain();
    assert!(h.body(r).starts_with("0{\"sid\":"));
    let r = h.get("/engine.io/?EIO=3&transport=polling");
    h.engine.allow_request(h.now, r, Ok(()));
    h.drain();
    assert_eq!(error_body(&h.response(r)).0, 400);
    // A refused upgrade gets the plain-text 400 of upgrades.
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4&transport=websocket",
        &Harness::ws_headers(),
    );
    h.engine.allow_request(h.now, r, Err(String::new()));
    h.drain();
    assert_eq!(error_body(&h.response(r)), (400, "Forbidden"));
}

#[test]
fn cookie_initial_packet_and_trailing_slash() {
    let mut h = Harness::with(EngineConfig {
        path: "/engine.io".into(),
        cookie: Some(CookieConfig::default()),
        initial_packet: Some("hello".into()),
        ..config()
    });
    let r = h.get("/engine.io/?EIO=4&transport=polling");
    let res = h.response(r);
    let body = std::str::from_utf8(res.body()).unwrap();
    let sid = &body[9..29];
    assert!(body.ends_with("}\u{1e}4hello"), "{body}");
    assert_eq!(
        res.headers()["set-cookie"],
        format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str()
    );
    // Only the handshake sets it.
    let r = h.poll(sid);
    h.engine
        .send(h.engine_session(sid), Message::Text("x".into()))
        .unwrap();
    h.drain();
    assert!(h.response(r).headers().get("set-cookie").is_none());
}

#[test]
fn cors_answers_preflights_and_marks_every_response() {
    let mut h = Harness::with(EngineConfig {
        cors: Some(CorsConfig {
            origin: CorsOrigin::List(vec!["https://app.example".into()]),
            credentials: true,
            max_age: Some(600),
            exposed_headers: vec!["x-trace".into()],
            ..CorsConfig::default()
        }),
        ..config()
    });
    let r = h.request(
        "OPTIONS",
        "/engine.io/?EIO=4&transport=polling",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-headers", "content-type"),
        ],
    );
    let res = h.response(r);
    assert_eq!(res.status(), 204);
    let header = |res: &Response<Bytes>, name: &str| {
        res.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(header(&res, "access-control-allow-credentials"), "true");
    assert_eq!(
        header(&res, "access-control-allow-methods"),
        "GET,HEAD,PUT,PATCH,POST,DELETE"
    );
    assert_eq!(header(&res, "access-control-allow-headers"), "content-type");
    assert_eq!(header(&res, "access-control-max-age"), "600");
    assert_eq!(
        header(&res, "vary"),
        "Origin, Access-Control-Request-Headers"
    );
    assert!(h.events.is_empty(), "a preflight is no Engine.IO request");
    // Other responses, refusals included, carry the headers; an unknown origin gets none.
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[("origin", "https://app.example")],
    );
    let res = h.response(r);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(header(&res, "access-control-expose-headers"), "x-trace");
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4",
        &[("origin", "https://evil.example")],
    );
    let res = h.response(r);
    assert_eq!(res.status(), 400);
    assert_eq!(header(&res, "access-control-allow-origin"), "");
    assert_eq!(header(&res, "vary"), "Origin");
}

#[test]
fn the_headers_hook_marks_session_responses_and_the_handshake() {
    let hook = HeadersHook(std::sync::Arc::new(
        |headers: &mut HeaderMap, request: &HeaderMap, initial: bool| {
            let value = if initial { "initial" } else { "later" };
            headers.insert("x-phase", HeaderValue::from_static(value));
            if let Some(trace) = request.get("x-trace") {
                headers.insert("x-trace", trace.clone());
            }
        },
    ));
    let mut h = Harness::with(EngineConfig {
        headers: Some(hook),
        ..config()
    });
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[("x-trace", "t1")],
    );
    let res = h.response(r);
    assert_eq!(res.headers()["x-phase"], "initial");
    assert_eq!(res.headers()["x-trace"], "t1");
    let sid = std::str::from_utf8(res.body()).unwrap()[9..29].to_owned();
    let r = h.post(&sid, "4x");
    assert_eq!(h.response(r).headers()["x-phase"], "later");
    // The 101 of a WebSocket handshake carries them too.
    let r = h.request(
        "GET",
        "/engine.io/?EIO=4&transport=websocket",
        &Harness::ws_headers(),
    );
    let accept = h
        .transmits
        .iter()
        .find_map(|t| match t {
            Transmit::AcceptWebSocket { request, headers } if *request == r => {
                Some(headers.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(accept["x-phase"], "initial");
    // Refusals do not run the hook.
    let r = h.get("/engine.io/?EIO=4&transport=nope");
    assert!(h.response(r).headers().get("x-phase").is_none());
}

#[test]
fn generate_id_makes_the_session_ids_and_its_failures_refuse_the_handshake() {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = counter.clone();
    let hook = IdHook(std::sync::Arc::new(move |handshake: &Handshake| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match (handshake.uri.query().unwrap_or("").contains("fail"), n) {
            (true, _) => Err("no id for you".into()),
            // The third call repeats the first id.
            (false, 2) => Ok("user-0".into()),
            (false, n) => Ok(format!("user-{n}")),
        }
    }));
    let mut h = Harness::with(EngineConfig {
        generate_id: Some(hook),
        ..config()
    });
    let r = h.get("/engine.io/?EIO=4&transport=polling");
    assert!(h.body(r).starts_with("0{\"sid\":\"user-0\","));
    let ws = h.ws("/engine.io/?EIO=4&transport=websocket");
    assert!(h.frames(ws).0[0].starts_with("0{\"sid\":\"user-1\","));
    let r = h.get("/engine.io/?EIO=4&transport=polling");
    assert_eq!(
        error_body(&h.response(r)),
        (400, r#"{"code":3,"message":"Bad request"}"#),
        "a taken id"
    );
    let r = h.get("/engine.io/?EIO=4&transport=polling&fail=1");
    assert_eq!(error_body(&h.response(r)).0, 400);
    let contexts: Vec<&str> = h
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::ConnectionError { context, .. } => Some(*context),
            _ => None,
        })
        .collect();
    assert_eq!(contexts, vec!["ID_GENERATION_ERROR", "ID_GENERATION_ERROR"]);
    // The custom ids work for polling requests.
    let r = h.poll("user-0");
    h.engine
        .send(h.engine_session("user-0"), Message::Text("x".into()))
        .unwrap();
    h.drain();
    assert_eq!(h.body(r), "4x");
}

#[test]
fn handshake_headers_are_copied_whole_and_in_order_out_of_the_request_buffer() {
    let buffer = Bytes::from_static(b"a=1; b=2text/plain");
    let mut headers = HeaderMap::new();
    let cookie = HeaderValue::from_maybe_shared(buffer.slice(0..8)).unwrap();
    headers.append("cookie", cookie);
    headers.append("cookie", HeaderValue::from_static("c=3"));
    headers.append("accept", HeaderValue::from_static("text/plain"));
    let mut secret = HeaderValue::from_static("Bearer x");
    secret.set_sensitive(true);
    headers.append("authorization", secret);
    headers.append("x-empty", HeaderValue::from_static(""));

    let copy = copy_headers(&headers);

    assert_eq!(copy, headers);
    let cookies: Vec<_> = copy.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2", "c=3"]);
    assert!(copy["authorization"].is_sensitive());
    assert!(!copy["accept"].is_sensitive());
    // The copy lives outside the request's buffer.
    let range = buffer.as_ptr_range();
    assert!(!range.contains(&copy["cookie"].as_bytes().as_ptr()));
}
