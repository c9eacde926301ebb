//! Information imbalance (Glielmo et al. 2022; DADApy's `MetricComparisons`): how well the nearest
//! neighbours of one representation predict those of the other. Δ(A → B) = (2/N) Σ_i r^B_i / N, where
//! r^B_i is the rank, in B's distances from point i, of i's nearest neighbour in A (1 for B's own nearest).
//! Δ is near 0 when A's neighbourhoods are B's, and near 1 when they say nothing about them; it is
//! asymmetric by design: a space that holds more information predicts a coarser one, not the other way.
//!
//! Both the nearest neighbours (from the exact certified graph, ties to the smaller row index) and the
//! ranks are exact: a rank counts the rows strictly closer than the neighbour in exact f64 distances (so a
//! tie with the neighbour ranks in its favour), from one blocked product with the rounding bound.
use serde::Serialize;

use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::neighbors::distance::{inverse_norms, Exact};
use crate::neighbors::exact::rows_within;
use crate::neighbors::{exact_knn, Metric};

/// Both directions of the information imbalance.
#[derive(Clone, Debug, Serialize)]
pub struct InformationImbalance {
    /// Δ(X → Y): how far X's nearest neighbours rank in Y.
    pub x_to_y: f64,
    /// Δ(Y → X).
    pub y_to_x: f64,
    pub metric: Metric,
    pub n: usize,
}

/// The mean rank in `b` of every row's nearest neighbour in `a`, times 2/N.
fn one_way(a: &Matrix, b: &Matrix, metric: Metric) -> Result<f64> {
    let n = a.rows();
    let ga = exact_knn(a, 1, metric, None)?;
    let inv = match metric {
        Metric::Cosine => inverse_norms(b)?,
        Metric::Euclidean => Vec::new(),
    };
    let exact = Exact::within(metric, b, &inv);
    let radii: Vec<f64> = (0..n)
        .map(|i| exact.dist(i, ga.neighbors(i)[0] as usize))
        .collect();
    let closer = rows_within(b, metric, 1, |i| &radii[i..i + 1])?;
    let mean_rank = closer.iter().map(|&c| c as f64 + 1.0).sum::<f64>() / n as f64;
    Ok(2.0 * mean_rank / n as f64)
}

/// Δ(X → Y) and Δ(Y → X) for two representations of the same rows.
pub fn information_imbalance(
    x: &Matrix,
    y: &Matrix,
    metric: Metric,
) -> Result<InformationImbalance> {
    let n = x.rows();
    if n < 3 {
        return Err(Error::data(
            x.name(),
            format!("the information imbalance needs at least 3 rows, got {n}"),
            "pass more rows",
        ));
    }
    Ok(InformationImbalance {
        x_to_y: one_way(x, y, metric)?,
        y_to_x: one_way(y, x, metric)?,
        metric,
        n,
    })
}
