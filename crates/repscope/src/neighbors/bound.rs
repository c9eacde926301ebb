//! Rigorous rounding-error bounds for the f32 candidate pass, and the certificate built on them.
//!
//! The candidate pass ranks reference rows x_j for a query x_q by the f32 key
//! `key = fl(t_j − 2·s)`, with `t_j = fl32(‖x_j‖²)` (summed in f64, rounded once) and `s` the f32 dot
//! product x_q·x_j from a GEMM of accumulation length w. With a = ‖x_q‖, b = ‖x_j‖ and u = 2⁻²⁴:
//!
//! - |s − x_q·x_j| ≤ γ_w Σ|x_qi x_ji| ≤ γ_w·a·b (Higham, *Accuracy and Stability of Numerical
//!   Algorithms*, §3.1, for any summation order, with or without fused multiply-adds; Cauchy–Schwarz);
//! - |t_j − b²| ≤ u·b² + γ⁽⁶⁴⁾_w·b²;
//! - the subtraction adds at most u·|t_j − 2s| ≤ u·(b² + 2ab)(1 + γ_w);
//!
//! so |key − (b² − 2 x_q·x_j)| ≤ γ_{w+2}·(b² + 2ab) + (f64 and underflow terms) =: E(a, b), using
//! γ_j + γ_k + γ_jγ_k ≤ γ_{j+k}. Underflow adds at most 2⁻¹⁵⁰ per operation, counted as an absolute term.
//! The squared distance in the ranking space is ρ² = a² + (b² − 2 x_q·x_j) ≥ a² + key − E(a, b).
//!
//! A row j that the pass did not keep has a key at least the pass's threshold τ (the worst kept key).
//! The distance we must beat is the target t plus a perturbation η·b_j that grows with the row's norm (the
//! ranking rows are rounded copies of the exact ones, see [`super::space`]). A row with b_j far from a is
//! excluded by the triangle inequality ρ ≥ |b_j − a|, so only rows with b_j ≤ (a + t)/(1 − η) need the
//! key bound, and for them E(a, b_j) ≤ E(a, b_band). Hence every row with key ≥ τ is farther than t + η·b_j
//! when a² + τ − E(a, b_band) > (t + η·b_band)². Every f64 evaluation of this test carries a relative slack
//! that dominates its own rounding.
use super::space::U32;

/// Smallest positive subnormal f32, 2⁻¹⁴⁹.
const TINY32: f64 = 1.401_298_464_324_817e-45;
/// Relative slack on every f64 evaluation of a bound (dominates (w + 10)·2⁻⁵³ for w up to 10⁵ columns and
/// the norms' own rounding).
const SLACK: f64 = 1e-10;

/// The smallest f32 above a finite `x` (f32::next_up, written out for the minimum supported Rust).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

/// γ_n = n·u / (1 − n·u).
pub(crate) fn gamma(n: usize, u: f64) -> f64 {
    let nu = n as f64 * u;
    nu / (1.0 - nu)
}

/// The error model of the f32 ranking key for rows of width `w` (the GEMM's accumulation length).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyError {
    g: f64,
    abs: f64,
}

impl KeyError {
    pub(crate) fn new(w: usize) -> Self {
        KeyError {
            g: (gamma(w + 2, U32) + gamma(w + 2, f64::EPSILON / 2.0)) * (1.0 + SLACK),
            abs: (8 * w + 32) as f64 * TINY32,
        }
    }
    /// Bound on |computed key − (b² − 2 x_q·x_j)| for a query of norm `a` and a reference of norm `b`.
    #[inline]
    pub(crate) fn of(&self, a: f64, b: f64) -> f64 {
        self.g * (b * b + 2.0 * a * b) + self.abs
    }
}

/// What a ranking space must prove about the rows it did not keep for one query: that each is farther
/// than `t + eta·b_j` (b_j the row's norm in the ranking space).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// The radius in ranking units, with every query-side perturbation already added.
    pub(crate) t: f64,
    /// Perturbation per unit of the reference row's ranking norm.
    pub(crate) eta: f64,
}

impl Target {
    /// The largest ranking norm a row can have and still be closer than the target (triangle inequality),
    /// capped by the largest norm present.
    #[inline]
    fn band(&self, a: f64, bmax: f64) -> f64 {
        ((a + self.t) / (1.0 - self.eta) * (1.0 + SLACK)).min(bmax)
    }

