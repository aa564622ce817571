//! Malformed bytes over real loopback sockets: each bad connection gets the HTTP answer of a
//! hardened server (or is dropped), and a live session on the same server carries on untouched.

use std::net::SocketAddr;
use std::time::Duration;

use sio_tokio::{EngineConfig, EngineHandler, EngineServer, EngineSocket, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Echo;

impl EngineHandler for Echo {
    fn on_message(&mut self, mut socket: EngineSocket<'_>, message: Message) {
        let _ = socket.send(message);
    }
}

async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = EngineConfig {
        path: "/engine.io/".into(),
        // No ping during the test, so the poll below holds exactly the echo.
        ping_interval: Duration::from_secs(600),
        ..EngineConfig::default()
    };
    tokio::spawn(EngineServer::new(config, Echo).serve(listener));
    addr
}

/// Sends raw bytes and returns everything the server wrote before closing (bounded by a deadline).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> Option<u16> {
    response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

async fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (Option<u16>, String) {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = exchange(addr, request.as_bytes()).await;
    (status_of(&response), body_of(&response).to_owned())
}

#[tokio::test]
async fn bad_connections_get_an_answer_and_leave_live_sessions_alone() {
    let addr = start().await;
    let (status, body) = http(addr, "GET", "/engine.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, Some(200));
    let sid = body[9..29].to_owned();
    let session = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");

    // A request line that is not HTTP.
    let r = exchange(addr, b"GARBAGE\r\n\r\n").await;
    assert_eq!(status_of(&r), Some(400), "{r}");
    // A head over the header size limit.
    let big = format!(
        "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let r = exchange(addr, big.as_bytes()).await;
    assert_eq!(status_of(&r), Some(431), "{r}");
    // Pseudo-random bytes.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let r = exchange(addr, &noise).await;
    assert!(r.is_empty() || status_of(&r) == Some(400), "{r}");
    // Conflicting framing headers.
    let r = exchange(
        addr,
        format!("POST {session} HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n4abc").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&r), Some(400), "{r}");
    // A body over max_http_buffer_size.
    let (status, _) = http(addr, "POST", &session, &"a".repeat(1_000_001)).await;
    assert_eq!(status, Some(413));
    // A malformed chunked body is a data request cut short: as in the reference, it ends that
    // session (its own), and only that one.
    let (_, body) = http(addr, "GET", "/engine.io/?EIO=4&transport=polling", "").await;
    let other = format!("/engine.io/?EIO=4&transport=polling&sid={}", &body[9..29]);
    let r = exchange(
        addr,
        format!("POST {other} HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n4abc\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.is_empty() || status_of(&r) == Some(400), "{r}");
    let (status, body) = http(addr, "GET", &other, "").await;
    assert_eq!(
        (status, body.as_str()),
        (Some(400), r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    // Garbage after a websocket upgrade to a new session.
    let upgrade = "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: t\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut bytes = upgrade.as_bytes().to_vec();
    bytes.extend_from_slice(&noise[..512]);
    let r = exchange(addr, &bytes).await;
    assert_eq!(status_of(&r), Some(101), "{r}");

    // The live session still echoes.
    let (status, body) = http(addr, "POST", &session, "4still alive").await;
    assert_eq!((status, body.as_str()), (Some(200), "ok"));
    let (status, body) = http(addr, "GET", &session, "").await;
    assert_eq!((status, body.as_str()), (Some(200), "4still alive"));
}
