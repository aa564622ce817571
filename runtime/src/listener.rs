//! Accepting connections: the one accept loop every runtime crate uses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

use crate::driver::{App, Shared};

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
