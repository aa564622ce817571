//! The state of one Engine.IO session.

use std::collections::VecDeque;
use std::time::Instant;

use super::RequestId;
use super::config::Transport;
use super::packet::Frame;
use super::sid::Sid;

/// The timers a session can have armed; at most one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// Send the next ping.
    Ping = 0,
    /// The pong did not come in time.
    PingTimeout = 1,
    /// The upgrade did not complete in time.
    Upgrade = 2,
    /// A server-initiated close on polling waited for a poll in vain.
    Close = 3,
}

impl TimerKind {
    pub const COUNT: usize = 4;
}

/// A WebSocket that is upgrading a polling session.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub ws: RequestId,
    /// `2probe` was answered; polls are released at once from now on.
    pub probed: bool,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub sid: Sid,
    pub generation: u32,
    pub transport: Transport,
    /// The WebSocket carrying the session once it is on that transport.
    pub ws: Option<RequestId>,
    /// The parked long-polling GET.
    pub get: Option<RequestId>,
    /// The POST whose body is being read.
    pub post: Option<RequestId>,
    pub upgrade: Option<Upgrade>,
    pub upgraded: bool,
    /// The server closes the session once the buffer reaches the client.
    pub closing: bool,
    /// Packets waiting for a poll (polling only; WebSocket frames leave at once).
    pub buffer: VecDeque<Frame>,
    pub buffered_bytes: usize,
    pub timers: [Option<Instant>; TimerKind::COUNT],
    /// A ping is out and its pong has not come yet.
    pub awaiting_pong: bool,
    /// The ping timeout was already extended once for this ping.
    pub ping_timeout_extended: bool,
    /// Listed in the engine's flush list.
    pub dirty: bool,
}

impl Session {
    pub fn new(sid: Sid, generation: u32, transport: Transport) -> Session {
        Session {
            sid,
            generation,
            transport,
            ws: None,
            get: None,
            post: None,
            upgrade: None,
            upgraded: false,
            closing: false,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            timers: [None; TimerKind::COUNT],
            awaiting_pong: false,
            ping_timeout_extended: false,
            dirty: false,
        }
    }
}
