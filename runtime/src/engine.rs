//! The Engine.IO-level API: a plain engine server, for applications that speak raw Engine.IO
//! messages (and for the official Engine.IO protocol test suite).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sio_core::engine::{
    CloseReason, Engine, EngineConfig, EngineEvent, ErrorCode, Handshake, Message, SendError,
    SessionId, Sid, Transport,
};

use crate::Runtime;
use crate::driver::{App, Command, Limits, Shared};

/// Reacts to Engine.IO sessions. Methods run on the driver task: keep them short, and hand long
/// work to a task of your own with an [`EngineHandle`].
pub trait EngineHandler: Send + 'static {
    /// A session opened.
    fn on_open(&mut self, socket: EngineSocket<'_>, handshake: &Handshake) {
        let _ = (socket, handshake);
    }
    /// A message arrived.
    fn on_message(&mut self, socket: EngineSocket<'_>, message: Message) {
        let _ = (socket, message);
    }
    /// The session moved to WebSocket.
    fn on_upgrade(&mut self, socket: EngineSocket<'_>) {
        let _ = socket;
    }
    /// The session closed.
    fn on_close(&mut self, session: SessionId, reason: CloseReason, description: &str) {
        let _ = (session, reason, description);
    }

    /// With [`EngineConfig::allow_request`]: whether to let a handshake in; the `Err` message is
    /// sent with 403 and code 4.
    fn allow_request(&mut self, handshake: &Handshake) -> Result<(), String> {
        let _ = handshake;
        Ok(())
    }

    /// A request was refused (`connection_error` in the reference).
    fn on_connection_error(&mut self, code: ErrorCode, message: &str, context: &str) {
        let _ = (code, message, context);
    }
}

/// One session, borrowed for the duration of a handler call.
pub struct EngineSocket<'a> {
    engine: &'a mut Engine,
    session: SessionId,
    now: Instant,
}

impl EngineSocket<'_> {
    /// The session's handle.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The Engine.IO session id (secret: it authorises polling requests).
    pub fn sid(&self) -> Option<Sid> {
        self.engine.sid(self.session)
    }

    /// The current transport.
    pub fn transport(&self) -> Option<Transport> {
        self.engine.transport(self.session)
    }

    /// Sends a message.
    pub fn send(&mut self, message: Message) -> Result<(), SendError> {
        self.engine.send(self.session, message)
    }

    /// Closes the session (`forced close`) once what is queued has reached the client.
    pub fn close(&mut self) {
        self.engine.close(self.now, self.session)
    }
}

/// The engine and the application's handler, owned by the driver.
pub(crate) struct EngineApp {
    engine: Engine,
    handler: Box<dyn EngineHandler>,
}

impl App for EngineApp {
    type Core = Engine;

    fn core(&mut self) -> &mut Engine {
        &mut self.engine
    }

    fn max_message_size(&self) -> usize {
        self.engine.config().max_http_buffer_size
    }

    fn path(&self) -> String {
        self.engine.config().path.clone()
    }

    fn handle_event(&mut self, now: Instant, event: EngineEvent) {
        let engine = &mut self.engine;
        match event {
            EngineEvent::Open { session, handshake } => {
                let socket = EngineSocket {
                    engine,
                    session,
                    now,
                };
                self.handler.on_open(socket, &handshake);
            }
            EngineEvent::Message { session, message } => {
                let socket = EngineSocket {
                    engine,
                    session,
                    now,
                };
                self.handler.on_message(socket, message);
            }
            EngineEvent::Upgrade { session } => {
                let socket = EngineSocket {
                    engine,
                    session,
                    now,
                };
                self.handler.on_upgrade(socket);
            }
            EngineEvent::Close {
                session,
                reason,
                description,
            } => self.handler.on_close(session, reason, description),
            EngineEvent::AllowRequest { request, handshake } => {
                let verdict = self.handler.allow_request(&handshake);
                engine.allow_request(now, request, verdict);
            }
            EngineEvent::ConnectionError {
                code,
                message,
                context,
            } => self.handler.on_connection_error(code, &message, context),
        }
    }
}

/// A running Engine.IO server: hand it connections. Cheap to clone.
pub struct EngineService {
    shared: Arc<Shared<EngineApp>>,
}

impl Clone for EngineService {
    fn clone(&self) -> Self {
        EngineService {
            shared: self.shared.clone(),
        }
    }
}

impl EngineService {
    /// Starts the engine's driver task on `runtime`.
    pub fn start(
        runtime: Arc<dyn Runtime>,
        config: EngineConfig,
        handler: impl EngineHandler,
        limits: Limits,
    ) -> EngineService {
        let engine = Engine::new(config, runtime.now());
        let app = EngineApp {
            engine,
            handler: Box::new(handler),
        };
        let shared = crate::driver::spawn(runtime, app, limits);
        EngineService { shared }
    }

    /// Serves one accepted connection (HTTP/1.1, with WebSocket upgrades) until it closes.
    pub async fn serve_connection<I>(&self, io: I, remote: Option<SocketAddr>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    {
        crate::http::serve_connection(self.shared.clone(), io, remote, None).await
    }

    /// A handle to act on sessions from outside the handlers.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves every connection `listener` accepts, until the server shuts down.
    pub async fn serve_listener<L: crate::Listener>(&self, listener: L) {
        crate::listener::serve(&self.shared, listener).await
    }

    /// The runtime the service runs on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.shared.runtime
    }
}

/// Acts on sessions from any task.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared<EngineApp>>,
}

impl EngineHandle {
    /// Sends a message to a session; `Err` if the session is gone or closing.
    pub async fn send(&self, session: SessionId, message: Message) -> Result<(), SendError> {
        let (tx, rx) = async_channel::bounded(1);
        let command = Command::App(Box::new(move |app: &mut EngineApp, _now| {
            let _ = tx.try_send(app.engine.send(session, message));
        }));
        if self.shared.commands.send(command).await.is_err() {
            return Err(SendError::UnknownSession);
        }
        rx.recv().await.unwrap_or(Err(SendError::UnknownSession))
    }

    /// Closes every session at once and stops accepting connections.
    pub async fn shutdown(&self) {
        let command = Command::App(Box::new(|app: &mut EngineApp, now| {
            app.engine.close_all(now)
        }));
        let _ = self.shared.commands.send(command).await;
        self.shared.shutdown.0.close();
    }

    /// Closes a session (`forced close`).
    pub async fn close(&self, session: SessionId) {
        let command = Command::App(Box::new(move |app: &mut EngineApp, now| {
            app.engine.close(now, session)
        }));
        let _ = self.shared.commands.send(command).await;
    }
}
