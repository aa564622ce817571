//! The async-io reactor's pieces shared by the smol and async-std crates: a timer, and TCP I/O
//! that remembers when the socket was drained.
//!
//! async-io's own streams try the system call first on every poll. hyper polls a connection's read
//! side more often than data arrives (after each response, and whenever the connection's task
//! wakes while a request waits for the driver), so most of those calls failed with `EAGAIN`:
//! about three failed `recvfrom` per long-polling request. Like tokio, [`AsyncIoStream`] takes a
//! short read as "drained" and then waits for the reactor before it reads again.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::Async;

use crate::{Listener, SocketWriter, Timer};

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
pub struct AsyncIoListener(Arc<Async<TcpListener>>);

impl AsyncIoListener {
    /// Accepts on `listener`, already registered with the reactor.
    pub fn new(listener: Arc<Async<TcpListener>>) -> AsyncIoListener {
        AsyncIoListener(listener)
    }
}

impl Listener for AsyncIoListener {
    type Io = AsyncIoStream;

    async fn accept(&mut self) -> io::Result<(AsyncIoStream, SocketAddr)> {
        let (stream, peer) = self.0.read_with(accept_nonblocking).await?;
        // Socket.IO packets are small and latency matters; the glue batches its own writes.
        let _ = stream.get_ref().set_nodelay(true);
        Ok((
            AsyncIoStream {
                io: Arc::new(stream),
                drained: false,
            },
            peer,
        ))
    }

    fn writer(io: &AsyncIoStream) -> Option<Arc<dyn SocketWriter>> {
        Some(io.io.clone())
    }
}

/// Accepts a connection already in non-blocking mode and registers it with the reactor.
///
/// async-io's own `accept` sets the mode with a second system call (`ioctl`) for every connection;
/// `accept4` with `SOCK_NONBLOCK` does both in one.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn accept_nonblocking(listener: &TcpListener) -> io::Result<(Async<TcpStream>, SocketAddr)> {
    use rustix::net::SocketFlags;
    let (fd, peer) =
        rustix::net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = Async::new_nonblocking(TcpStream::from(fd))?;
    let peer = match peer.map(SocketAddr::try_from) {
        Some(Ok(peer)) => peer,
        // A TCP listener's peer is always an IP address; ask the socket if the kernel said nothing.
        _ => stream.get_ref().peer_addr()?,
    };
    Ok((stream, peer))
}

/// Accepts a connection and registers it with the reactor.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn accept_nonblocking(listener: &TcpListener) -> io::Result<(Async<TcpStream>, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    Ok((Async::new(stream)?, peer))
}

impl SocketWriter for Async<TcpStream> {
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // The socket is non-blocking: a full buffer answers `WouldBlock`.
        let mut socket: &TcpStream = self.get_ref();
        socket.write_vectored(bufs)
    }
}

/// A TCP connection on the async-io reactor, as hyper I/O.
pub struct AsyncIoStream {
    /// Shared with the driver, which writes WebSocket frames to it (see [`SocketWriter`]).
    io: Arc<Async<TcpStream>>,
    /// The last read was short or failed with `EAGAIN`: wait for the reactor before reading again.
    drained: bool,
}

impl hyper::rt::Read for AsyncIoStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let io = &this.io;
        let drained = &mut this.drained;
        crate::io::read_into(buf, |scratch| {
            loop {
                if *drained {
                    ready!(io.poll_readable(cx))?;
                    *drained = false;
                }
                match io.get_ref().read(scratch) {
                    Ok(n) => {
                        *drained = n < scratch.len();
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => *drained = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
    }
}

impl hyper::rt::Write for AsyncIoStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures_io::AsyncWrite::poll_write(Pin::new(&mut &*self.io), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        futures_io::AsyncWrite::poll_write_vectored(Pin::new(&mut &*self.io), cx, bufs)
    }

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
