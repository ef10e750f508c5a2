//! The connection loop: what `axum::serve` does, plus what a server on the open internet needs.
//! A client must send a whole request head within `header_read_timeout_secs` of connecting or of
//! its previous request, or the connection is closed: a slowloris client (a byte of header every
//! few seconds) or an idle keep-alive connection cannot hold a task and a socket forever. The
//! default, 75 s, is nginx's keep-alive timeout: above the idle timeout of the usual load
//! balancers (AWS ALB: 60 s), which must close an idle connection before the server does, or
//! a request they send on it as it closes fails with a 502. Once
//! the head is in, `request_timeout_secs` (a tower layer) bounds producing the answer, and
//! uploads and downloads stream for as long as they move.
//!
//! On shutdown it stops accepting, lets every connection finish its in-flight request, and
//! returns when all are closed.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::Service;

/// Serves `app` (with `ConnectInfo<SocketAddr>`) on `listener` until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, header_timeout: Duration, shutdown: impl Future<Output = ()>) {
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin; a reset
                    // before accept is nothing.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let svc = match make.call(addr).await {
            Ok(svc) => svc,
            Err(never) => match never {},
        };
        let svc = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            svc,
            |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
        ));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
