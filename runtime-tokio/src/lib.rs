//! **sio** on tokio: the [`Runtime`] implementation, a listener, and the whole API of
//! [`sio_runtime`] re-exported. The crates for smol and async-std have the same API.
//!
//! ```no_run
//! use sio_tokio::{Payload, ServerConfig, SocketIo};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let io = SocketIo::new(ServerConfig::default());
//!     io.on_connection(|socket| {
//!         socket.on("chat message", |socket, msg: String| {
//!             let _ = socket.io().emit("chat message", &msg);
//!         });
//!         socket.on("echo", |socket, args: Payload| {
//!             let _ = socket.ack(&args);
//!         });
//!     });
//!     io.listen("127.0.0.1:3000").await
//! }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

pub use sio_runtime::*;

mod tower;
pub use tower::{SioLayer, SioMiddleware, SioService};

impl SocketIo {
    /// A tower `Service` answering the Socket.IO requests, to route under the server's path
    /// (`axum::Router::route_service("/socket.io/", io.service())`; the layer also covers the
    /// client bundle under the path).
    pub fn service(&self) -> SioService {
        SioService::new(self)
    }

    /// A tower `Layer` sending the Socket.IO requests to sio and the others to the inner service
    /// (`axum::Router::layer(io.layer())`).
    pub fn layer(&self) -> SioLayer {
        SioLayer::new(self)
    }
}

/// The tokio [`Runtime`]: spawns on the current tokio runtime and reads tokio's clock, so that
/// tokio's paused time drives sio's timers too.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn spawn(&self, future: BoxFuture) {
        tokio::spawn(future);
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(TokioTimer {
            sleep: tokio::time::sleep_until(deadline.into()),
        })
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

pin_project_lite::pin_project! {
    struct TokioTimer {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl Timer for TokioTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.project().sleep.reset(deadline.into())
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

/// A tokio listener as a [`Listener`].
pub struct TokioListener {
    listener: tokio::net::TcpListener,
    /// Whether accepted connections have `TCP_NODELAY` from the listener already.
    nodelay_inherited: bool,
}

impl Listener for TokioListener {
    type Io = TokioStream;

    async fn accept(&mut self) -> io::Result<(TokioStream, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        if !self.nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        Ok((TokioStream(Arc::new(TokioSocket(stream))), peer))
    }

    fn writer(io: &TokioStream) -> Option<Arc<dyn SocketWriter>> {
        Some(io.0.clone())
    }
}

/// A tokio TCP connection as hyper I/O. Its socket is shared with the driver, which writes
/// WebSocket frames to it without waking the connection's task (see [`SocketWriter`]).
pub struct TokioStream(Arc<TokioSocket>);

struct TokioSocket(tokio::net::TcpStream);

impl SocketWriter for TokioSocket {
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let socket = &self.0;
        send_joined(
            bufs,
            |one| socket.try_write(one),
            |bufs| {
                socket.try_io(tokio::io::Interest::WRITABLE, || {
                    send_vectored(socket, bufs)
                })
            },
        )
    }
}

/// Runs `op` once the socket is ready; tokio clears the readiness when `op` would block.
fn poll_io<T>(
    cx: &mut Context<'_>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut op: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        std::task::ready!(ready(cx))?;
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
}

impl hyper::rt::Read for TokioStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0.0;
        read_into(buf, |scratch| {
            let len = scratch.len();
            poll_io(
                cx,
                |cx| socket.poll_read_ready(cx),
                || {
                    // A short read drained the socket: forget the readiness now (as tokio's own
                    // streams do) rather than learn it from a `recvfrom` failing with `EAGAIN`.
                    // The read runs inside `try_io`, which takes the readiness before it and
                    // clears it only if no event came in since: clearing after the read would
                    // lose the event of data arriving in between, and the connection would never
                    // be read again.
                    let mut short = None;
                    let read = socket.try_io(tokio::io::Interest::READABLE, || {
                        match socket.try_read(&mut scratch[..]) {
                            Ok(n) if n > 0 && n < len => {
                                short = Some(n);
                                Err(io::ErrorKind::WouldBlock.into())
                            }
                            other => other,
                        }
                    });
                    short.map_or(read, Ok)
                },
            )
        })
    }
}

impl hyper::rt::Write for TokioStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &self.0.0;
        poll_io(
            cx,
            |cx| socket.poll_write_ready(cx),
            || socket.try_write(buf),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The same write as the driver's, waiting here when the socket is full.
        let writer: &TokioSocket = &self.0;
        poll_io(
            cx,
            |cx| writer.0.poll_write_ready(cx),
            || writer.try_write_vectored(bufs),
        )
    }

    /// hyper then hands a response's head and body over as they are (a large body is not copied);
    /// `poll_write_vectored` joins small pieces into one `send`.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = socket2::SockRef::from(&self.0.0);
        Poll::Ready(socket.shutdown(std::net::Shutdown::Write))
    }
}

fn wrap(listener: tokio::net::TcpListener) -> io::Result<TokioListener> {
    let nodelay_inherited = sio_runtime::nodelay_for_accepted(&listener);
    Ok(TokioListener {
        listener,
        nodelay_inherited,
    })
}

sio_runtime::runtime_servers! {
    runtime: TokioRuntime,
    listener: tokio::net::TcpListener,
    addrs: tokio::net::ToSocketAddrs,
    bind: tokio::net::TcpListener::bind,
    wrap: wrap,
}

