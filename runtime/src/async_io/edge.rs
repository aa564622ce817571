//! Edge-triggered readiness for the TCP connections of the async-io crates (Linux).
//!
//! async-io registers every socket one-shot: each event disarms it, and each wait after one costs
//! an `epoll_ctl` to arm it again, about one per echo on a busy server (`bench/README.md`). Here the
//! connections are registered once, edge-triggered, in an epoll instance of our own, and that
//! instance is the one source async-io watches: a reactor turn that finds any number of ready
//! connections costs one `epoll_wait` on ours and one re-arm of it, instead of one re-arm each.
//!
//! Readiness is remembered per connection, with a tick that tells a failed read or write to clear
//! it only if no event came in since it was observed, so an edge is never lost.

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
    readable: bool,
    writable: bool,
    /// Counts the events: a clear asked for with an older tick is stale.
    tick: u32,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// A direction of a connection's readiness.
#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Readiness {
    /// Takes in an event: the directions it says are ready, and their wakers into `wakers`.
    fn on_event(&mut self, flags: epoll::EventFlags, wakers: &mut Vec<Waker>) {
        self.tick = self.tick.wrapping_add(1);
        let broken = epoll::EventFlags::ERR | epoll::EventFlags::HUP;
        if flags.intersects(epoll::EventFlags::IN | epoll::EventFlags::RDHUP | broken) {
            self.readable = true;
            wakers.extend(self.reader.take());
        }
        if flags.intersects(epoll::EventFlags::OUT | broken) {
            self.writable = true;
            wakers.extend(self.writer.take());
        }
    }

    fn ready(&mut self, direction: Direction) -> (&mut bool, &mut Option<Waker>) {
        match direction {
            Direction::Read => (&mut self.readable, &mut self.reader),
            Direction::Write => (&mut self.writable, &mut self.writer),
        }
    }
}

