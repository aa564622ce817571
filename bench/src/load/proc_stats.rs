//! A server's CPU time and resident memory, read from `/proc`.

use std::io;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// CPU time of every live thread, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

impl ProcSample {
    /// Reads process `pid`: the CPU time from each thread's `schedstat` (nanoseconds), falling
    /// back to the process's `stat` (clock ticks) where the kernel keeps no schedstat, and `VmRSS`.
    pub fn read(pid: u32) -> io::Result<ProcSample> {
        let cpu_ns = match schedstat_ns(pid)? {
            Some(ns) => ns,
            None => stat_ns(pid)?,
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS"))?;
        Ok(ProcSample { cpu_ns, rss_kib })
    }
}

fn schedstat_ns(pid: u32) -> io::Result<Option<u64>> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        match text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(ns) => total += ns,
            None => return Ok(None),
        }
    }
    Ok((total > 0).then_some(total))
}

fn stat_ns(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are fixed.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name; the
    // kernel's USER_HZ is 100 on every Linux architecture we run on.
    Ok((ticks(11) + ticks(12)) * 10_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let sample = ProcSample::read(std::process::id()).unwrap();
        assert!(sample.cpu_ns > 0, "{sample:?}");
        assert!(sample.rss_kib > 0, "{sample:?}");
    }
}