/// The examples of the README compile.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A connection in memory: reads give `request` once and then wait for ever; every write is
    /// recorded as it came.
    struct Recorded {
        request: Vec<u8>,
        writes: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
        wrote: Arc<tokio::sync::Notify>,
    }

    impl hyper::rt::Read for Recorded {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            mut buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.request.is_empty() {
                return Poll::Pending;
            }
            let n = this.request.len().min(buf.remaining());
            buf.put_slice(&this.request[..n]);
            this.request.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    impl hyper::rt::Write for Recorded {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let write: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = write.len();
            self.writes.lock().unwrap().push(write);
            self.wrote.notify_one();
            Poll::Ready(Ok(n))
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

    /// The 101 and the open packet reach the socket in one write (one TCP segment), hyper and the
    /// driver taking their real paths.
    #[tokio::test]
    async fn the_101_and_the_open_packet_go_out_in_one_write() {
        let io = SocketIo::new(ServerConfig::default());
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let wrote = Arc::new(tokio::sync::Notify::new());
        let connection = Recorded {
            request: b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
                Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                .to_vec(),
            writes: writes.clone(),
            wrote: wrote.clone(),
        };
        let server = io.clone();
        tokio::spawn(async move { server.serve_connection(connection, None).await });
        tokio::time::timeout(Duration::from_secs(10), wrote.notified())
            .await
            .expect("no answer in 10 s");
        let writes = writes.lock().unwrap().clone();
        assert_eq!(writes.len(), 1, "{writes:?}");
        let write = &writes[0];
        let end = write
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let head = String::from_utf8_lossy(&write[..end]).to_lowercase();
        assert!(
            head.starts_with("http/1.1 101 switching protocols\r\n"),
            "{head}"
        );
        // RFC 6455's example key and its answer.
        assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"));
        let frame = &write[end..];
        assert_eq!(frame[0], 0x81, "a final text frame");
        assert_eq!(usize::from(frame[1]), frame.len() - 2, "one whole frame");
        let open: serde_json::Value = serde_json::from_slice(&frame[3..]).unwrap();
        assert_eq!(frame[2], b'0', "the open packet");
        assert_eq!(open["upgrades"], serde_json::json!([]));
        assert_eq!(open["sid"].as_str().map(str::len), Some(20));
    }

    /// A frame the client sent in the same read as its upgrade request (hyper read it ahead, with
    /// the head) is the WebSocket's first message: its CONNECT is answered.
    #[tokio::test]
    async fn a_frame_read_along_with_the_upgrade_request_is_not_lost() {
        let io = SocketIo::new(ServerConfig::default());
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let wrote = Arc::new(tokio::sync::Notify::new());
        let mut request = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
            Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
        // A final, masked text frame carrying `40`: the Socket.IO CONNECT to `/`.
        let mask = [1, 2, 3, 4];
        request.extend_from_slice(&[0x81, 0x80 | 2]);
        request.extend_from_slice(&mask);
        request.extend(b"40".iter().zip(mask).map(|(b, m)| b ^ m));
        let connection = Recorded {
            request,
            writes: writes.clone(),
            wrote: wrote.clone(),
        };
        let server = io.clone();
        tokio::spawn(async move { server.serve_connection(connection, None).await });
        let reply = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let found = writes.lock().unwrap().iter().find_map(|w| {
                    let at = w.windows(4).position(|p| p == b"40{\"")?;
                    Some(w[at - 2..].to_vec())
                });
                match found {
                    Some(frame) => return frame,
                    None => wrote.notified().await,
                }
            }
        })
        .await
        .expect("no CONNECT reply in 10 s");
        assert_eq!(reply[0], 0x81, "a final text frame");
        assert_eq!(usize::from(reply[1]), reply.len() - 2, "one whole frame");
        let connect: serde_json::Value = serde_json::from_slice(&reply[4..]).unwrap();
        assert_eq!(connect["sid"].as_str().map(str::len), Some(20), "{connect}");
    }

    /// On a runtime with several workers, the I/O driver runs on one thread while a connection
    /// reads on another: the event of data that comes in between a short read and the forgetting
    /// of the readiness must not be forgotten with it (hyper's connection stopped reading a
    /// polling body halfway, with the rest of it waiting in the socket).
    #[test]
    fn data_that_comes_in_right_after_a_short_read_is_read() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            const TOTAL: usize = 64 << 20;
            let writer = tokio::spawn(async move {
                let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
                // Small writes, each an edge, racing the reader's short reads.
                let chunk = [7u8; 1000];
                for _ in 0..TOTAL / chunk.len() {
                    client.write_all(&chunk).await.unwrap();
                }
            });
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = TokioStream(Arc::new(TokioSocket(stream)));
            let mut read = 0;
            let mut storage = [0u8; 4096];
            while read < TOTAL / 1000 * 1000 {
                let mut buf = hyper::rt::ReadBuf::new(&mut storage);
                let poll = std::future::poll_fn(|cx| {
                    hyper::rt::Read::poll_read(Pin::new(&mut stream), cx, buf.unfilled())
                });
                tokio::time::timeout(Duration::from_secs(10), poll)
                    .await
                    .unwrap_or_else(|_| panic!("no data for 10 s after {read} bytes"))
                    .unwrap();
                let n = buf.filled().len();
                assert!(n > 0, "the stream ended after {read} bytes");
                assert!(buf.filled().iter().all(|&b| b == 7));
                read += n;
            }
            writer.await.unwrap();
        });
    }
}
