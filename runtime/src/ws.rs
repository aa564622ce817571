//! One WebSocket after the 101: a single task reads frames into the driver and writes, in batches,
//! what the driver queued in the connection's outbox.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{Stream, future};
use hyper::upgrade::{OnUpgrade, Upgraded};
use sio_core::engine::{Frame, RequestId};

use crate::driver::{App, Command, Shared};
use crate::io::Compat;
use crate::outbox::Outbox;
use crate::{SocketWriter, Timer};

/// What tungstenite writes at once before it flushes (pongs and close frames only: data frames
/// go through the outbox).
const WRITE_BUFFER_BYTES: usize = 1024;

/// What woke the task.
enum Wake {
    Read(Option<Result<WsMessage, WsError>>),
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

/// Sends the close frame (`frame`, or a normal close) and flushes, until the deadline.
async fn close<A: App>(
    shared: &Shared<A>,
    stream: &mut WebSocketStream<Duplex>,
    frame: Option<CloseFrame>,
    deadline: &mut CloseDeadline,
) {
    let closing = async { drop(stream.close(frame).await) };
    future::or(closing, future::poll_fn(|cx| deadline.poll(shared, cx))).await
}

/// Serves the WebSocket of request `id` once hyper hands it over; the driver queues its frames in
/// `outbox` (the open packet may be waiting already), and writes them itself to `writer` when the
/// listener lent the socket.
pub(crate) async fn run<A: App>(
    shared: Arc<Shared<A>>,
    id: RequestId,
    on_upgrade: OnUpgrade,
    outbox: Arc<Outbox>,
    writer: Option<Arc<dyn SocketWriter>>,
) {
    let _detach = Detach(outbox.clone());
    let Ok(upgraded) = on_upgrade.await else {
        shared.send_now(Command::Closed { id });
        return;
    };
    let limits = &shared.limits;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = limits.ws_read_buffer;
    config.write_buffer_size = WRITE_BUFFER_BYTES;
    config.max_write_buffer_size = shared.max_message_size.saturating_mul(2).max(1 << 16);
    config.max_message_size = Some(shared.max_message_size);
    config.max_frame_size = Some(shared.max_message_size);
    let duplex = Duplex {
        io: Compat::new(upgraded),
        outbox: outbox.clone(),
    };
    let mut stream = WebSocketStream::from_raw_socket(duplex, Role::Server, Some(config)).await;
    // The 101 is written: from now on the driver may write to the socket itself.
    outbox.open(writer);
    let mut closing = CloseDeadline::default();
    loop {
        let wake = future::poll_fn(|cx| {
            let duplex = stream.get_mut();
            let mut closed = false;
            if let Poll::Ready(done) = outbox.poll_serve(cx, Pin::new(&mut duplex.io), &mut closed)
            {
                return Poll::Ready(Wake::Write(done));
            }
            if closed && closing.poll(&shared, cx).is_ready() {
                return Poll::Ready(Wake::CloseTimeout);
            }
            Pin::new(&mut stream).poll_next(cx).map(Wake::Read)
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
                // Boxed: a close runs once, and the task's state stays small while the
                // connection is open.
                Box::pin(close(&shared, &mut stream, None, &mut closing)).await;
                return;
            }
            Wake::Read(Some(Ok(message))) => {
                let frame = match message {
                    WsMessage::Text(text) => {
                        let bytes: Bytes = text.into();
                        match bytestring::ByteString::try_from(bytes) {
                            Ok(text) => Frame::Text(text),
                            Err(_) => continue,
                        }
                    }
                    WsMessage::Binary(data) => Frame::Binary(data),
                    // Control frames are answered by tungstenite; a close ends the stream next.
                    _ => continue,
                };
                if shared
                    .commands
                    .send(Command::WsFrame { id, frame })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Wake::Read(Some(Err(error))) => {
                // Close codes as the reference's `ws` library sends them.
                let (description, code) = match error {
                    WsError::Capacity(_) => ("message too large", CloseCode::Size),
                    WsError::Protocol(_) => ("websocket protocol error", CloseCode::Protocol),
                    // A connection that ends without a close frame is a close, as in the reference.
                    WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => {
                        shared.send_now(Command::Closed { id });
                        return;
                    }
                    _ => ("websocket read error", CloseCode::Error),
                };
                shared.send_now(Command::WsError { id, description });
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::default(),
                };
                Box::pin(close(&shared, &mut stream, Some(frame), &mut closing)).await;
                return;
            }
            Wake::Read(None) => {
                shared.send_now(Command::Closed { id });
                return;
            }
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

/// The upgraded connection as tungstenite sees it: it reads from the connection, and what it
/// writes (pongs, close frames) joins the outbox, so that it never cuts into a frame the driver
/// is writing.
struct Duplex {
    io: Compat<Upgraded>,
    outbox: Arc<Outbox>,
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.outbox.push_raw(buf) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::Error::other("send queue full"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.outbox.poll_flush(cx, Pin::new(&mut this.io))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.io).poll_close(cx)
    }
}
