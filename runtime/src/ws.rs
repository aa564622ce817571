//! One WebSocket after the 101: a single task reads frames into the driver and writes, in batches,
//! what the driver queued in the connection's outbox.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use hyper::upgrade::{OnUpgrade, Upgraded};
use sio_core::engine::RequestId;

use crate::driver::{App, Command, Shared};
use crate::io::Compat;
use crate::outbox::{Control, Outbox};
use crate::ws_decoder::{Decoder, Incoming, Read};
use crate::{SocketWriter, Timer};

/// The opcodes of WebSocket frames (RFC 6455 5.2).
pub(crate) mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xa;
}

/// The bits of a frame header's first two bytes besides the opcode (RFC 6455 5.2).
pub(crate) mod header_bits {
    /// First byte: the last fragment of a message.
    pub const FIN: u8 = 0x80;
    /// First byte: RSV1-3, which only a negotiated extension may set.
    pub const RSV: u8 = 0x70;
    /// First byte: the opcode.
    pub const OPCODE: u8 = 0x0f;
    /// Second byte: the payload is masked, as every client's must be.
    pub const MASKED: u8 = 0x80;
    /// Second byte: the length itself (0 to 125), or 126 or 127 for a 16- or 64-bit one after.
    pub const LEN: u8 = 0x7f;
}

/// What woke the task.
enum Wake {
    Read(Read),
    /// The outbox is closed and written out, or a write failed.
    Write(io::Result<()>),
    /// The outbox is closed and the socket took nothing for `Limits::ws_close_timeout`.
    CloseTimeout,
}

/// The deadline of a closing WebSocket: how long it may take to write what is left, counted from
/// when the task first sees the close. Set on first use, so that an open connection holds only
/// the empty slot.
#[derive(Default)]
struct CloseDeadline(Option<Pin<Box<dyn Timer>>>);

impl CloseDeadline {
    /// Ready once the deadline has passed; the first call sets it.
    fn poll<A: App>(&mut self, shared: &Shared<A>, cx: &mut Context<'_>) -> Poll<()> {
        let runtime = &shared.runtime;
        let after = shared.limits.ws_close_timeout;
        self.0
            .get_or_insert_with(|| runtime.new_timer(runtime.now() + after))
            .as_mut()
            .poll(cx)
    }
}

/// Queues a close frame carrying `payload` behind what is queued, takes no more frames, writes
/// everything out and shuts the connection's sending side, until the deadline.
async fn close<A: App, T: AsyncWrite + Unpin>(
    shared: &Shared<A>,
    io: &mut T,
    outbox: &Outbox,
    payload: Bytes,
    deadline: &mut CloseDeadline,
) {
    // A full queue already holds more than the deadline will likely let out: the frame is left.
    let _ = outbox.push_control(Control::Close, payload);
    outbox.close();
    let written = future::poll_fn(|cx| {
        let mut closed = false;
        if let Poll::Ready(done) = outbox.poll_serve(cx, Pin::new(&mut *io), &mut closed) {
            return Poll::Ready(done.is_ok());
        }
        deadline.poll(shared, cx).map(|()| false)
    })
    .await;
    if written {
        let shutdown = future::poll_fn(|cx| Pin::new(&mut *io).poll_close(cx));
        future::or(
            async { drop(shutdown.await) },
            future::poll_fn(|cx| deadline.poll(shared, cx)),
        )
        .await;
    }
}

