//! A tour of the sio API, also the server of the end-to-end tests with the official clients.
//!
//! - `/` echoes (`echo` is acked with its own arguments, `async-echo` the same from an async
//!   handler), joins rooms, sends to rooms and broadcasts, asks the client a question with an ack and
//!   a timeout, counts the client's events with a catch-all listener, refuses `forbidden` events in a
//!   packet middleware, and disconnects on request.
//! - `/secure` lets in only clients whose auth payload holds `token: "secret"`; the others get
//!   `connect_error` with a message and data.
//!
//! Listens on 127.0.0.1 at `PORT` (default 3000; `0` picks a free port) and prints the address. On
//! SIGTERM or Ctrl-C it shuts down gracefully and exits with status 0.

use std::time::Duration;

use serde_json::{Value, json};
use sio_tokio::{
    AckError, ConnectError, CookieConfig, CorsConfig, CorsOrigin, EngineConfig, Payload,
    ServerConfig, SocketIo,
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let config = ServerConfig {
        engine: EngineConfig {
            // Cross-origin pages of this origin may talk to the server; the polling handshake sets
            // a cookie with the session id (for sticky load balancers).
            cors: Some(CorsConfig {
                origin: CorsOrigin::List(vec!["http://allowed.example".into()]),
                credentials: true,
                ..CorsConfig::default()
            }),
            cookie: Some(CookieConfig::default()),
            ..EngineConfig::default()
        },
        ..ServerConfig::default()
    };
    let io = SocketIo::new(config);
    // Refuse handshakes that say `banned=1` (the decision may be async: a database lookup...).
    io.allow_request(|handshake| async move {
        match handshake
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|p| p == "banned=1")
        {
            true => Err("banned".to_owned()),
            false => Ok(()),
        }
    });
    // Session ids of our own making (`generateId`): a prefix and 64 unpredictable bits (SipHash
    // keyed at random by the standard library).
    let counter = std::sync::atomic::AtomicU64::new(0);
    let keys = std::collections::hash_map::RandomState::new();
    io.generate_id(move |_handshake| {
        use std::hash::BuildHasher;
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(format!("echo-{:016x}", keys.hash_one(n)))
    });
    // A header on the first response of each session (`initial_headers`).
    io.on_headers(|headers, _request, initial| {
        if initial {
            headers.insert("x-sio-initial", http::HeaderValue::from_static("1"));
        }
    });
    io.on_connection_error(|code, message, _context| {
        println!("connection error: {} {message}", code as u8);
    });

    io.on_connection(|socket| {
        // Answer the client's ack with the same arguments, binary included.
        socket.on("echo", |socket, args: Payload| {
            let _ = socket.ack(&args);
        });
        // Join a room, and tell the client once done.
        socket.on("join", |socket, room: String| {
            socket.join(&room);
            let _ = socket.ack(&socket.rooms());
        });
        socket.on("leave", |socket, room: String| {
            socket.leave(&room);
            let _ = socket.ack(&socket.rooms());
        });
        // Send to everyone in a room but the sender.
        socket.on("to-room", |socket, (room, message): (String, Value)| {
            let _ = socket.to(room).emit("room-message", &message);
        });
        // Send to everyone but the sender.
        socket.on("broadcast", |socket, message: Value| {
            let _ = socket.broadcast().emit("broadcast", &message);
        });
        // Send to everyone, the sender included.
        socket.on("everyone", |socket, message: Value| {
            let _ = socket.io().emit("everyone", &message);
        });
        // Ask the client, wait at most `timeout_ms` for its ack, then report what happened.
        socket.on("ask", |socket, timeout_ms: u64| {
            let id = socket.id().to_owned();
            let timeout = Duration::from_millis(timeout_ms);
            let _ =
                socket
                    .timeout(timeout)
                    .emit_with_ack("question", &"ping?", move |io, result| {
                        let answer = match result {
                            Ok(reply) => json!({ "answer": reply }),
                            Err(AckError::Timeout) => json!({ "error": "operation has timed out" }),
                            Err(other) => json!({ "error": other.to_string() }),
                        };
                        if let Some(mut socket) = io.socket("/", &id) {
                            let _ = socket.emit("answer", &answer);
                        }
                    });
        });
        socket.on("disconnect-me", |socket, close: bool| {
            socket.disconnect(close)
        });
        // The ids of the sockets in a room, and disconnecting all of them.
        socket.on("fetch", |socket, room: String| {
            let mut ids: Vec<String> = match socket.io().to(room).fetch_sockets() {
                Ok(sockets) => sockets.into_iter().map(|s| s.id).collect(),
                Err(_) => Vec::new(),
            };
            ids.sort();
            let _ = socket.ack(&ids);
        });
        socket.on("kick", |socket, room: String| {
            let _ = socket.io().to(room).disconnect_sockets(false);
        });
        // Ask every socket of the namespace (this one included) and report how many answered.
        socket.on("poll-all", |socket, timeout_ms: u64| {
            let id = socket.id().to_owned();
            let _ = socket
                .io()
                .of("/")
                .timeout(Duration::from_millis(timeout_ms))
                .emit_with_ack("vote", &(), move |io, result| {
                    let report = match result {
                        Ok(answers) => json!({ "answers": answers.len(), "complete": true }),
                        Err(partial) => {
                            json!({ "answers": partial.responses.len(), "complete": false })
                        }
                    };
                    if let Some(mut socket) = io.socket("/", &id) {
                        let _ = socket.emit("poll-result", &report);
                    }
                });
        });
        // The same echo from an async handler, spawned on the runtime.
        socket.on_async("async-echo", |_socket, args: Payload, ack| async move {
            if let Some(ack) = ack {
                let _ = ack.send(&args).await;
            }
        });
        // Count every incoming event (catch-all listeners run before packet middlewares).
        socket.on_any(|socket, _event, _args| {
            if let Some(count) = socket.data_mut::<u64>() {
                *count += 1;
            }
        });
        socket.on("count", |socket, ()| {
            let count = socket.data::<u64>().copied().unwrap_or(0);
            let _ = socket.ack(&count);
        });
        // A packet middleware: events named `forbidden` never reach a handler; the refusal is an
        // error on the socket, which this server reports to the client.
        socket.use_(|_socket, event, _args| {
            if event == "forbidden" {
                Err(format!("\"{event}\" is not allowed"))
            } else {
                Ok(())
            }
        });
        socket.on("forbidden", |socket, ()| {
            let _ = socket.emit("should-not-happen", &());
        });
        socket.on_error(|socket, error| {
            let _ = socket.emit("error-seen", &error.to_string());
        });
        socket.on_disconnect(|socket, reason| {
            println!("{} disconnected: {reason}", socket.id());
        });
    });

    io.of("/secure")
        .use_(
            |_socket, auth| match auth.get("token").and_then(Value::as_str) {
                Some("secret") => Ok(()),
                _ => Err(ConnectError::new("not authorized")
                    .with_data(json!({ "reason": "a token is required" }))),
            },
        )
        .on_connection(|socket| {
            let _ = socket.emit("welcome", &socket.id().to_owned());
        });

    // Graceful shutdown on SIGTERM or Ctrl-C: every socket disconnects with `server shutting down`,
    // parked polls are answered, and `serve` returns.
    let closer = io.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        closer.close().await;
    });
    // Dynamic namespaces: any `/team-<name>` is created on demand; a message to the parent reaches
    // every team.
    let teams = io.of_dynamic(|name, _auth| name.starts_with("/team-"));
    let parent = teams.name().to_owned();
    teams.on_connection(move |socket| {
        let parent = parent.clone();
        socket.on("all-teams", move |socket, text: String| {
            let _ = socket.io().of(&parent).emit("news", &text);
        });
    });

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    // Node's accept queue (511) instead of the 128 tokio asks for: a burst of connections waits
    // in the queue instead of having its SYNs dropped.
    sio_tokio::raise_listen_backlog(&listener)?;
    println!("listening on {}", listener.local_addr()?);
    io.serve(listener).await?;
    // Give the last packets (the close of each connection) a moment to be written.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
