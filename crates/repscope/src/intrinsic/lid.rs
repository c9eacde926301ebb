//! Local intrinsic dimension per point (Amsaleg et al. 2015):
//! LID_i = −1 / ((1/k) Σ_{j=1}^{k} log(r_j / r_k)).
use super::log_ratio;
use crate::error::Param;
use crate::error::{Error, Result};
use crate::neighbors::KnnGraph;

/// Per-point LID MLE with k neighbours.
#[derive(Clone, Debug)]
pub struct Lid {
    pub k: usize,
}

impl Default for Lid {
    fn default() -> Self {
        Lid { k: 20 }
    }
}

impl Lid {
    /// LID of every point of the graph. A point whose k distances are all equal has no estimate (None).
    pub fn per_point(&self, graph: &KnnGraph) -> Result<Vec<Option<f64>>> {
        if self.k < 2 {
            return Err(Error::range(
                Param::K,
                self.k,
                "k ≥ 2 (20 is usual)",
                format!(
                    "LID is fitted to the k nearest distances and needs k ≥ 2, got {}",
                    self.k
                ),
            ));
        }
        if graph.k < self.k {
            return Err(Error::param(
                Param::K,
                format!(
                    "LID asks for {} neighbours but the graph has {}",
                    self.k, graph.k
                ),
                "build the graph with at least as many neighbours",
            ));
        }
        let k = self.k;
        Ok((0..graph.n)
            .map(|i| {
                let rk = graph.length(graph.dists(i)[k - 1]);
                let s: f64 = graph
                    .lengths(i)
                    .take(k)
                    .map(|rj| log_ratio(rk, rj))
                    .sum::<f64>()
                    / k as f64;
                (s > 0.0).then(|| 1.0 / s)
            })
            .collect())
    }
}
