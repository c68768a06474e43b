//! The load generator: N concurrent clients, each on its own connection, each making one call
//! after another (or, paced, at its turn of a fixed rate) for a warm-up and then a fixed window,
//! and what the window measured.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_client::CatalogServiceClient;
use test_support::BearerToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::cpu;

/// A catalog client that sends the bench's bearer token with every call.
pub(crate) type Client = CatalogServiceClient<InterceptedService<Channel, BearerToken>>;

/// How long each measurement runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Calls completed in this first stretch are not counted (connections, caches, pools warm).
    pub(crate) warm_up: Duration,
    /// Calls completed in this stretch are counted.
    pub(crate) measure: Duration,
}

/// What one client does, call after call.
pub(crate) trait Workload: Send + 'static {
    /// The connection it calls over.
    type Client: Send + 'static;

    /// Makes one call; an error says what went wrong.
    fn call(
        &mut self,
        client: &mut Self::Client,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A gRPC status as a load error.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// What a window measured, over all clients.
#[derive(Debug)]
pub(crate) struct Measurement {
    pub(crate) n_calls: u64,
    pub(crate) n_errors: u64,
    /// The first error a client saw, to say what went wrong.
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
    /// CPU time the process's serving threads (all but the clients') spent in the window; `None`
    /// without `/proc`. PostgreSQL's and NATS's own processes are not in it.
    pub(crate) serving_cpu: Option<Duration>,
    /// Latency of every successful call completed in the window, in microseconds, sorted.
    latencies_micros: Vec<u32>,
}

/// Runs `concurrency` gRPC clients of `make_workload(client_index)` against `addr` for
/// `window`.
pub(crate) async fn run<W, F>(
    addr: SocketAddr,
    token: &str,
    concurrency: usize,
    window: Window,
    make_workload: F,
) -> anyhow::Result<Measurement>
where
    W: Workload<Client = Client>,
    F: Fn(usize) -> W,
{
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(connect(addr, token).await?);
    }
    run_clients(clients, None, window, make_workload).await
}

/// Runs a client of `make_workload(client_index)` on each of `clients` for `window`: one call
/// after another, or, given a `rate` (calls per second in all), each call at its turn, its
/// latency counted from then (so a call that waits for the one before it is counted late, not
/// left out: no coordinated omission).
pub(crate) async fn run_clients<W, F>(
    clients: Vec<W::Client>,
    rate: Option<f64>,
    window: Window,
    make_workload: F,
) -> anyhow::Result<Measurement>
where
    W: Workload,
    F: Fn(usize) -> W,
{
    let concurrency = clients.len();
    let start = Instant::now();
    let measure_from = start + window.warm_up;
    let measure_until = measure_from + window.measure;
    let mut workers = Vec::with_capacity(concurrency);
    for (index, client) in clients.into_iter().enumerate() {
        let workload = make_workload(index);
        // Client `index` calls at start + (index + k * concurrency) / rate.
        let pace = rate.map(|rate| {
            let interval = Duration::from_secs_f64(concurrency as f64 / rate);
            (
                start + interval.mul_f64(index as f64 / concurrency as f64),
                interval,
            )
        });
        workers.push(tokio::spawn(drive(
            client,
            workload,
            pace,
            measure_from,
            measure_until,
        )));
    }
    // The window's CPU time, sampled at its edges (the clients count their calls by the same
    // clock).
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let at_start = cpu::Sample::now();
        tokio::time::sleep_until(measure_until.into()).await;
        cpu::Sample::now().serving_since(&at_start)
    });
    let mut measurement = Measurement {
        n_calls: 0,
        n_errors: 0,
        first_error: None,
        seconds: window.measure.as_secs_f64(),
        serving_cpu: None,
        latencies_micros: Vec::new(),
    };
    for worker in workers {
        let tally = worker.await.context("A load client panicked")?;
        measurement.n_calls += tally.latencies_micros.len() as u64;
        measurement.n_errors += tally.n_errors;
        if measurement.first_error.is_none() {
            measurement.first_error = tally.first_error;
        }
        measurement.latencies_micros.extend(tally.latencies_micros);
    }
    measurement.serving_cpu = cpu.await.context("The CPU sampler panicked")?;
    measurement.latencies_micros.sort_unstable();
    Ok(measurement)
}

/// A client sending `token`, on a connection of its own.
pub(crate) async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .context("Invalid endpoint")?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("Failed to connect to {addr}"))?;
    Ok(CatalogServiceClient::with_interceptor(
        channel,
        BearerToken::new(token),
    ))
}

// === impl Measurement ===

impl Measurement {
    pub(crate) fn calls_per_second(&self) -> f64 {
        self.n_calls as f64 / self.seconds
    }

    /// CPU time of the serving threads per successful call, in microseconds.
    pub(crate) fn serving_cpu_micros_per_call(&self) -> Option<f64> {
        let cpu = self.serving_cpu?;
        (self.n_calls > 0).then(|| cpu.as_secs_f64() * 1e6 / self.n_calls as f64)
    }

    /// The latency below which a share `quantile` (0 to 1) of the calls completed (nearest rank).
    pub(crate) fn latency(&self, quantile: f64) -> Duration {
        if self.latencies_micros.is_empty() {
            return Duration::ZERO;
        }
        let rank = (quantile * self.latencies_micros.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_micros.len()) - 1;
        Duration::from_micros(u64::from(self.latencies_micros[index]))
    }
}

/// What one client counted.
struct Tally {
    latencies_micros: Vec<u32>,
    n_errors: u64,
    first_error: Option<String>,
}

/// One client's calls; `pace`, when given, is its first call's time and the interval between
/// its calls.
async fn drive<W: Workload>(
    mut client: W::Client,
    mut workload: W,
    mut pace: Option<(Instant, Duration)>,
    measure_from: Instant,
    measure_until: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies_micros: Vec::with_capacity(1 << 16),
        n_errors: 0,
        first_error: None,
    };
    loop {
        let started = match &mut pace {
            Some((next_at, interval)) => {
                let due = *next_at;
                *next_at += *interval;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        if started >= measure_until {
            return tally;
        }
        let result = workload.call(&mut client).await;
        let finished = Instant::now();
        // Only calls that complete inside the window count; one still in flight at its end
        // is dropped, as is everything during the warm-up.
        if finished < measure_from || finished > measure_until {
            continue;
        }
        match result {
            Ok(()) => {
                let micros = finished.duration_since(started).as_micros();
                tally
                    .latencies_micros
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Err(error) => {
                tally.n_errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(error);
                }
            }
        }
    }
}
