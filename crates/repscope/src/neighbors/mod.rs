//! Neighbour graphs: one engine behind every neighbour-based measure.
//!
//! A plan finds candidates: the one-sided blocked product ([`exact`]), the symmetric self search with its
//! projected variant ([`symmetric`]), or an HNSW index ([`hnsw`], approximate). One exact re-rank in f64
//! ([`distance`]) turns candidates into a [`KnnGraph`], and for the exact plans a certificate built on a
//! rigorous bound of the f32 rounding error ([`bound`]) proves, row by row, that no other row is closer.
//! Rows the candidate pass cannot certify are searched again by a range pass that admits every row the
//! bound cannot exclude, so the exact graph equals the float64 brute-force graph (ties to the smaller
//! index) on every row.
pub mod approximate;
mod bound;
pub mod distance;
pub mod exact;
mod heap;
pub mod hnsw;
pub mod partial;
mod space;
pub mod symmetric;

use crate::error::Param;
use serde::{Deserialize, Serialize};

pub use exact::{exact_knn, knn_search};

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

/// How a graph's rows were proven, or that they were not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Certificate {
    /// Whether every row is the exact k nearest (true for the exact plans, false for HNSW).
    pub exact: bool,
    /// Rows of the graph.
    pub rows: usize,
    /// Rows whose candidate pass already proved its list (the rounding bound excludes every other row).
    pub certified: usize,
    /// Rows searched again by the exact range pass because the candidate pass could not prove them.
    pub recomputed: usize,
    /// Rows whose f32 ranking keys overflowed (a query far outside the reference rows' range), so that no
    /// bound applies: every reference row's exact f64 distance was compared, which is exact by construction.
    pub exhaustive: usize,
    /// Rows whose candidates came from a PCA projection (proven by the projection's bound or recomputed).
    pub projected: usize,
    /// Searches merged into each row's list: 1 for one search; on a cluster, one per block of reference rows
    /// (0: no search yet). With more than one, the counts above are of (row, search) pairs, rows × pieces in all.
    #[serde(default, skip_serializing_if = "one_piece")]
    pub pieces: usize,
}

fn one_piece(p: &usize) -> bool {
    *p <= 1
}

impl Certificate {
    /// A graph whose rows are not proven (an approximate search).
    pub fn approximate(rows: usize) -> Self {
        Certificate {
            exact: false,
            rows,
            ..Certificate::default()
        }
    }
    /// Two certificates of disjoint row sets, as one.
    pub fn merged(self, other: Certificate) -> Certificate {
        Certificate {
            exact: self.exact && other.exact,
            rows: self.rows + other.rows,
            certified: self.certified + other.certified,
            recomputed: self.recomputed + other.recomputed,
            exhaustive: self.exhaustive + other.exhaustive,
            projected: self.projected + other.projected,
            pieces: self.pieces.max(other.pieces),
        }
    }
    /// Two certificates of searches of the same rows against disjoint reference rows, as one: the rows
    /// once, the counts and pieces of both (a certificate of no search has 0 pieces and 0 rows).
    pub fn joined(self, other: Certificate) -> Certificate {
        Certificate {
            rows: self.rows.max(other.rows),
            pieces: self.pieces + other.pieces,
            ..self.merged(other)
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
    /// How the rows were proven exact (or that they are approximate).
    pub certificate: Certificate,
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
    /// A distance of this graph as a length that is locally proportional to euclidean distance, which is
    /// what every ratio-based estimator (TwoNN, MLE, GRIDE, LID) must read: the euclidean distance itself,
    /// and for the cosine metric the chord √(2(1 − cos)) (1 − cos is half a squared length, and would halve
    /// every dimension).
    #[inline]
    pub fn length(&self, d: f64) -> f64 {
        match self.metric {
            Metric::Euclidean => d,
            Metric::Cosine => (2.0 * d).sqrt(),
        }
    }
    /// The neighbour distances of point `i` as lengths (see [`KnnGraph::length`]).
    pub fn lengths(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        self.dists(i).iter().map(move |&d| self.length(d))
    }
    /// The length (see [`KnnGraph::length`]) from every point to its `j`-th neighbour (1-based rank).
    pub fn rank_lengths(&self, j: usize) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.length(self.distances[i * self.k + j - 1]))
            .collect()
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
            certificate: self.certificate,
        }
    }

    /// The graph in the numbering of the input rows a dataset was deduplicated from: a duplicate row takes
    /// its representative's neighbours, and every index names the first occurrence of its distinct row.
    /// Returns (indices, distances as `dist` maps them), n_input × k, row-major.
    pub fn to_input_rows<T>(
        &self,
        dedup: &crate::data::Dedup,
        dist: impl Fn(f64) -> T,
    ) -> (Vec<u32>, Vec<T>) {
        let n = dedup.representative.len();
        let mut indices = Vec::with_capacity(n * self.k);
        let mut distances = Vec::with_capacity(n * self.k);
        for &r in &dedup.representative {
            let r = r as usize;
            indices.extend(self.neighbors(r).iter().map(|&j| dedup.kept[j as usize]));
            distances.extend(self.dists(r).iter().map(|&d| dist(d)));
        }
        (indices, distances)
    }

    /// A per-distinct-row value (such as LID) for every input row: duplicates take their representative's.
    pub fn per_input_row<T: Copy>(values: &[T], dedup: &crate::data::Dedup) -> Vec<T> {
        dedup
            .representative
            .iter()
            .map(|&r| values[r as usize])
            .collect()
    }
}

/// Checks that `k` neighbours can be found among `available` candidates per row.
pub(crate) fn check_k(k: usize, available: usize) -> crate::error::Result<()> {
    if k == 0 || k > available {
        return Err(if available == 0 {
            crate::error::Error::param(
                Param::K,
                format!("k = {k} but there are no candidate neighbours"),
                "pass at least two distinct rows",
            )
        } else {
            crate::error::Error::range(
                Param::K,
                k,
                format!("1 ≤ k ≤ {available}"),
                format!("k = {k} but there are {available} candidate neighbours per point"),
            )
        });
    }
    Ok(())
}
