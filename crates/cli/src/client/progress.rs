//! What the client tells the person running it, always on standard error: progress bars when
//! standard error is a terminal, plain lines when it is not (a log, a pipe, CI), nothing with
//! `--quiet`. No colours anywhere, so nothing depends on the terminal's support for them.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain progress lines come at most this often.
const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Ui {
    quiet: bool,
    tty: bool,
}

impl Ui {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A note for the person, not data: standard error, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Progress of an export in rows; `total` is the expected count when known.
    pub fn rows(&self, label: String, total: Option<u64>) -> Progress {
        self.progress(label, total, Unit::Rows)
    }

    /// Progress of a download in bytes; `total` is the announced length when known.
    pub fn bytes(&self, label: String, total: Option<u64>) -> Progress {
        self.progress(label, total, Unit::Bytes)
    }

    fn progress(&self, label: String, total: Option<u64>, unit: Unit) -> Progress {
        let mode = if self.quiet {
            Mode::Hidden
        } else if self.tty {
            Mode::Bar(bar(&label, total, unit))
        } else {
            // The first line comes only once something has taken a while.
            Mode::Lines {
                last: Instant::now(),
                printed: None,
            }
        };
        Progress {
            mode,
            label,
            total,
            unit,
            position: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Rows,
    Bytes,
}

impl Unit {
    fn describe(self, n: u64) -> String {
        match self {
            Unit::Rows => format!("{n} rows"),
            Unit::Bytes => format!("{n} bytes"),
        }
    }
}

fn bar(label: &str, total: Option<u64>, unit: Unit) -> ProgressBar {
    // The bar takes whatever width is left, so a line never wraps on a narrow terminal.
    let template = match (unit, total) {
        (Unit::Rows, Some(_)) => {
            "{spinner} {prefix}: {human_pos}/{human_len} rows {msg} {elapsed} [{wide_bar}]"
        }
        (Unit::Rows, None) => "{spinner} {prefix}: {human_pos} rows {msg} {elapsed}",
        (Unit::Bytes, Some(_)) => {
            "{spinner} {prefix}: {bytes}/{total_bytes} {bytes_per_sec} eta {eta} [{wide_bar}]"
        }
        (Unit::Bytes, None) => "{spinner} {prefix}: {bytes} {bytes_per_sec}",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

enum Mode {
    Hidden,
    Bar(ProgressBar),
    Lines {
        /// When the last line was printed (or the display started).
        last: Instant,
        /// The position that line showed.
        printed: Option<u64>,
    },
}

/// One progress display; see [`Ui`].
pub struct Progress {
    mode: Mode,
    label: String,
    total: Option<u64>,
    unit: Unit,
    position: Option<u64>,
}

impl Progress {
    /// Says what is going on (e.g. "running", "queued"), without a position.
    pub fn status(&mut self, text: &str) {
        if let Mode::Bar(bar) = &self.mode {
            bar.set_message(text.to_owned());
        }
    }

    /// Moves to `position`; a total that turns out too small grows with it.
    pub fn set(&mut self, position: u64) {
        if self.total.is_some_and(|t| position > t) {
            self.total = Some(position);
        }
        self.position = Some(position);
        match &mut self.mode {
            Mode::Hidden => {}
            Mode::Bar(bar) => {
                if let Some(total) = self.total {
                    bar.set_length(total);
                }
                bar.set_position(position);
            }
            Mode::Lines { last, printed } => {
                let due = last.elapsed() >= LINE_EVERY;
                if due && *printed != Some(position) {
                    let of = match self.total {
                        Some(t) => format!(" of {t}"),
                        None => String::new(),
                    };
                    let so_far = match self.unit {
                        Unit::Rows => format!("{position}{of} rows so far"),
                        Unit::Bytes => format!("{position}{of} bytes so far"),
                    };
                    eprintln!("{}: {so_far}", self.label);
                    *last = Instant::now();
                    *printed = Some(position);
                }
            }
        }
    }

    /// Starts again from 0 towards `total` (a download that has to begin anew).
    pub fn restart(&mut self, total: Option<u64>) {
        self.total = total;
        self.position = None;
        if let Mode::Bar(bar) = &self.mode {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.reset();
        }
        self.set(0);
    }

    /// The end is now known to be `total`.
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Mode::Bar(bar) = &self.mode {
            bar.set_length(total);
        }
    }

    /// A note for the person while the display runs (a bar is redrawn below it); nothing with
    /// `--quiet`.
    pub fn note(&self, text: &str) {
        match &self.mode {
            Mode::Hidden => {}
            Mode::Bar(bar) => bar.suspend(|| eprintln!("{text}")),
            Mode::Lines { .. } => eprintln!("{text}"),
        }
    }

    pub fn inc(&mut self, delta: u64) {
        let next = self.position.unwrap_or(0).saturating_add(delta);
        self.set(next);
    }

    /// Ends the display with a last line, `text`.
    pub fn finish(mut self, text: &str) {
        match std::mem::replace(&mut self.mode, Mode::Hidden) {
            Mode::Hidden => {}
            Mode::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{text}");
            }
            Mode::Lines { .. } => eprintln!("{text}"),
        }
    }

    /// A summary such as "5000 rows", from the last position.
    pub fn summary(&self) -> Option<String> {
        self.position.map(|p| self.unit.describe(p))
    }
}

impl Drop for Progress {
    /// A display dropped without `finish` (an error on the way) clears its bar, so the error
    /// message starts on a clean line.
    fn drop(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}
