//! The I/O of one HTTP connection as hyper sees it, which writes the frames already queued for a
//! WebSocket (the open packet) in the same system call as the 101 that accepts it: one `send` and
//! one TCP segment fewer per connection, and the client reads both at once.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use crate::outbox::Outbox;

/// How hyper's head of a 101 starts.
const STATUS_101: &[u8] = b"HTTP/1.1 101 ";

/// Where the connection's service leaves the outbox of the WebSocket it accepts, for the I/O to
/// write behind the 101. Set once (a connection upgrades once), so that the I/O checks it with
/// one atomic load per write rather than a lock.
#[derive(Default)]
pub(crate) struct UpgradeSlot(OnceLock<Arc<Outbox>>);

impl UpgradeSlot {
    /// The service accepts a WebSocket whose frames queue in `outbox`; its 101 is the next write.
    pub fn set(&self, outbox: Arc<Outbox>) {
        let _ = self.0.set(outbox);
    }
}

/// hyper I/O over `inner` that writes a 101 and the accepted WebSocket's first frames together.
pub(crate) struct UpgradeIo<I> {
    inner: I,
    /// Dropped at the first write after a WebSocket was accepted, so that the upgraded
    /// connection keeps nothing of it.
    slot: Option<Arc<UpgradeSlot>>,
}

impl<I> UpgradeIo<I> {
    pub fn new(inner: I, slot: Arc<UpgradeSlot>) -> UpgradeIo<I> {
        UpgradeIo {
            inner,
            slot: Some(slot),
        }
    }

