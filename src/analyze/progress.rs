//! The progress bar and the read-ahead stream of a tensor's blocks.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Result;
use crate::input::{self, TensorSource};

pub(super) fn progress_bar(total: u64, show: bool) -> ProgressBar {
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
    pb: &ProgressBar,
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
