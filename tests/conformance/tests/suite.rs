//! The conformance suite, written once and run on tokio (frames written by the driver, and by the
//! connections' tasks), smol and async-std (each on its global executor and on `block_on`).

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use sio_conformance::{
    HEADER_READ_TIMEOUT, Start, WS_CLOSE_TIMEOUT, Ws, http, polling, polling_handshake,
    read_response,
};

/// Every test of the suite, for one runtime.
macro_rules! suite {
    ($($runtime:ident => $start:path),* $(,)?) => {
        $(mod $runtime {
            use super::*;
            const START: Start = $start;

            #[test] fn polling_handshake_and_refusals() { super::polling_handshake_and_refusals(START) }
            #[test] fn websocket_connect_auth_events_and_acks() { super::websocket_connect_auth_events_and_acks(START) }
            #[test] fn binary_over_websocket() { super::binary_over_websocket(START) }
            #[test] fn socketio_over_polling() { super::socketio_over_polling(START) }
            #[test] fn upgrade_then_socketio_over_websocket() { super::upgrade_then_socketio_over_websocket(START) }
            #[test] fn heartbeat_and_ping_timeout() { super::heartbeat_and_ping_timeout(START) }
            #[test] fn namespaces() { super::namespaces(START) }
            #[test] fn connect_timeout() { super::connect_timeout(START) }
            #[test] fn overlapping_polls_and_oversized_bodies() { super::overlapping_polls_and_oversized_bodies(START) }
            #[test] fn rooms() { super::rooms(START) }
            #[test] fn server_acks_with_timeout() { super::server_acks_with_timeout(START) }
            #[test] fn malformed_packets_close_the_connection() { super::malformed_packets_close_the_connection(START) }
            #[test] fn a_client_that_does_not_read_is_cut_off() { super::a_client_that_does_not_read_is_cut_off(START) }
            #[test] fn a_client_that_never_reads_is_dropped_after_the_close_timeout() { super::a_client_that_never_reads_is_dropped_after_the_close_timeout(START) }
            #[test] fn a_stalled_request_head_is_cut_off() { super::a_stalled_request_head_is_cut_off(START) }
        })*
    };
}

suite! {
    tokio => sio_conformance::start_tokio,
    tokio_task_writes => sio_conformance::start_tokio_task_writes,
    smol => sio_conformance::start_smol,
    smol_own_executor => sio_conformance::start_smol_own_executor,
    smol_block_on => sio_conformance::start_smol_block_on,
    async_std => sio_conformance::start_async_std,
    async_std_block_on => sio_conformance::start_async_std_block_on,
}

/// On a runtime with several threads, the driver and a connection's task write to the same socket
/// from different threads: bursts larger than the socket's buffer arrive whole and in order.
#[test]
fn bursts_on_a_multi_threaded_runtime_arrive_whole_and_in_order() {
    let addr = sio_conformance::start_tokio_multi_thread();
    let (mut ws, _) = Ws::open(addr);
    ws.connect_nsp("/", "");
    assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
    for _ in 0..5 {
        ws.send("42[\"flood\",100,16384]");
    }
    let expected = format!("42[\"flood\",\"{}\"]", "x".repeat(16384));
    for i in 0..500 {
        assert_eq!(ws.recv_packet(), expected, "message {i}");
    }
    ws.send("42[\"message\",\"after\"]");
    assert_eq!(ws.recv_packet(), "42[\"message-back\",\"after\"]");
}

fn polling_handshake_and_refusals(start: Start) {
    let addr = start();
    let res = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", "");
    assert_eq!(res.status, 200);
    assert!(
        res.head.contains("content-type: text/plain; charset=UTF-8"),
        "{}",
        res.head
    );
    let body = res.text();
    let sid = &body[9..29];
    assert_eq!(
        body,
        format!(
            "0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}}"
        )
    );
    let refusals = [
        (
            "GET",
            "/socket.io/?EIO=4&transport=abc",
            400,
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "GET",
            "/socket.io/?EIO=3&transport=polling",
            400,
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "POST",
            "/socket.io/?EIO=4&transport=polling",
            400,
            r#"{"code":2,"message":"Bad handshake method"}"#,
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=unknown",
            400,
            r#"{"code":1,"message":"Session ID unknown"}"#,
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=websocket",
            400,
            r#"{"code":3,"message":"Bad request"}"#,
        ),
    ];
    for (method, target, status, body) in refusals {
        let res = http(addr, method, target, "");
        assert_eq!(
            (res.status, res.text().as_str()),
            (status, body),
            "{method} {target}"
        );
    }
}

