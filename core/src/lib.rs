//! The deterministic sans-IO core of **sio**, a Socket.IO v4 server.
//!
//! This crate holds every protocol rule and no I/O: it never reads the clock, never spawns, never
//! touches a socket. Time comes in as `now: Instant`, randomness from a seedable generator, and
//! everything the server has to send is drained by the caller. The runtime crates (`sio-tokio`, ...)
//! drive it; so can a test with virtual time or a hand-written event loop.
//!
//! - [`engine`]: the Engine.IO v4 server (polling, WebSocket, upgrade, heartbeat).
//! - [`socket`]: the Socket.IO v5 server on top of it (namespaces, sockets, rooms, acks).
#![forbid(unsafe_code)]

pub mod engine;
pub mod socket;

/// A map keyed by ids the server makes itself (sequential or slot numbers, never chosen by a
/// client): a fast hash without a random key is safe there, and it is on every packet's path.
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;
