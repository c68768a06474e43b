//! The identity service's integration tests: the real service on port 0 behind a test token
//! issuer, a throwaway database and bus namespace per test, driven through its gRPC client with
//! an admin token. Every test runs on SQLite + the embedded bus and on PostgreSQL + NATS JetStream.

mod accounts;
mod authorization;
mod bad_input;
mod bootstrap;
mod browser;
mod clients;
mod customer_claim;
mod customer_links;
mod events;
mod helpers;
mod history;
mod keys;
mod logs;
mod oauth;
mod passwords;
mod roles;
mod server;
