//! A PostgreSQL server of the test's own, for tests that stop and restart the database under a
//! running service: initdb'd into a fresh directory, listening on a spare local port, stopped and
//! removed when dropped. The shared server is never touched.
//!
//! PostgreSQL refuses to run as root, and tests may run as root: then every server command runs
//! as the `postgres` user (`runuser -u postgres --`) on a directory that user owns. The binaries
//! come from `EMPORIUM_TEST_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/<n>/bin`, else
//! the `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use uuid::Uuid;

/// A running (or deliberately stopped) PostgreSQL server owned by one test.
#[derive(Debug)]
pub struct PostgresCluster {
    /// Holds `data/` (the cluster), `server.log` and the server's socket.
    directory: PathBuf,
    port: u16,
    binaries: Option<PathBuf>,
    /// Run the server commands as the `postgres` user (we are root).
    as_postgres_user: bool,
}

// === impl PostgresCluster ===

impl PostgresCluster {
    /// Creates and starts a cluster on a spare port (trust authentication, user `postgres`).
    pub async fn start() -> PostgresCluster {
        tokio::task::spawn_blocking(PostgresCluster::start_blocking)
            .await
            .expect("starting PostgreSQL does not panic")
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("the test's own PostgreSQL accepts connections");
        // Callers pass fixed identifiers.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut connection)
            .await
            .expect("a database can be created");
        self.url(name)
    }

    /// Stops the server (fast shutdown: sessions are cut off, as in a restart or a crash of
    /// the database host) and returns once it is down.
    pub async fn stop(&self) {
        let command = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        run_blocking(command, "pg_ctl stop").await;
    }

    /// Starts the stopped server again on the same port and returns once it accepts
    /// connections.
    pub async fn restart(&self) {
        let command = self.pg_ctl_start();
        run_blocking(command, "pg_ctl start").await;
    }

    fn start_blocking() -> PostgresCluster {
        let as_postgres_user = is_root();
        let directory =
            std::env::temp_dir().join(format!("emporium-pg-{}", Uuid::new_v4().simple()));
        let cluster = PostgresCluster {
            port: spare_port(),
            binaries: binaries(),
            as_postgres_user,
            directory,
        };
        // Created by the user the server runs as, so it owns the directory.
        run(
            cluster.command("mkdir", &["-p", &cluster.directory.to_string_lossy()]),
            "mkdir",
        );
        let data = cluster.data_directory();
        run(
            cluster.command(
                &cluster.binary("initdb"),
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "--encoding=UTF8",
                ],
            ),
            "initdb",
        );
        run(cluster.pg_ctl_start(), "pg_ctl start");
        cluster
    }

    fn data_directory(&self) -> PathBuf {
        self.directory.join("data")
    }

    fn pg_ctl_start(&self) -> Command {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.directory.display()
        );
        let log = self.directory.join("server.log");
        self.pg_ctl(&["start", "-w", "-l", &log.to_string_lossy(), "-o", &options])
    }

    fn pg_ctl(&self, arguments: &[&str]) -> Command {
        let data = self.data_directory();
        let mut all = vec!["-D", data.to_str().unwrap_or_default()];
        all.extend_from_slice(arguments);
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.command(&self.binary("pg_ctl"), &all)
    }

    fn binary(&self, name: &str) -> String {
        match &self.binaries {
            Some(directory) => directory.join(name).to_string_lossy().into_owned(),
            None => name.to_owned(),
        }
    }

    /// `program arguments…`, as the `postgres` user when we are root.
    fn command(&self, program: &str, arguments: &[&str]) -> Command {
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--", program])
                .args(arguments);
            command
        } else {
            let mut command = Command::new(program);
            command.args(arguments);
            command
        }
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // Best effort: an immediate stop (the server may already be stopped), then the files.
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]).output();
        let _ = self
            .command("rm", &["-rf", &self.directory.to_string_lossy()])
            .output();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

// === helpers ===

async fn run_blocking(command: Command, what: &'static str) {
    tokio::task::spawn_blocking(move || run(command, what))
        .await
        .expect("a server command does not panic");
}

fn run(mut command: Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what} could not be run ({command:?}): {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({command:?}): {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A port nothing listens on right now.
fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a local port can be bound")
}

fn binaries() -> Option<PathBuf> {
    if let Ok(directory) = std::env::var("EMPORIUM_TEST_POSTGRES_BIN") {
        return Some(PathBuf::from(directory));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            Path::new(&bin)
                .join("initdb")
                .exists()
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
