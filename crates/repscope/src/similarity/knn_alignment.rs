//! Neighbourhood agreement between two spaces: mutual kNN (Huh et al. 2024), its Jaccard form, and CKNNA,
//! all from the shared exact cosine kNN graphs (self excluded, ties to the smaller row index).
use crate::error::Param;
use serde::Serialize;

use super::cka::hsic1_terms;
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::neighbors::symmetric::exact_knn_cosine_self;
use crate::neighbors::{KnnGraph, Metric};

/// Mutual-kNN alignment.
#[derive(Clone, Debug, Serialize)]
pub struct MutualKnn {
    pub k: usize,
    pub metric: Metric,
    /// mean_i |N_X(i) ∩ N_Y(i)| / k.
    pub mean_overlap: f64,
    /// mean_i |N_X(i) ∩ N_Y(i)| / |N_X(i) ∪ N_Y(i)|.
    pub mean_jaccard: f64,
    /// The smallest distance gap between the k-th and (k+1)-th neighbour over both spaces: how close a
    /// neighbour set is to flipping. None when the graphs hold only k neighbours.
    pub min_gap_k_to_k_plus_1: Option<f64>,
    /// Points (over both spaces) whose gap is below 1e-9.
    pub n_points_gap_below_1e_9: usize,
}

/// Cosine kNN graphs of both spaces with k + 1 neighbours where possible (the extra one measures the gap).
pub fn graphs(
    x: &Matrix,
    y: &Matrix,
    k: usize,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<(KnnGraph, KnnGraph)> {
    if x.rows() != y.rows() {
        return Err(Error::data(
            format!("{} and {}", x.name(), y.name()),
            format!(
                "the two representations have {} and {} rows",
                x.rows(),
                y.rows()
            ),
            "pass the same inputs, in the same order, to both models or layers",
        ));
    }
    let n = x.rows();
    if k == 0 || k + 1 > n {
        return Err(Error::param(
            Param::K,
            format!("k = {k} neighbours but there are {n} rows"),
            format!("choose 1 ≤ k ≤ {}", n.saturating_sub(1)),
        ));
    }
    let kk = (k + 1).min(n - 1);
    let (gx, gy) = rayon::join(
        || exact_knn_cosine_self(x, kk, progress),
        || exact_knn_cosine_self(y, kk, progress),
    );
    Ok((gx?, gy?))
}

fn overlap(a: &[u32], b: &[u32]) -> usize {
    a.iter().filter(|i| b.contains(i)).count()
}

/// Mutual kNN and Jaccard over the first k neighbours of each graph.
pub fn mutual_knn(gx: &KnnGraph, gy: &KnnGraph, k: usize) -> MutualKnn {
    let n = gx.n;
    let (mut ov, mut jac) = (0.0, 0.0);
    for i in 0..n {
        let c = overlap(&gx.neighbors(i)[..k], &gy.neighbors(i)[..k]);
        ov += c as f64 / k as f64;
        jac += c as f64 / (2 * k - c) as f64;
    }
    let (mut gap, mut small) = (None::<f64>, 0usize);
    for g in [gx, gy] {
        if g.k > k {
            for i in 0..n {
                let d = g.dists(i);
                let v = d[k] - d[k - 1];
                gap = Some(gap.map_or(v, |m| m.min(v)));
                if v < 1e-9 {
                    small += 1;
                }
            }
        }
    }
    MutualKnn {
        k,
        metric: gx.metric,
        mean_overlap: ov / n as f64,
        mean_jaccard: jac / n as f64,
        min_gap_k_to_k_plus_1: gap,
        n_points_gap_below_1e_9: small,
    }
}

/// Sparse rows: for every i, (j, value) pairs.
type Sparse = Vec<Vec<(u32, f64)>>;

/// HSIC₁ of two sparse matrices with zero diagonals (possibly non-symmetric), as in Huh et al.'s code:
/// [Σ A∘Bᵀ + (1ᵀA1)(1ᵀB1)/((n−1)(n−2)) − 2·1ᵀAB1/(n−2)] / (n(n−3)).
fn sparse_hsic1(n: usize, a: &Sparse, b: &Sparse) -> f64 {
    let mut t1 = 0.0;
    let mut col_a = vec![0.0; n];
    let (mut sa, mut sb) = (0.0, 0.0);
    for (i, row) in a.iter().enumerate() {
        for &(j, v) in row {
            sa += v;
            col_a[j as usize] += v;
            if let Some(&(_, w)) = b[j as usize].iter().find(|e| e.0 as usize == i) {
                t1 += v * w;
            }
        }
    }
    let mut t3 = 0.0;
    for (j, row) in b.iter().enumerate() {
        let r: f64 = row.iter().map(|e| e.1).sum();
        sb += r;
        t3 += col_a[j] * r;
    }
    hsic1_terms(n as f64, t1, sa, sb, t3)
}

/// CKNNA: debiased CKA of the cosine-similarity Gram matrices restricted to pairs (i, j) where j is among
/// the k nearest neighbours of i in both spaces (Huh et al. 2024, without their +1e-6 in the denominator).
/// Works on the graphs only: O(n·k²), no n × n matrix.
pub fn cknna(gx: &KnnGraph, gy: &KnnGraph, k: usize) -> f64 {
    let n = gx.n;
    let rows = |g: &KnnGraph| -> Sparse {
        (0..n)
            .map(|i| {
                g.neighbors(i)[..k]
                    .iter()
                    .zip(&g.dists(i)[..k])
                    .map(|(&j, &d)| (j, 1.0 - d))
                    .collect()
            })
            .collect()
    };
    let (kx, ky) = (rows(gx), rows(gy));
    let mut mx: Sparse = Vec::with_capacity(n);
    let mut my: Sparse = Vec::with_capacity(n);
    for i in 0..n {
        let mut rx = Vec::new();
        let mut ry = Vec::new();
        for &(j, v) in &kx[i] {
            if let Some(&(_, w)) = ky[i].iter().find(|e| e.0 == j) {
                rx.push((j, v));
                ry.push((j, w));
            }
        }
        mx.push(rx);
        my.push(ry);
    }
    let kl = sparse_hsic1(n, &mx, &my);
    let kk = sparse_hsic1(n, &kx, &kx);
    let ll = sparse_hsic1(n, &ky, &ky);
    kl / (kk * ll).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn a_space_agrees_with_itself() {
        let mut r = Rng::new(2);
        let m =
            Matrix::from_vec(300, 8, (0..2400).map(|_| r.normal() as f32).collect(), "x").unwrap();
        let (gx, gy) = graphs(&m, &m, 10, None).unwrap();
        let mk = mutual_knn(&gx, &gy, 10);
        assert_eq!(mk.mean_overlap, 1.0);
        assert_eq!(mk.mean_jaccard, 1.0);
        assert!((cknna(&gx, &gy, 10) - 1.0).abs() < 1e-12);
        // Independent spaces agree little.
        let o =
            Matrix::from_vec(300, 8, (0..2400).map(|_| r.normal() as f32).collect(), "y").unwrap();
        let (gx, gy) = graphs(&m, &o, 10, None).unwrap();
        assert!(mutual_knn(&gx, &gy, 10).mean_overlap < 0.2);
    }
}
