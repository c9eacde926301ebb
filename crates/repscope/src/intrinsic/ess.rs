//! Expected simplex skewness (ESS, Johnsson et al. 2015), as skdim's `ESS(ver="a", d=1)`: in each point's
//! neighbourhood (its k = 100 neighbours, centred on their mean), the volume of the simplices spanned by
//! d + 1 of the vectors over the product of their lengths ("a"), or for d = 1 the |cos| of pairs ("b"); the
//! value of a uniform n-ball is known in closed form, and the dimension is read off that curve by linear
//! interpolation between integers.
//!
//! With d = 1 and k = 100 every one of the C(100, 2) = 4950 pairs is used, as in skdim, and the result is
//! deterministic. Where C(k, d + 1) exceeds 5000, skdim draws 5000 subsets with numpy's generator; repscope
//! draws them with its own seeded one, so those values differ from skdim's by sampling noise.
use faer::Mat;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::local::{check_graph_k, local_estimate, Combine, RowsF64};
use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::KnnGraph;
use crate::rng::Rng;

/// Which simplex statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EssVersion {
    /// Simplex volume over the product of edge lengths.
    A,
    /// |cos| of pairs (d = 1 only).
    B,
}

/// Subsets drawn when there are more than this many (skdim's limit).
const MAX_SUBSETS: u64 = 5000;

/// ESS.
#[derive(Clone, Copy, Debug)]
pub struct Ess {
    pub k: usize,
    /// The simplex dimension (d + 1 vectors per simplex).
    pub d: usize,
    pub version: EssVersion,
    pub seed: u64,
}

impl Default for Ess {
    fn default() -> Self {
        Ess {
            k: 100,
            d: 1,
            version: EssVersion::A,
            seed: 0,
        }
    }
}

/// ln Γ.
fn lgamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// The expected ESS of a uniform ball in n dimensions.
pub fn reference(version: EssVersion, d: usize, n: usize) -> f64 {
    let (nf, df) = (n as f64, d as f64);
    match version {
        EssVersion::A => {
            if n <= d {
                0.0
            } else {
                (df * (lgamma(nf / 2.0) - lgamma((nf + 1.0) / 2.0)) + lgamma(nf / 2.0)
                    - lgamma((nf - df) / 2.0))
                .exp()
            }
        }
        EssVersion::B => {
            2.0 / (std::f64::consts::PI.sqrt() * nf)
                * (lgamma((nf + 2.0) / 2.0) - lgamma((nf + 1.0) / 2.0)).exp()
        }
    }
}

/// The dimension whose reference value is `ess`: the integer n with ref(n) ≤ ess < ref(n + 1) for "a"
/// (increasing in n), ref(n) > ess ≥ ref(n + 1) for "b" (decreasing), then linear interpolation.
pub fn dimension_of(version: EssVersion, d: usize, ess: f64) -> f64 {
    if !ess.is_finite() {
        return f64::NAN;
    }
    let r = |n: usize| reference(version, d, n);
    let past = |n: usize| match version {
        EssVersion::A => r(n + 1) > ess,
        EssVersion::B => r(n + 1) <= ess,
    };
    let mut n = 1usize;
    while !past(n) {
        n += 1;
        if n > 1 << 24 {
            return f64::INFINITY;
        }
    }
    let (lo, hi) = (r(n), r(n + 1));
    n as f64 + (ess - lo) / (hi - lo)
}

/// The determinant of a small symmetric matrix (row-major p × p) by Gaussian elimination with pivoting.
fn det(a: &mut [f64], p: usize) -> f64 {
    let mut d = 1.0;
    for c in 0..p {
        let piv = (c..p)
            .max_by(|&x, &y| a[x * p + c].abs().total_cmp(&a[y * p + c].abs()))
            .unwrap_or(c);
        if a[piv * p + c] == 0.0 {
            return 0.0;
        }
        if piv != c {
            for j in 0..p {
                a.swap(c * p + j, piv * p + j);
            }
            d = -d;
        }
        d *= a[c * p + c];
        for r in c + 1..p {
            let f = a[r * p + c] / a[c * p + c];
            for j in c..p {
                a[r * p + j] -= f * a[c * p + j];
            }
        }
    }
    d
}

