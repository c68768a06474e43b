//! The chassis: the runtime every Emporium service shares. Settings, telemetry, the gRPC bootstrap
//! with health, reflection and graceful shutdown, the error model, storage on SQLite and
//! PostgreSQL with one text per query, the transactional outbox and its relay, the event bus
//! (NATS JetStream or embedded), the consumer helper and its dead letters, the one rule for free
//! text, and the one service runtime that starts, serves and stops any service its parts
//! declare. It knows nothing of any one service.

pub mod audit;
pub mod auth;
pub mod bus;
pub mod cloudevents;
pub mod consumer;
pub mod deadletter;
pub mod error;
pub mod event_data;
pub mod grpc;
pub mod health;
pub mod http_client;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod outbox;
pub mod pagination;
pub mod proxies;
pub mod runtime;
pub mod settings;
pub mod storage;
pub mod telemetry;
pub mod text;
pub mod validation;

pub use error::{Error, FieldViolation};
pub use validation::{Checked, Valid, Violations};

/// Waits for Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed we can still be stopped by SIGTERM.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
