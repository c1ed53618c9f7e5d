//! Peak resident memory of a child process, read from `/proc/<pid>/status`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the resident memory is sampled.
pub const RSS_SAMPLE: Duration = Duration::from_millis(20);

/// A `kB` line of `/proc/<pid>/status`, such as `VmRSS:` or `VmHWM:`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Samples a process's VmRSS on its own thread until stopped; keeps the largest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<u64>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = None;
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    max = max.max(Some(kib));
                }
                std::thread::sleep(RSS_SAMPLE);
            }
            // One last sample at the end.
            if let Some(kib) = status_kib(pid, "VmRSS:") {
                max = max.max(Some(kib));
            }
            max
        });
        Self { stop, thread }
    }

    /// The largest VmRSS seen, in KiB.
    pub fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}
