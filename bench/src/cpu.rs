//! CPU time spent by this process's threads, by thread name, from `/proc/self/task`: steadier
//! than calls/s on a shared machine, where another process's work slows every figure of a run
//! but leaves the CPU time a call costs nearly as it was.

use std::collections::HashMap;
use std::time::Duration;

/// The thread name of the load generator's runtime; every other thread of the process serves.
pub(crate) const CLIENT_THREAD_NAME: &str = "client";

/// `/proc`'s clock tick (`USER_HZ`), fixed at 100 per second on Linux.
const TICKS_PER_SECOND: u64 = 100;

/// Each live thread's name and user + system CPU ticks, by thread id.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    threads: HashMap<u32, (String, u64)>,
}

impl Sample {
    /// The process's threads now; empty where there is no `/proc` (the figure is then left out).
    pub(crate) fn now() -> Sample {
        let mut threads = HashMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Sample { threads };
        };
        for task in tasks.flatten() {
            let Some(id) = task.file_name().to_str().and_then(|id| id.parse().ok()) else {
                continue;
            };
            // A thread may end between the listing and the read: it is simply not counted.
            if let Some(thread) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
            {
                threads.insert(id, thread);
            }
        }
        Sample { threads }
    }

    /// CPU time the serving threads (all but the clients') spent from `earlier` to this sample;
    /// `None` without `/proc`. A thread that ended in between is not counted.
    pub(crate) fn serving_since(&self, earlier: &Sample) -> Option<Duration> {
        if self.threads.is_empty() {
            return None;
        }
        let ticks: u64 = self
            .threads
            .iter()
            .filter(|(_, (name, _))| name != CLIENT_THREAD_NAME)
            .map(|(id, (_, ticks))| {
                let before = earlier.threads.get(id).map_or(0, |(_, before)| *before);
                ticks.saturating_sub(before)
            })
            .sum();
        Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
    }
}

/// The name (`comm`) and `utime + stime` of one `/proc/<pid>/task/<tid>/stat` line. The name is
/// in parentheses and may itself contain spaces and parentheses, so the fields are counted from
/// the last `)`.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    // After the name: state (field 3), …, utime (field 14), stime (field 15).
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((name, user + system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_name_and_cpu_ticks_of_a_stat_line() {
        let stat = "4242 (sqlx-sqlite-wor) S 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(("sqlx-sqlite-wor".to_owned(), 287)));
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 3 4 0 0";
        assert_eq!(parse_stat(stat), Some(("a (b) c".to_owned(), 7)));
    }

    #[test]
    fn samples_this_process_threads_by_name() {
        let sample = std::thread::Builder::new()
            .name("cpu-sample-test".to_owned())
            .spawn(Sample::now)
            .unwrap()
            .join()
            .unwrap();
        assert!(
            sample
                .threads
                .values()
                .any(|(name, _)| name == "cpu-sample-test"),
            "{:?}",
            sample.threads
        );
    }

    #[test]
    fn counts_the_serving_threads_but_not_the_clients() {
        let thread = |name: &str, ticks| (name.to_owned(), ticks);
        let earlier = Sample {
            threads: HashMap::from([(1, thread("server", 100)), (2, thread("client", 50))]),
        };
        let later = Sample {
            threads: HashMap::from([
                (1, thread("server", 130)),
                (2, thread("client", 90)),
                (3, thread("sqlx-sqlite-wor", 20)),
            ]),
        };
        assert_eq!(
            later.serving_since(&earlier),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            later.serving_since(&Sample::default()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(Sample::default().serving_since(&earlier), None);
    }
}
