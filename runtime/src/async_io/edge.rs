//! Edge-triggered readiness for the TCP connections of the async-io crates (Linux).
//!
//! async-io registers every socket one-shot: each event disarms it, and each wait after one costs
//! an `epoll_ctl` to arm it again, about one per echo on a busy server (`bench/README.md`). Here the
//! connections are registered once, edge-triggered, in an epoll instance of our own, and that
//! instance is the one source async-io watches: a reactor turn that finds any number of ready
//! connections costs one `epoll_wait` on ours and one re-arm of it, instead of one re-arm each.
//!
//! Readiness is remembered per connection and direction, with a tick that tells a failed read or
//! write to clear it only if no event came in since it was observed, so an edge is never lost.

use std::cell::RefCell;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use async_io::Async;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use slab::Slab;

use crate::lock;

/// The most events one `epoll_wait` on the connections' instance takes in; more wait for the
/// next call of the same turn.
const EVENTS_PER_WAIT: usize = 256;

/// A TCP connection registered edge-triggered with the process's [`Poller`].
pub(crate) struct EdgeSocket {
    stream: TcpStream,
    readiness: Arc<Mutex<Readiness>>,
    key: usize,
    poller: &'static Poller,
}

/// What the events said about one connection since its last failed read or write.
#[derive(Default)]
struct Readiness {
    read: Side,
    write: Side,
    /// The instance could not be armed: every wait fails.
    failed: bool,
}

/// One direction of a connection.
#[derive(Default)]
struct Side {
    ready: bool,
    /// Hung up or failed: it stays ready, since no edge will come for the read that sees it. Data
    /// and a FIN can arrive as one edge, and the read of the data must not clear it.
    closed: bool,
    /// Counts this direction's events: a clear asked for with an older tick is stale.
    tick: u32,
    waker: Option<Waker>,
}

impl Side {
    fn on_event(&mut self, closed: bool, wakers: &mut Vec<Waker>) {
        self.ready = true;
        self.closed |= closed;
        self.tick = self.tick.wrapping_add(1);
        wakers.extend(self.waker.take());
    }
}

/// The error of every wait, and every new connection, once arming the instance failed.
fn not_armed() -> io::Error {
    io::Error::other("the epoll instance of the connections could not be armed")
}

/// A direction of a connection's readiness.
#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Readiness {
    /// A new connection's: ready both ways. It may have data already: the first read tries, and
    /// an empty socket clears this on `EAGAIN`.
    fn new_connection() -> Readiness {
        let ready = || Side {
            ready: true,
            ..Side::default()
        };
        Readiness {
            read: ready(),
            write: ready(),
            failed: false,
        }
    }

    /// Takes in an event: the directions it says are ready, and their wakers into `wakers`.
    fn on_event(&mut self, flags: epoll::EventFlags, wakers: &mut Vec<Waker>) {
        use epoll::EventFlags as F;
        let broken = flags.intersects(F::ERR | F::HUP);
        if broken || flags.intersects(F::IN | F::RDHUP) {
            self.read
                .on_event(broken || flags.contains(F::RDHUP), wakers);
        }
        if broken || flags.contains(F::OUT) {
            self.write.on_event(broken, wakers);
        }
    }

    /// Ready with the tick to clear it with, or pending with `cx`'s waker kept; also returns the
    /// waker it replaced, for the caller to wake once the lock is released.
    fn poll(
        &mut self,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> (Poll<io::Result<u32>>, Option<Waker>) {
        if self.failed {
            return (Poll::Ready(Err(not_armed())), None);
        }
        let side = self.side(direction);
        if side.ready {
            return (Poll::Ready(Ok(side.tick)), None);
        }
        let replaced = match &side.waker {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            _ => side.waker.replace(cx.waker().clone()),
        };
        (Poll::Pending, replaced)
    }

    /// A read or write found nothing to do: not ready until the next event, unless one came in
    /// after `tick` was observed, or the direction is closed.
    fn clear(&mut self, direction: Direction, tick: u32) {
        let side = self.side(direction);
        if side.tick == tick && !side.closed {
            side.ready = false;
        }
    }

    fn side(&mut self, direction: Direction) -> &mut Side {
        match direction {
            Direction::Read => &mut self.read,
            Direction::Write => &mut self.write,
        }
    }
}

impl EdgeSocket {
    /// Registers `stream`, already non-blocking, with the process's poller.
    pub(crate) fn new(stream: TcpStream) -> io::Result<EdgeSocket> {
        let poller = Poller::get()?;
        let readiness = Arc::new(Mutex::new(Readiness::new_connection()));
        let key = poller.register(&stream, &readiness)?;
        Ok(EdgeSocket {
            stream,
            readiness,
            key,
            poller,
        })
    }

