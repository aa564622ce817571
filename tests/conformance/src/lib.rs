//! The harness of the conformance suite: the same Socket.IO application started on each runtime,
//! and blocking clients that speak raw HTTP and WebSocket so that every byte can be checked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use sio_runtime::{AckError, EngineConfig, Limits, Payload, ServerConfig, SocketRef};
use tungstenite::{Message, WebSocket};

/// Starts the application on a runtime and returns the address it listens on.
pub type Start = fn() -> SocketAddr;

/// The server's settings: those of the official protocol test suites.
pub fn config() -> ServerConfig {
    ServerConfig {
        engine: EngineConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            ..EngineConfig::default()
        },
        connect_timeout: Duration::from_millis(1000),
        ..ServerConfig::default()
    }
}

/// The time a client has to send a request head: short, so that the suite can see it expire.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// The suite's WebSocket close timeout, short enough for a test to outwait.
pub const WS_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The glue's limits for the suite.
pub fn limits() -> Limits {
    Limits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        ws_close_timeout: WS_CLOSE_TIMEOUT,
        ..Limits::default()
    }
}

/// The application: the official suites' contract plus rooms and a server-side ack.
pub fn app(io: &sio_runtime::SocketIo) {
    fn handlers(socket: &mut SocketRef<'_>) {
        let auth = socket
            .handshake()
            .map(|h| h.auth.clone())
            .unwrap_or_default();
        let _ = socket.emit("auth", &auth);
        socket.on("message", |socket, args: Payload| {
            let _ = socket.emit("message-back", &args);
        });
        socket.on("message-with-ack", |socket, args: Payload| {
            let _ = socket.ack(&args);
        });
        // The peer's IP address as the listener reported it (`handshake.address`).
        socket.on("address", |socket, _: Payload| {
            let address = socket.handshake().map(|h| h.address.clone());
            let _ = socket.ack(&address);
        });
        socket.on("join", |socket, room: String| {
            socket.join(&room);
            let _ = socket.ack(&());
        });
        // `count` messages of `size` bytes at once, for a client that does not read them.
        socket.on("flood", |socket, (count, size): (usize, usize)| {
            let text = "x".repeat(size.min(1 << 20));
            for _ in 0..count.min(100_000) {
                let _ = socket.emit("flood", &text);
            }
        });
        // Members of `watchers` hear of every disconnection, with its reason.
        socket.on_disconnect(|socket, reason| {
            let id = socket.id().to_owned();
            let _ = socket
                .io()
                .to("watchers")
                .emit("gone", &(id, reason.to_string()));
        });
        socket.on("to-room", |socket, (room, message): (String, Value)| {
            let _ = socket.to(room).emit("room-message", &message);
        });
        socket.on("ask", |socket, timeout_ms: u64| {
            let id = socket.id().to_owned();
            let timeout = Duration::from_millis(timeout_ms);
            let _ = socket
                .timeout(timeout)
                .emit_with_ack("question", &(), move |io, result| {
                    let answer = match result {
                        Ok(reply) => json!({ "answer": reply }),
                        Err(AckError::Timeout) => json!({ "error": "timeout" }),
                        Err(_) => json!({ "error": "other" }),
                    };
                    if let Some(mut socket) = io.socket("/", &id) {
                        let _ = socket.emit("answer", &answer);
                    }
                });
        });
    }
    io.on_connection(handlers);
    io.of("/custom").on_connection(handlers);
}

/// Runs `serve` on a thread of its own; `serve` sends the bound address and then serves forever.
fn spawn_server(serve: impl FnOnce(mpsc::Sender<SocketAddr>) + Send + 'static) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve(tx));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server did not start")
}

/// The application on tokio.
pub fn start_tokio() -> SocketAddr {
    start_tokio_on(tokio::runtime::Builder::new_current_thread(), limits())
}

/// The application on tokio with two worker threads: the driver and the connections' tasks write
/// to the same sockets from different threads.
pub fn start_tokio_multi_thread() -> SocketAddr {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2);
    start_tokio_on(builder, limits())
}

/// The application on tokio, with every WebSocket frame written by its connection's task rather
/// than by the driver.
pub fn start_tokio_task_writes() -> SocketAddr {
    let limits = Limits {
        driver_writes: 0,
        ..limits()
    };
    start_tokio_on(tokio::runtime::Builder::new_current_thread(), limits)
}

/// The application with `limits`, on a tokio runtime built by `builder`.
fn start_tokio_on(mut builder: tokio::runtime::Builder, limits: Limits) -> SocketAddr {
    spawn_server(move |tx| {
        let runtime = builder.enable_all().build().expect("a tokio runtime");
        runtime.block_on(serve_tokio(limits, tx));
    })
}

async fn serve_tokio(limits: Limits, tx: mpsc::Sender<SocketAddr>) {
    let io = sio_tokio::SocketIo::with_limits(config(), limits);
    app(&io);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let _ = tx.send(listener.local_addr().expect("address"));
    let _ = io.serve(listener).await;
}

/// The application on smol.
pub fn start_smol() -> SocketAddr {
    spawn_server(|tx| {
        let io = sio_smol::SocketIo::with_limits(config(), limits());
        smol::block_on(serve_smol(io, tx));
    })
}

/// The application on an executor of its own: one smol executor run by the server's thread, which
/// also drives the reactor (`SocketIo::with_runtime`).
pub fn start_smol_own_executor() -> SocketAddr {
    spawn_server(|tx| {
        let executor = std::sync::Arc::new(smol::Executor::new());
        let runtime = sio_smol::SmolRuntime::with_executor(executor.clone());
        let io = sio_smol::SocketIo::with_runtime(runtime, config(), limits());
        smol::block_on(executor.run(serve_smol(io, tx)));
    })
}

