//! Accepting connections: the one accept loop every runtime crate uses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

use crate::driver::{App, Shared};

// What socket2 borrows a socket through: its file descriptor, or its Windows socket.
#[cfg(unix)]
pub(crate) use std::os::fd::AsFd as AsSocketHandle;
#[cfg(windows)]
pub(crate) use std::os::windows::io::AsSocket as AsSocketHandle;

/// How many established connections the kernel queues for `accept`: the default of Node's
/// `server.listen`, which the reference server runs on.
///
/// Rust's listeners (std, mio, async-io) ask for 128. A burst of more connections than that,
/// arriving faster than the server accepts, overflows the queue: the kernel drops the client's
/// SYN, and the client retries only after a second.
pub const LISTEN_BACKLOG: i32 = 511;

/// Sets the accept queue of a listening socket to [`LISTEN_BACKLOG`] connections.
///
/// `listen` again on a listening socket changes its backlog on Linux and the BSDs; Windows keeps
/// the first one and still succeeds. `SocketIo::listen` calls this; a listener given to `serve`
/// is left as its owner made it.
pub fn raise_listen_backlog(listener: &impl AsSocketHandle) -> io::Result<()> {
    socket2::SockRef::from(listener).listen(LISTEN_BACKLOG)
}

/// Sets `TCP_NODELAY` on a listening socket where the connections it accepts take it from there
/// (Linux copies a listener's options to each accepted socket): one system call per server
/// instead of one per connection. Returns whether they do; where not, each accepted connection
/// needs its own `set_nodelay`.
///
/// Socket.IO packets are small and latency matters, and the glue batches its own writes, so every
/// connection the runtime crates accept has Nagle's algorithm off.
pub fn nodelay_for_accepted(listener: &impl AsSocketHandle) -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// The most file descriptors [`reserve_fd_table`] makes room for: 65,536, a table of 512 KiB of
/// kernel memory.
pub const FD_TABLE_RESERVE: u64 = 1 << 16;

/// Grows the process's table of file descriptors, once, to hold as many as it may open (its soft
/// `RLIMIT_NOFILE`), up to [`FD_TABLE_RESERVE`]; `fd` is any open descriptor, duplicated once
/// and closed. Returns how many the table now holds at least, or `None` where there is nothing to
/// do (not Linux, or a table already grown).
///
/// Linux doubles the table as descriptors are opened, and in a process with more than one thread
/// (async-io's helper thread, a multi-thread runtime) each doubling waits inside `accept` for an
/// RCU grace period: 10 to 20 ms on a virtual machine, during which the thread serving every
/// connection is stopped. A burst of 10,000 connections takes eight doublings. Growing the table
/// before serving moves those waits out of the burst. `SocketIo::listen` and `serve` call this.
pub fn reserve_fd_table(fd: &impl AsSocketHandle) -> io::Result<Option<u64>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        /// How many descriptors the table was grown to hold, by this function.
        static RESERVED: AtomicU64 = AtomicU64::new(0);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let wanted = limit.map_or(FD_TABLE_RESERVE, |limit| limit.min(FD_TABLE_RESERVE));
        if wanted <= RESERVED.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // The lowest free descriptor at or above the last slot: the table grows to hold it, and
        // keeps its size once it is closed.
        let last = i32::try_from(wanted - 1).unwrap_or(i32::MAX);
        drop(rustix::io::fcntl_dupfd_cloexec(fd, last)?);
        RESERVED.fetch_max(wanted, Ordering::Relaxed);
        Ok(Some(wanted))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        Ok(None)
    }
}

/// A source of connections (a TCP listener of some runtime).
pub trait Listener: Send + 'static {
    /// A connection, as hyper I/O.
    type Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static;
    /// The next connection and its peer.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;

    /// The socket under `io`, lent to the driver so that it writes WebSocket frames without
    /// waking the connection's task. `None` (the default) keeps every write on that task.
    fn writer(io: &Self::Io) -> Option<Arc<dyn SocketWriter>> {
        let _ = io;
        None
    }
}

