//! One HTTP/1.1 connection served by hyper: each request goes to the driver, which answers with what
//! the core decided (a response, a request for the body, an abort or a WebSocket accept).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use sio_core::engine::{BodyError, RequestId};

use crate::SocketWriter;
use crate::driver::{App, Command, Outcome, Shared};
use crate::header_timer::HeaderTimer;
use crate::upgrade_io::{UpgradeIo, UpgradeSlot};

/// The request was dropped on the core's word (the reference destroys it): the server should close
/// the connection without an answer (hyper does so for a service error).
#[derive(Debug)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request aborted")
    }
}

impl std::error::Error for Aborted {}

/// Serves one connection until it closes.
pub(crate) async fn serve_connection<A, I>(
    shared: Arc<Shared<A>>,
    io: I,
    remote: Option<SocketAddr>,
    writer: Option<Arc<dyn SocketWriter>>,
) where
    A: App,
    I: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let timer = HeaderTimer::new(shared.runtime.clone());
    let limits = shared.limits.clone();
    let slot = Arc::new(UpgradeSlot::default());
    let io = UpgradeIo::new(io, slot.clone());
    let service = service_fn(move |req: Request<Incoming>| {
        handle::<A, _, UpgradeIo<I>>(
            shared.clone(),
            req,
            remote,
            writer.clone(),
            Some(slot.clone()),
        )
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(timer)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_size);
    // Errors here are the peer's (reset, bad request line): hyper has answered what it could.
    let _ = builder.serve_connection(io, service).with_upgrades().await;
}

/// Tells the driver if the request's future is dropped before the core was done with it: the
/// client went away (a parked GET aborted, a POST cut short).
struct CloseGuard<A: App> {
    shared: Arc<Shared<A>>,
    id: RequestId,
    armed: bool,
}

impl<A: App> Drop for CloseGuard<A> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.send_now(Command::Closed { id: self.id });
        }
    }
}

/// Handles one request of any HTTP server whose body is an `http_body::Body` (hyper's, axum's, ...).
/// A WebSocket upgrade needs the server's `hyper::upgrade::OnUpgrade` in the request's extensions;
/// `writer`, when given, is the connection's socket, which the driver may then write to itself;
/// `upgrade`, the slot of the connection's [`UpgradeIo`], which then writes the open packet with
/// the 101. `I` is the type of the connection's I/O as hyper was given it, which a WebSocket's
/// task takes back after the upgrade; `Upgraded` where it is not known.
pub(crate) async fn handle<A: App, B, I>(
    shared: Arc<Shared<A>>,
    mut req: Request<B>,
    remote: Option<SocketAddr>,
    writer: Option<Arc<dyn SocketWriter>>,
    upgrade: Option<Arc<UpgradeSlot>>,
) -> Result<Response<Full<Bytes>>, Aborted>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (head, body) = req.into_parts();
    if let Some(fallback) = shared.fallback.get() {
        if !head.uri.path().starts_with(&shared.path) {
            let limit = shared.max_message_size;
            let Ok(body) = Limited::new(body, limit).collect().await else {
                return Ok(status(StatusCode::PAYLOAD_TOO_LARGE));
            };
            return Ok(fallback(&head, body.to_bytes()).map(Full::new));
        }
    }
    let key = head.headers.get(SEC_WEBSOCKET_KEY).cloned();
    let id = shared.next_request_id();
    let (reply, outcome) = crate::reply::reply_slot();
    let command = Command::Request {
        id,
        head: Box::new(head),
        remote,
        reply,
    };
    if shared.commands.send(command).await.is_err() {
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
    }
    let mut guard = CloseGuard {
        shared: shared.clone(),
        id,
        armed: true,
    };
    let mut body = Some(body);
    loop {
        let Some(outcome) = outcome.recv().await else {
            guard.armed = false;
            return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
        };
        match outcome {
            Outcome::Response(response) => {
                guard.armed = false;
                return Ok(response.map(Full::new));
            }
            Outcome::Abort => {
                guard.armed = false;
                return Err(Aborted);
            }
            Outcome::ReadBody(limit) => {
                let Some(body) = body.take() else {
                    continue;
                };
                let body = match Limited::new(body, limit).collect().await {
                    Ok(collected) => Ok(collected.to_bytes()),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                        Err(BodyError::TooLarge)
                    }
                    // The client went away mid-body: the guard reports it.
                    Err(_) => return Err(Aborted),
                };
                let _ = shared.commands.send(Command::Body { id, body }).await;
            }
            Outcome::AcceptWebSocket(headers, outbox) => {
                guard.armed = false;
                let Some(key) = key else {
                    return Ok(status(StatusCode::BAD_REQUEST));
                };
                let mut response = status(StatusCode::SWITCHING_PROTOCOLS);
                let h = response.headers_mut();
                h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                h.insert(UPGRADE, HeaderValue::from_static("websocket"));
                let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                if let Ok(accept) = HeaderValue::from_str(&accept) {
                    h.insert(SEC_WEBSOCKET_ACCEPT, accept);
                }
                for (name, value) in &headers {
                    h.append(name.clone(), value.clone());
                }
                if let Some(upgrade) = upgrade {
                    upgrade.set(outbox.clone());
                }
                let task = crate::ws::run::<A, I>(shared.clone(), id, on_upgrade, outbox, writer);
                shared.runtime.spawn(Box::pin(task));
                return Ok(response);
            }
        }
    }
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