/// C(n, k) as a u64, saturating.
fn binomial(n: usize, k: usize) -> u64 {
    if k > n {
        return 0;
    }
    let mut c: u128 = 1;
    for i in 0..k {
        c = c * (n - i) as u128 / (i + 1) as u128;
        if c > u64::MAX as u128 {
            return u64::MAX;
        }
    }
    c as u64
}

impl Ess {
    fn check(&self) -> Result<()> {
        if self.d < 1 {
            return Err(Error::range(
                Param::Dim,
                self.d,
                "d ≥ 1 (1 by default)",
                "ESS's simplices have d + 1 vertices",
            ));
        }
        if self.version == EssVersion::B && self.d != 1 {
            return Err(Error::range(
                Param::Dim,
                self.d,
                "d = 1",
                "ESS version b is defined for d = 1 only",
            ));
        }
        Ok(())
    }

    /// The ESS value of one centred patch of `k` rows of `cols` values (row-major), with the subsets of
    /// `p = d + 1` rows: every one when there are at most 5000, else 5000 drawn with `rng`.
    fn value(&self, v: &[f64], k: usize, cols: usize, rng: &mut Rng) -> f64 {
        let p = self.d + 1;
        if p > cols {
            // As skdim: a simplex of more vertices than the ambient dimension has no volume.
            return match self.version {
                EssVersion::A => 0.0,
                EssVersion::B => 1.0,
            };
        }
        let mut g = Mat::<f64>::zeros(k, k);
        let vm = crate::linalg::row_major(v, k, cols);
        crate::linalg::gemm(g.as_mut(), false, vm, vm.transpose(), 1.0, false);
        let norm: Vec<f64> = (0..k).map(|a| g[(a, a)].max(0.0).sqrt()).collect();
        let (mut num, mut den) = (0.0f64, 0.0f64);
        if p == 2 {
            for a in 0..k {
                for b in a + 1..k {
                    let w = norm[a] * norm[b];
                    let dot = g[(a, b)];
                    num += match self.version {
                        EssVersion::A => (g[(a, a)] * g[(b, b)] - dot * dot).abs().sqrt(),
                        EssVersion::B => dot.abs(),
                    };
                    den += w;
                }
            }
            return num / den;
        }
        let mut sub = vec![0f64; p * p];
        let mut visit = |idx: &[usize]| {
            for (x, &i) in idx.iter().enumerate() {
                for (y, &j) in idx.iter().enumerate() {
                    sub[x * p + y] = g[(i, j)];
                }
            }
            num += det(&mut sub, p).abs().sqrt();
            den += idx.iter().map(|&i| norm[i]).product::<f64>();
        };
        if binomial(k, p) <= MAX_SUBSETS {
            // Every subset, in lexicographic order.
            let mut idx: Vec<usize> = (0..p).collect();
            loop {
                visit(&idx);
                let mut i = p;
                while i > 0 && idx[i - 1] == k - p + i - 1 {
                    i -= 1;
                }
                if i == 0 {
                    break;
                }
                idx[i - 1] += 1;
                for j in i..p {
                    idx[j] = idx[j - 1] + 1;
                }
            }
        } else {
            let mut seen = std::collections::HashSet::new();
            let mut idx = vec![0usize; p];
            while (seen.len() as u64) < MAX_SUBSETS {
                // p distinct indices, sorted: one subset.
                let mut chosen: Vec<usize> = Vec::with_capacity(p);
                while chosen.len() < p {
                    let c = rng.below(k as u64) as usize;
                    if !chosen.contains(&c) {
                        chosen.push(c);
                    }
                }
                chosen.sort_unstable();
                if seen.insert(chosen.clone()) {
                    idx.copy_from_slice(&chosen);
                    visit(&idx);
                }
            }
        }
        num / den
    }

    /// The ESS value and the dimension of every point's neighbourhood (its k neighbours, the point left
    /// out, centred on their mean).
    pub fn per_point(&self, data: &Matrix, graph: &KnnGraph) -> Result<(Vec<f64>, Vec<f64>)> {
        self.check()?;
        check_graph_k(graph, self.k, 2, "ESS")?;
        let rows = RowsF64::new(data, graph.metric)?;
        let (k, cols) = (self.k, data.cols());
        let out: Vec<(f64, f64)> = (0..graph.n)
            .into_par_iter()
            .map_init(
                || vec![0f64; k * cols],
                |v, i| {
                    let nb = &graph.neighbors(i)[..k];
                    for (a, &j) in nb.iter().enumerate() {
                        rows.fill(j as usize, &mut v[a * cols..(a + 1) * cols]);
                    }
                    centre(v, k, cols);
                    // One stream per point, so the draws do not depend on the thread count.
                    let mut rng =
                        Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let e = self.value(v, k, cols, &mut rng);
                    (e, dimension_of(self.version, self.d, e))
                },
            )
            .collect();
        Ok(out.into_iter().unzip())
    }

