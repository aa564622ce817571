//! One WebSocket after the 101: a single task reads frames into the driver and writes what the driver
//! queued for it.

use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use bytes::Bytes;
use futures_lite::{StreamExt, future};
use hyper::upgrade::OnUpgrade;
use sio_core::engine::{Frame, RequestId};

use crate::driver::{App, Command, Shared, WsOut};
use crate::io::Compat;

/// What woke the task.
enum Wake {
    Read(Option<Result<WsMessage, WsError>>),
    Write(Option<WsOut>),
}

pub(crate) async fn run<A: App>(shared: Arc<Shared<A>>, id: RequestId, on_upgrade: OnUpgrade) {
    let Ok(upgraded) = on_upgrade.await else {
        shared.send_now(Command::Closed { id });
        return;
    };
    let limits = &shared.limits;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = limits.ws_read_buffer;
    config.write_buffer_size = 0;
    config.max_write_buffer_size = shared.max_message_size.saturating_mul(2).max(1 << 16);
    config.max_message_size = Some(shared.max_message_size);
    config.max_frame_size = Some(shared.max_message_size);
    let stream =
        WebSocketStream::from_raw_socket(Compat::new(upgraded), Role::Server, Some(config)).await;
    let (mut sender, mut receiver) = stream.split();
    let (out_tx, out_rx) = async_channel::bounded(limits.ws_queue);
    if shared
        .commands
        .send(Command::WsOpen { id, out: out_tx })
        .await
        .is_err()
    {
        return;
    }
    loop {
        let wake = future::or(async { Wake::Write(out_rx.recv().await.ok()) }, async {
            Wake::Read(receiver.next().await)
        })
        .await;
        match wake {
            Wake::Write(Some(WsOut::Frame(frame))) => {
                let message = match frame {
                    Frame::Text(text) => {
                        WsMessage::Text(Utf8Bytes::try_from(text.into_bytes()).unwrap_or_default())
                    }
                    Frame::Binary(data) => WsMessage::Binary(data),
                };
                if sender.send(message).await.is_err() {
                    shared.send_now(Command::WsError {
                        id,
                        description: "websocket write error",
                    });
                    return;
                }
            }
            Wake::Write(Some(WsOut::Close)) | Wake::Write(None) => {
                let _ = sender.close(None).await;
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
                let _ = sender.close(Some(frame)).await;
                return;
            }
            Wake::Read(None) => {
                shared.send_now(Command::Closed { id });
                return;
            }
        }
    }
}