impl EdgeSocket {
    /// Registers `stream`, already non-blocking, with the process's poller.
    pub(crate) fn new(stream: TcpStream) -> io::Result<EdgeSocket> {
        let poller = Poller::get()?;
        // A new connection may have data already: the first read tries, and an empty socket
        // clears this on `EAGAIN`.
        let readiness = Arc::new(Mutex::new(Readiness {
            readable: true,
            writable: true,
            ..Readiness::default()
        }));
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
        {
            let mut readiness = lock(&self.readiness);
            let tick = readiness.tick;
            let (ready, waker) = readiness.ready(direction);
            if *ready {
                return Poll::Ready(Ok(tick));
            }
            match waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // Without the lock: a dispatch takes it.
        self.poller.retry_arming();
        Poll::Pending
    }

    fn clear(&self, direction: Direction, tick: u32) {
        let mut readiness = lock(&self.readiness);
        if readiness.tick == tick {
            *readiness.ready(direction).0 = false;
        }
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
    /// Arming failed: the next connection to wait arms it.
    disarmed: AtomicBool,
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
    /// The process's poller, made and armed on first use. A failure (out of file descriptors) is
    /// not kept: the next connection tries again.
    fn get() -> io::Result<&'static Poller> {
        if let Some(poller) = POLLER.get() {
            return Ok(poller);
        }
        let poller = Poller::new()?;
        // Should another thread have made one meanwhile, this one is dropped, unused.
        Ok(POLLER.get_or_init(move || poller))
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
            disarmed: AtomicBool::new(false),
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

    /// Dispatches, which arms, if arming failed last time.
    fn retry_arming(&self) {
        if self.disarmed.load(Ordering::Relaxed) {
            self.dispatch();
        }
    }

    /// Hands every pending event to its connection, then re-arms the instance in async-io.
    fn dispatch(&self) {
        let mut dispatch = lock(&self.dispatch);
        let wakers = &mut dispatch.wakers;
        self.disarmed.store(false, Ordering::Relaxed);
        let mut cx = Context::from_waker(&self.waker);
        // Takes in the event that woke us; `Pending` means the instance is armed already, and
        // what comes in from here on wakes us again.
        let armed = self.epoll.poll_readable(&mut cx).is_pending();
        loop {
            EVENTS.with_borrow_mut(|events| self.drain(events, wakers));
            if armed {
                return;
            }
            match self.epoll.poll_readable(&mut cx) {
                // Armed after the drain: arming looks at the instance, so an event that came in
                // between is reported on the reactor's next turn.
                Poll::Pending => return,
                // An event newer than the drain: drain again.
                Poll::Ready(Ok(())) => {}
                // Arming failed (`epoll_ctl` out of memory).
                Poll::Ready(Err(_)) => {
                    self.disarmed.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Takes every event out of the instance and wakes the connections they name.
    fn drain(&self, events: &mut Vec<epoll::Event>, wakers: &mut Vec<Waker>) {
        events.reserve_exact(EVENTS_PER_WAIT);
        loop {
            events.clear();
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            if epoll::wait(self.epoll.get_ref(), spare_capacity(events), Some(&zero)).is_err() {
                return;
            }
            {
                let sources = lock(&self.sources);
                for event in events.iter() {
                    let data = event.data.u64();
                    let Some(source) = sources.get((data >> 32) as usize) else {
                        continue;
                    };
                    if source.generation != data as u32 {
                        continue;
                    }
                    lock(&source.readiness).on_event(event.flags, wakers);
                }
            }
            // Woken outside the locks: a waker may run code that registers or drops a connection.
            for waker in wakers.drain(..) {
                waker.wake();
            }
            if events.len() < events.capacity() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::io::{Read, Write};
    use std::net::TcpListener;
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

    /// Reads until the socket is drained, and clears its readiness as the stream does.
    fn drain(socket: &EdgeSocket, tick: u32) -> Vec<u8> {
        let mut read = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match socket.get_ref().read(&mut buf) {
                Ok(n) => read.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.clear_read_ready(tick);
                    return read;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Polls once, with a waker that does nothing.
    fn poll_now(poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<u32>>) -> Poll<u32> {
        poll(&mut Context::from_waker(Waker::noop())).map(|tick| tick.unwrap())
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
        // Registered as ready: the first read finds nothing and clears it.
        let Poll::Ready(tick) = poll_now(|cx| socket.poll_read_ready(cx)) else {
            panic!("a new connection is read once");
        };
        assert_eq!(drain(&socket, tick), b"");
        assert!(poll_now(|cx| socket.poll_read_ready(cx)).is_pending());
        for message in [&b"first"[..], b"second", b"third"] {
            client.write_all(message).unwrap();
            let tick = run(poll_fn(|cx| socket.poll_read_ready(cx))).unwrap();
            assert_eq!(drain(&socket, tick), message);
            assert!(poll_now(|cx| socket.poll_read_ready(cx)).is_pending());
        }
        // The end of the stream is an edge too.
        drop(client);
        let tick = run(poll_fn(|cx| socket.poll_read_ready(cx))).unwrap();
        let mut buf = [0; 8];
        assert_eq!(socket.get_ref().read(&mut buf).unwrap(), 0);
        socket.clear_read_ready(tick);
    }

    #[test]
    fn an_event_after_the_tick_was_observed_keeps_the_connection_ready() {
        let (_client, socket) = pair();
        let Poll::Ready(tick) = poll_now(|cx| socket.poll_read_ready(cx)) else {
            panic!("a new connection is read once");
        };
        // An event comes in between a read that found nothing and its clear.
        let mut wakers = Vec::new();
        lock(&socket.readiness).on_event(epoll::EventFlags::IN, &mut wakers);
        socket.clear_read_ready(tick);
        assert_eq!(
            poll_now(|cx| socket.poll_read_ready(cx)),
            Poll::Ready(tick + 1)
        );
        socket.clear_read_ready(tick + 1);
        assert!(poll_now(|cx| socket.poll_read_ready(cx)).is_pending());
        // Writing was never cleared; an error or hang-up wakes both directions.
        assert!(poll_now(|cx| socket.poll_write_ready(cx)).is_ready());
        socket.clear_write_ready(tick + 1);
        assert!(poll_now(|cx| socket.poll_write_ready(cx)).is_pending());
        lock(&socket.readiness).on_event(epoll::EventFlags::HUP, &mut wakers);
        assert!(poll_now(|cx| socket.poll_read_ready(cx)).is_ready());
        assert!(poll_now(|cx| socket.poll_write_ready(cx)).is_ready());
        // The wakers were the no-op's, taken once each direction was registered.
        assert_eq!(wakers.len(), 2);
    }

    #[test]
    fn every_connection_of_a_burst_larger_than_one_wait_is_woken() {
        let pairs: Vec<_> = (0..EVENTS_PER_WAIT + 44).map(|_| pair()).collect();
        for (_, socket) in &pairs {
            let Poll::Ready(tick) = poll_now(|cx| socket.poll_read_ready(cx)) else {
                panic!("a new connection is read once");
            };
            drain(socket, tick);
        }
        for (i, (client, _)) in pairs.iter().enumerate() {
            let mut client: &TcpStream = client;
            client.write_all(format!("{i}").as_bytes()).unwrap();
        }
        run(async {
            for (i, (_, socket)) in pairs.iter().enumerate() {
                let tick = poll_fn(|cx| socket.poll_read_ready(cx)).await.unwrap();
                assert_eq!(drain(socket, tick), format!("{i}").as_bytes());
            }
        });
    }

    #[test]
    fn a_full_connection_is_woken_once_the_peer_reads() {
        let (mut client, socket) = pair();
        let chunk = vec![7u8; 65536];
        let mut written = 0;
        let tick = loop {
            let Poll::Ready(tick) = poll_now(|cx| socket.poll_write_ready(cx)) else {
                panic!("writable until a write fails");
            };
            match socket.get_ref().write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break tick,
                Err(e) => panic!("write: {e}"),
            }
        };
        socket.clear_write_ready(tick);
        assert!(poll_now(|cx| socket.poll_write_ready(cx)).is_pending());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; written];
            client.read_exact(&mut buf).unwrap();
            buf.iter().all(|&b| b == 7)
        });
        run(poll_fn(|cx| socket.poll_write_ready(cx))).unwrap();
        assert!(reader.join().unwrap());
    }
}