/// Serves the WebSocket of request `id` once hyper hands it over; the driver queues its frames in
/// `outbox` (the open packet may be waiting already), and writes them itself to `writer` when the
/// listener lent the socket. `I` is the type of the connection hyper upgraded, when the caller
/// knows it (`Upgraded` when it does not).
pub(crate) async fn run<A: App, I>(
    shared: Arc<Shared<A>>,
    id: RequestId,
    on_upgrade: OnUpgrade,
    outbox: Arc<Outbox>,
    writer: Option<Arc<dyn SocketWriter>>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let _detach = Detach(outbox.clone());
    let Ok(upgraded) = on_upgrade.await else {
        shared.send_now(Command::Closed { id });
        return;
    };
    let mut decoder = Decoder::new(shared.limits.ws_read_buffer, shared.max_message_size);
    // Taken back as its own type, the connection is read without hyper's boxed trait object in
    // between: no dynamic call per read, and one allocation less per connection.
    let mut io = match upgraded.downcast::<I>() {
        Ok(parts) => {
            decoder.read_first(parts.read_buf);
            WsIo::Own(Compat::new(parts.io))
        }
        Err(upgraded) => WsIo::Hyper(Compat::new(upgraded)),
    };
    // The 101 is written: from now on the driver may write to the socket itself.
    outbox.open(writer);
    let mut closing = CloseDeadline::default();
    loop {
        let wake = future::poll_fn(|cx| {
            let mut closed = false;
            if let Poll::Ready(done) = outbox.poll_serve(cx, Pin::new(&mut io), &mut closed) {
                return Poll::Ready(Wake::Write(done));
            }
            if closed && closing.poll(&shared, cx).is_ready() {
                return Poll::Ready(Wake::CloseTimeout);
            }
            decoder.poll_read(cx, Pin::new(&mut io)).map(Wake::Read)
        })
        .await;
        match wake {
            // The client took nothing for the whole close timeout: drop the connection.
            Wake::CloseTimeout => return,
            Wake::Write(Err(_)) => {
                shared.send_now(Command::WsError {
                    id,
                    description: "websocket write error",
                });
                return;
            }
            Wake::Write(Ok(())) => {
                // The driver closed the session. Boxed: a close runs once, and the task's state
                // stays small while the connection is open.
                Box::pin(close(&shared, &mut io, &outbox, Bytes::new(), &mut closing)).await;
                return;
            }
            Wake::Read(Read::Incoming(Incoming::Message(frame))) => {
                if shared
                    .commands
                    .send(Command::WsFrame { id, frame })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Wake::Read(Read::Incoming(Incoming::Ping(payload))) => {
                // A client that pings without reading fills the queue: drop it.
                if outbox.push_control(Control::Pong, payload).is_err() {
                    shared.send_now(Command::Closed { id });
                    return;
                }
            }
            Wake::Read(Read::Incoming(Incoming::Pong)) => {}
            Wake::Read(Read::Incoming(Incoming::Close(payload))) => {
                // The close is answered with the client's own code and reason, as `ws` does.
                shared.send_now(Command::Closed { id });
                Box::pin(close(&shared, &mut io, &outbox, payload, &mut closing)).await;
                return;
            }
            Wake::Read(Read::Violation(violation)) => {
                shared.send_now(Command::WsError {
                    id,
                    description: violation.description(),
                });
                let payload = Bytes::copy_from_slice(&violation.code().to_be_bytes());
                Box::pin(close(&shared, &mut io, &outbox, payload, &mut closing)).await;
                return;
            }
            // A connection that ends without a close frame is a close, as in the reference.
            Wake::Read(Read::Ended) => {
                shared.send_now(Command::Closed { id });
                return;
            }
        }
    }
}

/// An upgraded connection: its own I/O when hyper gave it back, else hyper's wrapper around it.
enum WsIo<I> {
    Own(Compat<I>),
    Hyper(Compat<Upgraded>),
}

impl<I: hyper::rt::Read + Unpin> AsyncRead for WsIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsIo::Own(io) => Pin::new(io).poll_read(cx, buf),
            WsIo::Hyper(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl<I: hyper::rt::Write + Unpin> AsyncWrite for WsIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsIo::Own(io) => Pin::new(io).poll_write(cx, buf),
            WsIo::Hyper(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsIo::Own(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            WsIo::Hyper(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Own(io) => Pin::new(io).poll_flush(cx),
            WsIo::Hyper(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Own(io) => Pin::new(io).poll_close(cx),
            WsIo::Hyper(io) => Pin::new(io).poll_close(cx),
        }
    }
}

/// The task is gone: the outbox lets the socket go and queues nothing more.
struct Detach(Arc<Outbox>);

impl Drop for Detach {
    fn drop(&mut self) {
        self.0.detach();
    }
}
