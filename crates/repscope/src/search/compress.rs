//! Smaller representations for search, and how much of the neighbour structure they keep.
//!
//! - PCA to m dimensions: centre on the reference mean, project on the top m covariance eigenvectors.
//! - Very sparse random projection (Li, Hastie & Church 2006): entries ±√(s/m) with probability 1/(2s)
//!   each and 0 otherwise, s = √D.
//! - Scalar quantization to b bits per value: per dimension, the reference range [min, max] is cut into
//!   2^b − 1 equal steps; the stored rows are decoded to the step values and the queries stay in full
//!   precision (asymmetric distance, as FAISS's scalar quantizer computes it).
//!
//! Recall@k compares the exact kNN in the reduced space with the exact kNN in the full space. For the cosine
//! metric the rows are L2-normalised first and the reduced space is compared by euclidean distance, which on
//! normalised rows ranks exactly as cosine does; so PCA to m = d (a rotation) keeps recall 1.
use crate::error::Param;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::Matrix;
use crate::decomposition::Principal;
use crate::error::{Error, Result};
use crate::linalg;
use crate::neighbors::exact::knn_search;
use crate::neighbors::{KnnGraph, Metric};
use crate::progress::{Progress, Silent};
use crate::rng::Rng;

/// A PCA projection fitted on reference rows.
#[derive(Clone, Debug)]
pub struct Pca {
    mean: Vec<f64>,
    /// d × m, column-major.
    basis: Vec<f64>,
    m: usize,
    /// Fraction of the variance the m components carry.
    pub explained: f64,
}

impl Pca {
    /// Fits the top `m` principal directions of `data` (1 ≤ m ≤ d).
    pub fn fit(data: &Matrix, m: usize) -> Result<Pca> {
        pca_width(m, data.cols())?;
        Pca::from_principal(&Principal::of(data, &Silent)?, m)
    }

    /// The top `m` directions of a decomposition already computed (1 ≤ m ≤ d).
    pub fn from_principal(p: &Principal, m: usize) -> Result<Pca> {
        pca_width(m, p.dims())?;
        Ok(Pca {
            mean: p.mean.clone(),
            basis: p.basis(m),
            m,
            explained: p.explained(m),
        })
    }
    /// The rows of `x` in the m principal coordinates.
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        if x.cols() != self.mean.len() {
            return Err(width_error(x, self.mean.len()));
        }
        let v = linalg::project_rows(x, Some(&self.mean), &self.basis, self.m);
        Matrix::from_vec(x.rows(), self.m, v, x.name())
    }
}

fn width_error(x: &Matrix, d: usize) -> Error {
    Error::data(
        x.name(),
        format!("{} columns, but the transform was fitted on {d}", x.cols()),
        "pass rows of the same width as the data",
    )
}

/// A very sparse random projection from d to m dimensions.
#[derive(Clone, Debug)]
pub struct SparseProjection {
    d: usize,
    m: usize,
    scale: f32,
    /// For every output, the inputs with weight +scale and with −scale.
    plus: Vec<Vec<u32>>,
    minus: Vec<Vec<u32>>,
}

impl SparseProjection {
    /// Draws the projection (seeded). A projection must reduce: m < d.
    pub fn new(d: usize, m: usize, seed: u64) -> Result<SparseProjection> {
        if m == 0 || m >= d {
            return Err(Error::param(
                Param::Dim,
                format!("a random projection to m = {m} dimensions of {d}-dimensional data does not reduce it"),
                format!("choose 1 ≤ m < {d}"),
            ));
        }
        let s = (d as f64).sqrt();
        let p = 1.0 / (2.0 * s);
        let mut rng = Rng::stream(seed, 0x5250); // "RP"
        let mut plus = vec![Vec::new(); m];
        let mut minus = vec![Vec::new(); m];
        for j in 0..m {
            for i in 0..d {
                let u = rng.uniform();
                if u < p {
                    plus[j].push(i as u32);
                } else if u < 2.0 * p {
                    minus[j].push(i as u32);
                }
            }
        }
        Ok(SparseProjection {
            d,
            m,
            scale: (s / m as f64).sqrt() as f32,
            plus,
            minus,
        })
    }
    /// Non-zero entries of the projection matrix.
    pub fn nnz(&self) -> usize {
        self.plus.iter().chain(&self.minus).map(|v| v.len()).sum()
    }
    /// The projected rows of `x`.
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        if x.cols() != self.d {
            return Err(width_error(x, self.d));
        }
        let m = self.m;
        let mut out = vec![0f32; x.rows() * m];
        out.par_chunks_mut(m).enumerate().for_each(|(i, dst)| {
            let row = x.row(i);
            for (j, o) in dst.iter_mut().enumerate() {
                let mut acc = 0f64;
                for &a in &self.plus[j] {
                    acc += row[a as usize] as f64;
                }
                for &a in &self.minus[j] {
                    acc -= row[a as usize] as f64;
                }
                *o = acc as f32 * self.scale;
            }
        });
        Matrix::from_vec(x.rows(), m, out, x.name())
    }
}

