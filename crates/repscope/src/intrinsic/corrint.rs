//! The correlation dimension at two scales (Grassberger and Procaccia 1983), as skdim's `CorrInt(k1=10,
//! k2=20)` and R's `ider::corint` define it: r₁ and r₂ are the medians over points of the k₁-th and k₂-th
//! neighbour distances, C(r) the share of ordered pairs closer than r, and the dimension is
//! (log C(r₂) − log C(r₁)) / (log r₂ − log r₁).
use serde_json::json;

use super::{Estimate, Summary};
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::exact::pairs_within;
use crate::neighbors::KnnGraph;

/// The two-scale correlation dimension.
#[derive(Clone, Copy, Debug)]
pub struct CorrInt {
    pub k1: usize,
    pub k2: usize,
}

impl Default for CorrInt {
    fn default() -> Self {
        CorrInt { k1: 10, k2: 20 }
    }
}

impl CorrInt {
    /// Fits on the rows the graph was built on: the radii from the graph, the pair counts from one exact
    /// pass over all pairs.
    pub fn fit(&self, data: &Matrix, graph: &KnnGraph) -> Result<Estimate> {
        if self.k1 < 1 || self.k2 <= self.k1 {
            return Err(Error::range(
                Param::K2,
                format!("k1 = {}, k2 = {}", self.k1, self.k2),
                "1 ≤ k1 < k2 (10 and 20 by default)",
                "the correlation dimension compares two neighbour orders",
            ));
        }
        super::local::check_graph_k(graph, self.k2, 2, "CorrInt")?;
        // Medians of the metric's distances (monotone in the lengths, so the same pairs fall below them).
        let r1 = Summary::of(&graph.rank_column(self.k1)).median;
        let r2 = Summary::of(&graph.rank_column(self.k2)).median;
        let counts = pairs_within(data, graph.metric, &[r1, r2])?;
        let (s1, s2) = (counts[0], counts[1]);
        let (l1, l2) = (graph.length(r1), graph.length(r2));
        if s1 == 0 || s2 <= s1 || l2 <= l1 {
            return Err(Error::data(
                "input",
                format!(
                    "the correlation sums do not grow between the two scales (C = {s1} and {s2} pairs below r = {l1:.4e} and {l2:.4e})"
                ),
                "the neighbour distances tie (quantised data): use larger k1 and k2",
            ));
        }
        let value = ((s2 as f64).ln() - (s1 as f64).ln()) / (l2 / l1).ln();
        let n = graph.n as f64;
        Ok(Estimate {
            estimator: "corrint".into(),
            variant: format!(
                "correlation dimension between the median {}-th and {}-th neighbour distances",
                self.k1, self.k2
            ),
            value,
            stderr: None,
            params: json!({
                "k1": self.k1, "k2": self.k2, "r1": l1, "r2": l2,
                "pairs_below_r1": s1, "pairs_below_r2": s2,
                "c_r1": s1 as f64 / (n * n), "c_r2": s2 as f64 / (n * n),
            }),
            notes: vec![],
        })
    }
}
