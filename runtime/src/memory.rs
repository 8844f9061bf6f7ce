//! The process's peak resident memory, as the kernel counts it (Linux
//! `/proc/self/status`); what `kiln bench` and generation metrics report.

/// Peak resident set size of this process (`VmHWM`) in bytes; `None` where
/// the platform does not say.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak to the current size (`clear_refs` 5), so that the next
/// [`peak_rss`] is the peak of what runs in between; best effort.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn peak_counts_a_touched_allocation() {
        reset_peak_rss();
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let peak = peak_rss().expect("Linux reports VmHWM");
        assert!(peak >= 64 << 20, "peak {peak} bytes with 64 MiB touched");
    }
}
