//! The decimation curve: TwoNN on seeded random subsets of size N, N/2, N/4, …
//! Noise inflates small-scale (large-N) estimates and curvature inflates large-scale (small-N) ones.
use serde::Serialize;

use super::suite::Distinct;
use super::twonn::TwoNN;
use crate::error::Result;
use crate::neighbors::{exact_knn, KnnGraph, Metric};
use crate::rng::Rng;

/// One level of the decimation curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct DecimationPoint {
    /// Points per subset.
    pub n: usize,
    /// Disjoint subsets averaged at this level.
    pub replicates: usize,
    /// Mean TwoNN (linear fit) over the subsets.
    pub d: f64,
    /// Standard deviation over subsets (the TwoNN regression error when there is one subset).
    pub spread: f64,
    /// Mean first-neighbour distance: the length scale this level probes.
    pub mean_r1: f64,
}

/// Largest subset that is copied and searched (the full set reuses the main graph).
const MAX_SUBSET: usize = 32_768;
/// Smallest subset on the curve.
const MIN_SUBSET: usize = 32;
/// Disjoint subsets per level at most.
const MAX_REPLICATES: usize = 8;

/// The curve from the full set's graph (first level) down to subsets of at least 32 points.
pub fn decimation(
    distinct: &Distinct<'_>,
    full: &KnnGraph,
    metric: Metric,
    discard_fraction: f64,
    seed: u64,
) -> Result<Vec<DecimationPoint>> {
    let twonn = TwoNN::default().discard_fraction(discard_fraction);
    let n = distinct.rows();
    let mut out = Vec::new();
    let e = twonn.fit(full)?;
    out.push(DecimationPoint {
        n,
        replicates: 1,
        d: e.value,
        spread: e.stderr.unwrap_or(0.0),
        mean_r1: full.rank_lengths(1).iter().sum::<f64>() / n as f64,
    });
    let mut perm: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut perm);
    let mut size = n / 2;
    while size >= MIN_SUBSET {
        if size <= MAX_SUBSET {
            let reps = (n / size).min(MAX_REPLICATES);
            let mut vals = Vec::with_capacity(reps);
            let mut r1 = 0.0;
            for r in 0..reps {
                let mut idx = perm[r * size..(r + 1) * size].to_vec();
                idx.sort_unstable();
                let sub = distinct.select(&idx)?;
                let g = exact_knn(&sub, 2, metric, None)?;
                vals.push(twonn.fit(&g)?.value);
                r1 += g.rank_lengths(1).iter().sum::<f64>() / size as f64;
            }
            let mean = vals.iter().sum::<f64>() / reps as f64;
            let spread = if reps > 1 {
                (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64).sqrt()
            } else {
                0.0
            };
            out.push(DecimationPoint {
                n: size,
                replicates: reps,
                d: mean,
                spread,
                mean_r1: r1 / reps as f64,
            });
        }
        size /= 2;
    }
    Ok(out)
}
