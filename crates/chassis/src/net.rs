//! Accepting TCP connections, for every server of the suite (gRPC and HTTP): each accepted socket
//! gets TCP_NODELAY. Without it Nagle's algorithm holds a small write (a gRPC reply's trailers
//! after its message, a short HTTP answer) until the client acknowledges the previous one, and the
//! client delays that ACK for up to 40 ms on Linux: a fast call then takes 40 ms.
//!
//! tonic's own `nodelay` setting does not reach sockets served from an incoming stream, so every
//! server takes its connections from here: [`grpc_incoming`] for tonic, [`http_listener`] for axum.

use std::io;

use futures::{Stream, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

/// What [`http_listener`] returns: axum's listener that runs a function on each accepted socket.
pub type HttpListener = axum::serve::TapIo<TcpListener, fn(&mut TcpStream)>;

/// The connections `listener` accepts, each with TCP_NODELAY set, for
/// `tonic::transport::Server::serve_with_incoming*`.
pub fn grpc_incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| accepted.inspect(set_no_delay))
}

/// `listener` for `axum::serve`, setting TCP_NODELAY on each accepted connection. The peer's
/// address stays available (`into_make_service_with_connect_info::<SocketAddr>`).
pub fn http_listener(listener: TcpListener) -> HttpListener {
    use axum::serve::ListenerExt as _;
    listener.tap_io(set_no_delay_on as fn(&mut TcpStream))
}

fn set_no_delay_on(stream: &mut TcpStream) {
    set_no_delay(stream);
}

/// Sets TCP_NODELAY; a socket that refuses (e.g. already reset by its peer) is served anyway, as it
/// is: the connection still works, only slower, and a reset one fails on its first read.
fn set_no_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(error.message = %error, "Failed to set TCP_NODELAY on an accepted socket");
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use tokio::net::{TcpListener, TcpStream};

    use super::{grpc_incoming, http_listener};

    #[tokio::test]
    async fn an_accepted_grpc_connection_has_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = std::pin::pin!(grpc_incoming(listener));

        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();

        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is not set");
    }

    #[tokio::test]
    async fn an_accepted_http_connection_has_tcp_nodelay() {
        use axum::serve::Listener as _;
        let mut listener = http_listener(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();

        let client = TcpStream::connect(addr).await.unwrap();
        let (accepted, peer) = listener.accept().await;

        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is not set");
        assert_eq!(peer, client.local_addr().unwrap());
    }
}