/// The write side of a connection's socket, shared between the connection's task and the driver.
///
/// The driver calls it from its own task, so it must never wait: a socket whose buffer is full
/// answers `WouldBlock`, and the connection's task then writes the rest through its own I/O once
/// the socket is writable again. It must write to the same socket as the connection's I/O, in the
/// same byte stream (not through a buffer of its own).
pub trait SocketWriter: Send + Sync + 'static {
    /// Writes as much of `bufs` as the socket takes now, in order.
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize>;
}

/// Accepts connections and serves each on its own task (HTTP/1.1 with upgrades, for the
/// application behind `shared`), until the server shuts down.
///
/// An accept error (too many open files, a connection reset before it was accepted) does not stop
/// the server: it waits a moment and goes on.
pub(crate) async fn serve<A: App, L: Listener>(shared: &Arc<Shared<A>>, mut listener: L) {
    let shutdown = &shared.shutdown.1;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = shutdown.recv().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((io, peer))) => {
                let writer = L::writer(&io);
                let task = crate::http::serve_connection(shared.clone(), io, Some(peer), writer);
                shared.runtime.spawn(Box::pin(task));
            }
            Some(Err(_)) => {
                let runtime = &shared.runtime;
                let mut timer = runtime.new_timer(runtime.now() + Duration::from_millis(50));
                future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// The kernel caps every backlog at `net.core.somaxconn`.
    fn somaxconn() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(4096)
    }

    /// Connects clients that nobody accepts until one is refused a place in the queue (its SYN is
    /// dropped, so its connect times out); how many made it.
    fn queued_connections(listener: &TcpListener, at_most: usize) -> Vec<TcpStream> {
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        while clients.len() < at_most {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(client) => clients.push(client),
                Err(_) => break,
            }
        }
        clients
    }

    /// How many descriptors the process's table holds now (`FDSize` in `/proc/self/status`).
    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_fd_table_is_grown_once_to_the_soft_limit_and_no_descriptor_is_left_open() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let wanted = limit.map_or(FD_TABLE_RESERVE, |limit| limit.min(FD_TABLE_RESERVE));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Another test's server may have grown it already: then there is nothing to do.
        let first = reserve_fd_table(&listener).unwrap();
        assert!(first.is_none() || first == Some(wanted), "{first:?}");
        assert!(fd_table_size() >= wanted, "{} < {wanted}", fd_table_size());
        assert_eq!(reserve_fd_table(&listener).unwrap(), None);
        // The descriptor that grew it was closed.
        let last = i32::try_from(wanted - 1).unwrap();
        assert!(fd_is_closed(last), "descriptor {last} is still open");
    }

    /// Whether descriptor `fd` is closed, asked through `/proc/self/fd`.
    fn fd_is_closed(fd: i32) -> bool {
        !std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists()
    }

    #[test]
    fn accepted_connections_take_nodelay_from_their_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (before, _) = listener.accept().unwrap();
        assert!(!before.nodelay().unwrap());
        assert!(nodelay_for_accepted(&listener));
        let client_after = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (after, _) = listener.accept().unwrap();
        assert!(after.nodelay().unwrap());
        drop((client, client_after));
    }

    #[test]
    fn a_raised_listener_queues_as_many_connections_as_node_before_accepting_any() {
        let wanted = (LISTEN_BACKLOG as usize).min(somaxconn());
        // Listening with 128, as std does: the queue takes 129, and the 130th SYN is dropped.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(128).unwrap();
        let listener = TcpListener::from(socket);
        if wanted <= 129 {
            return;
        }
        let first = queued_connections(&listener, wanted);
        assert_eq!(first.len(), 129);
        // Raised on the same socket, with those 129 still waiting: the queue takes one more
        // than the backlog, as it did for 128.
        raise_listen_backlog(&listener).unwrap();
        let more = queued_connections(&listener, wanted + 1 - first.len());
        assert_eq!(first.len() + more.len(), wanted + 1);
        assert!(queued_connections(&listener, 1).is_empty());
    }
}
