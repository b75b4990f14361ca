//! Memory of the processes under test: the proportional set size (Pss) of given processes
//! and their descendants, so that memory shared between them (Nchan's shared zone, a
//! library mapped by several Pushpin processes) is counted once, not once per process.

use std::collections::BTreeSet;
use std::fs;

/// The given processes and every descendant of them that exists now.
pub fn with_descendants(roots: &[u32]) -> BTreeSet<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut set: BTreeSet<u32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for (pid, ppid) in &parents {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// The parent pid from `/proc/<pid>/stat` (the field after the parenthesised name,
/// which may itself hold spaces and parentheses).
fn parent_of(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Pss in bytes of one process, from `/proc/<pid>/smaps_rollup`; `None` if it is gone.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    field_kib(&rollup, "Pss:").map(|kib| kib * 1024)
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// One sample: the processes measured and their Pss sum.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub pids: Vec<u32>,
    pub bytes: u64,
}

/// Samples the roots and their descendants. Processes that vanish while being read
/// are left out of `pids`.
pub fn sample(roots: &[u32]) -> Sample {
    let mut pids = Vec::new();
    let mut bytes = 0;
    for pid in with_descendants(roots) {
        if let Some(b) = pss_bytes(pid) {
            pids.push(pid);
            bytes += b;
        }
    }
    Sample { pids, bytes }
}

/// Machine-wide network counters that tell when the machine, not the target, dropped or
/// delayed packets: loopback traffic goes through the per-CPU backlog
/// (`net.core.netdev_max_backlog`), and a drop there costs a 200 ms retransmission.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct NetCounters {
    /// Packets dropped because a CPU's backlog was full (`/proc/net/softnet_stat`).
    pub softnet_dropped: u64,
    /// TCP segments retransmitted (`RetransSegs` in `/proc/net/snmp`).
    pub tcp_retransmitted_segments: u64,
}

impl NetCounters {
    pub fn read() -> NetCounters {
        let softnet_dropped = fs::read_to_string("/proc/net/softnet_stat")
            .map(|text| {
                text.lines()
                    .filter_map(|line| line.split_whitespace().nth(1))
                    .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
                    .sum()
            })
            .unwrap_or(0);
        let tcp_retransmitted_segments = fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|text| snmp_field(&text, "Tcp:", "RetransSegs"))
            .unwrap_or(0);
        NetCounters {
            softnet_dropped,
            tcp_retransmitted_segments,
        }
    }

    pub fn since(self, before: NetCounters) -> NetCounters {
        NetCounters {
            softnet_dropped: self.softnet_dropped.saturating_sub(before.softnet_dropped),
            tcp_retransmitted_segments: self
                .tcp_retransmitted_segments
                .saturating_sub(before.tcp_retransmitted_segments),
        }
    }
}

/// A field of `/proc/net/snmp`: a header line and a value line share a prefix.
fn snmp_field(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let index = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_is_read_past_a_name_with_spaces() {
        let stat = "1234 (my (odd) proc) S 77 1234 1234 0 -1 4194560";
        assert_eq!(parent_of(stat), Some(77));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn finds_a_child_and_measures_memory() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let me = std::process::id();
        let family = with_descendants(&[me]);
        let found = family.contains(&child.id());
        let mine = sample(&[me]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "the child is a descendant");
        assert!(mine.pids.contains(&me));
        // This test process holds at least a few hundred KiB.
        assert!(mine.bytes > 100 * 1024, "{mine:?}");
    }

    #[test]
    fn reads_snmp_fields() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RetransSegs\nTcp: 1 200 13142\n";
        assert_eq!(snmp_field(text, "Tcp:", "RetransSegs"), Some(13142));
        assert_eq!(snmp_field(text, "Tcp:", "Nope"), None);
        let now = NetCounters::read();
        assert_eq!(now.since(now).softnet_dropped, 0);
    }

    #[test]
    fn reads_kib_fields() {
        let text = "Rss:                5000 kB\nPss:                4096 kB\n";
        assert_eq!(field_kib(text, "Pss:"), Some(4096));
        assert_eq!(field_kib(text, "Swap:"), None);
    }
}
