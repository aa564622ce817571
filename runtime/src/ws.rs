//! One WebSocket after the 101: a single task reads frames into the driver and writes, in batches,
//! what the driver queued in the connection's outbox.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{StreamExt, future};
use futures_sink::Sink;
use hyper::upgrade::OnUpgrade;
use sio_core::engine::{Frame, RequestId};

use crate::driver::{App, Command, Shared};
use crate::io::Compat;
use crate::outbox::{Outbox, Taken};

/// Frames written before a flush; also about the most the write buffer keeps between batches.
const WRITE_BATCH_BYTES: usize = 8 * 1024;

/// What woke the task.
enum Wake {
    Read(Option<Result<WsMessage, WsError>>),
    Write(Taken),
}

/// Serves the WebSocket of request `id` once hyper hands it over; the driver queues its frames in
/// `outbox` (the open packet may be waiting already).
pub(crate) async fn run<A: App>(
    shared: Arc<Shared<A>>,
    id: RequestId,
    on_upgrade: OnUpgrade,
    outbox: Arc<Outbox>,
) {
    let Ok(upgraded) = on_upgrade.await else {
        shared.send_now(Command::Closed { id });
        return;
    };
    let limits = &shared.limits;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = limits.ws_read_buffer;
    config.write_buffer_size = WRITE_BATCH_BYTES;
    config.max_write_buffer_size = shared.max_message_size.saturating_mul(2).max(1 << 16);
    config.max_message_size = Some(shared.max_message_size);
    config.max_frame_size = Some(shared.max_message_size);
    let mut stream =
        WebSocketStream::from_raw_socket(Compat::new(upgraded), Role::Server, Some(config)).await;
    let mut batch = VecDeque::new();
    loop {
        let wake = future::or(
            async { Wake::Write(future::poll_fn(|cx| outbox.poll_take(cx, &mut batch)).await) },
            async { Wake::Read(stream.next().await) },
        )
        .await;
        match wake {
            Wake::Write(Taken::Frames) => {
                let written = write_batch(&mut stream, &mut batch).await;
                // Give the buffer back: an idle connection keeps no queue memory.
                batch = VecDeque::new();
                if written.is_err() {
                    shared.send_now(Command::WsError {
                        id,
                        description: "websocket write error",
                    });
                    return;
                }
            }
            Wake::Write(Taken::Closed) => {
                let _ = stream.close(None).await;
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
                let _ = stream.close(Some(frame)).await;
                return;
            }
            Wake::Read(None) => {
                shared.send_now(Command::Closed { id });
                return;
            }
        }
    }
}

/// Writes every frame of `batch`, then flushes once: one write call for a batch of small frames.
async fn write_batch<S>(
    stream: &mut WebSocketStream<S>,
    batch: &mut VecDeque<Frame>,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(frame) = batch.pop_front() {
        future::poll_fn(|cx| Pin::new(&mut *stream).poll_ready(cx)).await?;
        // The core's text is valid UTF-8 already: a raw frame skips tungstenite's check.
        let message = match frame {
            Frame::Text(text) => WsMessage::Frame(WsFrame::message(
                text.into_bytes(),
                OpCode::Data(Data::Text),
                true,
            )),
            Frame::Binary(data) => WsMessage::Binary(data),
        };
        Pin::new(&mut *stream).start_send(message)?;
    }
    future::poll_fn(|cx| Pin::new(&mut *stream).poll_flush(cx)).await
}
