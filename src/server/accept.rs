//! Accepting connections, for every TCP listener of the server.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection on `listener`. An accept that fails (out of file descriptors and
/// the like) is logged and waited out rather than retried at once, the wait doubling from
/// 10 ms to a second. Cancel-safe: dropped while waiting, it loses no connection.
pub(crate) async fn next(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(err) => {
                tracing::error!(error = %err, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
