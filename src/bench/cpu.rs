//! CPU time for the bench's report, from Linux's `/proc` (elsewhere nothing is measured).
//!
//! The daemon runs in the bench's own process, so the process's CPU time is the daemon's
//! plus the load generator's and the simulated devices'. Threads tell them apart by name:
//! the daemon's runtime (`gema-daemon`, its workers and blocking pool), the commit loop's
//! thread (`gema-commit`), SQLite's payment writer (`gema-sqlite-payments`) and sqlx's
//! SQLite connection threads (`sqlx-sqlite-worker-N`) are the daemon's; the bench's own
//! runtime (`bench-load`: HTTP client, TLS devices) is the load. A thread's time
//! is its scheduler run time (`/proc/self/task/<tid>/schedstat`, nanoseconds); a thread
//! that ended during the run is missing from the per-thread figures but not from the
//! process's (`/proc/self/stat`, in clock ticks of 10 ms).
//!
//! PostgreSQL's server is other processes: its postmaster is found by the port in the
//! database URL on its command line (`-p <port>`, as `scripts/with-postgres` starts it),
//! and its CPU time is the postmaster's and its children's (backends, WAL writer,
//! checkpointer, …).

use std::collections::HashMap;
use std::time::Duration;

/// Linux's `USER_HZ`, the unit of `/proc/<pid>/stat` times, on every architecture it runs.
const TICKS_PER_SECOND: u64 = 100;

/// The CPU time used so far by this process, its threads and a PostgreSQL server.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuSample {
    process: Option<Duration>,
    /// Thread id → (name, run time).
    threads: HashMap<String, (String, Duration)>,
    postgres: Option<Duration>,
}

/// Where a thread's time is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Side {
    Daemon,
    Load,
}

fn side(thread_name: &str) -> Side {
    if thread_name.starts_with("gema-") || thread_name.starts_with("sqlx-") {
        Side::Daemon
    } else {
        Side::Load
    }
}

impl CpuSample {
    /// Reads the figures now; `postgres_port` is the server's port, if there is one.
    pub fn now(postgres_port: Option<u16>) -> Self {
        Self {
            process: stat_cpu("/proc/self/stat").map(|(_, cpu)| cpu),
            threads: threads(),
            postgres: postgres_port.and_then(postgres_cpu),
        }
    }

    /// What was used between `earlier` and this sample.
    pub fn since(&self, earlier: &CpuSample) -> CpuUse {
        let mut by_name: HashMap<String, Duration> = HashMap::new();
        for (tid, (name, now)) in &self.threads {
            let before = earlier
                .threads
                .get(tid)
                .filter(|(n, _)| n == name)
                .map_or(Duration::ZERO, |(_, d)| *d);
            *by_name.entry(name.clone()).or_default() += now.saturating_sub(before);
        }
        let mut threads: Vec<(String, Duration)> = by_name.into_iter().collect();
        threads.sort_by_key(|(_, used)| std::cmp::Reverse(*used));
        CpuUse {
            process: self
                .process
                .zip(earlier.process)
                .map(|(now, before)| now.saturating_sub(before)),
            threads,
            postgres: self
                .postgres
                .zip(earlier.postgres)
                .map(|(now, before)| now.saturating_sub(before)),
        }
    }
}

/// CPU time used over a part of the run.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuUse {
    pub process: Option<Duration>,
    /// Per thread name (threads of one name summed), most first.
    pub threads: Vec<(String, Duration)>,
    pub postgres: Option<Duration>,
}

impl CpuUse {
    /// The threads' time on one side.
    pub fn side(&self, side_wanted: Side) -> Duration {
        self.threads
            .iter()
            .filter(|(name, _)| side(name) == side_wanted)
            .map(|(_, d)| *d)
            .sum()
    }
}

/// Each live thread of this process: id → (name, run time).
fn threads() -> HashMap<String, (String, Duration)> {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(run) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        threads.insert(
            task.file_name().to_string_lossy().into_owned(),
            (name.trim().to_owned(), Duration::from_nanos(run)),
        );
    }
    threads
}

/// A process's parent and its user + system time, from `/proc/<pid>/stat`.
fn stat_cpu(path: &str) -> Option<(u32, Duration)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The name (field 2) is in parentheses and may hold spaces; fields count on after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some((ppid, Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)))
}

/// The CPU time of the PostgreSQL server listening on `port` (its postmaster and the
/// postmaster's children), if one is found on this machine.
fn postgres_cpu(port: u16) -> Option<Duration> {
    let port = port.to_string();
    let mut postmaster = None;
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(pid_number) = pid.parse::<u32>() else {
            continue;
        };
        let Some((ppid, cpu)) = stat_cpu(&format!("/proc/{pid}/stat")) else {
            continue;
        };
        processes.push((pid_number, ppid, cpu));
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if postmaster.is_none() && comm.trim() == "postgres" {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args
                .windows(2)
                .any(|pair| pair[0] == b"-p" && pair[1] == port.as_bytes())
            {
                postmaster = Some(pid_number);
            }
        }
    }
    let postmaster = postmaster?;
    Some(
        processes
            .iter()
            .filter(|(pid, ppid, _)| *pid == postmaster || *ppid == postmaster)
            .map(|(_, _, cpu)| *cpu)
            .sum(),
    )
}
