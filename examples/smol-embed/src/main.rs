//! An HTTP server of your own on smol (hyper's http1 with upgrades), with sio as one of its
//! handlers through the `http::Request -> http::Response` entry point,
//! `SocketIo::handle_request`. The server answers `/` itself and hands everything under
//! `/socket.io/` to sio, WebSocket upgrades included. Listens on 127.0.0.1 at `PORT` (default 3000;
//! `0` picks a free port).

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use sio_smol::{Compat, Payload, ServerConfig, SocketIo};

async fn route(
    io: SocketIo,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path().starts_with(io.path()) {
        // sio's own answer; `Err` means "drop this connection": answer 400 here instead.
        return Ok(io.handle_request(request, None).await.unwrap_or_else(|_| {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }));
    }
    Ok(Response::new(Full::new(Bytes::from_static(
        b"served by my own smol server",
    ))))
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    smol::block_on(async {
        let io = SocketIo::new(ServerConfig::default());
        io.on_connection(|socket| {
            socket.on("echo", |socket, args: Payload| {
                let _ = socket.ack(&args);
            });
        });
        let listener = async_net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let io = io.clone();
            smol::spawn(async move {
                let service = service_fn(move |request| route(io.clone(), request));
                let _ = http1::Builder::new()
                    .serve_connection(Compat::new(stream), service)
                    .with_upgrades()
                    .await;
            })
            .detach();
        }
    })
}
