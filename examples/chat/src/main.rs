//! The Socket.IO tutorial chat, grown into a small real chat.
//!
//! - A page (`static/index.html`) using the browser client served by sio at
//!   `/socket.io/socket.io.js`.
//! - Nicknames, rooms (everyone starts in `general`, can join and leave others, with "X joined" and
//!   "X left" notices; the latter is sent from `disconnecting`, while the rooms are still known),
//!   private messages to one socket id.
//! - Every message is stored in SQLite (a file) before it is broadcast with its server offset (its
//!   row id); a client that connects without recovering gets what it missed from the database,
//!   after the `serverOffset` it sends in `auth`. Messages are stored by a task of their own, one
//!   at a time on tokio's blocking pool: a commit waits for the disk, and the handlers run on the
//!   driver that serves every connection.
//! - Exactly once: the client sends each message with a client offset and retries until acked; the
//!   server acks after the insert, and a duplicate (unique client offset) is acked but neither
//!   stored nor broadcast again. A failed insert is not acked, so the client retries.
//! - Connection state recovery: a client back within two minutes gets its id, rooms and missed
//!   messages without a reload.
//!
//! `PORT` (default 3000), `CHAT_DB` (default `chat.sqlite`). `CHAT_DROP_ACKS=n` loses the acks of the
//! first n messages after storing them, to show (and test) the retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, ErrorCode, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sio_tokio::{AckSender, RecoveryConfig, ServerConfig, SocketIo, SocketRef};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PAGE: &str = include_str!("../static/index.html");
const DEFAULT_ROOM: &str = "general";
/// How many messages may wait to be stored. A message that finds the queue full is not acked, and
/// its client sends it again.
const PENDING_MESSAGES: usize = 1024;

/// A message as the clients see it.
#[derive(Serialize, Deserialize, Clone)]
struct ChatMessage {
    room: String,
    nick: String,
    text: String,
}

/// What the client sends: the room and the text.
#[derive(Deserialize)]
struct Outgoing {
    room: String,
    text: String,
}

/// Each socket's state.
#[derive(Default, Serialize)]
struct Member {
    nick: String,
}

/// The database: one connection for the writes of [`store_messages`], one for the reads of the
/// handlers, so that a read never waits for a commit (WAL lets a reader in while one writes).
struct Store {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    drop_acks: AtomicUsize,
}

/// A message to store, then broadcast, then ack.
struct Job {
    client_offset: String,
    message: ChatMessage,
    /// The client's ack, answered once the message is stored (or was, on an earlier try).
    ack: Option<AckSender>,
}

enum Insert {
    Stored(i64),
    Duplicate,
}

