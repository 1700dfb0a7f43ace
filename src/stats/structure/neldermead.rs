//! Nelder–Mead with bounds, step for step as scipy 1.17's `_minimize_neldermead`
//! (scipy/optimize/_optimize.py) run by `scipy.optimize.minimize(method="Nelder-Mead",
//! bounds=..., tol=tol)`: the `powerlaw` package fits every distribution that lacks a closed
//! form this way, so matching its fits means matching this optimizer's path, not only its
//! optimum. Non-adaptive coefficients; xatol = fatol = tol; at most 200·N evaluations and
//! iterations; every vertex clipped to the bounds.

/// Result of one minimisation: the best vertex, its value, and scipy's `success` (neither
/// the evaluation nor the iteration budget ran out).
#[derive(Clone, Debug)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub success: bool,
}

/// Counts evaluations; `None` once scipy's wrapper would raise `_MaxFuncCallError`.
struct Budget<F> {
    f: F,
    calls: usize,
    max: usize,
}

impl<F: FnMut(&[f64]) -> f64> Budget<F> {
    fn call(&mut self, x: &[f64]) -> Option<f64> {
        if self.calls >= self.max {
            return None;
        }
        self.calls += 1;
        Some((self.f)(x))
    }
}

fn clip(x: &mut [f64], lb: &[f64], ub: &[f64]) {
    for ((v, &l), &u) in x.iter_mut().zip(lb).zip(ub) {
        // np.clip(v, l, u) = min(max(v, l), u); NaN stays NaN.
        if v.is_nan() {
            continue;
        }
        *v = v.max(l).min(u);
    }
}

/// Indices that sort `f` ascending with NaN last, ties kept in order (numpy's argsort on
/// the N + 1 ≤ 3 values used here).
fn argsort(f: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..f.len()).collect();
    idx.sort_by(|&a, &b| match (f[a].is_nan(), f[b].is_nan()) {
        (false, false) => f[a].partial_cmp(&f[b]).unwrap_or(std::cmp::Ordering::Equal),
        (x, y) => x.cmp(&y),
    });
    idx
}

/// np.max over values, NaN if any value is NaN.
fn nanmax(v: impl Iterator<Item = f64>) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for x in v {
        if x.is_nan() {
            return f64::NAN;
        }
        m = m.max(x);
    }
    m
}