    /// The connection.
    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Ready, with the tick to clear it with, once an event says the connection may be read.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
        self.poll_ready(Direction::Read, cx)
    }

    /// Ready, with the tick to clear it with, once an event says the connection may be written.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
        self.poll_ready(Direction::Write, cx)
    }

    /// A read found the connection drained: wait for its next event, unless one came in after
    /// `tick` was observed.
    pub(crate) fn clear_read_ready(&self, tick: u32) {
        self.clear(Direction::Read, tick)
    }

    /// A write found the connection full: wait for its next event, unless one came in after
    /// `tick` was observed.
    pub(crate) fn clear_write_ready(&self, tick: u32) {
        self.clear(Direction::Write, tick)
    }

    fn poll_ready(&self, direction: Direction, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
        let (poll, replaced) = lock(&self.readiness).poll(direction, cx);
        // Another task took over the wait: the one it replaced learns, as with async-io, and only
        // once the lock is released, since waking or dropping a waker may run anything.
        if let Some(replaced) = replaced {
            replaced.wake();
        }
        poll
    }

    fn clear(&self, direction: Direction, tick: u32) {
        lock(&self.readiness).clear(direction, tick)
    }
}

impl Drop for EdgeSocket {
    fn drop(&mut self) {
        // Closing the socket, right after, takes it out of the epoll instance: no `epoll_ctl`. Were
        // its file still open elsewhere (a `fork`), its events would name a stale generation and
        // be dropped.
        lock(&self.poller.sources).try_remove(self.key);
    }
}

/// The process's epoll instance for connections, itself registered with async-io's reactor.
static POLLER: OnceLock<Poller> = OnceLock::new();

/// An epoll instance for connections, itself registered with async-io's reactor.
struct Poller {
    epoll: Async<OwnedFd>,
    /// The one waker the instance is armed with: async-io wakes a waker it replaces, and a second
    /// one would re-enter the dispatch.
    waker: Waker,
    /// The connections, by key: the key and a generation make an event's data.
    sources: Mutex<Slab<Source>>,
    generation: AtomicU32,
    /// Arming the instance failed: nothing would wake its connections again.
    failed: AtomicBool,
    /// Taken by the one dispatch running at a time.
    dispatch: Mutex<Dispatch>,
}

struct Source {
    generation: u32,
    readiness: Arc<Mutex<Readiness>>,
}

/// The wakers of a dispatch's events, kept from one dispatch to the next.
struct Dispatch {
    wakers: Vec<Waker>,
}

thread_local! {
    /// The events of a dispatch on this thread (rustix's events are not `Send`).
    static EVENTS: RefCell<Vec<epoll::Event>> = const { RefCell::new(Vec::new()) };
}

/// async-io's reactor wakes this when the epoll instance has events.
struct DispatchWaker;

impl Wake for DispatchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(poller) = POLLER.get() {
            poller.dispatch();
        }
    }
}

