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