/// The application on `sio_smol::block_on`: the server's thread runs its tasks and drives the
/// reactor, and the `SocketIo` made inside spawns there.
pub fn start_smol_block_on() -> SocketAddr {
    spawn_server(|tx| {
        sio_smol::block_on(async move {
            let io = sio_smol::SocketIo::with_limits(config(), limits());
            serve_smol(io, tx).await;
        });
    })
}

async fn serve_smol(io: sio_smol::SocketIo, tx: mpsc::Sender<SocketAddr>) {
    app(&io);
    let listener = async_net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let _ = tx.send(listener.local_addr().expect("address"));
    let _ = io.serve(listener).await;
}

/// The application on async-std.
pub fn start_async_std() -> SocketAddr {
    spawn_server(|tx| async_std::task::block_on(serve_async_std(tx)))
}

/// The application on `sio_async_std::block_on`, as [`start_smol_block_on`].
pub fn start_async_std_block_on() -> SocketAddr {
    spawn_server(|tx| sio_async_std::block_on(serve_async_std(tx)))
}

async fn serve_async_std(tx: mpsc::Sender<SocketAddr>) {
    let io = sio_async_std::SocketIo::with_limits(config(), limits());
    app(&io);
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let _ = tx.send(listener.local_addr().expect("address"));
    let _ = io.serve(listener).await;
}

/// An HTTP response as raw parts.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, lines after the status line.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = read_response(&mut stream);
    // The connection closes after the answer: whatever follows the head is body, whatever its
    // length said.
    let _ = stream.read_to_end(&mut response.body);
    response
}

/// Reads one response of a keep-alive connection (its body sized by `content-length`).
pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned();
    let status = head[9..12].parse().expect("a status");
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("a response body");
    Response { status, head, body }
}

/// The engine query for a session.
pub fn polling(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// Opens a polling session and returns its id.
pub fn polling_handshake(addr: SocketAddr) -> String {
    let res = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", "");
    assert_eq!(res.status, 200);
    res.text()[9..29].to_owned()
}

/// A blocking WebSocket client.
pub struct Ws {
    socket: WebSocket<TcpStream>,
}

impl Ws {
    /// Connects to `path` (`/socket.io/?...`).
    pub fn connect(addr: SocketAddr, path: &str) -> Ws {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (socket, response) =
            tungstenite::client::client(format!("ws://{addr}{path}"), stream).expect("handshake");
        assert_eq!(response.status(), 101);
        Ws { socket }
    }

    /// Opens a WebSocket session and returns it with its open packet.
    pub fn open(addr: SocketAddr) -> (Ws, String) {
        let mut ws = Ws::connect(addr, "/socket.io/?EIO=4&transport=websocket");
        let open = ws.recv_text();
        (ws, open)
    }

    /// Sends a text frame.
    pub fn send(&mut self, text: &str) {
        self.socket.send(Message::text(text)).expect("send");
    }

    /// Sends a binary frame.
    pub fn send_binary(&mut self, data: &[u8]) {
        self.socket
            .send(Message::binary(data.to_vec()))
            .expect("send");
    }

    /// The next data frame, pings of the engine answered with pongs on the way when `pong`.
    pub fn recv(&mut self) -> Message {
        loop {
            match self.socket.read().expect("a frame") {
                Message::Text(t) => return Message::Text(t),
                Message::Binary(b) => return Message::Binary(b),
                Message::Close(c) => return Message::Close(c),
                _ => {}
            }
        }
    }

    /// The next text frame.
    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The next binary frame.
    pub fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv() {
            Message::Binary(b) => b.to_vec(),
            other => panic!("expected binary, got {other:?}"),
        }
    }

    /// The next text frame that is not an engine ping (which is answered).
    pub fn recv_packet(&mut self) -> String {
        loop {
            let text = self.recv_text();
            if text == "2" {
                self.send("3");
                continue;
            }
            return text;
        }
    }

    /// Whether the server closed the connection (a close frame, or the end of the stream).
    pub fn closed(&mut self) -> bool {
        loop {
            match self.socket.read() {
                Ok(Message::Close(_)) => return true,
                Ok(Message::Text(t)) if t.as_str() == "2" => {}
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed)
                | Err(tungstenite::Error::Protocol(_)) => return true,
                Err(tungstenite::Error::Io(e)) => {
                    return e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut;
                }
                Err(_) => return true,
            }
        }
    }

    /// Reads until the stream ends; returns how many data frames came before, and whether the end
    /// was a close frame.
    pub fn read_to_end(&mut self) -> (usize, bool) {
        let mut frames = 0;
        loop {
            match self.socket.read() {
                Ok(Message::Close(_)) => return (frames, true),
                Ok(Message::Text(_) | Message::Binary(_)) => frames += 1,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the server neither sent nor closed: {e}")
                }
                Err(_) => return (frames, false),
            }
        }
    }

    /// Connects to a namespace and returns the socket id from the CONNECT reply, checking its bytes.
    pub fn connect_nsp(&mut self, nsp: &str, auth: &str) -> String {
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        self.send(&format!("40{prefix}{auth}"));
        let reply = self.recv_packet();
        let head = format!("40{prefix}{{\"sid\":\"");
        assert!(
            reply.starts_with(&head) && reply.ends_with("\"}"),
            "{reply}"
        );
        let sid = reply[head.len()..reply.len() - 2].to_owned();
        assert_eq!(sid.len(), 20);
        sid
    }
}
