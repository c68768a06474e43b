//! The catalog's integration tests: the real service on port 0, a throwaway database and bus
//! namespace per test, driven through its gRPC client. Every test runs on SQLite + the embedded
//! bus and on PostgreSQL + NATS JetStream.

mod actors;
mod authorization;
mod bad_input;
mod categories;
mod consumers;
mod events;
mod helpers;
mod history;
mod listing;
mod products;
mod relay_wakeup;
mod server;
mod sqlite_writes;
