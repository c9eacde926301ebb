//! Centred kernel alignment: linear (biased and debiased, by the feature route and the Gram route), RBF and
//! minibatch. METRICS.md, "Similarity of two representations".
//!
//! The feature route makes one streaming f64 pass over the rows of X and Y: each chunk of rows is shifted by
//! the column means, widened to f64 and multiplied into the lower triangle of ZᵀZ with Z = [X | Y], together
//! with the row norms a_i = ‖x_i‖², b_i = ‖y_i‖² and a few vectors. Those sums give ‖XᵀY‖², ‖XᵀX‖², ‖YᵀY‖² and
//! every term of HSIC₁ (Song et al. 2012) without an n × n matrix:
//!   tr(K̃L̃) = ‖XᵀY‖²_F − Σ a_i b_i,   1ᵀK̃1 = ‖Σx_i‖² − Σ a_i,
//!   1ᵀK̃L̃1 = Σ_i (x_i·s_x − a_i)(y_i·s_y − b_i) = s_xᵀXᵀY s_y − (Σ a_i y_i)·s_y − (Σ b_i x_i)·s_x + Σ a_i b_i.
//! The Gram route forms K = XXᵀ and L = YYᵀ (n × n) and sums their entries directly.
use crate::error::Param;
use faer::Mat;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::source::{self, Joined, RowSource, Window};
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::linalg;
use crate::moments;
use crate::partial::{self, Found, Local, Pass, Passes, Reader, Writer};
use crate::progress::{Progress, Silent};

/// Rows per task of the per-row terms of a chunk; partial sums are added in block order.
const BLOCK_ROWS: usize = 64;

/// A pass of feature-route sums over rows read side by side ([`Joined`]): the first `dx` columns are X,
/// every row is shifted by `shift` first.
#[derive(Clone, Debug, PartialEq)]
pub struct FeaturePass {
    pub dx: usize,
    pub shift: Vec<f64>,
    /// Rows per chunk (None: the source's default).
    pub chunk_rows: Option<usize>,
}

impl FeaturePass {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.usize(self.dx)
            .f64s(&self.shift)
            .usize(self.chunk_rows.unwrap_or(0));
    }
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<FeaturePass> {
        Ok(FeaturePass {
            dx: r.usize()?,
            shift: r.f64s()?,
            chunk_rows: Some(r.usize()?).filter(|&c| c > 0),
        })
    }
}

/// The sums the feature route collects over a set of rows.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStats {
    pub n: usize,
    pub dx: usize,
    pub dy: usize,
    /// Lower triangle of ZᵀZ, Z = [X − shift_x | Y − shift_y] (D × D, D = dx + dy); symmetric after
    /// [`FeatureStats::finish`].
    pub gram: Mat<f64>,
    pub sx: Vec<f64>,
    pub sy: Vec<f64>,
    /// Σ a_i x_i and Σ b_i y_i.
    pub ax: Vec<f64>,
    pub by: Vec<f64>,
    /// Σ a_i y_i and Σ b_i x_i.
    pub ay: Vec<f64>,
    pub bx: Vec<f64>,
    pub sa: f64,
    pub sb: f64,
    pub saa: f64,
    pub sbb: f64,
    pub sab: f64,
}

impl FeatureStats {
    fn zeros(dx: usize, dy: usize) -> Self {
        let d = dx + dy;
        FeatureStats {
            gram: Mat::zeros(d, d),
            ..FeatureStats::terms(dx, dy)
        }
    }

    /// Per-row terms only (no Gram), for the blocks of a chunk.
    fn terms(dx: usize, dy: usize) -> Self {
        FeatureStats {
            n: 0,
            dx,
            dy,
            gram: Mat::zeros(0, 0),
            sx: vec![0.0; dx],
            sy: vec![0.0; dy],
            ax: vec![0.0; dx],
            by: vec![0.0; dy],
            ay: vec![0.0; dy],
            bx: vec![0.0; dx],
            sa: 0.0,
            sb: 0.0,
            saa: 0.0,
            sbb: 0.0,
            sab: 0.0,
        }
    }

