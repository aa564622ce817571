//! The front types every runtime crate exposes, generated from the runtime's pieces so that the
//! API is the same on every executor.

/// Defines `SocketIo` and `EngineServer` for a runtime crate.
///
/// - `runtime`: an expression giving the crate's [`Runtime`](crate::Runtime) value;
/// - `listener`: the runtime's TCP listener type, and `bind`: an async fn binding one;
/// - `addrs`: the runtime's address trait for `bind`;
/// - `wrap`: turns the listener into a [`Listener`](crate::Listener), or fails with an
///   `io::Error`.
#[macro_export]
macro_rules! runtime_servers {
    (
        runtime: $runtime:expr,
        listener: $listener:ty,
        addrs: $addrs:path,
        bind: $bind:path,
        wrap: $wrap:path $(,)?
    ) => {
        /// A Socket.IO server on this runtime. Every method of [`sio_runtime::SocketIo`] is
        /// available through `Deref` (`on_connection`, `of`, `use_`, `to`, `emit`, ...).
        #[derive(Clone)]
        pub struct SocketIo {
            inner: $crate::SocketIo,
        }

        impl ::std::ops::Deref for SocketIo {
            type Target = $crate::SocketIo;
            fn deref(&self) -> &$crate::SocketIo {
                &self.inner
            }
        }

        impl SocketIo {
            /// Starts a server; its driver task runs on this runtime.
            pub fn new(config: $crate::ServerConfig) -> SocketIo {
                SocketIo::with_limits(config, $crate::Limits::default())
            }

            /// Like `new`, with explicit bounds for the glue's queues.
            pub fn with_limits(config: $crate::ServerConfig, limits: $crate::Limits) -> SocketIo {
                SocketIo::with_runtime($runtime, config, limits)
            }

            /// Like `with_limits`, with the server's tasks on `runtime` (an executor of your own,
            /// for example).
            pub fn with_runtime(
                runtime: impl $crate::Runtime,
                config: $crate::ServerConfig,
                limits: $crate::Limits,
            ) -> SocketIo {
                let runtime: ::std::sync::Arc<dyn $crate::Runtime> = ::std::sync::Arc::new(runtime);
                SocketIo {
                    inner: $crate::SocketIo::start(runtime, config, limits),
                }
            }

            /// Binds `addr` with an accept queue of
            /// [`LISTEN_BACKLOG`](sio_runtime::LISTEN_BACKLOG) connections (Node's default) and
            /// serves forever.
            pub async fn listen(&self, addr: impl $addrs) -> ::std::io::Result<()> {
                let listener = $bind(addr).await?;
                // A platform that refuses still serves, with its own queue.
                let _ = $crate::raise_listen_backlog(&listener);
                self.serve(listener).await
            }

            /// Serves the connections of an existing listener forever, once the process's table of
            /// file descriptors has room for as many as it may open
            /// ([`reserve_fd_table`](sio_runtime::reserve_fd_table)).
            pub async fn serve(&self, listener: $listener) -> ::std::io::Result<()> {
                // A failure (no descriptor left) only brings the stalls back.
                let _ = $crate::reserve_fd_table(&listener);
                self.inner.serve_listener($wrap(listener)?).await;
                Ok(())
            }
        }

        /// A plain Engine.IO server on this runtime.
        pub struct EngineServer {
            service: $crate::EngineService,
        }

        impl EngineServer {
            /// Starts the engine with `handler`; its driver task runs on this runtime.
            pub fn new(
                config: $crate::EngineConfig,
                handler: impl $crate::EngineHandler,
            ) -> EngineServer {
                EngineServer::with_limits(config, handler, $crate::Limits::default())
            }

            /// Like `new`, with explicit bounds for the glue's queues.
            pub fn with_limits(
                config: $crate::EngineConfig,
                handler: impl $crate::EngineHandler,
                limits: $crate::Limits,
            ) -> EngineServer {
                let runtime: ::std::sync::Arc<dyn $crate::Runtime> =
                    ::std::sync::Arc::new($runtime);
                EngineServer {
                    service: $crate::EngineService::start(runtime, config, handler, limits),
                }
            }

            /// A handle to act on sessions from any task.
            pub fn handle(&self) -> $crate::EngineHandle {
                self.service.handle()
            }

            /// Binds `addr` with an accept queue of
            /// [`LISTEN_BACKLOG`](sio_runtime::LISTEN_BACKLOG) connections (Node's default) and
            /// serves forever.
            pub async fn listen(self, addr: impl $addrs) -> ::std::io::Result<()> {
                let listener = $bind(addr).await?;
                // A platform that refuses still serves, with its own queue.
                let _ = $crate::raise_listen_backlog(&listener);
                self.serve(listener).await
            }

            /// Serves the connections of an existing listener forever, once the process's table of
            /// file descriptors has room for as many as it may open
            /// ([`reserve_fd_table`](sio_runtime::reserve_fd_table)).
            pub async fn serve(self, listener: $listener) -> ::std::io::Result<()> {
                // A failure (no descriptor left) only brings the stalls back.
                let _ = $crate::reserve_fd_table(&listener);
                self.service.serve_listener($wrap(listener)?).await;
                Ok(())
            }
        }
    };
}
