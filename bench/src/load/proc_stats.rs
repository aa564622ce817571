//! A server's CPU time and resident memory, and the machine's steal time, read from `/proc`.

use std::io;
use std::time::Duration;

/// One reading of a process, with the machine's steal time at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// CPU time of every live thread, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// Steal time of the whole machine so far, in nanoseconds: what [`Steal`] measures.
    pub steal_ns: u64,
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
        let steal_ns = machine_steal_ns()?;
        Ok(ProcSample {
            cpu_ns,
            rss_kib,
            steal_ns,
        })
    }
}

/// The time a hypervisor gave this machine's CPUs to someone else (steal time) while a span was
/// measured. On a shared VM, a window with steal is one where the neighbours were busy, and the
/// server and the loader are slower in it in ways their own CPU time does not show. The default is
/// an empty span, which adds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Steal {
    /// Steal time over every CPU.
    pub stolen: Duration,
    /// The measured span.
    pub span: Duration,
    /// CPUs of the machine.
    pub cpus: u32,
}

impl Steal {
    /// The steal between two readings that are `span` apart.
    pub fn between(before: &ProcSample, after: &ProcSample, span: Duration) -> Steal {
        Steal {
            stolen: Duration::from_nanos(after.steal_ns.saturating_sub(before.steal_ns)),
            span,
            cpus: cpu_count(),
        }
    }

    /// The stolen share of the span's CPU time, in percent (0 on bare metal).
    pub fn percent(&self) -> f64 {
        let capacity = self.span.as_secs_f64() * f64::from(self.cpus.max(1));
        if capacity == 0.0 {
            return 0.0;
        }
        100.0 * self.stolen.as_secs_f64() / capacity
    }
}

/// Two measured spans as one: their steal and their lengths add up.
impl std::ops::Add for Steal {
    type Output = Steal;

    fn add(self, other: Steal) -> Steal {
        Steal {
            stolen: self.stolen + other.stolen,
            span: self.span + other.span,
            cpus: self.cpus.max(other.cpus),
        }
    }
}

/// The machine's steal time over all CPUs: the eighth value of the `cpu` line of `/proc/stat`, in
/// clock ticks (0 where the kernel does not count it).
fn machine_steal_ns() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .and_then(|values| values.split_whitespace().nth(7))
        .and_then(|steal| steal.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(ticks * NS_PER_TICK)
}

/// The CPUs counted in `/proc/stat` (at least 1).
fn cpu_count() -> u32 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpus = stat
        .lines()
        .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
        .count();
    (cpus as u32).max(1)
}

/// `/proc` counts in USER_HZ ticks, 100 a second on every Linux architecture we run on.
const NS_PER_TICK: u64 = 10_000_000;

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
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) * NS_PER_TICK)
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

    #[test]
    fn steal_is_a_share_of_every_cpu_over_the_span() {
        let reading = |steal_ns| ProcSample {
            cpu_ns: 0,
            rss_kib: 0,
            steal_ns,
        };
        let steal = Steal {
            stolen: Duration::from_millis(50),
            span: Duration::from_secs(5),
            cpus: 2,
        };
        assert_eq!(steal.percent(), 0.5);
        let between = Steal::between(&reading(10_000_000), &reading(60_000_000), steal.span);
        assert_eq!(between.stolen, steal.stolen);
        assert_eq!(between.cpus, cpu_count());
        // A counter that went back (it does not, but /proc is read twice) is no steal.
        let back = Steal::between(&reading(60_000_000), &reading(10_000_000), steal.span);
        assert_eq!(back.percent(), 0.0);
        let empty = Steal {
            span: Duration::ZERO,
            ..steal
        };
        assert_eq!(empty.percent(), 0.0);
    }
}
