//! Mounting sio in a tower-based server (axum, hyper-util, ...): a `Service` that answers the
//! Socket.IO requests, and a `Layer` that sends them to sio and everything else to the inner
//! service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::SocketIo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers Socket.IO requests (route it under the server's path, `/socket.io/` by default).
///
/// The peer address is read from an `std::net::SocketAddr` in the request's extensions when the
/// server put one there.
#[derive(Clone)]
pub struct SioService {
    io: sio_runtime::SocketIo,
}

impl SioService {
    pub(crate) fn new(io: &SocketIo) -> SioService {
        SioService { io: (**io).clone() }
    }
}

async fn answer<B>(io: sio_runtime::SocketIo, request: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let remote = request.extensions().get::<std::net::SocketAddr>().copied();
    match io.handle_request(request, remote).await {
        Ok(response) => response,
        // A tower service cannot drop its connection: answer 400 with no body instead.
        Err(sio_runtime::Aborted) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

impl<B> tower_service::Service<Request<B>> for SioService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let io = self.io.clone();
        Box::pin(async move { Ok(answer(io, request).await) })
    }
}

/// Sends the requests under the Socket.IO path to sio, everything else to the inner service.
#[derive(Clone)]
pub struct SioLayer {
    io: sio_runtime::SocketIo,
}

impl SioLayer {
    pub(crate) fn new(io: &SocketIo) -> SioLayer {
        SioLayer { io: (**io).clone() }
    }
}

impl<S> tower_layer::Layer<S> for SioLayer {
    type Service = SioMiddleware<S>;

    fn layer(&self, inner: S) -> SioMiddleware<S> {
        SioMiddleware {
            io: self.io.clone(),
            inner,
        }
    }
}

/// The service of [`SioLayer`].
#[derive(Clone)]
pub struct SioMiddleware<S> {
    io: sio_runtime::SocketIo,
    inner: S,
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for SioMiddleware<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<Full<Bytes>, ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path().starts_with(self.io.path()) {
            let io = self.io.clone();
            return Box::pin(async move { Ok(answer(io, request).await.map(Either::Left)) });
        }
        let inner = self.inner.call(request);
        Box::pin(async move { inner.await.map(|r| r.map(Either::Right)) })
    }
}