impl Store {
    fn open(path: &str) -> rusqlite::Result<Store> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 client_offset TEXT UNIQUE,
                 room TEXT NOT NULL,
                 nick TEXT NOT NULL,
                 content TEXT NOT NULL
             );",
        )?;
        let drop_acks = std::env::var("CHAT_DROP_ACKS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(Store {
            writer: Mutex::new(db),
            reader: Mutex::new(Connection::open(path)?),
            drop_acks: AtomicUsize::new(drop_acks),
        })
    }

    fn insert(&self, offset: &str, message: &ChatMessage) -> rusqlite::Result<Insert> {
        let db = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match db.execute(
            "INSERT INTO messages (client_offset, room, nick, content) VALUES (?1, ?2, ?3, ?4)",
            params![offset, message.room, message.nick, message.text],
        ) {
            Ok(_) => Ok(Insert::Stored(db.last_insert_rowid())),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Ok(Insert::Duplicate)
            }
            Err(e) => Err(e),
        }
    }

    /// The messages of `room` after `offset`, oldest first.
    fn since(&self, room: &str, offset: i64) -> Vec<(i64, ChatMessage)> {
        let db = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(mut query) = db.prepare(
            "SELECT id, room, nick, content FROM messages WHERE room = ?1 AND id > ?2 ORDER BY id",
        ) else {
            return Vec::new();
        };
        query
            .query_map(params![room, offset], |row| {
                Ok((
                    row.get(0)?,
                    ChatMessage {
                        room: row.get(1)?,
                        nick: row.get(2)?,
                        text: row.get(3)?,
                    },
                ))
            })
            .map(|rows| rows.flatten().collect())
            .unwrap_or_default()
    }

    /// Whether to lose this ack (the `CHAT_DROP_ACKS` demonstration).
    fn lose_ack(&self) -> bool {
        self.drop_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Stores the messages of every client one at a time, each on tokio's blocking pool, then
/// broadcasts it and acks it: the driver never waits for SQLite, and the broadcasts go out in row
/// order, so a client's `serverOffset` never skips a message it has not seen.
async fn store_messages(store: Arc<Store>, io: SocketIo, mut jobs: mpsc::Receiver<Job>) {
    while let Some(Job {
        client_offset,
        message,
        ack,
    }) = jobs.recv().await
    {
        let (writer, row) = (store.clone(), message.clone());
        let inserted =
            tokio::task::spawn_blocking(move || writer.insert(&client_offset, &row)).await;
        let answer = match inserted {
            Ok(Ok(Insert::Stored(id))) => {
                let room = message.room.clone();
                let _ = io.to(room).emit("chat message", &(message, id)).await;
                !store.lose_ack()
            }
            // Stored on an earlier try whose ack was lost: ack, but neither store nor send again.
            Ok(Ok(Insert::Duplicate)) => true,
            // Not stored: no ack, so the client retries.
            Ok(Err(_)) | Err(_) => false,
        };
        if let (true, Some(ack)) = (answer, ack) {
            let _ = ack.send(&()).await;
        }
    }
}

fn nick(socket: &SocketRef<'_>) -> String {
    socket
        .data::<Member>()
        .map(|m| m.nick.clone())
        .unwrap_or_default()
}

/// Sends the stored messages of `room` after `offset` to this socket.
fn replay(socket: &mut SocketRef<'_>, store: &Store, room: &str, offset: i64) {
    for (id, message) in store.since(room, offset) {
        let _ = socket.emit("chat message", &(message, id));
    }
}

fn on_connection(socket: &mut SocketRef<'_>, store: &Arc<Store>, jobs: &mpsc::Sender<Job>) {
    let auth = socket
        .handshake()
        .map(|h| h.auth.clone())
        .unwrap_or_default();
    if !socket.recovered() {
        let name = auth["nickname"]
            .as_str()
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().chars().take(32).collect())
            .unwrap_or_else(|| format!("guest-{}", &socket.id()[..4]));
        socket.set_data(Member { nick: name });
        socket.join(DEFAULT_ROOM);
        // Not recovered: catch up from the database after the last offset the client saw.
        let offset = auth["serverOffset"].as_i64().unwrap_or(0);
        replay(socket, store, DEFAULT_ROOM, offset);
        let notice = format!("{} joined {DEFAULT_ROOM}", nick(socket));
        let _ = socket.to(DEFAULT_ROOM).emit("notice", &notice);
    }
    let _ = socket.emit(
        "welcome",
        &json!({ "id": socket.id(), "nick": nick(socket) }),
    );

    let jobs = jobs.clone();
    socket.on(
        "chat message",
        move |socket, (outgoing, client_offset): (Outgoing, String)| {
            let message = ChatMessage {
                room: outgoing.room,
                nick: nick(socket),
                text: outgoing.text,
            };
            if !socket.rooms().contains(&message.room) {
                return;
            }
            // Answered by `store_messages` once the message is stored. A full queue drops the
            // job, and with it the ack: the client sends the message again.
            let ack = socket.ack_later();
            let _ = jobs.try_send(Job {
                client_offset,
                message,
                ack,
            });
        },
    );

    let store_for_joins = store.clone();
    socket.on("join", move |socket, room: String| {
        let room: String = room.trim().chars().take(32).collect();
        if room.is_empty() || socket.rooms().contains(&room) {
            return;
        }
        socket.join(&room);
        let notice = format!("{} joined {room}", nick(socket));
        let _ = socket.io().to(room.clone()).emit("notice", &notice);
        replay(socket, &store_for_joins, &room, 0);
        let _ = socket.ack(&socket.rooms());
    });

    socket.on("leave", |socket, room: String| {
        if room == DEFAULT_ROOM || !socket.rooms().contains(&room) {
            let _ = socket.ack(&socket.rooms());
            return;
        }
        let notice = format!("{} left {room}", nick(socket));
        let _ = socket.to(room.clone()).emit("notice", &notice);
        socket.leave(&room);
        let _ = socket.ack(&socket.rooms());
    });

    socket.on("private message", |socket, (to, text): (String, String)| {
        let message = json!({ "from": socket.id(), "nick": nick(socket), "to": to, "text": text });
        // To the recipient's own room, and back to the sender.
        let _ = socket.to(to).emit("private message", &message);
        let _ = socket.emit("private message", &message);
    });

    socket.on("nick", |socket, name: String| {
        let name: String = name.trim().chars().take(32).collect();
        if let (false, Some(member)) = (name.is_empty(), socket.data_mut::<Member>()) {
            member.nick = name;
        }
        let _ = socket.ack(&nick(socket));
    });

    socket.on_disconnecting(|socket, _reason| {
        let name = nick(socket);
        let id = socket.id().to_owned();
        for room in socket.rooms() {
            if room != id {
                let _ = socket
                    .to(room.clone())
                    .emit("notice", &format!("{name} left {room}"));
            }
        }
    });
}

fn page(head: &http::request::Parts, _body: Bytes) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::new());
    if head.uri.path() == "/" {
        *response.body_mut() = Bytes::from_static(PAGE.as_bytes());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
    } else {
        *response.status_mut() = http::StatusCode::NOT_FOUND;
    }
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let db = std::env::var("CHAT_DB").unwrap_or_else(|_| "chat.sqlite".to_owned());
    let store = Arc::new(Store::open(&db).map_err(std::io::Error::other)?);
    let config = ServerConfig {
        connection_state_recovery: Some(RecoveryConfig::default()),
        ..ServerConfig::default()
    };
    let io = SocketIo::new(config);
    io.fallback(page);
    let (jobs, pending) = mpsc::channel(PENDING_MESSAGES);
    tokio::spawn(store_messages(store.clone(), io.clone(), pending));
    io.on_connection(move |socket| on_connection(socket, &store, &jobs));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    // Node's accept queue (511) instead of the 128 tokio asks for: a burst of connections waits
    // in the queue instead of having its SYNs dropped.
    sio_tokio::raise_listen_backlog(&listener)?;
    println!("listening on {}", listener.local_addr()?);
    io.serve(listener).await
}
