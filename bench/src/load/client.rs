//! The loader's protocol clients: Socket.IO over a direct WebSocket, and over HTTP long-polling
//! with a minimal HTTP/1.1 client. Both speak only what the scenarios need, and both are written
//! by hand over tokio's `TcpStream` so that the loader spends as little of its core as it can: a
//! general WebSocket client (tungstenite zeroes a 128 KiB read buffer on every read) left the
//! loader's core saturated long before a server's.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Socket.IO path of every server under test.
const PATH: &str = "/socket.io/?EIO=4";

/// What the scenarios need of a client, whatever its transport.
pub trait Transport {
    /// Sends one Engine.IO packet.
    fn send(&mut self, packet: &str) -> impl Future<Output = io::Result<()>>;
    /// The next Engine.IO packet that is not a ping; pings are answered on the way.
    fn recv(&mut self) -> impl Future<Output = io::Result<String>>;
    /// Ends the session.
    fn close(self) -> impl Future<Output = ()>;
}

fn other(message: impl Into<String>) -> io::Error {
    io::Error::other(message.into())
}

/// Received bytes not yet consumed: `bytes[start..]`. Reads go into the spare capacity, which is
/// never zeroed.
#[derive(Default)]
struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
}

impl ReadBuffer {
    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
    }

    /// Reads once more from `stream`; a closed stream is an error.
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.reserve(4096);
        if stream.read_buf(&mut self.bytes).await? == 0 {
            return Err(other("connection closed"));
        }
        Ok(())
    }

    /// Reads a response head (status line and headers) and consumes it with its blank line.
    async fn read_head(&mut self, stream: &mut TcpStream) -> io::Result<String> {
        let end = self.fill_until(stream, b"\r\n\r\n").await?;
        let head = String::from_utf8_lossy(&self.pending()[..end]).into_owned();
        self.consume(end + 4);
        Ok(head)
    }

    /// Reads until `needle` is pending; returns its offset in `pending()`.
    async fn fill_until(&mut self, stream: &mut TcpStream, needle: &[u8]) -> io::Result<usize> {
        loop {
            if let Some(at) = find(self.pending(), needle) {
                return Ok(at);
            }
            self.fill(stream).await?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status code of a response head.
fn status(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// The value of header `name` in a response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The key of every handshake, and the accept value a server must answer it with (the example of
/// RFC 6455, section 1.3). A loader has no need for a fresh key per connection.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The masking key of every frame the client sends: frames must be masked, and the key's
/// randomness only matters to proxies, of which there are none on loopback.
const MASK: [u8; 4] = [0x5a, 0x3c, 0x96, 0x0f];

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// Appends one masked client frame to `out`.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(
        payload
            .iter()
            .zip(MASK.iter().cycle())
            .map(|(byte, mask)| byte ^ mask),
    );
}

/// The header of the server frame at the start of `bytes`, once all of it has arrived.
struct FrameHeader {
    fin: bool,
    opcode: u8,
    /// Where the payload starts, from the frame's start.
    payload_start: usize,
    payload_len: usize,
}

impl FrameHeader {
    fn parse(bytes: &[u8]) -> io::Result<Option<FrameHeader>> {
        if bytes.len() < 2 {
            return Ok(None);
        }
        if bytes[1] & 0x80 != 0 {
            return Err(other("a masked frame from the server"));
        }
        let (payload_len, payload_start) = match bytes[1] & 0x7f {
            126 if bytes.len() < 4 => return Ok(None),
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() < 10 => return Ok(None),
            127 => {
                let mut length = [0u8; 8];
                length.copy_from_slice(&bytes[2..10]);
                let length = usize::try_from(u64::from_be_bytes(length))
                    .map_err(|_| other("a frame longer than memory"))?;
                (length, 10)
            }
            len => (len as usize, 2),
        };
        if bytes.len() - payload_start < payload_len {
            return Ok(None);
        }
        Ok(Some(FrameHeader {
            fin: bytes[0] & 0x80 != 0,
            opcode: bytes[0] & 0x0f,
            payload_start,
            payload_len,
        }))
    }
}

/// A Socket.IO client connected to `/` over a WebSocket.
pub struct WsClient {
    stream: TcpStream,
    read: ReadBuffer,
    /// The frame being written, kept for its allocation.
    write: Vec<u8>,
    /// A text message whose frames have not all arrived.
    fragments: Vec<u8>,
}

impl WsClient {
    /// Opens the WebSocket, reads the Engine.IO open packet, connects to `/` and waits for the
    /// CONNECT reply.
    pub async fn connect(addr: SocketAddr) -> io::Result<WsClient> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {PATH}&transport=websocket HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut read = ReadBuffer::default();
        let head = read.read_head(&mut stream).await?;
        if status(&head) != "101" {
            return Err(other(format!("websocket handshake answered {head:?}")));
        }
        if header(&head, "sec-websocket-accept") != Some(WS_ACCEPT) {
            return Err(other(format!(
                "websocket handshake without our accept: {head:?}"
            )));
        }
        let mut client = WsClient {
            stream,
            read,
            write: Vec::with_capacity(64),
            fragments: Vec::new(),
        };
        let open = client.recv().await?;
        if !open.starts_with('0') {
            return Err(other(format!("expected the open packet, got {open:?}")));
        }
        client.send("40").await?;
        let reply = client.recv().await?;
        if !reply.starts_with("40") {
            return Err(other(format!("expected CONNECT, got {reply:?}")));
        }
        Ok(client)
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.write.clear();
        encode_frame(&mut self.write, opcode, payload);
        self.stream.write_all(&self.write).await
    }

    /// The next complete text message, answering the server's WebSocket pings on the way.
    async fn next_text(&mut self) -> io::Result<String> {
        loop {
            while let Some(header) = FrameHeader::parse(self.read.pending())? {
                let payload = header.payload_start..header.payload_start + header.payload_len;
                let frame_len = payload.end;
                match header.opcode {
                    OP_TEXT | OP_CONTINUATION => {
                        let bytes = &self.read.pending()[payload];
                        let text = if header.fin && self.fragments.is_empty() {
                            Some(bytes.to_vec())
                        } else {
                            self.fragments.extend_from_slice(bytes);
                            header.fin.then(|| std::mem::take(&mut self.fragments))
                        };
                        self.read.consume(frame_len);
                        if let Some(text) = text {
                            return String::from_utf8(text)
                                .map_err(|_| other("a text frame that is not UTF-8"));
                        }
                    }
                    OP_CLOSE => return Err(other("connection closed")),
                    OP_PING => {
                        let body = self.read.pending()[payload].to_vec();
                        self.read.consume(frame_len);
                        self.send_frame(OP_PONG, &body).await?;
                    }
                    _ => self.read.consume(frame_len),
                }
            }
            self.read.fill(&mut self.stream).await?;
        }
    }
}