impl Poller {
    /// The process's poller, made and armed on first use. A failure to make it (out of file
    /// descriptors) is not kept: the next connection tries again. Once arming it has failed, new
    /// connections fail too.
    fn get() -> io::Result<&'static Poller> {
        let poller = match POLLER.get() {
            Some(poller) => poller,
            None => {
                let poller = Poller::new()?;
                // Should another thread have made one meanwhile, this one is dropped, unused.
                POLLER.get_or_init(move || poller)
            }
        };
        if poller.failed.load(Ordering::Relaxed) {
            return Err(not_armed());
        }
        Ok(poller)
    }

    fn new() -> io::Result<Poller> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        // `epoll_wait` is only ever called with a zero timeout: the mode does not matter.
        let epoll = Async::new_nonblocking(fd)?;
        // Arm it: from now on every dispatch re-arms it before it returns.
        let waker = Waker::from(Arc::new(DispatchWaker));
        if let Poll::Ready(Err(e)) = epoll.poll_readable(&mut Context::from_waker(&waker)) {
            return Err(e);
        }
        Ok(Poller {
            epoll,
            waker,
            sources: Mutex::new(Slab::new()),
            generation: AtomicU32::new(0),
            failed: AtomicBool::new(false),
            dispatch: Mutex::new(Dispatch { wakers: Vec::new() }),
        })
    }

    fn register(&self, stream: &TcpStream, readiness: &Arc<Mutex<Readiness>>) -> io::Result<usize> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let key = lock(&self.sources).insert(Source {
            generation,
            readiness: readiness.clone(),
        });
        let data = epoll::EventData::new_u64((key as u64) << 32 | u64::from(generation));
        let flags = epoll::EventFlags::IN
            | epoll::EventFlags::OUT
            | epoll::EventFlags::RDHUP
            | epoll::EventFlags::ET;
        if let Err(e) = epoll::add(self.epoll.get_ref(), stream.as_fd(), data, flags) {
            lock(&self.sources).try_remove(key);
            return Err(e.into());
        }
        Ok(key)
    }

    /// Hands every pending event to its connection, re-arms the instance in async-io, then wakes
    /// the connections: a waker that panics cannot leave the instance disarmed.
    fn dispatch(&self) {
        crate::block_on::reactor_turned();
        let mut dispatch = lock(&self.dispatch);
        let wakers = &mut dispatch.wakers;
        let mut cx = Context::from_waker(&self.waker);
        // Takes in the readiness that woke us; `Pending` if it had been taken in already, and then
        // the instance is armed again.
        let mut armed = self.epoll.poll_readable(&mut cx);
        EVENTS.with_borrow_mut(|events| self.drain(events, wakers));
        // Armed after the drain, lest the events just drained report it again. Arming looks at the
        // instance, so one that came in meanwhile is reported on the next turn. (After a `Ready`
        // async-io registers the waker: this polls once more.)
        while let Poll::Ready(Ok(())) = armed {
            armed = self.epoll.poll_readable(&mut cx);
        }
        if let Poll::Ready(Err(_)) = armed {
            // Re-arming an instance that is registered allocates nothing and does not fail in
            // practice. Should it, every connection fails rather than wait forever.
            self.fail(wakers);
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }

    /// Takes every event out of the instance and collects the wakers of the connections they
    /// make ready.
    fn drain(&self, events: &mut Vec<epoll::Event>, wakers: &mut Vec<Waker>) {
        events.clear();
        events.reserve_exact(EVENTS_PER_WAIT);
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            events.clear();
            if epoll::wait(self.epoll.get_ref(), spare_capacity(events), Some(&zero)).is_err() {
                return;
            }
            let sources = lock(&self.sources);
            for event in events.iter() {
                let data = event.data.u64();
                let Some(source) = sources.get((data >> 32) as usize) else {
                    continue;
                };
                if source.generation == data as u32 {
                    lock(&source.readiness).on_event(event.flags, wakers);
                }
            }
            if events.len() < events.capacity() {
                return;
            }
        }
    }

    /// Fails every connection and every new one.
    fn fail(&self, wakers: &mut Vec<Waker>) {
        self.failed.store(true, Ordering::Relaxed);
        for (_, source) in lock(&self.sources).iter() {
            let mut readiness = lock(&source.readiness);
            readiness.failed = true;
            wakers.extend(readiness.read.waker.take());
            wakers.extend(readiness.write.waker.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::time::Duration;

    use futures_lite::FutureExt;

    use super::*;

    /// A connected client and the server's end of it, registered.
    fn pair() -> (TcpStream, EdgeSocket) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, EdgeSocket::new(server).unwrap())
    }

    /// Polls once, with a waker that does nothing.
    fn poll_now(poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<u32>>) -> Poll<u32> {
        poll(&mut Context::from_waker(Waker::noop())).map(|tick| tick.unwrap())
    }

    /// Reads what the socket holds, as the stream does: until a read fails with `EAGAIN`, which
    /// clears the readiness observed at `tick`.
    fn read_all(socket: &EdgeSocket, tick: u32) -> Vec<u8> {
        let mut read = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match socket.get_ref().read(&mut buf) {
                Ok(0) => panic!("the peer did not close"),
                Ok(n) => read.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.clear_read_ready(tick);
                    return read;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until the socket says it is not ready. (async-io's helper thread, shared by the
    /// tests, may dispatch an edge between a read and its clear: then the next poll is ready.)
    fn read_until_pending(socket: &EdgeSocket) -> Vec<u8> {
        let mut read = Vec::new();
        while let Poll::Ready(tick) = poll_now(|cx| socket.poll_read_ready(cx)) {
            read.extend(read_all(socket, tick));
        }
        read
    }

    /// Runs `future` on async-io's reactor; a fuse fails the test rather than hang it.
    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        async_io::block_on(future.or(async {
            async_io::Timer::after(Duration::from_secs(20)).await;
            panic!("no event came in 20 s");
        }))
    }

    #[test]
    fn a_drained_connection_waits_for_each_new_edge() {
        let (mut client, socket) = pair();
        assert_eq!(read_until_pending(&socket), b"");
        for message in [&b"first"[..], b"second", b"third"] {
            client.write_all(message).unwrap();
            let tick = run(poll_fn(|cx| socket.poll_read_ready(cx))).unwrap();
            let mut read = read_all(&socket, tick);
            read.extend(read_until_pending(&socket));
            assert_eq!(read, message);
        }
    }

    #[test]
    fn data_and_the_end_of_the_stream_in_one_edge_leave_the_end_to_read() {
        let (mut client, socket) = pair();
        assert_eq!(read_until_pending(&socket), b"");
        client.write_all(b"bye").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let tick = run(poll_fn(|cx| socket.poll_read_ready(cx))).unwrap();
        // As the stream reads: a short read counts as drained.
        let mut buf = [0; 64];
        assert_eq!(socket.get_ref().read(&mut buf).unwrap(), 3);
        socket.clear_read_ready(tick);
        // When the FIN came in the data's edge, no edge follows it: the connection must stay
        // ready for the read that sees it, or this waits for the fuse. (When the reactor took in
        // the data before the FIN arrived, the FIN's own edge wakes it.)
        run(poll_fn(|cx| socket.poll_read_ready(cx))).unwrap();
        assert_eq!(socket.get_ref().read(&mut buf).unwrap(), 0);
    }

    /// Polls `readiness` once, with a waker that does nothing.
    fn poll_side(readiness: &mut Readiness, direction: Direction) -> Poll<u32> {
        let (poll, _) = readiness.poll(direction, &mut Context::from_waker(Waker::noop()));
        poll.map(|tick| tick.unwrap())
    }

    // On a `Readiness` alone: a registered socket gets events from async-io's helper thread at
    // any moment, and the test needs to place them.
    #[test]
    fn an_event_after_the_tick_was_observed_keeps_the_connection_ready() {
        let mut readiness = Readiness::new_connection();
        let Poll::Ready(tick) = poll_side(&mut readiness, Direction::Read) else {
            panic!("a new connection is read once");
        };
        // An event comes in between a read that found nothing and its clear.
        let mut wakers = Vec::new();
        readiness.on_event(epoll::EventFlags::IN, &mut wakers);
        readiness.clear(Direction::Read, tick);
        let Poll::Ready(newer) = poll_side(&mut readiness, Direction::Read) else {
            panic!("the event was lost");
        };
        assert_ne!(newer, tick);
        readiness.clear(Direction::Read, newer);
        assert!(poll_side(&mut readiness, Direction::Read).is_pending());
        // Each direction has its own tick: writing's events do not keep reading ready.
        let Poll::Ready(write_tick) = poll_side(&mut readiness, Direction::Write) else {
            panic!("a new connection is written once");
        };
        readiness.on_event(epoll::EventFlags::OUT, &mut wakers);
        readiness.clear(Direction::Write, write_tick);
        assert!(poll_side(&mut readiness, Direction::Write).is_ready());
        let Poll::Ready(write_tick) = poll_side(&mut readiness, Direction::Write) else {
            unreachable!()
        };
        readiness.clear(Direction::Write, write_tick);
        assert!(poll_side(&mut readiness, Direction::Write).is_pending());
        assert!(wakers.is_empty(), "nobody waited yet");
        // A hang-up wakes both directions, for good.
        readiness.on_event(epoll::EventFlags::HUP, &mut wakers);
        assert_eq!(wakers.len(), 2, "the waiting reader and writer");
        let Poll::Ready(tick) = poll_side(&mut readiness, Direction::Read) else {
            panic!("a hang-up makes the connection readable");
        };
        readiness.clear(Direction::Read, tick);
        assert!(poll_side(&mut readiness, Direction::Read).is_ready());
        assert!(poll_side(&mut readiness, Direction::Write).is_ready());
    }

    #[test]
    fn every_connection_of_a_burst_larger_than_one_wait_is_woken() {
        let pairs: Vec<_> = (0..EVENTS_PER_WAIT + 44).map(|_| pair()).collect();
        for (_, socket) in &pairs {
            assert_eq!(read_until_pending(socket), b"");
        }
        for (i, (client, _)) in pairs.iter().enumerate() {
            let mut client: &TcpStream = client;
            client.write_all(format!("{i}").as_bytes()).unwrap();
        }
        run(async {
            for (i, (_, socket)) in pairs.iter().enumerate() {
                let tick = poll_fn(|cx| socket.poll_read_ready(cx)).await.unwrap();
                let mut read = read_all(socket, tick);
                read.extend(read_until_pending(socket));
                assert_eq!(read, format!("{i}").as_bytes());
            }
        });
    }

    #[test]
    fn a_full_connection_is_woken_once_the_peer_reads() {
        let (mut client, socket) = pair();
        let chunk = vec![7u8; 65536];
        let mut written = 0;
        // Until the socket says it is full (an edge from the peer's acknowledgements may come in
        // between a failed write and its clear).
        while let Poll::Ready(tick) = poll_now(|cx| socket.poll_write_ready(cx)) {
            match socket.get_ref().write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.clear_write_ready(tick),
                Err(e) => panic!("write: {e}"),
            }
        }
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; written];
            client.read_exact(&mut buf).unwrap();
            buf.iter().all(|&b| b == 7)
        });
        run(poll_fn(|cx| socket.poll_write_ready(cx))).unwrap();
        assert!(reader.join().unwrap());
    }
}
