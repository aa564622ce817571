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
                let task = crate::http::serve_connection(shared.clone(), io, Some(peer));
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
