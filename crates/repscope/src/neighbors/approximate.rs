//! Approximate neighbours from an HNSW index: the HNSW plan of the neighbour engine. Its candidates go
//! through the same exact re-rank as the exact plans, but nothing certifies them: the graph says so
//! ([`Certificate::approximate`]) and carries the recall measured against the exact search.
use rayon::prelude::*;
use serde::Serialize;

use super::distance::{inverse_norms, Exact};
use super::exact::{knn_search, rerank};
use super::hnsw::{Hnsw, HnswParams};
use super::{check_k, Certificate, KnnGraph, Metric};
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rng::Rng;

/// ef_search raised to k when it is smaller (a search returns at most ef candidates), with a note saying so.
pub fn effective_ef(ef_search: usize, k: usize) -> (usize, Option<String>) {
    if ef_search < k {
        (
            k,
            Some(format!(
                "ef_search = {ef_search} is below k = {k}: raised to {k} (a search returns at most ef_search candidates)"
            )),
        )
    } else {
        (ef_search, None)
    }
}

/// How an approximate graph was made and how good it is.
#[derive(Clone, Debug, Serialize)]
pub struct ApproximateInfo {
    pub method: String,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub seed: u64,
    pub build_seconds: f64,
    pub search_seconds: f64,
    /// recall@k against the exact neighbours of a seeded sample of rows.
    pub sampled_recall: f64,
    pub recall_sample: usize,
    pub notes: Vec<String>,
}

/// The k nearest other rows of every row (self excluded), from an HNSW index instead of the exact search.
/// Distances of the neighbours found are recomputed exactly in f64 and sorted, as in the exact graph.
/// Recall is measured against the exact neighbours of `recall_sample` seeded rows.
pub fn approximate_knn(
    m: &Matrix,
    k: usize,
    metric: Metric,
    params: &HnswParams,
    ef_search: usize,
    recall_sample: usize,
    progress: &dyn Progress,
) -> Result<(KnnGraph, ApproximateInfo)> {
    let n = m.rows();
    check_k(k, n.saturating_sub(1))?;
    params.validate()?;
    let mut notes = Vec::new();
    let (ef, note) = effective_ef(ef_search, k + 1);
    notes.extend(note);
    let inv = match metric {
        Metric::Cosine => inverse_norms(m)?,
        Metric::Euclidean => Vec::new(),
    };
    progress.stage("HNSW build", n as u64);
    let adv = |x: usize| progress.advance(x as u64);
    let t0 = std::time::Instant::now();
    let index = Hnsw::build(m, metric, params, None, Some(&adv))?;
    let build_seconds = t0.elapsed().as_secs_f64();
    progress.finish_stage();
    progress.stage("HNSW search", n as u64);
    let t1 = std::time::Instant::now();
    let (found, _) = index.search_batch(m, k + 1, ef)?;
    let search_seconds = t1.elapsed().as_secs_f64();
    progress.finish_stage();
    let exact = Exact::within(metric, m, &inv);
    let rows: Vec<(Vec<u32>, Vec<f64>)> = (0..n)
        .into_par_iter()
        .map_init(Vec::new, |best, i| {
            let cand = &found[i * (k + 1)..(i + 1) * (k + 1)];
            let cands = cand
                .iter()
                .copied()
                .filter(|&j| j as usize != i && (j as usize) < n);
            rerank(&exact, i, cands, k, best);
            (
                best.iter().map(|x| x.1).collect(),
                best.iter().map(|x| x.0).collect(),
            )
        })
        .collect();
    let mut rows = rows;
    let short: Vec<usize> = (0..n).filter(|&i| rows[i].0.len() < k).collect();
    if !short.is_empty() {
        // The graph did not reach k other rows from these (a disconnected graph, tiny or clumped data):
        // they take their neighbours from the exact search instead.
        let q = m.select_rows(&short);
        let exact = knn_search(&q, m, k + 1, metric, false, None)?;
        for (r, &i) in short.iter().enumerate() {
            let (idx, dist): (Vec<u32>, Vec<f64>) = exact
                .neighbors(r)
                .iter()
                .zip(exact.dists(r))
                .filter(|(&j, _)| j as usize != i)
                .take(k)
                .map(|(&j, &d)| (j, d))
                .unzip();
            rows[i] = (idx, dist);
        }
        notes.push(format!(
            "{} rows reached fewer than {k} other rows through the HNSW graph; their neighbours come from the exact search",
            short.len()
        ));
    }
    if let Some(r) = rows.iter().find(|r| r.0.len() < k) {
        return Err(Error::Numerical {
            what: "approximate kNN".into(),
            problem: format!(
                "a row has {} of {k} neighbours after the exact search",
                r.0.len()
            ),
        });
    }
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for (i, d) in rows {
        indices.extend(i);
        distances.extend(d);
    }
    let graph = KnnGraph {
        n,
        k,
        metric,
        indices,
        distances,
        certificate: Certificate::approximate(n),
    };
    // Recall on a sample of rows against their exact neighbours.
    let s = recall_sample.min(n);
    let sampled_recall = if s > 0 {
        let idx = Rng::stream(params.seed, 0x5341_4D50).sample_indices(n, s);
        let q = m.select_rows(&idx);
        let exact = knn_search(&q, m, k + 1, metric, false, None)?;
        let mut hit = 0usize;
        for (r, &i) in idx.iter().enumerate() {
            let truth: Vec<u32> = exact
                .neighbors(r)
                .iter()
                .copied()
                .filter(|&j| j as usize != i)
                .take(k)
                .collect();
            hit += graph
                .neighbors(i)
                .iter()
                .filter(|j| truth.contains(j))
                .count();
        }
        hit as f64 / (s * k) as f64
    } else {
        f64::NAN
    };
    Ok((
        graph,
        ApproximateInfo {
            method: "hnsw".into(),
            m: params.m,
            ef_construction: index.params().ef_construction,
            ef_search: ef,
            seed: params.seed,
            build_seconds,
            search_seconds,
            sampled_recall,
            recall_sample: s,
            notes,
        },
    ))
}