    /// Adds the per-row terms of a block of shifted rows z_i = [x_i − s_x | y_i − s_y] (row-major).
    #[allow(clippy::needless_range_loop)]
    fn add_row_terms(&mut self, block: &[f64]) {
        let (dx, dy) = (self.dx, self.dy);
        for z in block.chunks_exact(dx + dy) {
            let (zx, zy) = z.split_at(dx);
            let a: f64 = zx.iter().map(|v| v * v).sum();
            let b: f64 = zy.iter().map(|v| v * v).sum();
            for j in 0..dx {
                let w = zx[j];
                self.sx[j] += w;
                self.ax[j] += a * w;
                self.bx[j] += b * w;
            }
            for j in 0..dy {
                let w = zy[j];
                self.sy[j] += w;
                self.by[j] += b * w;
                self.ay[j] += a * w;
            }
            self.sa += a;
            self.sb += b;
            self.saa += a * a;
            self.sbb += b * b;
            self.sab += a * b;
            self.n += 1;
        }
    }

    /// Adds the per-row terms of `o` (its Gram is not used).
    fn add_terms(&mut self, o: &FeatureStats) {
        self.n += o.n;
        let add = |a: &mut Vec<f64>, b: &[f64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.sx, &o.sx);
        add(&mut self.sy, &o.sy);
        add(&mut self.ax, &o.ax);
        add(&mut self.by, &o.by);
        add(&mut self.ay, &o.ay);
        add(&mut self.bx, &o.bx);
        self.sa += o.sa;
        self.sb += o.sb;
        self.saa += o.saa;
        self.sbb += o.sbb;
        self.sab += o.sab;
    }

