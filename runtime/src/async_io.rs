//! The async-io reactor's pieces shared by the smol and async-std crates: a timer, and TCP I/O
//! that remembers when the socket was drained.
//!
//! async-io's own streams try the system call first on every poll. hyper polls a connection's read
//! side more often than data arrives (after each response, and whenever the connection's task
//! wakes while a request waits for the driver), so most of those calls failed with `EAGAIN`:
//! about three failed `recvfrom` per long-polling request. Like tokio, [`AsyncIoStream`] takes a
//! short read as "drained" and then waits for an event before it reads again. On Linux the
//! connections are registered edge-triggered ([`edge`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::Async;

use crate::{Listener, SocketWriter, Timer};
use edge::EdgeSocket;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod edge;

/// Elsewhere, async-io's one-shot registration behind the same interface: a wait after a failed
/// read or write re-arms the socket.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod edge {
    use std::io;
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, ready};

    use async_io::Async;

    pub(crate) struct EdgeSocket {
        io: Async<TcpStream>,
        drained: AtomicBool,
        full: AtomicBool,
    }

    impl EdgeSocket {
        pub(crate) fn new(stream: TcpStream) -> io::Result<EdgeSocket> {
            Ok(EdgeSocket {
                io: Async::new(stream)?,
                drained: AtomicBool::new(false),
                full: AtomicBool::new(false),
            })
        }

        pub(crate) fn get_ref(&self) -> &TcpStream {
            self.io.get_ref()
        }

        pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
            if self.drained.load(Ordering::Acquire) {
                ready!(self.io.poll_readable(cx))?;
                self.drained.store(false, Ordering::Release);
            }
            Poll::Ready(Ok(0))
        }

        pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
            if self.full.load(Ordering::Acquire) {
                ready!(self.io.poll_writable(cx))?;
                self.full.store(false, Ordering::Release);
            }
            Poll::Ready(Ok(0))
        }

        pub(crate) fn clear_read_ready(&self, _: u32) {
            self.drained.store(true, Ordering::Release);
        }

        pub(crate) fn clear_write_ready(&self, _: u32) {
            self.full.store(true, Ordering::Release);
        }
    }
}

/// The nice value [`lower_reactor_helper_priority`] gives async-io's helper thread: the lowest.
pub const REACTOR_HELPER_NICE: i32 = 19;

/// Gives async-io's helper thread (named `async-io`) the lowest priority, nice 19, so that it
/// stops preempting the executor's threads; starts it if it has not started yet. Returns whether
/// it did. Linux only; elsewhere it does nothing and returns `Ok(false)`.
///
/// A server run by [`block_on`](crate::block_on) does not need it: that polls the reactor often
/// enough to keep the helper asleep, and leaves it free to step in while one task runs long. This
/// is for servers on executors that poll the reactor only every 200 tasks while they are busy, as
/// smol's and async-std's own do. The helper takes the reactor over when it finds that nobody
/// polled it during its last sleep, which starts at 50 µs: on a busy server it wakes up thousands
/// of times a second, and on a server with as many busy threads as cores each wake-up preempts an
/// executor thread and hands it the events through a futex. At nice 19 it runs when a core is
/// idle and rarely wins the reactor.
///
/// It is a trade-off, measured on a server pinned to one core (`bench/README.md`): CPU per echo
/// and per connection came down to tokio's, but a broadcast to 10,000 sockets, where the executor
/// stays busy for long stretches, cost about a quarter more CPU per delivery and its p99 latency
/// doubled, because the events now wait for the executor. Opt in only when the executor's threads
/// have their cores to themselves and the work comes in small pieces. On a machine kept busy by
/// other work, a thread at nice 19 waits longer for a core, and the events it holds wait with it.
/// It changes the thread for the whole process, for every user of async-io.
pub fn lower_reactor_helper_priority() -> io::Result<bool> {
    helper_priority::lower()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod helper_priority {
    use std::io;

    use rustix::process::{Pid, setpriority_process};

    use super::REACTOR_HELPER_NICE;

    pub(super) fn lower() -> io::Result<bool> {
        if renice_helper()? {
            return Ok(true);
        }
        // async-io starts its helper lazily, at the first use of its reactor or of `block_on`,
        // and a new thread takes the nice value of the thread that starts it: start it from a
        // thread of ours at nice 19.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // `None`: on Linux, the calling thread alone.
                    setpriority_process(None, REACTOR_HELPER_NICE)?;
                    async_io::block_on(async {});
                    Ok::<_, io::Error>(())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the thread starting async-io panicked")))
        })?;
        // Had another thread started it in between, it has the other thread's priority.
        renice_helper()?;
        Ok(true)
    }

    /// Renices the threads named `async-io`; whether there was one.
    fn renice_helper() -> io::Result<bool> {
        let mut found = false;
        for task in std::fs::read_dir("/proc/self/task")? {
            let task = task?;
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if name.trim_end() != "async-io" {
                continue;
            }
            let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
            // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone.
            if let Some(tid) = tid.and_then(Pid::from_raw) {
                setpriority_process(Some(tid), REACTOR_HELPER_NICE)?;
                found = true;
            }
        }
        Ok(found)
    }
}