    /// The per-point dimensions combined.
    pub fn fit(
        &self,
        data: &Matrix,
        graph: &KnnGraph,
        how: Combine,
    ) -> Result<(Estimate, Vec<f64>)> {
        let (_, pw) = self.per_point(data, graph)?;
        let e = local_estimate(
            "ess",
            format!(
                "expected simplex skewness, version {}, d = {}, over {} neighbours",
                self.version_name(),
                self.d,
                self.k
            ),
            &pw,
            how,
            json!({"k": self.k, "d": self.d, "ver": self.version_name(), "seed": self.seed, "comb": how.name()}),
        )?;
        Ok((e, pw))
    }

    /// The whole of `data` as one neighbourhood (skdim's `fit_once`): its ESS value and dimension.
    pub fn once(&self, data: &Matrix) -> Result<(f64, f64)> {
        self.check()?;
        let (n, cols) = (data.rows(), data.cols());
        if n < self.d + 1 {
            return Err(Error::data(
                data.name(),
                format!("ESS needs at least {} rows, got {n}", self.d + 1),
                "pass more rows",
            ));
        }
        let rows = RowsF64::new(data, crate::neighbors::Metric::Euclidean)?;
        let mut v = vec![0f64; n * cols];
        for i in 0..n {
            rows.fill(i, &mut v[i * cols..(i + 1) * cols]);
        }
        centre(&mut v, n, cols);
        let e = self.value(&v, n, cols, &mut Rng::new(self.seed));
        Ok((e, dimension_of(self.version, self.d, e)))
    }

    fn version_name(&self) -> &'static str {
        match self.version {
            EssVersion::A => "a",
            EssVersion::B => "b",
        }
    }
}

/// Subtracts the column means of a row-major block.
fn centre(v: &mut [f64], rows: usize, cols: usize) {
    let mut mean = vec![0f64; cols];
    for r in 0..rows {
        for (m, x) in mean.iter_mut().zip(&v[r * cols..(r + 1) * cols]) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    for r in 0..rows {
        for (x, m) in v[r * cols..(r + 1) * cols].iter_mut().zip(&mean) {
            *x -= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_curves_match_their_closed_forms() {
        // skdim's _essReference tables start 0, 2/π, π/4, 0.8488263631567751 (a, d = 1); 1, 2/π, 1/2,
        // 0.42441318157838753, 3/8 (b); 0, 0, π/8, 0.5658842421045166 (a, d = 2).
        use std::f64::consts::{FRAC_2_PI, FRAC_PI_4, FRAC_PI_8};
        let a1 = [0.0, FRAC_2_PI, FRAC_PI_4, 0.848_826_363_156_775_1];
        let b1 = [1.0, FRAC_2_PI, 0.5, 0.424_413_181_578_387_5, 0.375];
        let a2 = [0.0, 0.0, FRAC_PI_8, 0.565_884_242_104_516_6];
        for (n, want) in a1.iter().enumerate() {
            assert!((reference(EssVersion::A, 1, n + 1) - want).abs() < 1e-13);
        }
        for (n, want) in b1.iter().enumerate() {
            assert!((reference(EssVersion::B, 1, n + 1) - want).abs() < 1e-13);
        }
        for (n, want) in a2.iter().enumerate() {
            assert!((reference(EssVersion::A, 2, n + 1) - want).abs() < 1e-13);
        }
        // Interpolation: halfway between ref(3) and ref(4) reads 3.5.
        let mid = 0.5 * (a1[2] + a1[3]);
        assert!((dimension_of(EssVersion::A, 1, mid) - 3.5).abs() < 1e-12);
        assert!((dimension_of(EssVersion::B, 1, 0.5) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn determinant_and_subset_counts() {
        let mut a = vec![2.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0, 4.0];
        assert!((det(&mut a, 3) - 18.0).abs() < 1e-12);
        assert_eq!(binomial(100, 2), 4950);
        assert_eq!(binomial(30, 3), 4060);
        assert_eq!(binomial(100, 3), 161_700);
    }
}