fn websocket_connect_auth_events_and_acks(start: Start) {
    let addr = start();
    let (mut ws, open) = Ws::open(addr);
    assert!(
        open.starts_with("0{\"sid\":\"") && open.contains("\"upgrades\":[]"),
        "{open}"
    );
    ws.connect_nsp("/", "{\"token\":\"abc\"}");
    assert_eq!(ws.recv_packet(), "42[\"auth\",{\"token\":\"abc\"}]");
    ws.send("42[\"message\",1,\"2\",{\"3\":[false]}]");
    assert_eq!(
        ws.recv_packet(),
        "42[\"message-back\",1,\"2\",{\"3\":[false]}]"
    );
    ws.send("4217[\"message-with-ack\",\"x\",{\"y\":null}]");
    assert_eq!(ws.recv_packet(), "4317[\"x\",{\"y\":null}]");
    ws.send("4218[\"address\"]");
    assert_eq!(ws.recv_packet(), "4318[\"127.0.0.1\"]");
}

fn binary_over_websocket(start: Start) {
    let addr = start();
    let (mut ws, _) = Ws::open(addr);
    ws.connect_nsp("/", "");
    assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
    ws.send("451-[\"message\",{\"_placeholder\":true,\"num\":0}]");
    ws.send_binary(&[1, 2, 3]);
    assert_eq!(
        ws.recv_packet(),
        "451-[\"message-back\",{\"_placeholder\":true,\"num\":0}]"
    );
    assert_eq!(ws.recv_binary(), vec![1, 2, 3]);
    ws.send("452-12[\"message-with-ack\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
    ws.send_binary(&[4]);
    ws.send_binary(&[5, 6]);
    assert_eq!(
        ws.recv_packet(),
        "462-12[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"
    );
    assert_eq!(ws.recv_binary(), vec![4]);
    assert_eq!(ws.recv_binary(), vec![5, 6]);
}

fn socketio_over_polling(start: Start) {
    let addr = start();
    let sid = polling_handshake(addr);
    assert_eq!(http(addr, "POST", &polling(&sid), "40").text(), "ok");
    let body = http(addr, "GET", &polling(&sid), "").text();
    let (connect, auth) = body.split_once('\u{1e}').expect("two packets");
    assert!(connect.starts_with("40{\"sid\":\""), "{body}");
    assert_eq!(auth, "42[\"auth\",{}]");
    let post = "42[\"message\",\"hi\"]\u{1e}451-[\"message\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID";
    assert_eq!(http(addr, "POST", &polling(&sid), post).text(), "ok");
    assert_eq!(
        http(addr, "GET", &polling(&sid), "").text(),
        "42[\"message-back\",\"hi\"]\u{1e}451-[\"message-back\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID"
    );
}

fn upgrade_then_socketio_over_websocket(start: Start) {
    let addr = start();
    let sid = polling_handshake(addr);
    let target = polling(&sid);
    // Parked before or after the probe, the poll is answered with noop once the probe is in.
    let parked = thread::spawn(move || http(addr, "GET", &target, "").text());
    let mut ws = Ws::connect(
        addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
    );
    ws.send("2probe");
    assert_eq!(ws.recv_text(), "3probe");
    assert_eq!(parked.join().expect("the poll"), "6");
    ws.send("5");
    ws.connect_nsp("/", "");
    assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
    let res = http(addr, "GET", &polling(&sid), "");
    assert_eq!(
        (res.status, res.text().as_str()),
        (400, r#"{"code":3,"message":"Bad request"}"#)
    );
}

fn heartbeat_and_ping_timeout(start: Start) {
    let addr = start();
    let (mut ws, _) = Ws::open(addr);
    let started = Instant::now();
    assert_eq!(ws.recv_text(), "2");
    assert!(started.elapsed() >= Duration::from_millis(250));
    ws.send("3");
    assert_eq!(ws.recv_text(), "2");
    // No pong: closed after the ping timeout.
    assert!(ws.closed());
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(750), "{elapsed:?}");
}

fn namespaces(start: Start) {
    let addr = start();
    let (mut ws, _) = Ws::open(addr);
    ws.send("40/nope,");
    assert_eq!(
        ws.recv_packet(),
        "44/nope,{\"message\":\"Invalid namespace\"}"
    );
    let main = ws.connect_nsp("/", "");
    assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
    let custom = ws.connect_nsp("/custom", "{\"k\":1}");
    assert_ne!(main, custom);
    assert_eq!(ws.recv_packet(), "42/custom,[\"auth\",{\"k\":1}]");
    ws.send("42/custom,[\"message\",\"c\"]");
    assert_eq!(ws.recv_packet(), "42/custom,[\"message-back\",\"c\"]");
    ws.send("41/custom,");
    ws.send("42[\"message\",\"m\"]");
    assert_eq!(ws.recv_packet(), "42[\"message-back\",\"m\"]");
    // A packet for the namespace it left closes the connection.
    ws.send("42/custom,[\"message\",\"c\"]");
    assert!(ws.closed());
}

fn connect_timeout(start: Start) {
    let addr = start();
    let (mut ws, _) = Ws::open(addr);
    let started = Instant::now();
    loop {
        // Answer pings so that only the connect timeout can close the connection.
        match ws.recv() {
            tungstenite::Message::Text(t) if t.as_str() == "2" => ws.send("3"),
            tungstenite::Message::Close(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

fn overlapping_polls_and_oversized_bodies(start: Start) {
    let addr = start();
    let sid = polling_handshake(addr);
    assert_eq!(
        http(addr, "POST", &polling(&sid), &"a".repeat(1_000_001)).status,
        413
    );
    assert_eq!(http(addr, "POST", &polling(&sid), "40").text(), "ok");
    let _ = http(addr, "GET", &polling(&sid), "");
    // Two polls at once: whichever was parked first gets `close`, the other 400.
    let target = polling(&sid);
    let other = thread::spawn(move || http(addr, "GET", &target, ""));
    let this = http(addr, "GET", &polling(&sid), "");
    let other = other.join().expect("the other poll");
    let mut outcomes = [(this.status, this.text()), (other.status, other.text())];
    outcomes.sort();
    assert_eq!(outcomes, [(200, "1".to_owned()), (400, String::new())]);
    assert_eq!(http(addr, "GET", &polling(&sid), "").status, 400);
}

fn rooms(start: Start) {
    let addr = start();
    let mut clients: Vec<Ws> = (0..4)
        .map(|_| {
            let (mut ws, _) = Ws::open(addr);
            ws.connect_nsp("/", "");
            assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
            ws
        })
        .collect();
    for ws in &mut clients[..3] {
        ws.send("421[\"join\",\"r\"]");
        assert_eq!(ws.recv_packet(), "431[]");
    }
    clients[0].send("42[\"to-room\",\"r\",{\"n\":1}]");
    for ws in &mut clients[1..3] {
        assert_eq!(ws.recv_packet(), "42[\"room-message\",{\"n\":1}]");
    }
    // The sender and the non-member got nothing: their next packet is their own echo.
    for i in [0, 3] {
        let ws = &mut clients[i];
        ws.send("42[\"message\",\"next\"]");
        assert_eq!(ws.recv_packet(), "42[\"message-back\",\"next\"]");
    }
}

fn server_acks_with_timeout(start: Start) {
    let addr = start();
    let (mut ws, _) = Ws::open(addr);
    ws.connect_nsp("/", "");
    assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
    ws.send("42[\"ask\",2000]");
    assert_eq!(ws.recv_packet(), "420[\"question\"]");
    ws.send("430[\"yes\"]");
    assert_eq!(ws.recv_packet(), "42[\"answer\",{\"answer\":[\"yes\"]}]");
    ws.send("42[\"ask\",100]");
    assert_eq!(ws.recv_packet(), "421[\"question\"]");
    assert_eq!(ws.recv_packet(), "42[\"answer\",{\"error\":\"timeout\"}]");
}

fn malformed_packets_close_the_connection(start: Start) {
    let addr = start();
    for bad in ["48", "42abc", "42[\"disconnect\"]", "511-[\"a\"]", "43x"] {
        let (mut ws, _) = Ws::open(addr);
        ws.connect_nsp("/", "");
        assert_eq!(ws.recv_packet(), "42[\"auth\",{}]");
        ws.send(bad);
        assert!(ws.closed(), "{bad}");
    }
}

/// A watcher of disconnections, and a client flooded while it reads nothing until the server cuts
/// it off; both once the watcher heard of the cut.
fn flood_a_client_that_does_not_read(addr: std::net::SocketAddr) -> (Ws, Ws) {
    let (mut watcher, _) = Ws::open(addr);
    watcher.connect_nsp("/", "");
    assert_eq!(watcher.recv_packet(), "42[\"auth\",{}]");
    watcher.send("421[\"join\",\"watchers\"]");
    assert_eq!(watcher.recv_packet(), "431[]");
    let (mut slow, _) = Ws::open(addr);
    let sid = slow.connect_nsp("/", "");
    // 3,000 x 16 KiB is more than the loopback socket buffers and the 1,024 frames of the
    // connection's queue can hold while the client reads nothing.
    slow.send("42[\"flood\",3000,16384]");
    assert_eq!(
        watcher.recv_packet(),
        format!("42[\"gone\",\"{sid}\",\"transport error\"]")
    );
    (watcher, slow)
}

fn a_client_that_does_not_read_is_cut_off(start: Start) {
    let (mut watcher, mut slow) = flood_a_client_that_does_not_read(start());
    // The server goes on serving the others. Asked first: the watcher answers no ping while the
    // test drains the slow client's megabytes below, and a debug build under load can take longer
    // than the ping interval and timeout (500 ms) to do so.
    watcher.send("42[\"message\",\"still here\"]");
    assert_eq!(watcher.recv_packet(), "42[\"message-back\",\"still here\"]");
    // What was queued before the cut is written, then the connection closes.
    assert!(slow.closed());
}

fn a_client_that_never_reads_is_dropped_after_the_close_timeout(start: Start) {
    let (_watcher, mut slow) = flood_a_client_that_does_not_read(start());
    // The session is closed, and the client goes on reading nothing for longer than the close
    // timeout: nothing can be observed from outside meanwhile, hence the sleep.
    thread::sleep(WS_CLOSE_TIMEOUT * 2);
    // What the kernel's buffers hold arrives, then the stream ends without the close frame: the
    // frames still queued on the server were dropped with the connection.
    let (frames, close_frame) = slow.read_to_end();
    assert!(!close_frame, "{frames} frames, then a close frame");
    assert!(frames < 3000, "{frames}");
}

fn a_stalled_request_head_is_cut_off(start: Start) {
    let addr = start();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: test\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("write");
    assert_eq!(read_response(&mut stream).status, 200);
    // The second request comes after more than half the timeout, while the server waits for its
    // head: every head gets the whole timeout, counted from when the server starts reading it,
    // not from the first one of the connection.
    thread::sleep(HEADER_READ_TIMEOUT * 6 / 10);
    stream.write_all(request.as_bytes()).expect("write");
    assert_eq!(read_response(&mut stream).status, 200);
    let answered = Instant::now();
    stream.write_all(b"GET /socket.io/?EIO=4").expect("write");
    let mut rest = Vec::new();
    // hyper closes without an answer when a head is late.
    assert_eq!(
        stream
            .read_to_end(&mut rest)
            .expect("a close, not a read timeout"),
        0
    );
    let waited = answered.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT * 9 / 10,
        "closed after {waited:?}, the timeout is {HEADER_READ_TIMEOUT:?}"
    );
}
