//! Relative representations (Moschella et al. 2023): every row described by its cosine similarities to m
//! anchor rows shared by both spaces; the agreement is the mean cosine between a row's two relative vectors,
//! and the stitching accuracy is that of a classifier fit on one space's relative vectors and applied to the
//! other's.
use crate::error::Param;
use faer::Mat;
use serde::Serialize;

use crate::data::{Labels, Matrix};
use crate::error::{Error, Result};
use crate::linalg;
use crate::rng::Rng;

/// How anchors are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorMode {
    /// Rows 0..m.
    First,
    /// A seeded sample of m rows.
    Random,
}

/// Relative-representation agreement.
#[derive(Clone, Debug, Serialize)]
pub struct Relative {
    pub anchors: usize,
    pub anchor_mode: AnchorMode,
    /// Mean over all rows of cos(r_X(x), r_Y(x)).
    pub mean_cos: f64,
    /// The same mean over the rows that are not anchors.
    pub mean_cos_non_anchor: f64,
    pub stitching: Option<Stitching>,
}

/// Stitching accuracy of a nearest-class-centre classifier on relative vectors.
#[derive(Clone, Debug, Serialize)]
pub struct Stitching {
    /// The classifier: its definition and the split.
    pub variant: String,
    /// Fit on r_X of the training rows, applied to r_Y of the test rows.
    pub accuracy: f64,
    /// Fit and applied on r_X (the same-space reference).
    pub same_space_accuracy: f64,
    pub n_train: usize,
    pub n_test: usize,
}

/// The anchor rows.
pub fn anchors(n: usize, m: usize, mode: AnchorMode, seed: u64) -> Result<Vec<usize>> {
    if m == 0 || m > n {
        return Err(Error::param(
            Param::Anchors,
            format!("{m} anchors requested from {n} rows"),
            format!("choose 1 ≤ anchors ≤ {n}"),
        ));
    }
    Ok(match mode {
        AnchorMode::First => (0..m).collect(),
        AnchorMode::Random => {
            let mut v = Rng::new(seed).sample_indices(n, m);
            v.sort_unstable();
            v
        }
    })
}

fn unit_rows(m: &Matrix) -> Result<Vec<f64>> {
    let d = m.cols();
    let mut out = vec![0.0; m.rows() * d];
    for i in 0..m.rows() {
        let row = m.row(i);
        let Some(inv) = linalg::inverse_norm(row) else {
            return Err(Error::data(
                m.name(),
                format!("row {i} is all zeros, so its cosine to the anchors is undefined"),
                "remove zero rows first",
            ));
        };
        for (o, &v) in out[i * d..(i + 1) * d].iter_mut().zip(row) {
            *o = v as f64 * inv;
        }
    }
    Ok(out)
}

/// r(x) for every row: n × m cosines to the anchors.
pub fn relative_vectors(m: &Matrix, anchor_rows: &[usize]) -> Result<Mat<f64>> {
    let d = m.cols();
    let u = unit_rows(m)?;
    let mut a = vec![0.0; anchor_rows.len() * d];
    for (t, &i) in anchor_rows.iter().enumerate() {
        a[t * d..(t + 1) * d].copy_from_slice(&u[i * d..(i + 1) * d]);
    }
    let um = linalg::row_major(&u, m.rows(), d);
    let am = linalg::row_major(&a, anchor_rows.len(), d);
    let mut r = Mat::<f64>::zeros(m.rows(), anchor_rows.len());
    linalg::gemm(r.as_mut(), false, um, am.transpose(), 1.0, true);
    Ok(r)
}

fn row_cos(a: &Mat<f64>, b: &Mat<f64>, i: usize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for j in 0..a.ncols() {
        let (p, q) = (a[(i, j)], b[(i, j)]);
        ab += p * q;
        aa += p * p;
        bb += q * q;
    }
    if aa > 0.0 && bb > 0.0 {
        ab / (aa.sqrt() * bb.sqrt())
    } else {
        0.0
    }
}

/// Agreement of relative representations and, with labels, the stitching accuracy.
#[allow(clippy::needless_range_loop)]
pub fn relative(
    x: &Matrix,
    y: &Matrix,
    m: usize,
    mode: AnchorMode,
    seed: u64,
    labels: Option<&Labels>,
) -> Result<Relative> {
    let n = x.rows();
    let idx = anchors(n, m, mode, seed)?;
    let rx = relative_vectors(x, &idx)?;
    let ry = relative_vectors(y, &idx)?;
    let mut is_anchor = vec![false; n];
    idx.iter().for_each(|&i| is_anchor[i] = true);
    let (mut all, mut non, mut n_non) = (0.0, 0.0, 0usize);
    for i in 0..n {
        let c = row_cos(&rx, &ry, i);
        all += c;
        if !is_anchor[i] {
            non += c;
            n_non += 1;
        }
    }
    let stitching = match labels {
        Some(l) => Some(stitch(&rx, &ry, l, seed)?),
        None => None,
    };
    Ok(Relative {
        anchors: m,
        anchor_mode: mode,
        mean_cos: all / n as f64,
        mean_cos_non_anchor: if n_non > 0 {
            non / n_non as f64
        } else {
            f64::NAN
        },
        stitching,
    })
}

/// Nearest class centre on relative vectors, fit on a seeded 80% of the rows of X, tested on the other 20%.
fn stitch(rx: &Mat<f64>, ry: &Mat<f64>, labels: &Labels, seed: u64) -> Result<Stitching> {
    let n = rx.nrows();
    if labels.ids.len() != n {
        return Err(Error::data(
            "labels",
            format!("{} labels for {n} rows", labels.ids.len()),
            "pass exactly one label per row, in the same order",
        ));
    }
    let c = labels.n_classes();
    let m = rx.ncols();
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x5717_c41e).shuffle(&mut order);
    let n_train = (n * 4) / 5;
    let (train, test) = order.split_at(n_train);
    if test.is_empty() || train.is_empty() {
        return Err(Error::data(
            "labels",
            format!("{n} rows are too few to split into training and test rows"),
            "pass more rows",
        ));
    }
    let mut cent = vec![0.0; c * m];
    let mut cnt = vec![0usize; c];
    for &i in train {
        let k = labels.ids[i] as usize;
        cnt[k] += 1;
        for j in 0..m {
            cent[k * m + j] += rx[(i, j)];
        }
    }
    for k in 0..c {
        if cnt[k] > 0 {
            cent[k * m..(k + 1) * m]
                .iter_mut()
                .for_each(|v| *v /= cnt[k] as f64);
        }
    }
    let predict = |r: &Mat<f64>, i: usize| -> u32 {
        let mut best = (f64::INFINITY, 0u32);
        for k in 0..c {
            if cnt[k] == 0 {
                continue;
            }
            let d: f64 = (0..m).map(|j| (r[(i, j)] - cent[k * m + j]).powi(2)).sum();
            if d < best.0 {
                best = (d, k as u32);
            }
        }
        best.1
    };
    let acc = |r: &Mat<f64>| {
        test.iter()
            .filter(|&&i| predict(r, i) == labels.ids[i])
            .count() as f64
            / test.len() as f64
    };
    Ok(Stitching {
        variant: "nearest class centre (euclidean) on relative vectors; fit on r_X of a seeded 80% of rows, tested on the other 20%".into(),
        accuracy: acc(ry),
        same_space_accuracy: acc(rx),
        n_train: train.len(),
        n_test: test.len(),
    })
}
