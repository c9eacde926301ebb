//! A 2-D map of the points for the report: a seeded sample of the rows projected on the top two principal
//! directions of the one decomposition the spectrum was computed from (never decomposed again).
use serde::{Deserialize, Serialize};

use crate::data::{Labels, Matrix};
use crate::decomposition::Principal;
use crate::rng::Rng;

/// At most this many points are drawn: enough to see structure, few enough for a light page.
pub const MAP_POINTS: usize = 3000;

/// The points of the map.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointMap {
    pub method: String,
    /// Rows of the analysed matrix that were drawn (every row up to [`MAP_POINTS`], else a seeded sample).
    pub rows: Vec<usize>,
    /// Coordinates on the first and second principal directions, in the data's units.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// The class of each point (an index into the classes section's `class_names`), with labels.
    pub classes: Option<Vec<u32>>,
    /// The share of the variance on each of the two directions.
    pub explained: [f64; 2],
    pub seed: u64,
    /// Rows the points were drawn from.
    pub of_rows: usize,
}

/// The map of `m` (the rows `principal` was computed from), coloured by `labels` when given.
pub fn pca_map(
    m: &Matrix,
    principal: &Principal,
    labels: Option<&Labels>,
    seed: u64,
) -> Option<PointMap> {
    let (n, d) = (m.rows(), m.cols());
    if principal.dims() != d || principal.eigenvalues.len() < 2 || n == 0 {
        return None;
    }
    let rows = Rng::new(seed).sample_indices(n, MAP_POINTS);
    let basis = principal.basis(2);
    let (scale, mean) = (principal.scale, &principal.mean);
    let mut x = Vec::with_capacity(rows.len());
    let mut y = Vec::with_capacity(rows.len());
    let mut row = vec![0.0f64; d];
    for &i in &rows {
        m.row_f64_into(i, &mut row);
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for j in 0..d {
            let c = row[j] * scale - mean[j];
            a += c * basis[j];
            b += c * basis[d + j];
        }
        x.push(a / scale);
        y.push(b / scale);
    }
    let total: f64 = principal.eigenvalues.iter().sum();
    let share = |k: usize| {
        if total > 0.0 {
            principal.eigenvalues[k] / total
        } else {
            0.0
        }
    };
    Some(PointMap {
        method: "PCA: the rows, centred, projected on the top two principal directions of the covariance"
            .into(),
        classes: labels.map(|l| rows.iter().map(|&i| l.ids[i]).collect()),
        rows,
        x,
        y,
        explained: [share(0), share(1)],
        seed,
        of_rows: n,
    })
}
