//! Progress (a bar on a terminal, or JSON lines for a program watching the run) and the
//! read-ahead stream of a tensor's blocks.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Result;
use crate::input::{self, TensorSource};

/// How far a run is, in bytes read: indicatif's bar, and with `json` one line on stderr at each
/// whole percent or new step, `{"progress":0.42,"step":"pass 2/2"}` (what `gradtail serve`
/// reads from the analyses it runs).
pub(super) struct Progress {
    bar: ProgressBar,
    json: Option<Mutex<JsonProgress>>,
}

struct JsonProgress {
    total: u64,
    done: u64,
    percent: u64,
    step: String,
}

impl JsonProgress {
    fn emit(&self) {
        // Three decimals: finer than the lines are sent.
        let fraction = if self.total == 0 {
            0.0
        } else {
            (1000.0 * self.done as f64 / self.total as f64)
                .round()
                .min(1000.0)
                / 1000.0
        };
        let line = serde_json::json!({ "progress": fraction, "step": self.step });
        eprintln!("{line}");
    }
}

impl Progress {
    pub(super) fn new(total: u64, bar: bool, json: bool) -> Self {
        Progress {
            bar: progress_bar(total, bar),
            json: json.then(|| {
                Mutex::new(JsonProgress {
                    total,
                    done: 0,
                    percent: 0,
                    step: String::new(),
                })
            }),
        }
    }

    pub(super) fn set_message(&self, step: String) {
        if let Some(j) = &self.json {
            let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
            if j.step != step {
                j.step.clone_from(&step);
                j.emit();
            }
        }
        self.bar.set_message(step);
    }

    fn inc(&self, bytes: u64) {
        if let Some(j) = &self.json {
            let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
            j.done += bytes;
            let percent = j.done.saturating_mul(100) / j.total.max(1);
            if percent > j.percent {
                j.percent = percent;
                j.emit();
            }
        }
        self.bar.inc(bytes);
    }

    pub(super) fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

fn progress_bar(total: u64, show: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb
}

/// The progress bar's name for the extra whole-column read.
pub(super) fn step_name(median: bool, fits: bool) -> &'static str {
    match (median, fits) {
        (true, true) => "median+fits",
        (true, false) => "median",
        _ => "fits",
    }
}

pub(super) fn group_label(g: usize, n: usize) -> String {
    if n > 1 {
        format!("group {}/{n} ", g + 1)
    } else {
        String::new()
    }
}

/// Feeds a tensor's planned blocks, read ahead on another thread, to `f`.
pub(super) fn stream(
    src: &dyn TensorSource,
    plan: &[(std::ops::Range<usize>, std::ops::Range<usize>)],
    pb: &Progress,
    f: impl FnOnce(crate::engine::Blocks<'_>) -> Result<()>,
) -> Result<()> {
    let elem = src.meta().dtype.size() as u64;
    std::thread::scope(|scope| {
        let mut blocks = input::prefetch(src, plan, 2, scope).inspect(|b| {
            if let Ok(b) = b {
                pb.inc(b.rows.len() as u64 * b.width() as u64 * elem);
            }
        });
        f(&mut blocks)
    })
}
