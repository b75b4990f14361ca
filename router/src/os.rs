//! Process-level settings the binaries apply at start-up, and what `/metrics` reports of the
//! process (read from /proc/self).

/// Whether the log is written with ANSI colours: only to a terminal, and not when `NO_COLOR`
/// is set to anything but the empty string (no-color.org). A log captured to a file or by
/// journald would otherwise carry escape codes.
pub fn log_colours(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// The open-files limit in force (the soft one).
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// The process's resident memory (VmRSS), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// The process's open file descriptors. Listing /proc/self/fd costs a little per descriptor
/// (about a millisecond per 10,000 here): a scrape's cost, not the data path's.
pub fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The listing's own descriptor is one of them.
    Some((entries.count() as u64).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    fn limits() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use super::log_colours;
        assert!(log_colours(true, None));
        assert!(
            log_colours(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
        assert!(!log_colours(true, Some("1".into())));
        assert!(
            !log_colours(false, None),
            "a file or a pipe gets no escapes"
        );
        assert!(!log_colours(false, Some("1".into())));
    }

    #[test]
    fn reads_the_process_memory_and_descriptors() {
        let resident = super::resident_bytes().unwrap();
        assert!(resident > 1 << 20, "{resident} bytes resident");
        let before = super::open_fds().unwrap();
        let files: Vec<std::fs::File> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        // Other tests open and close files at the same time: at least ours are seen.
        assert!(super::open_fds().unwrap() >= 5, "before: {before}");
        drop(files);
        assert_eq!(super::open_files_limit(), Some(limits().rlim_cur));
    }

    #[test]
    fn raises_the_soft_open_files_limit_and_reports_it() {
        let before = limits();
        let in_force = super::raise_open_files_limit();
        let after = limits();
        assert_eq!(in_force, after.rlim_cur, "reports the limit in force");
        assert!(after.rlim_cur >= before.rlim_cur, "never lowers it");
        // Linux keeps the hard limit within `fs.nr_open`, so the soft one can always reach it.
        if after.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(after.rlim_cur, after.rlim_max);
        }
    }
}
