//! The loader's protocol clients: Socket.IO over a direct WebSocket, and over HTTP long-polling
//! with a minimal HTTP/1.1 client. Both speak only what the scenarios need.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use async_net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};

/// The Socket.IO path of every server under test.
const PATH: &str = "/socket.io/?EIO=4";

/// What the scenarios need of a client, whatever its transport.
pub trait Transport {
    /// Sends one Engine.IO packet.
    fn send(&mut self, packet: String) -> impl Future<Output = io::Result<()>>;
    /// The next Engine.IO packet that is not a ping; pings are answered on the way.
    fn recv(&mut self) -> impl Future<Output = io::Result<String>>;
    /// Ends the session.
    fn close(self) -> impl Future<Output = ()>;
}

fn other(message: impl Into<String>) -> io::Error {
    io::Error::other(message.into())
}

/// A Socket.IO client connected to `/` over a WebSocket.
pub struct WsClient {
    stream: WebSocketStream<TcpStream>,
}

impl WsClient {
    /// Opens the WebSocket, reads the Engine.IO open packet, connects to `/` and waits for the
    /// CONNECT reply.
    pub async fn connect(addr: SocketAddr) -> io::Result<WsClient> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let url = format!("ws://{addr}{PATH}&transport=websocket");
        let (stream, _) = async_tungstenite::client_async(url, tcp)
            .await
            .map_err(|e| other(format!("websocket handshake: {e}")))?;
        let mut client = WsClient { stream };
        let open = client.recv().await?;
        if !open.starts_with('0') {
            return Err(other(format!("expected the open packet, got {open:?}")));
        }
        client.send("40".to_owned()).await?;
        let reply = client.recv().await?;
        if !reply.starts_with("40") {
            return Err(other(format!("expected CONNECT, got {reply:?}")));
        }
        Ok(client)
    }
}

impl Transport for WsClient {
    async fn send(&mut self, text: String) -> io::Result<()> {
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| other(format!("websocket send: {e}")))
    }

    async fn recv(&mut self) -> io::Result<String> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    self.send("3".to_owned()).await?;
                }
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err(other("connection closed")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(other(format!("websocket read: {e}"))),
            }
        }
    }

    async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
struct HttpConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl HttpConnection {
    async fn request(&mut self, method: &str, path: &str, body: &str) -> io::Result<String> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body.as_bytes()).await?;
        let end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        self.buffer.drain(..end + 4);
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            return Err(other(format!("{method} {path}: status {status}")));
        }
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let body = match (length, chunked) {
            (Some(length), false) => self.take(length).await?,
            (_, true) => self.take_chunked().await?,
            (None, false) => return Err(other("a response without a length")),
        };
        String::from_utf8(body).map_err(|_| other("a body that is not UTF-8"))
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(other("connection closed"));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn take(&mut self, length: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < length {
            self.fill().await?;
        }
        Ok(self.buffer.drain(..length).collect())
    }

    async fn take_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find(&self.buffer, b"\r\n") {
                    break end;
                }
                self.fill().await?;
            };
            let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| other("a bad chunk size"))?;
            self.buffer.drain(..line_end + 2);
            let chunk = self.take(size + 2).await?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A Socket.IO client connected to `/` over HTTP long-polling, on one keep-alive connection
/// (requests never overlap: each POST is followed by the GET that fetches the answer).
pub struct PollingClient {
    connection: HttpConnection,
    path: String,
    /// Packets received but not yet returned.
    pending: std::collections::VecDeque<String>,
}

impl PollingClient {
    /// Opens a session and connects to `/`.
    pub async fn connect(addr: SocketAddr) -> io::Result<PollingClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut connection = HttpConnection {
            stream,
            buffer: Vec::new(),
        };
        let open = connection
            .request("GET", &format!("{PATH}&transport=polling"), "")
            .await?;
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| other(format!("no sid in {open:?}")))?
            .to_owned();
        let mut client = PollingClient {
            connection,
            path: format!("{PATH}&transport=polling&sid={sid}"),
            pending: Default::default(),
        };
        client.send("40".to_owned()).await?;
        let reply = client.recv().await?;
        if !reply.starts_with("40") {
            return Err(other(format!("expected CONNECT, got {reply:?}")));
        }
        Ok(client)
    }
}

impl Transport for PollingClient {
    async fn send(&mut self, packet: String) -> io::Result<()> {
        let answer = self.connection.request("POST", &self.path, &packet).await?;
        if answer != "ok" {
            return Err(other(format!("POST answered {answer:?}")));
        }
        Ok(())
    }

    async fn recv(&mut self) -> io::Result<String> {
        loop {
            while let Some(packet) = self.pending.pop_front() {
                if packet == "2" {
                    self.send("3".to_owned()).await?;
                } else {
                    return Ok(packet);
                }
            }
            let payload = self.connection.request("GET", &self.path, "").await?;
            if payload == "1" {
                return Err(other("session closed"));
            }
            self.pending
                .extend(payload.split('\u{1e}').map(str::to_owned));
        }
    }

    async fn close(self) {}
}