/// Minimises `f` from `x0` within [lb, ub] (use ±inf for no bound).
pub(crate) fn minimize(
    f: impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    lb: &[f64],
    ub: &[f64],
    tol: f64,
) -> Minimum {
    const RHO: f64 = 1.0;
    const CHI: f64 = 2.0;
    const PSI: f64 = 0.5;
    const SIGMA: f64 = 0.5;
    const NONZDELT: f64 = 0.05;
    const ZDELT: f64 = 0.00025;
    let n = x0.len();
    let max = 200 * n;
    let mut func = Budget { f, calls: 0, max };

    let mut x0 = x0.to_vec();
    clip(&mut x0, lb, ub);
    let mut sim = vec![x0.clone(); n + 1];
    for k in 0..n {
        let y = &mut sim[k + 1];
        y[k] = if y[k] != 0.0 {
            (1.0 + NONZDELT) * y[k]
        } else {
            ZDELT
        };
    }
    // Vertices above an upper bound are reflected into the interior, then clipped.
    for v in sim.iter_mut() {
        for (x, &u) in v.iter_mut().zip(ub) {
            if *x > u {
                *x = 2.0 * u - *x;
            }
        }
        clip(v, lb, ub);
    }
    let mut fsim = vec![f64::INFINITY; n + 1];
    for k in 0..=n {
        match func.call(&sim[k]) {
            Some(v) => fsim[k] = v,
            None => break,
        }
    }
    let reorder = |sim: &mut Vec<Vec<f64>>, fsim: &mut Vec<f64>| {
        let ind = argsort(fsim);
        *sim = ind.iter().map(|&i| sim[i].clone()).collect();
        *fsim = ind.iter().map(|&i| fsim[i]).collect();
    };
    reorder(&mut sim, &mut fsim);

    let mut iterations = 1;
    while func.calls < max && iterations < max {
        let xspread = nanmax(
            sim[1..]
                .iter()
                .flat_map(|v| v.iter().zip(&sim[0]).map(|(a, b)| (a - b).abs())),
        );
        let fspread = nanmax(fsim[1..].iter().map(|v| (fsim[0] - v).abs()));
        if xspread <= tol && fspread <= tol {
            break;
        }
        // One iteration; `None` means the evaluation budget ran out part-way (scipy catches
        // the exception and leaves the simplex as it stands, without counting the iteration).
        let step = (|| -> Option<()> {
            let mut xbar = vec![0.0; n];
            for v in &sim[..n] {
                for (s, x) in xbar.iter_mut().zip(v) {
                    *s += x;
                }
            }
            xbar.iter_mut().for_each(|s| *s /= n as f64);
            let worst = sim[n].clone();
            let point = |a: f64, b: f64| -> Vec<f64> {
                let mut p: Vec<f64> = xbar
                    .iter()
                    .zip(&worst)
                    .map(|(x, w)| a * x - b * w)
                    .collect();
                clip(&mut p, lb, ub);
                p
            };
            let xr = point(1.0 + RHO, RHO);
            let fxr = func.call(&xr)?;
            if fxr < fsim[0] {
                let xe = point(1.0 + RHO * CHI, RHO * CHI);
                let fxe = func.call(&xe)?;
                if fxe < fxr {
                    (sim[n], fsim[n]) = (xe, fxe);
                } else {
                    (sim[n], fsim[n]) = (xr, fxr);
                }
            } else if fxr < fsim[n - 1] {
                (sim[n], fsim[n]) = (xr, fxr);
            } else {
                let shrink = if fxr < fsim[n] {
                    let xc = point(1.0 + PSI * RHO, PSI * RHO);
                    let fxc = func.call(&xc)?;
                    if fxc <= fxr {
                        (sim[n], fsim[n]) = (xc, fxc);
                        false
                    } else {
                        true
                    }
                } else {
                    // Inside contraction: (1 − ψ) x̄ + ψ x_worst.
                    let mut xcc: Vec<f64> = xbar
                        .iter()
                        .zip(&worst)
                        .map(|(x, w)| (1.0 - PSI) * x + PSI * w)
                        .collect();
                    clip(&mut xcc, lb, ub);
                    let fxcc = func.call(&xcc)?;
                    if fxcc < fsim[n] {
                        (sim[n], fsim[n]) = (xcc, fxcc);
                        false
                    } else {
                        true
                    }
                };
                if shrink {
                    for j in 1..=n {
                        let best = sim[0].clone();
                        for (x, b) in sim[j].iter_mut().zip(&best) {
                            *x = b + SIGMA * (*x - b);
                        }
                        clip(&mut sim[j], lb, ub);
                        fsim[j] = func.call(&sim[j])?;
                    }
                }
            }
            Some(())
        })();
        if step.is_some() {
            iterations += 1;
        }
        reorder(&mut sim, &mut fsim);
    }
    let success = func.calls < max && iterations < max;
    Minimum {
        x: sim[0].clone(),
        success,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_scipy_on_a_bounded_quadratic() {
        // scipy 1.17.1: minimize(lambda p: (p[0]-1.3)**2 + 3*(p[1]+0.4)**2 + p[0]*p[1],
        // x0=[2.0, 0.5], method="Nelder-Mead", bounds=[(None, None), (0, None)], tol=1e-4)
        // -> x = [1.3000187709054365, 0.0], success True.
        let f = |p: &[f64]| (p[0] - 1.3).powi(2) + 3.0 * (p[1] + 0.4).powi(2) + p[0] * p[1];
        let inf = f64::INFINITY;
        let m = minimize(f, &[2.0, 0.5], &[-inf, 0.0], &[inf, inf], 1e-4);
        assert!(m.success);
        assert_eq!(m.x, vec![1.3000187709054365, 0.0]);
    }

    #[test]
    fn follows_scipy_until_the_budget_runs_out() {
        let f = |p: &[f64]| (p[0] - 0.7).powf(4.0) + 5.0 * (p[1] - p[0] * p[0]).powi(2);
        let inf = [f64::INFINITY; 2];
        let ninf = [f64::NEG_INFINITY; 2];
        // scipy 1.17.1, the same call without bounds and tol=1e-10:
        // x = [0.6999999951608473, 0.4899999932251863] after 349 evaluations, success True.
        let m = minimize(f, &[-1.0, 2.0], &ninf, &inf, 1e-10);
        assert!(m.success);
        assert_eq!(m.x, vec![0.6999999951608473, 0.4899999932251863]);
        // tol=1e-30: the 400 evaluations run out; x = [0.6999999952669225,
        // 0.4899999933736915], success False.
        let m = minimize(f, &[-1.0, 2.0], &ninf, &inf, 1e-30);
        assert!(!m.success);
        assert_eq!(m.x, vec![0.6999999952669225, 0.4899999933736915]);
    }

    #[test]
    fn reflects_a_start_beyond_the_upper_bound() {
        // scipy 1.17.1: minimize(lambda p: -p[0], x0=[3.5], method="Nelder-Mead",
        // bounds=[(0, 3)], tol=1e-4) -> x = [3.0], success True.
        let m = minimize(|p: &[f64]| -p[0], &[3.5], &[0.0], &[3.0], 1e-4);
        assert!(m.success);
        assert_eq!(m.x, vec![3.0]);
    }
}