    /// Whether every row whose computed key is at least `tau` is provably farther than the target, for a
    /// query of ranking norm `a`, with `bmax` the largest reference norm.
    pub(crate) fn excludes(&self, err: &KeyError, a: f64, tau: f32, bmax: f64) -> bool {
        if tau.is_infinite() && tau > 0.0 {
            return true;
        }
        if !tau.is_finite() {
            return false;
        }
        let b = self.band(a, bmax);
        let e = err.of(a, b);
        let tau = tau as f64;
        let lhs = a * a + tau - e - SLACK * (a * a + tau.abs() + e);
        let need = self.t + self.eta * b;
        lhs > need * need * (1.0 + SLACK)
    }

    /// A key threshold τ* such that every row with a key above it is provably farther than the target
    /// (rounded up to f32): a range pass must look at the rows with key ≤ τ* only.
    pub(crate) fn key_threshold(&self, err: &KeyError, a: f64, bmax: f64) -> f32 {
        let b = self.band(a, bmax);
        let e = err.of(a, b);
        let need = self.t + self.eta * b;
        let need2 = need * need;
        let t0 = need2 - a * a + e;
        let t = t0 + 4.0 * SLACK * (a * a + t0.abs() + e + need2);
        let f = t as f32;
        if (f as f64) < t {
            next_up(f)
        } else {
            f
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The bound holds on the real f32 kernel: dot products by faer's GEMM, keys as the sweeps form them,
    /// against f64 references, for rows of wildly different norms and nearly parallel rows.
    #[test]
    fn key_error_bounds_the_kernel() {
        let mut r = Rng::new(3);
        for &w in &[3usize, 64, 384, 1000] {
            let n = 40;
            let mut v = vec![0f32; n * w];
            let base: Vec<f64> = (0..w).map(|_| r.normal()).collect();
            for i in 0..n {
                let scale = 10f64.powi((i % 7) as i32 - 3);
                let near = i % 2 == 0;
                for c in 0..w {
                    let x = if near {
                        base[c] * 9.7 + 1e-3 * r.normal()
                    } else {
                        r.normal() * scale
                    };
                    v[i * w + c] = x as f32;
                }
            }
            let m = faer::MatRef::from_row_major_slice(&v, n, w);
            let mut s = vec![0f32; n * n];
            crate::linalg::gemm_f32(
                faer::MatMut::from_column_major_slice_mut(&mut s, n, n),
                false,
                m,
                m.transpose(),
                1.0,
                false,
            );
            let err = KeyError::new(w);
            let mut worst = 0f64;
            for q in 0..n {
                let xq = &v[q * w..(q + 1) * w];
                let a = xq.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
                for j in 0..n {
                    let xj = &v[j * w..(j + 1) * w];
                    let b2 = xj.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
                    let dot: f64 = xq.iter().zip(xj).map(|(&x, &y)| x as f64 * y as f64).sum();
                    let key = (b2 as f32) - 2.0 * s[q * n + j];
                    let dev = (key as f64 - (b2 - 2.0 * dot)).abs();
                    let bound = err.of(a, b2.sqrt());
                    assert!(dev <= bound, "w {w} q {q} j {j}: {dev} > {bound}");
                    worst = worst.max(dev / bound);
                }
            }
            assert!(
                worst > 1e-4,
                "w {w}: the bound is far too loose to be useful ({worst})"
            );
        }
    }

    #[test]
    fn threshold_and_exclusion_agree() {
        let err = KeyError::new(384);
        for &(a, t, eta) in &[(9.7, 0.01, 6e-8), (1.0, 0.5, 0.0), (1e3, 3.0, 1e-7)] {
            let target = Target { t, eta };
            let tau = target.key_threshold(&err, a, 2.0 * a);
            assert!(target.excludes(&err, a, next_up(tau), 2.0 * a));
            // Far below the threshold nothing is proven.
            assert!(!target.excludes(&err, a, tau - 1.0, 2.0 * a));
        }
        // A heap that never filled up kept every row.
        let target = Target { t: 1.0, eta: 0.0 };
        assert!(target.excludes(&err, 1.0, f32::INFINITY, 1.0));
        assert!(!target.excludes(&err, 1.0, f32::NAN, 1.0));
    }
}
