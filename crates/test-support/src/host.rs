//! Services hosted together on one free port, as `emporium up` hosts every service on one
//! address: for tests of anything that talks to several services through one address (the
//! one-address system test, the CLI).

use std::net::SocketAddr;
use std::time::Duration;

use chassis::grpc::GrpcListener;
use chassis::runtime::{ServiceHost, ServiceUnit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestIssuer;

/// Services served on one port by [`host_on_one_port`], until `shutdown` is cancelled.
pub struct HostedServices {
    pub addr: SocketAddr,
    /// A connection to `addr`.
    pub channel: tonic::transport::Channel,
    /// Cancel to stop the host.
    pub shutdown: CancellationToken,
    /// The host's task: await it for a clean stop after cancelling `shutdown`.
    pub served: JoinHandle<anyhow::Result<()>>,
}

/// Serves `units` on one free port, trusting `issuer`'s tokens, as `up` does, and connects to it.
pub async fn host_on_one_port(
    issuer: &TestIssuer,
    units: impl IntoIterator<Item = ServiceUnit>,
) -> HostedServices {
    let listener = GrpcListener::bind("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("a free port");
    let mut host = ServiceHost::new(listener, issuer.verifier()).with_grace(Duration::from_secs(5));
    for unit in units {
        host.add(unit);
    }
    let addr = host.local_addr();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(host.run_until_stopped(shutdown.clone()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the host accepts connections");
    HostedServices {
        addr,
        channel,
        shutdown,
        served,
    }
}
