//! The per-tensor table printed at the end of `analyze`.

use crate::analyze::Analysis;

/// A number for the table: "–" where it is undefined, "∞" for +∞.
fn f(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else if v.is_nan() {
        "–".into()
    } else if v > 0.0 {
        "∞".into()
    } else {
        "-∞".into()
    }
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.0}%", 100.0 * v)
    }
}

/// The 95% interval, or "–" when it is undefined.
fn ci(c: [f64; 2]) -> String {
    if c[0].is_nan() || c[1].is_nan() {
        "–".into()
    } else {
        format!("[{}, {}]", f(c[0]), f(c[1]))
    }
}

pub fn print_table(a: &Analysis, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "K = {} samples, P = {} coordinates, block length K1 = {}",
        a.samples, a.model.coords, a.block_size
    )?;
    writeln!(
        out,
        "{:<24} {:>10} {:>7} {:>17} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
        "tensor",
        "shape",
        "α_tb",
        "95% CI",
        "α_flat",
        "α_blk50",
        "α_logm50",
        "α_mc50",
        "JB rej",
        "stable",
        "const"
    )?;
    for t in &a.tensors {
        let s = &t.summary;
        let shape = super::shape_label(&s.shape);
        writeln!(
            out,
            "{:<24} {:>10} {:>7} {:>17} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
            s.name,
            if shape.is_empty() {
                "scalar".into()
            } else {
                shape
            },
            f(s.alpha_time_blocked),
            ci(s.alpha_time_blocked_ci),
            f(s.alpha_simsekli_flat),
            f(s.alpha_block_quantiles.q50),
            f(s.alpha_logm_quantiles.q50),
            f(s.fits.alpha_mcculloch_quantiles.q50),
            pct(s.jb_reject_frac),
            pct(s.fits.stable_beats_gauss_frac),
            s.constant_coords
        )?;
    }
    if a.tensors
        .iter()
        .any(|t| !t.summary.fits.ad_reject_frac.is_nan())
    {
        writeln!(
            out,
            "α_mc50: median McCulloch α; stable: coordinates whose fitted stable law is closer (KS) than the normal."
        )?;
    }
    writeln!(
        out,
        "95% CI: delete-one-time-block jackknife, valid however strongly coordinates move together."
    )?;
    writeln!(
        out,
        "whole input: α_flat (Simsekli et al. 2019, m = {}) = {}",
        a.model.simsekli_m,
        f(a.model.alpha_simsekli_flat)
    )?;
    for t in &a.tensors {
        let s = &t.summary;
        if s.few_finite_coords > 0 {
            writeln!(
                out,
                "note: {}: {} coordinates have fewer than {} finite samples and are left out",
                s.name,
                s.few_finite_coords,
                crate::stats::MIN_FINITE
            )?;
        }
        for n in &s.notes {
            writeln!(out, "note: {}: {n}", s.name)?;
        }
    }
    for n in &a.model.notes {
        writeln!(out, "note: whole input: {n}")?;
    }
    if a.model.nonfinite_samples > 0 {
        writeln!(
            out,
            "note: {} non-finite samples were excluded",
            a.model.nonfinite_samples
        )?;
    }
    Ok(())
}