/// Elsewhere a nice value is the whole process's: leave it.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod helper_priority {
    pub(super) fn lower() -> std::io::Result<bool> {
        Ok(false)
    }
}

/// The async-io reactor's timer as a [`Timer`] (smol, async-std).
pub struct AsyncIoTimer {
    timer: async_io::Timer,
}

impl AsyncIoTimer {
    /// A timer firing at `deadline`.
    pub fn at(deadline: Instant) -> AsyncIoTimer {
        AsyncIoTimer {
            timer: async_io::Timer::at(deadline),
        }
    }
}

impl Timer for AsyncIoTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.timer.set_at(deadline)
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        futures_lite::FutureExt::poll(&mut self.timer, cx).map(|_| ())
    }
}

/// A TCP listener on the async-io reactor as a [`Listener`].
pub struct AsyncIoListener {
    listener: Arc<Async<TcpListener>>,
    /// Whether accepted connections have `TCP_NODELAY` from the listener already.
    nodelay_inherited: bool,
}

impl AsyncIoListener {
    /// Accepts on `listener`, already registered with the reactor.
    pub fn new(listener: Arc<Async<TcpListener>>) -> AsyncIoListener {
        let nodelay_inherited = crate::nodelay_for_accepted(listener.get_ref());
        AsyncIoListener {
            listener,
            nodelay_inherited,
        }
    }
}

impl Listener for AsyncIoListener {
    type Io = AsyncIoStream;

    async fn accept(&mut self) -> io::Result<(AsyncIoStream, SocketAddr)> {
        let (stream, peer) = self.listener.read_with(accept_nonblocking).await?;
        if !self.nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let io = Arc::new(EdgeSocket::new(stream)?);
        Ok((AsyncIoStream { io }, peer))
    }

    fn writer(io: &AsyncIoStream) -> Option<Arc<dyn SocketWriter>> {
        Some(io.io.clone())
    }
}

/// Accepts a connection already in non-blocking mode.
///
/// async-io's own `accept` sets the mode with a second system call (`ioctl`) for every connection;
/// `accept4` with `SOCK_NONBLOCK` does both in one.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn accept_nonblocking(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    use rustix::net::SocketFlags;
    let (fd, peer) =
        rustix::net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = TcpStream::from(fd);
    let peer = match peer.map(SocketAddr::try_from) {
        Some(Ok(peer)) => peer,
        // A TCP listener's peer is always an IP address; ask the socket if the kernel said nothing.
        _ => stream.peer_addr()?,
    };
    Ok((stream, peer))
}

/// Accepts a connection (registering it makes it non-blocking).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn accept_nonblocking(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    listener.accept()
}

impl SocketWriter for EdgeSocket {
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // The socket is non-blocking: a full buffer answers `WouldBlock`.
        let socket: &TcpStream = self.get_ref();
        crate::io::send_joined(
            bufs,
            |one| (&mut { socket }).write(one),
            |bufs| crate::io::send_vectored(socket, bufs),
        )
    }
}

/// A TCP connection on the async-io reactor, as hyper I/O.
pub struct AsyncIoStream {
    /// Shared with the driver, which writes WebSocket frames to it (see [`SocketWriter`]).
    io: Arc<EdgeSocket>,
}

impl hyper::rt::Read for AsyncIoStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let io = &self.io;
        crate::io::read_into(buf, |scratch| {
            loop {
                let tick = ready!(io.poll_read_ready(cx))?;
                match io.get_ref().read(scratch) {
                    Ok(n) => {
                        // A short read emptied the socket: the next one waits for an event.
                        if n < scratch.len() {
                            io.clear_read_ready(tick);
                        }
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.clear_read_ready(tick),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
    }
}

impl AsyncIoStream {
    /// Writes as much of `bufs` as the socket takes, waiting for an event when it is full.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&mut &TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let tick = ready!(self.io.poll_write_ready(cx))?;
            match write(&mut self.io.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.clear_write_ready(tick),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

impl hyper::rt::Write for AsyncIoStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The same write as the driver's, waiting here when the socket is full.
        self.poll_write_with(cx, |_| self.io.try_write_vectored(bufs))
    }

    /// hyper then hands a response's head and body over as they are (a large body is not copied);
    /// `poll_write_vectored` joins small pieces into one `send`.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(Shutdown::Write))
    }
}