    /// Whether the service accepted a WebSocket whose 101 is not written yet.
    fn accepted(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|slot| slot.0.get().is_some())
    }

    /// The outbox to write behind `bufs`, when they are the head of the 101. A write after the
    /// service accepted a WebSocket starts with that head unless hyper's buffer held other bytes
    /// before it (an interim response, the end of an earlier one): then the frames wait for the
    /// WebSocket's task, as they would without this.
    fn behind_101(&mut self, bufs: &[IoSlice<'_>]) -> Option<Arc<Outbox>> {
        let outbox = self.slot.as_ref()?.0.get()?.clone();
        self.slot = None;
        let first = bufs.iter().find(|b| !b.is_empty())?;
        first.starts_with(STATUS_101).then_some(outbox)
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for UpgradeIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for UpgradeIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.accepted() {
            return Pin::new(this).poll_write_vectored(cx, &[IoSlice::new(buf)]);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Nothing (and the slot kept) until the service has accepted a WebSocket.
        let behind = this.behind_101(bufs);
        let inner = &mut this.inner;
        match behind {
            Some(outbox) => outbox.write_behind(bufs, |all| {
                Pin::new(&mut *inner).poll_write_vectored(cx, all)
            }),
            None => Pin::new(inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use bytestring::ByteString;
    use sio_core::engine::Frame;

    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\n\r\n";
    const OPEN: &str = "0{\"sid\":\"a\"}";
    /// The open packet as a WebSocket frame.
    const OPEN_FRAME: &[u8] = b"\x81\x0c0{\"sid\":\"a\"}";

    /// A socket that records each write and takes at most `room` bytes of it.
    struct Recorder {
        writes: Vec<Vec<u8>>,
        room: usize,
    }

    impl Recorder {
        fn new(room: usize) -> Recorder {
            Recorder {
                writes: Vec::new(),
                room,
            }
        }

        /// A socket with no room is full: the write waits.
        fn take(&mut self, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
            if self.room == 0 {
                return Poll::Pending;
            }
            let mut write = Vec::new();
            for buf in bufs {
                let n = buf.len().min(self.room - write.len());
                write.extend_from_slice(&buf[..n]);
            }
            let n = write.len();
            self.writes.push(write);
            Poll::Ready(Ok(n))
        }
    }

    impl hyper::rt::Write for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().take(&[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().take(bufs)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl futures_io::AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().take(&[IoSlice::new(buf)])
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// An outbox holding the open packet, as the driver leaves it before the 101.
    fn outbox_with_open_packet() -> Arc<Outbox> {
        let outbox = Outbox::new(8);
        outbox
            .push(Frame::Text(ByteString::from_static(OPEN)))
            .unwrap();
        outbox
    }

    /// What the WebSocket's task writes of `outbox` once upgraded.
    fn left_for_the_task(outbox: &Outbox) -> Vec<u8> {
        let mut socket = Recorder::new(usize::MAX);
        let mut cx = Context::from_waker(Waker::noop());
        let mut closed = false;
        let served = outbox.poll_serve(&mut cx, Pin::new(&mut socket), &mut closed);
        assert!(served.is_pending());
        socket.writes.concat()
    }

    fn poll_write(io: &mut UpgradeIo<Recorder>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let mut cx = Context::from_waker(Waker::noop());
        hyper::rt::Write::poll_write_vectored(Pin::new(io), &mut cx, &[IoSlice::new(bytes)])
    }

    fn write(io: &mut UpgradeIo<Recorder>, bytes: &[u8]) -> usize {
        match poll_write(io, bytes) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_open_packet_goes_out_in_the_write_of_the_101() {
        let slot = Arc::new(UpgradeSlot::default());
        let mut io = UpgradeIo::new(Recorder::new(usize::MAX), slot.clone());
        // A response before the upgrade (a polling request on the same connection) goes alone.
        assert_eq!(write(&mut io, b"HTTP/1.1 200 OK\r\n\r\nok"), 21);
        let outbox = outbox_with_open_packet();
        slot.set(outbox.clone());
        // hyper learns that its head went out, and nothing of the frame.
        assert_eq!(write(&mut io, HEAD), HEAD.len());
        assert_eq!(
            io.inner.writes,
            [
                b"HTTP/1.1 200 OK\r\n\r\nok".to_vec(),
                [HEAD, OPEN_FRAME].concat()
            ]
        );
        assert!(io.slot.is_none(), "the upgraded connection keeps no slot");
        assert_eq!(left_for_the_task(&outbox), b"");
    }

    #[test]
    fn what_a_short_write_leaves_goes_out_in_order() {
        // The socket takes part of the head: the frame waits for the task, whole.
        let slot = Arc::new(UpgradeSlot::default());
        let mut io = UpgradeIo::new(Recorder::new(HEAD.len() - 5), slot.clone());
        let outbox = outbox_with_open_packet();
        slot.set(outbox.clone());
        assert_eq!(write(&mut io, HEAD), HEAD.len() - 5);
        io.inner.room = usize::MAX;
        assert_eq!(write(&mut io, &HEAD[HEAD.len() - 5..]), 5);
        assert_eq!(io.inner.writes.concat(), HEAD);
        assert_eq!(left_for_the_task(&outbox), OPEN_FRAME);

        // The socket takes the head and three bytes of the frame: the task writes the rest.
        let slot = Arc::new(UpgradeSlot::default());
        let mut io = UpgradeIo::new(Recorder::new(HEAD.len() + 3), slot.clone());
        let outbox = outbox_with_open_packet();
        slot.set(outbox.clone());
        assert_eq!(write(&mut io, HEAD), HEAD.len());
        assert_eq!(io.inner.writes, [[HEAD, &OPEN_FRAME[..3]].concat()]);
        assert_eq!(left_for_the_task(&outbox), &OPEN_FRAME[3..]);
    }

    #[test]
    fn when_the_socket_is_full_the_frames_wait_for_the_task() {
        let slot = Arc::new(UpgradeSlot::default());
        let mut io = UpgradeIo::new(Recorder::new(0), slot.clone());
        let outbox = outbox_with_open_packet();
        slot.set(outbox.clone());
        assert!(poll_write(&mut io, HEAD).is_pending());
        // hyper writes the head again once the socket has room: alone, and the task follows.
        io.inner.room = usize::MAX;
        assert_eq!(write(&mut io, HEAD), HEAD.len());
        assert_eq!(io.inner.writes, [HEAD.to_vec()]);
        assert_eq!(left_for_the_task(&outbox), OPEN_FRAME);
    }

    #[test]
    fn frames_never_go_behind_bytes_that_are_not_the_101() {
        // hyper's buffer held other bytes before the 101 (an interim response, the end of an
        // earlier one): the frame waits for the task, after the 101.
        let slot = Arc::new(UpgradeSlot::default());
        let mut io = UpgradeIo::new(Recorder::new(usize::MAX), slot.clone());
        let outbox = outbox_with_open_packet();
        slot.set(outbox.clone());
        let both = [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD].concat();
        assert_eq!(write(&mut io, &both), both.len());
        assert_eq!(io.inner.writes, [both]);
        assert_eq!(left_for_the_task(&outbox), OPEN_FRAME);
    }
}