    /// One streaming pass over two representations of the same rows, read side by side (a
    /// [`Joined`] source: the first `dx` columns are X). Rows are shifted by the mean of the first
    /// rows (any shift gives the same values: the biased CKA and the cross products are centred exactly from
    /// the sums, and HSIC₁ does not depend on it); the per-row terms are taken in fixed blocks added in
    /// order, so the sums do not depend on the number of threads, the chunk size or the shards.
    pub fn from_source(
        src: &dyn RowSource,
        dx: usize,
        chunk_rows: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<FeatureStats> {
        FeatureStats::from_passes(&Local(src), dx, chunk_rows, progress)
    }

    /// [`FeatureStats::from_source`] of rows read through passes (in this process or on a cluster): the
    /// shift from the first rows, then one [`FeaturePass`].
    pub fn from_passes(
        p: &dyn Passes,
        dx: usize,
        chunk_rows: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<FeatureStats> {
        let shift = moments::head_mean_of(p, progress)?;
        let pass = FeaturePass {
            dx,
            shift,
            chunk_rows,
        };
        let Found::Features(mut acc) = p
            .run(&Pass::Features(pass), progress)?
            .covering(p.rows())?
            .value
        else {
            return Err(partial::corrupt("a features pass returned another result"));
        };
        linalg::symmetrize_lower(&mut acc.gram);
        Ok(*acc)
    }

    /// The sums of a [`FeaturePass`] over `src` (the lower triangle of the Gram only).
    pub fn sums(
        src: &dyn RowSource,
        pass: &FeaturePass,
        progress: &dyn Progress,
    ) -> Result<FeatureStats> {
        let d = src.cols();
        let dx = pass.dx;
        if dx > d || pass.shift.len() != d {
            return Err(partial::corrupt(
                "a features pass does not match the width of the rows",
            ));
        }
        let dy = d - dx;
        let shift = &pass.shift;
        let mut acc = FeatureStats::zeros(dx, dy);
        let chunk = pass.chunk_rows.unwrap_or_else(|| source::chunk_rows(src));
        progress.stage("feature products", src.rows() as u64);
        source::for_each_chunk(src, chunk, progress, |_, rows, z| {
            let parts: Vec<FeatureStats> = z
                .par_chunks_mut(BLOCK_ROWS * d)
                .map(|b| {
                    for r in b.chunks_exact_mut(d) {
                        r.iter_mut().zip(shift).for_each(|(v, s)| *v -= s);
                    }
                    let mut t = FeatureStats::terms(dx, dy);
                    t.add_row_terms(b);
                    t
                })
                .collect();
            parts.iter().for_each(|t| acc.add_terms(t));
            linalg::accumulate_gram_rows(acc.gram.as_mut(), z, rows, d, true);
            Ok(())
        })?;
        progress.finish_stage();
        Ok(acc)
    }

    /// The sums of these rows and then `next`'s (lower triangles of the Gram).
    pub fn merge(mut self, next: FeatureStats) -> Result<FeatureStats> {
        if self.dx != next.dx || self.dy != next.dy {
            return Err(partial::corrupt(
                "feature sums of different widths cannot be merged",
            ));
        }
        self.add_terms(&next);
        let mut g = Some(self.gram);
        moments::add_lower(&mut g, Some(next.gram))?;
        self.gram = g.expect("kept");
        Ok(self)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.usize(self.n).usize(self.dx).usize(self.dy);
        moments::put_lower(w, &Some(self.gram.clone()));
        for v in [&self.sx, &self.sy, &self.ax, &self.by, &self.ay, &self.bx] {
            w.f64s(v);
        }
        for v in [self.sa, self.sb, self.saa, self.sbb, self.sab] {
            w.f64(v);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<FeatureStats> {
        let (n, dx, dy) = (r.usize()?, r.usize()?, r.usize()?);
        let d = dx
            .checked_add(dy)
            .ok_or_else(|| partial::corrupt("feature sums too wide"))?;
        let gram = moments::get_lower(r, d)?.unwrap_or_else(|| Mat::zeros(d, d));
        let mut v = Vec::with_capacity(6);
        for want in [dx, dy, dx, dy, dy, dx] {
            let x = r.f64s()?;
            if x.len() != want {
                return Err(partial::corrupt("feature sums of the wrong width"));
            }
            v.push(x);
        }
        let mut it = v.into_iter();
        let mut next = || it.next().expect("six");
        let (sx, sy, ax, by, ay, bx) = (next(), next(), next(), next(), next(), next());
        Ok(FeatureStats {
            n,
            dx,
            dy,
            gram,
            sx,
            sy,
            ax,
            by,
            ay,
            bx,
            sa: r.f64()?,
            sb: r.f64()?,
            saa: r.f64()?,
            sbb: r.f64()?,
            sab: r.f64()?,
        })
    }

    /// The sums over all rows of two in-memory representations.
    pub fn collect(x: &Matrix, y: &Matrix, progress: &dyn Progress) -> Result<FeatureStats> {
        let z = Joined::new(x, y)?;
        FeatureStats::from_source(&z, x.cols(), None, progress)
    }

    fn g(&self, i: usize, j: usize) -> f64 {
        self.gram[(i, j)]
    }

    /// ‖XᵀY‖²_F, ‖XᵀX‖²_F, ‖YᵀY‖²_F of the exactly centred data.
    fn centred_norms(&self) -> (f64, f64, f64) {
        let (dx, dy) = (self.dx, self.dy);
        let nf = self.n as f64;
        let mut xy = 0.0;
        let mut xx = 0.0;
        let mut yy = 0.0;
        for j in 0..dx {
            for i in 0..dx {
                let v = self.g(i, j) - self.sx[i] * self.sx[j] / nf;
                xx += v * v;
            }
            for i in 0..dy {
                let v = self.g(dx + i, j) - self.sy[i] * self.sx[j] / nf;
                xy += v * v;
            }
        }
        for j in 0..dy {
            for i in 0..dy {
                let v = self.g(dx + i, dx + j) - self.sy[i] * self.sy[j] / nf;
                yy += v * v;
            }
        }
        (xy, xx, yy)
    }

    /// Biased linear CKA ‖YᵀX‖²/(‖XᵀX‖‖YᵀY‖) on centred columns.
    pub fn cka_biased(&self) -> f64 {
        let (xy, xx, yy) = self.centred_norms();
        xy / (xx.sqrt() * yy.sqrt())
    }

    /// The three HSIC₁ values (K,L), (K,K), (L,L).
    pub fn hsic1(&self) -> (f64, f64, f64) {
        let (dx, dy) = (self.dx, self.dy);
        let nf = self.n as f64;
        let mut fxy = 0.0;
        let mut fxx = 0.0;
        let mut fyy = 0.0;
        // sᵀ G s forms.
        let mut sxy = 0.0;
        let mut sxx = 0.0;
        let mut syy = 0.0;
        for j in 0..dx {
            for i in 0..dx {
                let v = self.g(i, j);
                fxx += v * v;
                sxx += self.sx[i] * v * self.sx[j];
            }
            for i in 0..dy {
                let v = self.g(dx + i, j);
                fxy += v * v;
                sxy += self.sy[i] * v * self.sx[j];
            }
        }
        for j in 0..dy {
            for i in 0..dy {
                let v = self.g(dx + i, dx + j);
                fyy += v * v;
                syy += self.sy[i] * v * self.sy[j];
            }
        }
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let ssx = dot(&self.sx, &self.sx);
        let ssy = dot(&self.sy, &self.sy);
        let one_k = ssx - self.sa;
        let one_l = ssy - self.sb;
        let kl = hsic1_terms(
            nf,
            fxy - self.sab,
            one_k,
            one_l,
            sxy - dot(&self.ay, &self.sy) - dot(&self.bx, &self.sx) + self.sab,
        );
        let kk = hsic1_terms(
            nf,
            fxx - self.saa,
            one_k,
            one_k,
            sxx - 2.0 * dot(&self.ax, &self.sx) + self.saa,
        );
        let ll = hsic1_terms(
            nf,
            fyy - self.sbb,
            one_l,
            one_l,
            syy - 2.0 * dot(&self.by, &self.sy) + self.sbb,
        );
        (kl, kk, ll)
    }

    /// Debiased linear CKA HSIC₁(K,L)/√(HSIC₁(K,K)·HSIC₁(L,L)).
    pub fn cka_debiased(&self) -> f64 {
        let (kl, kk, ll) = self.hsic1();
        kl / (kk * ll).sqrt()
    }

    /// XᵀY of the centred data (dx × dy), for Procrustes.
    pub fn centred_cross(&self) -> Mat<f64> {
        let nf = self.n as f64;
        Mat::from_fn(self.dx, self.dy, |i, j| {
            self.g(self.dx + j, i) - self.sx[i] * self.sy[j] / nf
        })
    }

    /// The centred joint scatter [X_c | Y_c]ᵀ[X_c | Y_c] (D × D), for the covariance route of CCA.
    pub fn centred_scatter(&self) -> Mat<f64> {
        let nf = self.n as f64;
        let dx = self.dx;
        let s = |i: usize| {
            if i < dx {
                self.sx[i]
            } else {
                self.sy[i - dx]
            }
        };
        let d = self.dx + self.dy;
        Mat::from_fn(d, d, |i, j| self.g(i, j) - s(i) * s(j) / nf)
    }

    /// ‖X_c‖²_F and ‖Y_c‖²_F.
    pub fn centred_sq_norms(&self) -> (f64, f64) {
        let nf = self.n as f64;
        let tx: f64 = (0..self.dx)
            .map(|i| self.g(i, i) - self.sx[i] * self.sx[i] / nf)
            .sum();
        let ty: f64 = (0..self.dy)
            .map(|i| self.g(self.dx + i, self.dx + i) - self.sy[i] * self.sy[i] / nf)
            .sum();
        (tx, ty)
    }
}

/// HSIC₁ from its terms: [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2·1ᵀK̃L̃1/(n−2)] / (n(n−3)).
pub fn hsic1_terms(n: f64, tr: f64, one_k: f64, one_l: f64, kl1: f64) -> f64 {
    (tr + one_k * one_l / ((n - 1.0) * (n - 2.0)) - 2.0 * kl1 / (n - 2.0)) / (n * (n - 3.0))
}

/// Which way linear CKA was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// d × d products of the features, O(n·d²), streaming.
    Feature,
    /// n × n Gram matrices, O(n²·d).
    Gram,
}

impl Route {
    /// The cheaper route for n rows and total width d.
    pub fn auto(n: usize, d: usize) -> Route {
        if n < d {
            Route::Gram
        } else {
            Route::Feature
        }
    }
}

/// Linear CKA, both variants, by one route.
#[derive(Clone, Debug, Serialize)]
pub struct LinearCka {
    pub biased: f64,
    pub debiased: f64,
    pub route: Route,
}

/// The centred Gram matrix X_c X_cᵀ (n × n, f64).
pub fn centred_gram(m: &Matrix) -> Mat<f64> {
    let mean = linalg::column_means(m);
    let a = linalg::to_f64(m, Some(&mean));
    let mut k = Mat::<f64>::zeros(m.rows(), m.rows());
    linalg::gemm(
        k.as_mut(),
        false,
        a.as_ref(),
        a.as_ref().transpose(),
        1.0,
        true,
    );
    k
}

/// Biased and debiased linear CKA from n × n Gram matrices (K centred for the biased value).
pub fn cka_from_grams(k: &Mat<f64>, l: &Mat<f64>) -> (f64, f64) {
    let n = k.nrows();
    let nf = n as f64;
    // Biased on centred Grams: ⟨K,L⟩/(‖K‖‖L‖).
    let cols: Vec<[f64; 9]> = (0..n)
        .into_par_iter()
        .map(|j| {
            let (mut kl, mut kk, mut ll) = (0.0, 0.0, 0.0);
            let (mut kl_off, mut kk_off, mut ll_off) = (0.0, 0.0, 0.0);
            let (mut rk, mut rl) = (0.0, 0.0);
            for i in 0..n {
                let (a, b) = (k[(i, j)], l[(i, j)]);
                kl += a * b;
                kk += a * a;
                ll += b * b;
                if i != j {
                    kl_off += a * b;
                    kk_off += a * a;
                    ll_off += b * b;
                    rk += a;
                    rl += b;
                }
            }
            [kl, kk, ll, kl_off, kk_off, ll_off, rk, rl, 0.0]
        })
        .collect();
    let mut s = [0.0f64; 9];
    for c in &cols {
        for t in 0..8 {
            s[t] += c[t];
        }
    }
    let biased = s[0] / (s[1].sqrt() * s[2].sqrt());
    // Debiased: K̃1 = off-diagonal row sums (symmetric, so the column sums above).
    let one_k = s[6];
    let one_l = s[7];
    let kl1: f64 = cols.iter().map(|c| c[6] * c[7]).sum();
    let kk1: f64 = cols.iter().map(|c| c[6] * c[6]).sum();
    let ll1: f64 = cols.iter().map(|c| c[7] * c[7]).sum();
    let h_kl = hsic1_terms(nf, s[3], one_k, one_l, kl1);
    let h_kk = hsic1_terms(nf, s[4], one_k, one_k, kk1);
    let h_ll = hsic1_terms(nf, s[5], one_l, one_l, ll1);
    (biased, h_kl / (h_kk * h_ll).sqrt())
}

/// Linear CKA by the chosen route.
pub fn linear_cka(
    x: &Matrix,
    y: &Matrix,
    route: Route,
    stats: Option<&FeatureStats>,
) -> Result<LinearCka> {
    check_pair(x, y)?;
    match route {
        Route::Feature => {
            let owned;
            let st = match stats {
                Some(s) => s,
                None => {
                    owned = FeatureStats::collect(x, y, &Silent)?;
                    &owned
                }
            };
            Ok(LinearCka {
                biased: st.cka_biased(),
                debiased: st.cka_debiased(),
                route,
            })
        }
        Route::Gram => {
            let k = centred_gram(x);
            let l = centred_gram(y);
            let (biased, debiased) = cka_from_grams(&k, &l);
            Ok(LinearCka {
                biased,
                debiased,
                route,
            })
        }
    }
}

/// The same row count and at least 4 rows (HSIC₁ divides by n − 3).
pub fn check_pair(x: &Matrix, y: &Matrix) -> Result<()> {
    if x.rows() != y.rows() {
        return Err(Error::data(
            format!("{} and {}", x.name(), y.name()),
            format!(
                "the two representations have {} and {} rows",
                x.rows(),
                y.rows()
            ),
            "pass the same inputs, in the same order, to both models or layers",
        ));
    }
    if x.rows() < 4 {
        return Err(Error::data(
            x.name(),
            format!(
                "debiased CKA needs at least 4 rows, got {} (HSIC₁ divides by n − 3)",
                x.rows()
            ),
            "pass more rows",
        ));
    }
    Ok(())
}

/// How the RBF bandwidth's median squared distance is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RbfMedian {
    /// Over distinct pairs i < j (METRICS.md).
    DistinctPairs,
    /// Over all n² entries, the n zeros of the diagonal included (Kornblith et al.'s code).
    IncludingDiagonal,
}

/// RBF CKA and the median squared distances used for each side.
#[derive(Clone, Debug, Serialize)]
pub struct RbfCka {
    pub value: f64,
    pub threshold: f64,
    pub median: RbfMedian,
    pub median_sq_dist_x: f64,
    pub median_sq_dist_y: f64,
}

/// Squared distances from the centred Gram, and the median the bandwidth uses.
fn rbf_kernel(m: &Matrix, t: f64, median: RbfMedian) -> Result<(Mat<f64>, f64)> {
    let g = centred_gram(m);
    let n = m.rows();
    let diag: Vec<f64> = (0..n).map(|i| g[(i, i)]).collect();
    let mut d2 = g;
    for j in 0..n {
        for i in 0..n {
            d2[(i, j)] = if i == j {
                0.0
            } else {
                (diag[i] + diag[j] - 2.0 * d2[(i, j)]).max(0.0)
            };
        }
    }
    let mut pairs: Vec<f64> = Vec::with_capacity(n * (n - 1) / 2);
    for j in 0..n {
        for i in 0..j {
            pairs.push(d2[(i, j)]);
        }
    }
    let p = pairs.len();
    let order_stat = |v: &mut Vec<f64>, k: usize| -> f64 {
        let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
        *x
    };
    let med = match median {
        RbfMedian::DistinctPairs => {
            if p % 2 == 1 {
                order_stat(&mut pairs, p / 2)
            } else {
                0.5 * (order_stat(&mut pairs, p / 2 - 1) + order_stat(&mut pairs, p / 2))
            }
        }
        RbfMedian::IncludingDiagonal => {
            // n zeros, then every pair value twice; the median of those n² values.
            let total = n * n;
            let mut at = |q: usize| -> f64 {
                if q < n {
                    0.0
                } else {
                    order_stat(&mut pairs, (q - n) / 2)
                }
            };
            if total % 2 == 1 {
                at(total / 2)
            } else {
                0.5 * (at(total / 2 - 1) + at(total / 2))
            }
        }
    };
    if med <= 0.0 {
        return Err(Error::data(
            m.name(),
            "the median squared distance between rows is 0 (most rows are identical)",
            "RBF CKA needs distinct rows; remove duplicates or use linear CKA",
        ));
    }
    let scale = 1.0 / (2.0 * t * t * med);
    for j in 0..n {
        for i in 0..n {
            d2[(i, j)] = (-d2[(i, j)] * scale).exp();
        }
    }
    Ok((d2, med))
}

/// Double-centres a symmetric matrix in place: K − r_i − r_j + g.
fn double_centre(k: &mut Mat<f64>) {
    let n = k.nrows();
    let r: Vec<f64> = (0..n)
        .map(|j| (0..n).map(|i| k[(i, j)]).sum::<f64>() / n as f64)
        .collect();
    let g = r.iter().sum::<f64>() / n as f64;
    for j in 0..n {
        for i in 0..n {
            k[(i, j)] += g - r[i] - r[j];
        }
    }
}

/// RBF CKA (biased, on centred kernels) with bandwidth t relative to the median squared distance.
pub fn rbf_cka(x: &Matrix, y: &Matrix, t: f64, median: RbfMedian) -> Result<RbfCka> {
    check_pair(x, y)?;
    if !(t > 0.0 && t.is_finite()) {
        return Err(Error::param(
            Param::RbfThreshold,
            format!("t = {t} must be positive"),
            "use the default 1.0 or another positive value",
        ));
    }
    let (mut k, mx) = rbf_kernel(x, t, median)?;
    let (mut l, my) = rbf_kernel(y, t, median)?;
    double_centre(&mut k);
    double_centre(&mut l);
    let (biased, _) = cka_from_grams(&k, &l);
    Ok(RbfCka {
        value: biased,
        threshold: t,
        median,
        median_sq_dist_x: mx,
        median_sq_dist_y: my,
    })
}

/// Minibatch CKA (Nguyen et al. 2021): HSIC₁ terms averaged over batches of consecutive rows, then the ratio.
#[derive(Clone, Debug, Serialize)]
pub struct MinibatchCka {
    pub value: f64,
    pub batch_size: usize,
    pub n_batches: usize,
}

/// Minibatch debiased linear CKA over `n / batch` batches of consecutive rows (each has at least
/// `batch` rows; the remainder is spread over them). Memory is O(d²) per thread whatever n is.
pub fn minibatch_cka(x: &Matrix, y: &Matrix, batch: usize) -> Result<MinibatchCka> {
    check_pair(x, y)?;
    if batch < 4 {
        return Err(Error::param(
            Param::BatchSize,
            format!("{batch} rows per batch, but HSIC₁ needs at least 4"),
            "use a batch size of at least 4 (the default is 1000)",
        ));
    }
    let n = x.rows();
    let nb = (n / batch).max(1);
    let z = Joined::new(x, y)?;
    let (mut kl, mut kk, mut ll) = (0.0, 0.0, 0.0);
    for b in 0..nb {
        let (s, e) = (b * n / nb, (b + 1) * n / nb);
        let st = FeatureStats::from_source(&Window::new(&z, s, e), x.cols(), None, &Silent)?;
        let (a, c, d) = st.hsic1();
        kl += a;
        kk += c;
        ll += d;
    }
    Ok(MinibatchCka {
        value: kl / (kk * ll).sqrt(),
        batch_size: batch,
        n_batches: nb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn gauss(n: usize, d: usize, seed: u64) -> Matrix {
        let mut r = Rng::new(seed);
        Matrix::from_vec(n, d, (0..n * d).map(|_| r.normal() as f32).collect(), "g").unwrap()
    }

    /// Debiased HSIC₁ written out literally on n × n matrices, for comparison.
    fn literal(k: &Mat<f64>, l: &Mat<f64>) -> f64 {
        let n = k.nrows();
        let z = |m: &Mat<f64>| Mat::from_fn(n, n, |i, j| if i == j { 0.0 } else { m[(i, j)] });
        let (kt, lt) = (z(k), z(l));
        let mut tr = 0.0;
        let mut sk = 0.0;
        let mut sl = 0.0;
        for i in 0..n {
            for j in 0..n {
                tr += kt[(i, j)] * lt[(j, i)];
                sk += kt[(i, j)];
                sl += lt[(i, j)];
            }
        }
        let rk: Vec<f64> = (0..n).map(|i| (0..n).map(|j| kt[(i, j)]).sum()).collect();
        let rl: Vec<f64> = (0..n).map(|i| (0..n).map(|j| lt[(i, j)]).sum()).collect();
        let kl1: f64 = rk.iter().zip(&rl).map(|(a, b)| a * b).sum();
        hsic1_terms(n as f64, tr, sk, sl, kl1)
    }

    fn raw_gram(m: &Matrix) -> Mat<f64> {
        let a = linalg::to_f64(m, None);
        let mut k = Mat::<f64>::zeros(m.rows(), m.rows());
        linalg::gemm(
            k.as_mut(),
            false,
            a.as_ref(),
            a.as_ref().transpose(),
            1.0,
            false,
        );
        k
    }

    #[test]
    fn routes_agree_with_the_literal_formulas() {
        let x = gauss(37, 5, 1);
        let mut y = gauss(37, 8, 2);
        // Make Y depend on X and sit away from the origin.
        let yd: Vec<f32> = (0..37 * 8)
            .map(|t| y.as_slice()[t] + 2.0 * x.as_slice()[(t / 8) * 5 + (t % 5)] + 3.0)
            .collect();
        y = Matrix::from_vec(37, 8, yd, "y").unwrap();
        let f = linear_cka(&x, &y, Route::Feature, None).unwrap();
        let g = linear_cka(&x, &y, Route::Gram, None).unwrap();
        assert!((f.biased - g.biased).abs() < 1e-12, "{f:?} {g:?}");
        assert!((f.debiased - g.debiased).abs() < 1e-12, "{f:?} {g:?}");
        // Literal debiased on raw (uncentred) Grams.
        let (k, l) = (raw_gram(&x), raw_gram(&y));
        let lit = literal(&k, &l) / (literal(&k, &k) * literal(&l, &l)).sqrt();
        assert!((lit - f.debiased).abs() < 1e-12, "{lit} {}", f.debiased);
        // Minibatch with one batch is the full debiased value.
        let mb = minibatch_cka(&x, &y, 37).unwrap();
        assert_eq!(mb.n_batches, 1);
        assert!((mb.value - f.debiased).abs() < 1e-12);
        let mb3 = minibatch_cka(&x, &y, 10).unwrap();
        assert_eq!(mb3.n_batches, 3);
    }

    #[test]
    fn cka_is_invariant_to_rotation_and_isotropic_scaling() {
        let n = 200;
        let d = 16;
        let x = gauss(n, d, 5);
        // A random orthogonal Q from the SVD of a Gaussian matrix.
        let gm = gauss(d, d, 6);
        let svd = linalg::thin_svd(linalg::to_f64(&gm, None).as_ref()).unwrap();
        let mut q = Mat::<f64>::zeros(d, d);
        linalg::gemm(
            q.as_mut(),
            false,
            svd.u.as_ref(),
            svd.v.as_ref().transpose(),
            1.0,
            false,
        );
        let xf = linalg::to_f64(&x, None);
        let mut xq = Mat::<f64>::zeros(n, d);
        linalg::gemm(xq.as_mut(), false, xf.as_ref(), q.as_ref(), 1.0, false);
        let v: Vec<f32> = (0..n * d).map(|t| xq[(t / d, t % d)] as f32).collect();
        let y = Matrix::from_vec(n, d, v, "xq").unwrap();
        let s =
            Matrix::from_vec(n, d, x.as_slice().iter().map(|v| v * 3.5).collect(), "3.5x").unwrap();
        for route in [Route::Feature, Route::Gram] {
            let r = linear_cka(&x, &y, route, None).unwrap();
            // f32 storage of XQ limits agreement to about 1e-7.
            assert!(
                (r.biased - 1.0).abs() < 1e-6 && (r.debiased - 1.0).abs() < 1e-6,
                "{r:?}"
            );
            let r = linear_cka(&x, &s, route, None).unwrap();
            assert!(
                (r.biased - 1.0).abs() < 1e-12 && (r.debiased - 1.0).abs() < 1e-12,
                "{r:?}"
            );
        }
        let rbf = rbf_cka(&x, &s, 1.0, RbfMedian::DistinctPairs).unwrap();
        assert!((rbf.value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn debiased_cka_of_independent_gaussians_is_near_zero() {
        let x = gauss(100, 1000, 7);
        let y = gauss(100, 1000, 8);
        for route in [Route::Feature, Route::Gram] {
            let r = linear_cka(&x, &y, route, None).unwrap();
            assert!(r.debiased.abs() < 0.05, "{r:?}");
            assert!(r.biased > 0.5, "the biased CKA drifts towards 1: {r:?}");
        }
    }

    #[test]
    fn too_few_rows_and_mismatched_rows_are_errors() {
        let x = gauss(3, 2, 1);
        let e = linear_cka(&x, &x, Route::Feature, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 4 rows"), "{e}");
        let y = gauss(5, 2, 1);
        let e = linear_cka(&x, &y, Route::Feature, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 and 5 rows"), "{e}");
    }
}