/// Per-dimension uniform scalar quantization.
#[derive(Clone, Debug)]
pub struct ScalarQuantizer {
    bits: u32,
    lo: Vec<f32>,
    step: Vec<f32>,
}

impl ScalarQuantizer {
    /// Fits the per-dimension ranges of `data`, for 1 ≤ bits ≤ 8.
    pub fn fit(data: &Matrix, bits: u32) -> Result<ScalarQuantizer> {
        if !(1..=8).contains(&bits) {
            return Err(Error::param(
                Param::Bits,
                format!("{bits} bits per value"),
                "choose a bit width from 1 to 8 (8 and 4 are the usual ones)",
            ));
        }
        let d = data.cols();
        let mut lo = vec![f32::INFINITY; d];
        let mut hi = vec![f32::NEG_INFINITY; d];
        for i in 0..data.rows() {
            for (j, &v) in data.row(i).iter().enumerate() {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        let levels = ((1u32 << bits) - 1) as f32;
        let step = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| if h > l { (h - l) / levels } else { 0.0 })
            .collect();
        Ok(ScalarQuantizer { bits, lo, step })
    }
    /// The codes of `x`, one byte per value (values outside the fitted range are clamped).
    pub fn encode(&self, x: &Matrix) -> Result<Vec<u8>> {
        if x.cols() != self.lo.len() {
            return Err(width_error(x, self.lo.len()));
        }
        let max = ((1u32 << self.bits) - 1) as f32;
        Ok(x.as_slice()
            .chunks_exact(x.cols())
            .flat_map(|row| {
                row.iter().enumerate().map(|(j, &v)| {
                    if self.step[j] > 0.0 {
                        ((v - self.lo[j]) / self.step[j]).round().clamp(0.0, max) as u8
                    } else {
                        0
                    }
                })
            })
            .collect())
    }
    /// The rows of `x` after a round trip through the codes.
    pub fn reconstruct(&self, x: &Matrix) -> Result<Matrix> {
        let codes = self.encode(x)?;
        let d = x.cols();
        let v = codes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let j = i % d;
                self.lo[j] + c as f32 * self.step[j]
            })
            .collect();
        Matrix::from_vec(x.rows(), d, v, x.name())
    }
    /// Bytes one row takes as packed codes.
    pub fn bytes_per_vector(&self) -> usize {
        (self.lo.len() * self.bits as usize).div_ceil(8)
    }
}

/// One point of a compression curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CompressionPoint {
    /// "full", "pca", "random_projection", "sq" or "pca+sq".
    pub method: String,
    /// Dimensions kept.
    pub dims: usize,
    /// Bits per value (32 for f32).
    pub bits: u32,
    /// Bytes per stored row (shared tables such as PCA bases or quantizer ranges not counted).
    pub bytes_per_vector: usize,
    /// Full-size bytes over these bytes.
    pub compression_ratio: f64,
    /// recall@k of the exact kNN in this representation against the exact kNN in the full space.
    pub recall: f64,
    /// Variance kept (PCA only).
    pub explained_variance: Option<f64>,
}

impl CompressionPoint {
    /// A short label such as "pca-64+sq8".
    pub fn label(&self) -> String {
        match self.method.as_str() {
            "full" => format!("full f32 ({}d)", self.dims),
            "pca" => format!("pca-{}", self.dims),
            "random_projection" => format!("rp-{}", self.dims),
            "sq" => format!("sq{}", self.bits),
            "pca+sq" => format!("pca-{}+sq{}", self.dims, self.bits),
            other => other.to_string(),
        }
    }
}

/// The advice drawn from a curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Advice {
    /// The recall the choice must keep.
    pub target_recall: f64,
    pub k: usize,
    /// The smallest representation keeping it (the full rows when nothing smaller does).
    pub choice: String,
    pub bytes_per_vector: usize,
    pub recall: f64,
    /// One sentence for the user.
    pub text: String,
}

/// Settings of a compression curve.
#[derive(Clone, Debug)]
pub struct CompressionConfig {
    /// Target dimensions for PCA and the random projection (each < d).
    pub dims: Vec<usize>,
    /// Bit widths for scalar quantization.
    pub bits: Vec<u32>,
    /// Also quantize each PCA projection to 8 bits.
    pub pca_sq: bool,
    pub seed: u64,
    pub target_recall: f64,
}

