//! The `emporiumctl` binary: parses the command line, runs it, reports any error on stderr and
//! exits with its code (0 ok, 1 refused by the server, 2 usage, 3 cannot connect). The command
//! tree is generated from the contract when the process starts.

use std::io::Write;
use std::process::ExitCode;

use emporiumctl::{Cli, CliError, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (0 for --help and --version).
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = run(cli, &mut out)
        .await
        .and_then(|()| out.flush().map_err(CliError::from));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`emporiumctl … | head`): nothing left to tell anyone.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            // If stderr is gone too there is nowhere left to report: the exit code still says it.
            let _ = writeln!(std::io::stderr().lock(), "error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
