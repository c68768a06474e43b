//! The standard process collector (the names and meanings of Prometheus's client libraries:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`, …), read from Linux's `/proc`
//! at each scrape. On a system without `/proc` it writes nothing.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// What the collector read about this process.
#[derive(Debug, Default, PartialEq)]
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

/// Appends the process's figures to `body` in the text exposition format.
pub(super) fn render(body: &mut String) {
    let Some(figures) = read() else {
        return;
    };
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        figures.cpu_seconds,
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        figures.resident_bytes,
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        figures.virtual_bytes,
    );
    if let Some(start) = figures.start_time_seconds {
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
    }
    if let Some(open) = figures.open_fds {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open,
        );
    }
    if let Some(max) = figures.max_fds {
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

fn read() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| boot_time(&text));
    let mut figures = parse_stat(&stat, boot_time)?;
    figures.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as f64);
    figures.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| max_open_files(&text));
    Some(figures)
}

/// Parses `/proc/self/stat`: after the command name (in parentheses, which may hold spaces),
/// utime and stime are fields 14 and 15, starttime 22, vsize 23 and rss (pages) 24.
fn parse_stat(stat: &str, boot_time: Option<f64>) -> Option<ProcessFigures> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
    let cpu_ticks = field(14)? + field(15)?;
    let start_ticks = field(22)?;
    Some(ProcessFigures {
        cpu_seconds: cpu_ticks / TICKS_PER_SECOND,
        resident_bytes: field(24)? * PAGE_SIZE,
        virtual_bytes: field(23)?,
        start_time_seconds: boot_time.map(|boot| boot + start_ticks / TICKS_PER_SECOND),
        open_fds: None,
        max_fds: None,
    })
}

/// The page size `rss` is counted in: 4 KiB on x86-64 and the usual arm64 kernels.
const PAGE_SIZE: f64 = 4096.0;

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the epoch.
fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::{boot_time, max_open_files, parse_stat, render};

    #[test]
    fn reads_the_fields_of_proc_stat_after_a_name_with_spaces() {
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    9 0 123400 104857600 2560 18446744073709551615";
        let figures = parse_stat(stat, Some(1_700_000_000.0)).unwrap();
        assert_eq!(figures.cpu_seconds, 3.0);
        assert_eq!(figures.virtual_bytes, 104_857_600.0);
        assert_eq!(figures.resident_bytes, 2560.0 * 4096.0);
        assert_eq!(figures.start_time_seconds, Some(1_700_001_234.0));
    }

    #[test]
    fn reads_boot_time_and_the_open_files_limit() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }

    #[test]
    fn renders_this_process_with_help_and_type() {
        let mut body = String::new();
        render(&mut body);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                body.contains(&format!("# TYPE {name} ")),
                "{name} in:\n{body}"
            );
        }
        let rss: f64 = body
            .lines()
            .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 0.0, "{body}");
    }
}
