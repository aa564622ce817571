//! Connection state recovery: the sessions of sockets that disconnected for a recoverable reason,
//! and the log of the packets they may have missed, both bounded in time and in size.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::engine::{Frame, Sid};

use super::NspId;

/// Options of connection state recovery; `Default` gives the reference values.
///
/// **Security:** with `skip_middlewares` (the reference's default), a client that recovers its
/// session is let in again without running the namespace middlewares, on the strength of the
/// private session id (`pid`) alone. Turn it off when middlewares enforce something that can change
/// between a disconnection and the reconnection (an expired token, a revoked user).
#[derive(Clone, Debug)]
pub struct RecoveryConfig {
    /// How long a disconnected socket's session is kept (2 min).
    pub max_disconnection_duration: Duration,
    /// Skip the namespace middlewares for a recovered socket (true, as the reference).
    pub skip_middlewares: bool,
    /// Most sessions kept at once; the oldest go first (10,000).
    pub max_sessions: usize,
    /// Most packets logged at once; the oldest go first (10,000).
    pub max_packets: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_sessions: 10_000,
            max_packets: 10_000,
        }
    }
}

/// A disconnected socket's session.
#[derive(Debug)]
pub(crate) struct KeptSession {
    pub sid: Sid,
    pub nsp: NspId,
    pub rooms: BTreeSet<String>,
    pub disconnected_at: Instant,
}

/// A packet that may have to be sent again.
#[derive(Debug)]
struct Logged {
    offset: u64,
    nsp: NspId,
    rooms: Vec<String>,
    except: Vec<String>,
    frames: Vec<Frame>,
    emitted_at: Instant,
}

/// A session found again: the socket's id, its rooms and what it missed, in order.
pub(crate) struct Restored {
    pub sid: Sid,
    pub rooms: BTreeSet<String>,
    pub missed: Vec<Frame>,
}

#[derive(Debug)]
pub(crate) struct Recovery {
    pub config: RecoveryConfig,
    sessions: HashMap<Sid, KeptSession>,
    /// Sessions by age, for expiry and eviction.
    by_age: BTreeSet<(Instant, Sid)>,
    log: VecDeque<Logged>,
    next_offset: u64,
}

impl Recovery {
    pub fn new(config: RecoveryConfig) -> Recovery {
        Recovery {
            config,
            sessions: HashMap::new(),
            by_age: BTreeSet::new(),
            log: VecDeque::new(),
            next_offset: 1,
        }
    }

    /// The offset of the next logged packet, as sent to clients.
    pub fn next_offset(&self) -> String {
        self.next_offset.to_string()
    }

    /// Logs a packet sent with the offset of [`Recovery::next_offset`].
    pub fn log(
        &mut self,
        now: Instant,
        nsp: NspId,
        rooms: Vec<String>,
        except: Vec<String>,
        frames: Vec<Frame>,
    ) {
        let offset = self.next_offset;
        self.next_offset += 1;
        self.log.push_back(Logged {
            offset,
            nsp,
            rooms,
            except,
            frames,
            emitted_at: now,
        });
        while self.log.len() > self.config.max_packets {
            self.log.pop_front();
        }
    }

    /// Keeps a session under its private id.
    pub fn keep(&mut self, pid: Sid, session: KeptSession) {
        self.by_age.insert((session.disconnected_at, pid));
        if let Some(old) = self.sessions.insert(pid, session) {
            self.by_age.remove(&(old.disconnected_at, pid));
        }
        while self.sessions.len() > self.config.max_sessions {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.sessions.remove(&oldest);
        }
    }

    /// Takes the session `pid` of namespace `nsp` if it is still kept and `offset` is still in the
    /// log, with the packets after `offset` that reached its rooms.
    pub fn restore(
        &mut self,
        now: Instant,
        nsp: NspId,
        pid: &str,
        offset: &str,
    ) -> Option<Restored> {
        let pid = Sid::parse(pid)?;
        let offset: u64 = offset.parse().ok()?;
        let session = self.sessions.get(&pid)?;
        if session.nsp != nsp
            || session.disconnected_at + self.config.max_disconnection_duration < now
        {
            return None;
        }
        let start = self.log.iter().position(|p| p.offset == offset)?;
        let session = self.sessions.remove(&pid)?;
        self.by_age.remove(&(session.disconnected_at, pid));
        let missed = self
            .log
            .iter()
            .skip(start + 1)
            .filter(|p| p.nsp == nsp && reaches(p, &session.rooms))
            .flat_map(|p| p.frames.iter().cloned())
            .collect();
        Some(Restored {
            sid: session.sid,
            rooms: session.rooms,
            missed,
        })
    }

    /// Drops what expired at `now`; returns the private ids of the sessions dropped.
    pub fn purge(&mut self, now: Instant) -> Vec<Sid> {
        let max = self.config.max_disconnection_duration;
        while self.log.front().is_some_and(|p| p.emitted_at + max <= now) {
            self.log.pop_front();
        }
        let mut expired = Vec::new();
        while let Some(&(at, pid)) = self.by_age.first() {
            if at + max > now {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&pid);
            expired.push(pid);
        }
        expired
    }

    /// When something expires next.
    pub fn next_expiry(&self) -> Option<Instant> {
        let max = self.config.max_disconnection_duration;
        let log = self.log.front().map(|p| p.emitted_at + max);
        let session = self.by_age.first().map(|(at, _)| *at + max);
        match (log, session) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sessions kept and packets logged.
    pub fn sizes(&self) -> (usize, usize) {
        (self.sessions.len(), self.log.len())
    }
}

/// Whether a packet sent to `rooms` except `except` reached a socket in `member_of`.
fn reaches(packet: &Logged, member_of: &BTreeSet<String>) -> bool {
    let included = packet.rooms.is_empty() || packet.rooms.iter().any(|r| member_of.contains(r));
    included && !packet.except.iter().any(|r| member_of.contains(r))
}
