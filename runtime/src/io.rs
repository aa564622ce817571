//! Bridges between hyper's I/O traits and futures-io, so that one WebSocket implementation serves
//! every runtime.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Bridges I/O traits both ways: hyper I/O (an upgraded connection) as futures-io for
    /// async-tungstenite, and futures-io streams (smol, async-std) as hyper I/O.
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
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        // `read` never reaches this function again, but a reader that did would get a buffer of
        // its own rather than a panic.
        let mut own = Vec::new();
        let mut borrowed = buffer.try_borrow_mut();
        let scratch = match borrowed.as_deref_mut() {
            Ok(scratch) => scratch,
            Err(_) => &mut own,
        };
        if scratch.is_empty() {
            scratch.resize(SCRATCH, 0);
        }
        let len = buf.remaining().min(SCRATCH);
        let n = std::task::ready!(read(&mut scratch[..len]))?;
        buf.put_slice(&scratch[..n.min(len)]);
        Poll::Ready(Ok(()))
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
