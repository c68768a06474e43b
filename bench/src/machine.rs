//! What the figures were measured on: the machine, the code and the servers.

use std::process::Command;

/// The machine and the code, as the report's header prints them.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) n_cores: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    /// `/proc/loadavg`'s first three fields at the start: other work sharing the cores.
    pub(crate) load_average: String,
    /// `git rev-parse HEAD`, with `+dirty` when the worktree has uncommitted changes.
    pub(crate) commit: String,
}

impl Machine {
    pub(crate) fn describe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            n_cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            load_average: load_average(),
            commit: git_commit(),
        }
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn git_commit() -> String {
    let run = |arguments: &[&str]| {
        Command::new("git")
            .args(arguments)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(commit) = run(&["rev-parse", "HEAD"]) else {
        return "unknown (not a git checkout)".to_owned();
    };
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    }
}
