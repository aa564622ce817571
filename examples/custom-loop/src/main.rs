//! sio-core driven by a hand-written event loop: blocking std sockets, one thread per connection,
//! no async runtime. It serves the same application as `examples/conformance` (namespaces `/` and
//! `/custom`, `auth` on connection, `message` answered with `message-back`, `message-with-ack`
//! acked), with the reference timings.
//!
//! The contract an embedder follows, all in `main`'s loop:
//! 1. wait for one input, or until `poll_timeout()`;
//! 2. hand it to the core with the current time (`handle_*`, or `handle_timeout`);
//! 3. drain `poll_transmit()` and `poll_event()` until both are empty, acting on each.
//!
//! Listens on 127.0.0.1 at `PORT` (default 3000; `0` picks a free port) and prints the address.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use sio_core::engine::{BodyError, EngineConfig, Frame, RequestId, Transmit};
use sio_core::socket::{EmitOptions, Event, Payload, Server, ServerConfig, Target};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// What connection threads tell the loop.
enum Input {
    Request {
        id: RequestId,
        head: Box<http::request::Parts>,
        peer: SocketAddr,
        reply: Sender<Output>,
    },
    Body(RequestId, Result<Bytes, BodyError>),
    Closed(RequestId),
    WsOpen(RequestId, Sender<Output>),
    WsFrame(RequestId, Frame),
}

/// What the loop tells a connection thread.
enum Output {
    Response(http::Response<Bytes>),
    ReadBody(usize),
    Abort,
    Accept(http::HeaderMap),
    Frame(Frame),
    Close,
}

fn main() -> io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("listening on {}", listener.local_addr()?);
    let (inputs, rx) = mpsc::channel();
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let inputs = inputs.clone();
            thread::spawn(move || connection(stream, n as u64, inputs));
        }
    });
    run(rx);
    Ok(())
}

/// The event loop: the only owner of the server.
fn run(inputs: Receiver<Input>) {
    let config = ServerConfig {
        engine: EngineConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            ..EngineConfig::default()
        },
        connect_timeout: Duration::from_millis(1000),
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, Instant::now());
    server.namespace("/custom");
    // Where each request's or WebSocket's output goes.
    let mut routes: HashMap<RequestId, Sender<Output>> = HashMap::new();
    loop {
        // 1. Wait for an input or the next timeout.
        let input = match server.poll_timeout() {
            Some(at) => match inputs.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match inputs.recv() {
                Ok(input) => Some(input),
                Err(_) => return,
            },
        };
        // 2. Hand it over with the current time.
        let now = Instant::now();
        match input {
            None => server.handle_timeout(now),
            Some(Input::Request {
                id,
                head,
                peer,
                reply,
            }) => {
                routes.insert(id, reply);
                server.handle_request(now, id, &head, Some(peer));
            }
            Some(Input::Body(id, body)) => server.handle_request_body(now, id, body),
            Some(Input::Closed(id)) => {
                routes.remove(&id);
                server.handle_closed(now, id);
            }
            Some(Input::WsOpen(id, out)) => {
                routes.insert(id, out);
                server.handle_ws_open(now, id);
            }
            Some(Input::WsFrame(id, frame)) => server.handle_ws_frame(now, id, frame),
        }
        // 3. Drain until the core has nothing more to say.
        loop {
            let mut idle = true;
            while let Some(transmit) = server.poll_transmit() {
                idle = false;
                route(&mut routes, transmit);
            }
            while let Some(event) = server.poll_event() {
                idle = false;
                application(&mut server, now, event);
            }
            if idle {
                break;
            }
        }
    }
}

fn route(routes: &mut HashMap<RequestId, Sender<Output>>, transmit: Transmit) {
    let (id, output, done) = match transmit {
        Transmit::Response { request, response } => (request, Output::Response(*response), true),
        Transmit::ReadBody { request, limit } => (request, Output::ReadBody(limit), false),
        Transmit::Abort { request } => (request, Output::Abort, true),
        Transmit::AcceptWebSocket { request, headers } => (request, Output::Accept(*headers), true),
        Transmit::Frame { request, frame } => (request, Output::Frame(frame), false),
        Transmit::CloseWebSocket { request } => (request, Output::Close, true),
    };
    if let Some(route) = routes.get(&id) {
        let _ = route.send(output);
    }
    if done {
        routes.remove(&id);
    }
}

/// The application, written against the core's API directly.
fn application(server: &mut Server, now: Instant, event: Event) {
    match event {
        Event::Connect { socket, auth, .. } if server.accept(now, socket).is_ok() => {
            let args = Payload::from_args(&auth).unwrap_or_default();
            let target = Target::Socket(socket);
            let _ = server.emit(now, &target, "auth", &args, EmitOptions::default());
        }
        Event::Message {
            socket,
            event,
            args,
            ack,
        } => match (event.as_str(), ack) {
            ("message", _) => {
                let target = Target::Socket(socket);
                let _ = server.emit(now, &target, "message-back", &args, EmitOptions::default());
            }
            ("message-with-ack", Some(id)) => {
                let _ = server.ack(now, socket, id, &args);
            }
            _ => {}
        },
        _ => {}
    }
}

