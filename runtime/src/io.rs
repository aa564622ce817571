//! Bridges between hyper's I/O traits and futures-io, so that one WebSocket implementation serves
//! every runtime.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Bridges I/O traits both ways: hyper I/O (an upgraded connection) as futures-io for the
    /// WebSocket's task, and futures-io streams (smol, async-std) as hyper I/O.
    pub struct Compat<T> {
        #[pin]
        inner: T,
    }
}

impl<T> Compat<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Compat { inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: futures_io::AsyncRead> hyper::rt::Read for Compat<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = self.project().inner;
        read_into(buf, |scratch| inner.poll_read(cx, scratch))
    }
}

/// Fills hyper's buffer with one `read` into an initialised slice (for a runtime crate's hyper
/// I/O). hyper's buffer may be uninitialised and readers want an initialised slice; without
/// `unsafe`, read into a scratch buffer and copy. The scratch buffer is the thread's, zeroed once:
/// zeroing 8 KiB for every read was a quarter of the user-space instructions of a connection.
pub fn read_into(
    mut buf: hyper::rt::ReadBufCursor<'_>,
    read: impl FnOnce(&mut [u8]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    const SCRATCH: usize = 8192;
    thread_local! {
        static BUFFER: Scratch = const { std::cell::RefCell::new(Vec::new()) };
    }
    let len = buf.remaining().min(SCRATCH);
    with_scratch(&BUFFER, SCRATCH, len, |scratch| {
        let n = std::task::ready!(read(scratch))?;
        buf.put_slice(&scratch[..n.min(len)]);
        Poll::Ready(Ok(()))
    })
}

/// A thread's scratch buffer, zeroed once.
pub(crate) type Scratch = std::cell::RefCell<Vec<u8>>;

/// Calls `f` with the first `want` bytes of the thread's buffer `key`, grown to `size` (or
/// `want`) bytes at its first use.
pub(crate) fn with_scratch<T>(
    key: &'static std::thread::LocalKey<Scratch>,
    size: usize,
    want: usize,
    f: impl FnOnce(&mut [u8]) -> T,
) -> T {
    key.with(|buffer| {
        // A caller that reached this function again with the same buffer (never the case:
        // each user has its own) would get a buffer of its own rather than a panic.
        let mut own = Vec::new();
        let mut borrowed = buffer.try_borrow_mut();
        let scratch = match borrowed.as_deref_mut() {
            Ok(scratch) => scratch,
            Err(_) => &mut own,
        };
        if scratch.len() < want {
            scratch.resize(size.max(want), 0);
        }
        f(&mut scratch[..want])
    })
}

/// Writes `bufs` joined as [`write_joined`] does, with `send` when that makes one slice (the
/// cheaper system call) and `send_vectored` otherwise: how every socket of a runtime crate
/// writes.
pub fn send_joined<R>(
    bufs: &[io::IoSlice<'_>],
    mut send: impl FnMut(&[u8]) -> R,
    mut send_vectored: impl FnMut(&[io::IoSlice<'_>]) -> R,
) -> R {
    write_joined(bufs, |bufs| match bufs {
        [one] => send(one),
        _ => send_vectored(bufs),
    })
}

/// Writes `bufs` to a connected socket with one `sendmsg`, as `writev` would, but on Linux and
/// Android with `MSG_NOSIGNAL`: a write to a connection its peer closed then fails with `EPIPE`
/// instead of raising `SIGPIPE`, which kills a host process that does not ignore the signal (sio
/// embedded in a C, Python or Node program; a Rust `main` ignores it). std's and tokio's
/// single-slice writes already send with that flag, but their vectored writes are a plain
/// `writev`. Elsewhere it is a plain `sendmsg` (`WSASend` on Windows). Slices past the first
/// 1,024 (`IOV_MAX` on Linux, which `sendmsg` would refuse) are left for the next write.
pub fn send_vectored(
    socket: &impl crate::listener::AsSocketHandle,
    bufs: &[io::IoSlice<'_>],
) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(1024)];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
        let mut no_control = SendAncillaryBuffer::default();
        Ok(sendmsg(socket, bufs, &mut no_control, SendFlags::NOSIGNAL)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        socket2::SockRef::from(socket).send_vectored(bufs)
    }
}

/// Writes of several slices up to this many bytes in all are joined into one slice (see
/// [`write_joined`]).
pub const JOIN_BYTES: usize = 4096;

thread_local! {
    /// The buffer small writes are joined in.
    static JOINED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `write` with `bufs`, or, when there are several and they come to at most
/// [`JOIN_BYTES`], with one slice holding them all, copied into the thread's buffer: a runtime
/// crate then writes it with `send`. The kernel's `writev` path (the VFS layer and the import of
/// the slices) cost about 5% of sio's CPU per echo against 1.6-2.4% for `send` (perf, the project
/// VM), far more than copying a few hundred bytes. `write` is called once.
pub fn write_joined<R>(
    bufs: &[io::IoSlice<'_>],
    mut write: impl FnMut(&[io::IoSlice<'_>]) -> R,
) -> R {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if bufs.len() < 2 || total > JOIN_BYTES {
        return write(bufs);
    }
    let joined = JOINED.try_with(|buffer| {
        let mut buffer = buffer.try_borrow_mut().ok()?;
        buffer.clear();
        for buf in bufs {
            buffer.extend_from_slice(buf);
        }
        Some(write(&[io::IoSlice::new(&buffer)]))
    });
    match joined {
        Ok(Some(written)) => written,
        // No buffer to join in: the thread is ending, or a write reached here again.
        _ => write(bufs),
    }
}

impl<T: futures_io::AsyncWrite> hyper::rt::Write for Compat<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}

impl<T: hyper::rt::Read> futures_io::AsyncRead for Compat<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read_buf = hyper::rt::ReadBuf::new(buf);
        match self.project().inner.poll_read(cx, read_buf.unfilled()) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read_buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: hyper::rt::Write> futures_io::AsyncWrite for Compat<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn send_vectored_writes_the_slices_in_order_and_fails_on_a_closed_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let head = [1u8; 10];
        let body = vec![2u8; 5000];
        // Blocking, and loopback's buffers take 5 KiB at once.
        let written = send_vectored(&server, &[io::IoSlice::new(&head), io::IoSlice::new(&body)]);
        assert_eq!(written.unwrap(), 5010);
        let mut received = vec![0u8; 5010];
        client.read_exact(&mut received).unwrap();
        assert_eq!(received[..10], head);
        assert_eq!(received[10..], body[..]);

        // The first write after the peer's close is answered with a reset, a later one fails.
        // (The test harness ignores SIGPIPE, so this cannot tell MSG_NOSIGNAL's absence apart.)
        drop(client);
        let error = (0..100)
            .find_map(|_| send_vectored(&server, &[io::IoSlice::new(&head)]).err())
            .expect("a write to a closed peer fails");
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ),
            "{error:?}"
        );
    }
}