impl Transport for WsClient {
    async fn send(&mut self, packet: &str) -> io::Result<()> {
        self.send_frame(OP_TEXT, packet.as_bytes()).await
    }

    async fn recv(&mut self) -> io::Result<String> {
        loop {
            let packet = self.next_text().await?;
            if packet == "2" {
                self.send("3").await?;
            } else {
                return Ok(packet);
            }
        }
    }

    async fn close(mut self) {
        let _ = self.send_frame(OP_CLOSE, &[]).await;
    }
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
struct HttpConnection {
    stream: TcpStream,
    read: ReadBuffer,
    /// The request being written, kept for its allocation.
    write: Vec<u8>,
}

impl HttpConnection {
    async fn request(&mut self, method: &str, path: &str, body: &str) -> io::Result<String> {
        use std::io::Write;
        self.write.clear();
        // Head and body in one write, as a browser's client does for a short body.
        let _ = write!(
            self.write,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(&self.write).await?;
        let head = self.read.read_head(&mut self.stream).await?;
        let status = status(&head);
        if status != "200" {
            return Err(other(format!("{method} {path}: status {status}")));
        }
        let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
        let chunked =
            header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let body = match (length, chunked) {
            (Some(length), false) => self.take(length).await?,
            (_, true) => self.take_chunked().await?,
            (None, false) => return Err(other("a response without a length")),
        };
        String::from_utf8(body).map_err(|_| other("a body that is not UTF-8"))
    }

    async fn take(&mut self, length: usize) -> io::Result<Vec<u8>> {
        while self.read.pending().len() < length {
            self.read.fill(&mut self.stream).await?;
        }
        let bytes = self.read.pending()[..length].to_vec();
        self.read.consume(length);
        Ok(bytes)
    }

    async fn take_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = self.read.fill_until(&mut self.stream, b"\r\n").await?;
            let size_text = String::from_utf8_lossy(&self.read.pending()[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| other("a bad chunk size"))?;
            self.read.consume(line_end + 2);
            let chunk = self.take(size + 2).await?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
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
            read: ReadBuffer::default(),
            write: Vec::new(),
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
        client.send("40").await?;
        let reply = client.recv().await?;
        if !reply.starts_with("40") {
            return Err(other(format!("expected CONNECT, got {reply:?}")));
        }
        Ok(client)
    }
}

impl Transport for PollingClient {
    async fn send(&mut self, packet: &str) -> io::Result<()> {
        let answer = self.connection.request("POST", &self.path, packet).await?;
        if answer != "ok" {
            return Err(other(format!("POST answered {answer:?}")));
        }
        Ok(())
    }

    async fn recv(&mut self) -> io::Result<String> {
        loop {
            while let Some(packet) = self.pending.pop_front() {
                if packet == "2" {
                    self.send("3").await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_frame_is_masked_and_sized() {
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"40");
        assert_eq!(
            out,
            [0x81, 0x82, 0x5a, 0x3c, 0x96, 0x0f, b'4' ^ 0x5a, b'0' ^ 0x3c]
        );
        out.clear();
        encode_frame(&mut out, OP_TEXT, &[b'x'; 300]);
        assert_eq!(&out[..4], [0x81, 0x80 | 126, 0x01, 0x2c]);
        assert_eq!(out.len(), 4 + 4 + 300);
    }

    #[test]
    fn a_server_frame_is_parsed_once_complete() {
        let frame = [0x81, 0x03, b'4', b'0', b'x'];
        assert!(FrameHeader::parse(&frame[..4]).unwrap().is_none());
        let header = FrameHeader::parse(&frame).unwrap().unwrap();
        assert!(header.fin);
        assert_eq!(header.opcode, OP_TEXT);
        assert_eq!((header.payload_start, header.payload_len), (2, 3));
        let mut long = vec![0x01, 126, 0x01, 0x00];
        assert!(FrameHeader::parse(&long).unwrap().is_none());
        long.extend(std::iter::repeat_n(b'a', 256));
        let header = FrameHeader::parse(&long).unwrap().unwrap();
        assert!(!header.fin);
        assert_eq!((header.payload_start, header.payload_len), (4, 256));
        assert!(FrameHeader::parse(&[0x81, 0x80, 0, 0, 0, 0]).is_err());
    }
}