/// One TCP connection: HTTP/1.1 requests, until one becomes a WebSocket.
fn connection(stream: TcpStream, n: u64, inputs: Sender<Input>) {
    let Ok(peer) = stream.peer_addr() else { return };
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    for k in 0.. {
        let id = RequestId(n << 20 | k);
        let Some((head, content_length)) = read_head(&mut reader) else {
            return;
        };
        let (reply, outputs) = mpsc::channel();
        let key = head.headers.get("sec-websocket-key").cloned();
        if inputs
            .send(Input::Request {
                id,
                head: Box::new(head),
                peer,
                reply,
            })
            .is_err()
        {
            return;
        }
        loop {
            // Wait for the loop's answer; notice a client that goes away meanwhile.
            let output = match outputs.recv_timeout(Duration::from_millis(50)) {
                Ok(output) => output,
                Err(RecvTimeoutError::Timeout) => {
                    if peer_closed(&writer) {
                        let _ = inputs.send(Input::Closed(id));
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match output {
                Output::Response(response) => {
                    if write_response(&mut writer, &response).is_err() {
                        return;
                    }
                    break;
                }
                Output::ReadBody(limit) => {
                    let body = if content_length > limit {
                        Err(BodyError::TooLarge)
                    } else {
                        let mut body = vec![0; content_length];
                        if reader.read_exact(&mut body).is_err() {
                            let _ = inputs.send(Input::Closed(id));
                            return;
                        }
                        Ok(Bytes::from(body))
                    };
                    let too_large = body.is_err();
                    let _ = inputs.send(Input::Body(id, body));
                    if too_large {
                        // The core answers 413; the rest of the body is unread, so the connection
                        // cannot be reused.
                        if let Ok(Output::Response(response)) = outputs.recv() {
                            let _ = write_response(&mut writer, &response);
                        }
                        return;
                    }
                }
                Output::Abort => return,
                Output::Accept(headers) => {
                    let accept = key
                        .as_ref()
                        .map(|k| tungstenite::handshake::derive_accept_key(k.as_bytes()))
                        .unwrap_or_default();
                    let mut head = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n"
                    );
                    for (name, value) in &headers {
                        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
                    }
                    head.push_str("\r\n");
                    if writer.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    websocket(writer, id, inputs);
                    return;
                }
                Output::Frame(_) | Output::Close => return,
            }
        }
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(http::request::Parts, usize)> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        if reader.read_until(b'\n', &mut raw).ok()? == 0 || raw.len() > 16 * 1024 {
            return None;
        }
        if raw[before..] == *b"\r\n" && before > 0 {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(&raw).ok()?;
    let mut builder = http::Request::builder()
        .method(request.method?)
        .uri(request.path?);
    let mut content_length = 0;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)
                .ok()?
                .trim()
                .parse()
                .ok()?;
        }
        builder = builder.header(header.name, header.value);
    }
    let (head, ()) = builder.body(()).ok()?.into_parts();
    Some((head, content_length))
}

fn write_response(writer: &mut TcpStream, response: &http::Response<Bytes>) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n",
        response.status().as_u16(),
        response.status().canonical_reason().unwrap_or(""),
        response.body().len()
    );
    for (name, value) in response.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(response.body())?;
    writer.flush()
}

/// Whether the client closed its end while we wait to answer it.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// A WebSocket: reads with a short timeout so that the same thread can write what the loop sends.
fn websocket(stream: TcpStream, id: RequestId, inputs: Sender<Input>) {
    if stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .is_err()
    {
        return;
    }
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
    let (out, outputs) = mpsc::channel();
    if inputs.send(Input::WsOpen(id, out)).is_err() {
        return;
    }
    loop {
        loop {
            match outputs.try_recv() {
                Ok(Output::Frame(Frame::Text(text))) => {
                    let _ = ws.write(Message::text(text.to_string()));
                }
                Ok(Output::Frame(Frame::Binary(data))) => {
                    let _ = ws.write(Message::binary(data));
                }
                Ok(Output::Close) => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return;
                }
                Ok(_) => {}
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let _ = ws.flush();
        match ws.read() {
            Ok(Message::Text(text)) => {
                let frame = Frame::Text(text.as_str().into());
                let _ = inputs.send(Input::WsFrame(id, frame));
            }
            Ok(Message::Binary(data)) => {
                let _ = inputs.send(Input::WsFrame(id, Frame::Binary(data)));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(_) => {
                let _ = inputs.send(Input::Closed(id));
                return;
            }
        }
    }
}
