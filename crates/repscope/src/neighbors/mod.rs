//! Neighbour graphs: exact blocked kNN, shared by every neighbour-based measure.
pub mod exact;
mod heap;
pub mod symmetric;

use serde::{Deserialize, Serialize};

pub use exact::exact_knn;

/// Distance between rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// ‖x − y‖.
    #[default]
    Euclidean,
    /// 1 − cos(x, y).
    Cosine,
}

impl Metric {
    /// Parses "euclidean" / "l2" or "cosine".
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "euclidean" | "l2" => Some(Metric::Euclidean),
            "cosine" | "cos" => Some(Metric::Cosine),
            _ => None,
        }
    }
    /// The name used in output.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

/// For every point its `k` nearest other points, ascending by distance (ties: smaller index first).
/// Indices refer to the rows of the matrix the graph was built on (the distinct rows of a dataset).
/// Distances are recomputed directly in f64, never taken from the ‖x‖²+‖y‖²−2x·y expansion.
#[derive(Clone, Debug)]
pub struct KnnGraph {
    pub n: usize,
    pub k: usize,
    pub metric: Metric,
    /// n × k, row-major.
    pub indices: Vec<u32>,
    /// n × k, row-major.
    pub distances: Vec<f64>,
}

impl KnnGraph {
    /// The neighbours of point `i`.
    #[inline]
    pub fn neighbors(&self, i: usize) -> &[u32] {
        &self.indices[i * self.k..(i + 1) * self.k]
    }
    /// The neighbour distances of point `i`.
    #[inline]
    pub fn dists(&self, i: usize) -> &[f64] {
        &self.distances[i * self.k..(i + 1) * self.k]
    }
    /// The distance from every point to its `j`-th neighbour (1-based rank).
    pub fn rank_column(&self, j: usize) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.distances[i * self.k + j - 1])
            .collect()
    }
    /// The same graph keeping only the first `k` neighbours.
    pub fn truncated(&self, k: usize) -> KnnGraph {
        let k = k.min(self.k);
        let mut indices = Vec::with_capacity(self.n * k);
        let mut distances = Vec::with_capacity(self.n * k);
        for i in 0..self.n {
            indices.extend_from_slice(&self.neighbors(i)[..k]);
            distances.extend_from_slice(&self.dists(i)[..k]);
        }
        KnnGraph {
            n: self.n,
            k,
            metric: self.metric,
            indices,
            distances,
        }
    }
}