/// The default target dimensions for width d: d/2, d/4, 64 and 32, those below d, distinct, descending.
pub fn default_dims(d: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [d / 2, d / 4, 64, 32]
        .into_iter()
        .filter(|&m| m >= 1 && m < d)
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

/// A PCA keeps 1 ≤ m ≤ d directions (m = d is a rotation).
fn pca_width(m: usize, d: usize) -> Result<()> {
    if m == 0 || m > d {
        return Err(Error::param(
            Param::Dim,
            format!("PCA to m = {m} dimensions of {d}-dimensional data"),
            format!("choose 1 ≤ m ≤ {d}"),
        ));
    }
    Ok(())
}

/// Checks a list of target dimensions against the width: every m must satisfy 1 ≤ m < d.
pub fn check_dims(dims: &[usize], d: usize) -> Result<()> {
    if let Some(&m) = dims.iter().find(|&&m| m == 0 || m >= d) {
        return Err(Error::param(
            Param::Dims,
            format!(
                "a projection to m = {m} dimensions of {d}-dimensional data does not reduce it"
            ),
            format!("give target dimensions with 1 ≤ m < {d}"),
        ));
    }
    Ok(())
}

/// Mean over queries of |found ∩ truth| / k, both n × k row-major (ids beyond `k` columns ignored).
pub fn recall_at_k(found: &[u32], found_k: usize, truth: &KnnGraph, k: usize) -> f64 {
    let per = per_query_recall(found, found_k, truth, k);
    per.iter().sum::<f64>() / per.len().max(1) as f64
}

/// |found ∩ truth| / k for every query.
pub fn per_query_recall(found: &[u32], found_k: usize, truth: &KnnGraph, k: usize) -> Vec<f64> {
    let k = k.min(truth.k).min(found_k);
    (0..truth.n)
        .map(|i| {
            let t = &truth.neighbors(i)[..k];
            let f = &found[i * found_k..i * found_k + k];
            f.iter().filter(|x| t.contains(x)).count() as f64 / k as f64
        })
        .collect()
}

/// Copies of the rows scaled to unit length (zero rows stay zero).
fn normalised(x: &Matrix) -> Matrix {
    let d = x.cols();
    let mut v = x.as_slice().to_vec();
    linalg::normalise_rows(&mut v, d);
    Matrix::from_vec(x.rows(), d, v, x.name()).unwrap_or_else(|_| x.clone())
}

/// Recall@k of every representation in `cfg` against `truth` (the exact full-space kNN of `queries` in
/// `refs`, at least k columns), the full rows first, then advice.
pub fn compression_curve(
    refs: &Matrix,
    queries: &Matrix,
    truth: &KnnGraph,
    metric: Metric,
    k: usize,
    cfg: &CompressionConfig,
    progress: &dyn Progress,
) -> Result<(Vec<CompressionPoint>, Advice)> {
    let d = refs.cols();
    if queries.cols() != d {
        return Err(width_error(queries, d));
    }
    check_dims(&cfg.dims, d)?;
    for &b in &cfg.bits {
        if !(1..=8).contains(&b) {
            return Err(Error::param(
                Param::Bits,
                format!("{b} bits per value"),
                "choose bit widths from 1 to 8 (8 and 4 are the usual ones)",
            ));
        }
    }
    let (r, q) = match metric {
        Metric::Cosine => (normalised(refs), normalised(queries)),
        Metric::Euclidean => (refs.clone(), queries.clone()),
    };
    let full_bytes = 4 * d;
    let steps = 2 * cfg.dims.len() + cfg.bits.len() + if cfg.pca_sq { cfg.dims.len() } else { 0 };
    progress.stage("compression curves", steps as u64);
    let eval = |rr: &Matrix, qq: &Matrix| -> Result<f64> {
        let g = knn_search(qq, rr, k, Metric::Euclidean, false, None)?;
        let r = recall_at_k(&g.indices, g.k, truth, k);
        progress.advance(1);
        Ok(r)
    };
    let point =
        |method: &str, dims: usize, bits: u32, bytes: usize, recall: f64, ev| CompressionPoint {
            method: method.into(),
            dims,
            bits,
            bytes_per_vector: bytes,
            compression_ratio: full_bytes as f64 / bytes.max(1) as f64,
            recall,
            explained_variance: ev,
        };
    let mut pts = vec![point("full", d, 32, full_bytes, 1.0, None)];
    // One decomposition of the references for every dimension tried.
    let principal = Principal::of(&r, &Silent)?;
    for &m in &cfg.dims {
        let pca = Pca::from_principal(&principal, m)?;
        let (pr, pq) = (pca.transform(&r)?, pca.transform(&q)?);
        let rec = eval(&pr, &pq)?;
        pts.push(point("pca", m, 32, 4 * m, rec, Some(pca.explained)));
        if cfg.pca_sq {
            let sq = ScalarQuantizer::fit(&pr, 8)?;
            let rec = eval(&sq.reconstruct(&pr)?, &pq)?;
            pts.push(point(
                "pca+sq",
                m,
                8,
                sq.bytes_per_vector(),
                rec,
                Some(pca.explained),
            ));
        }
        let rp = SparseProjection::new(d, m, cfg.seed)?;
        let rec = eval(&rp.transform(&r)?, &rp.transform(&q)?)?;
        pts.push(point("random_projection", m, 32, 4 * m, rec, None));
    }
    for &b in &cfg.bits {
        let sq = ScalarQuantizer::fit(&r, b)?;
        let rec = eval(&sq.reconstruct(&r)?, &q)?;
        pts.push(point("sq", d, b, sq.bytes_per_vector(), rec, None));
    }
    progress.finish_stage();
    let advice = advise(&pts, cfg.target_recall, k);
    Ok((pts, advice))
}

/// The smallest representation whose recall reaches the target (ties: higher recall).
pub fn advise(pts: &[CompressionPoint], target: f64, k: usize) -> Advice {
    let best = pts.iter().filter(|p| p.recall >= target).min_by(|a, b| {
        a.bytes_per_vector
            .cmp(&b.bytes_per_vector)
            .then(b.recall.total_cmp(&a.recall))
    });
    match best {
        Some(p) if p.method != "full" => Advice {
            target_recall: target,
            k,
            choice: p.label(),
            bytes_per_vector: p.bytes_per_vector,
            recall: p.recall,
            text: format!(
                "{} keeps recall@{k} {:.3} ≥ {target} at {} bytes per vector ({:.1}× smaller than f32)",
                p.label(),
                p.recall,
                p.bytes_per_vector,
                p.compression_ratio
            ),
        },
        _ => {
            let full = pts.iter().find(|p| p.method == "full");
            Advice {
                target_recall: target,
                k,
                choice: full.map(|p| p.label()).unwrap_or_else(|| "full".into()),
                bytes_per_vector: full.map(|p| p.bytes_per_vector).unwrap_or(0),
                recall: 1.0,
                text: format!(
                    "no reduced representation tried keeps recall@{k} ≥ {target}: keep the full f32 rows"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_projection_has_the_expected_density_and_scale() {
        let p = SparseProjection::new(400, 100, 3).unwrap();
        // Expected non-zeros m·d/s = 100·400/20 = 2000.
        let nnz = p.nnz() as f64;
        assert!((nnz - 2000.0).abs() < 200.0, "{nnz}");
        assert!((p.scale - (20.0f32 / 100.0).sqrt()).abs() < 1e-6);
        assert!(SparseProjection::new(10, 10, 0).is_err());
    }

    #[test]
    fn quantizer_round_trip_error_is_half_a_step() {
        let mut r = Rng::new(2);
        let v: Vec<f32> = (0..2000 * 8).map(|_| r.uniform() as f32).collect();
        let m = Matrix::from_vec(2000, 8, v, "u").unwrap();
        let q = ScalarQuantizer::fit(&m, 4).unwrap();
        let back = q.reconstruct(&m).unwrap();
        let worst = m
            .as_slice()
            .iter()
            .zip(back.as_slice())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 0.5 / 15.0 + 1e-4, "{worst}");
        assert_eq!(q.bytes_per_vector(), 4);
        assert!(ScalarQuantizer::fit(&m, 9).is_err());
    }

    #[test]
    fn default_dims_are_below_d() {
        assert_eq!(default_dims(384), vec![192, 96, 64, 32]);
        assert_eq!(default_dims(64), vec![32, 16]);
        assert_eq!(default_dims(2), vec![1]);
    }

    #[test]
    fn subnormal_rows_normalise_to_unit_length() {
        // A norm of about 1e-44: its inverse (1e44) is beyond f32, so it must be applied in f64.
        let tiny = f32::from_bits(7);
        let m = Matrix::from_vec(3, 2, vec![tiny, tiny, 3.0, 4.0, 0.0, 0.0], "t").unwrap();
        let u = normalised(&m);
        let r = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            (u.row(0)[0] - r).abs() < 1e-6 && (u.row(0)[1] - r).abs() < 1e-6,
            "{:?}",
            u.row(0)
        );
        assert_eq!(u.row(1), &[0.6, 0.8]);
        assert_eq!(u.row(2), &[0.0, 0.0]);
    }
}
