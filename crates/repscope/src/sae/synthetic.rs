//! Data with a known sparse dictionary, and how well a learned decoder recovers it.
//!
//! Rows are x = Σ_f a_f v_f + noise over unit feature vectors v_f (orthonormal when there are at most d of
//! them), each feature firing independently with probability p and magnitude uniform in (0, 1] (as in
//! Sharkey et al. 2022 and SAELens' synthetic data). Recovery is measured by the mean max cosine (MMCS) and
//! the Hungarian-matched mean cosine (MCC) between true features and decoder rows.
use rayon::prelude::*;

use crate::rng::Rng;

/// A planted dictionary and rows drawn from it.
pub struct Planted {
    /// n_features × d, unit rows.
    pub features: Vec<f32>,
    pub n_features: usize,
    pub d: usize,
    /// rows × d.
    pub x: Vec<f32>,
    pub rows: usize,
}

/// Unit feature vectors, orthonormal (Gram–Schmidt on Gaussian vectors) when n ≤ d.
pub fn dictionary(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut f = vec![0.0f64; n * d];
    for i in 0..n {
        let mut g = Rng::stream(seed, i as u64);
        let mut v: Vec<f64> = (0..d).map(|_| g.normal()).collect();
        if n <= d {
            for j in 0..i {
                let u = &f[j * d..(j + 1) * d];
                let p: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= p * b);
            }
        }
        let s = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        f[i * d..(i + 1) * d]
            .iter_mut()
            .zip(&v)
            .for_each(|(o, a)| *o = a / s);
    }
    f.into_iter().map(|v| v as f32).collect()
}

/// `rows` rows from `n` planted features in d dimensions, each firing with probability `p`, plus Gaussian
/// noise of standard deviation `noise` per value.
pub fn planted(rows: usize, d: usize, n: usize, p: f64, noise: f64, seed: u64) -> Planted {
    let features = dictionary(n, d, seed);
    let mut x = vec![0.0f32; rows * d];
    x.par_chunks_mut(d).enumerate().for_each(|(r, out)| {
        let mut g = Rng::stream(seed ^ 0xDA7A, r as u64);
        let mut acc = vec![0.0f64; d];
        for f in 0..n {
            if g.uniform() < p {
                let a = 1.0 - g.uniform();
                let v = &features[f * d..(f + 1) * d];
                acc.iter_mut().zip(v).for_each(|(o, &b)| *o += a * b as f64);
            }
        }
        if noise > 0.0 {
            acc.iter_mut().for_each(|o| *o += noise * g.normal());
        }
        out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
    });
    Planted {
        features,
        n_features: n,
        d,
        x,
        rows,
    }
}

/// Cosines between the true features (rows of `a`, na × d) and decoder rows (`b`, nb × d): na × nb.
pub fn cosines(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    let unit = |w: &[f32]| -> Vec<f64> {
        w.chunks_exact(d)
            .flat_map(|r| {
                let s = r
                    .iter()
                    .map(|&v| (v as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    .max(1e-300);
                r.iter().map(move |&v| v as f64 / s)
            })
            .collect()
    };
    let (ua, ub) = (unit(a), unit(b));
    ua.par_chunks(d)
        .flat_map_iter(|x| {
            ub.chunks_exact(d)
                .map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The mean over true features of their largest cosine with any decoder row.
pub fn mmcs(cos: &[f64], na: usize, nb: usize) -> f64 {
    (0..na)
        .map(|i| {
            cos[i * nb..(i + 1) * nb]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum::<f64>()
        / na as f64
}

/// The assignment of each row to a distinct column (rows ≤ cols) that minimises the total cost: the
/// Hungarian algorithm with potentials, O(rows² · cols).
pub fn hungarian(cost: &[f64], rows: usize, cols: usize) -> Vec<usize> {
    assert!(rows <= cols);
    let inf = f64::INFINITY;
    let (mut u, mut v) = (vec![0.0; rows + 1], vec![0.0; cols + 1]);
    let mut p = vec![0usize; cols + 1];
    let mut way = vec![0usize; cols + 1];
    for i in 1..=rows {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; cols + 1];
        let mut used = vec![false; cols + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=cols {
                if !used[j] {
                    let cur = cost[(i0 - 1) * cols + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=cols {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assign = vec![0usize; rows];
    for j in 1..=cols {
        if p[j] > 0 {
            assign[p[j] - 1] = j - 1;
        }
    }
    assign
}

/// The mean cosine of the best one-to-one matching of true features to decoder rows (na ≤ nb).
pub fn mcc(cos: &[f64], na: usize, nb: usize) -> f64 {
    let cost: Vec<f64> = cos.iter().map(|c| -c).collect();
    let a = hungarian(&cost, na, nb);
    a.iter()
        .enumerate()
        .map(|(i, &j)| cos[i * nb + j])
        .sum::<f64>()
        / na as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_finds_the_best_assignment_by_brute_force() {
        let mut g = Rng::new(4);
        for _ in 0..50 {
            let (r, c) = (1 + g.below(4) as usize, 5usize);
            let cost: Vec<f64> = (0..r * c).map(|_| g.uniform()).collect();
            let a = hungarian(&cost, r, c);
            let got: f64 = a.iter().enumerate().map(|(i, &j)| cost[i * c + j]).sum();
            // Every injective assignment of r rows into 5 columns.
            let mut best = f64::INFINITY;
            let mut idx = vec![0usize; r];
            loop {
                let mut seen = [false; 5];
                if idx.iter().all(|&j| !std::mem::replace(&mut seen[j], true)) {
                    best = best.min(idx.iter().enumerate().map(|(i, &j)| cost[i * c + j]).sum());
                }
                let mut k = 0;
                while k < r {
                    idx[k] += 1;
                    if idx[k] < c {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == r {
                    break;
                }
            }
            assert!((got - best).abs() < 1e-12, "{got} vs {best}");
        }
    }

    #[test]
    fn a_dictionary_is_recovered_by_itself_and_not_by_noise() {
        let f = dictionary(20, 32, 1);
        let cos = cosines(&f, &f, 32);
        assert!((mcc(&cos, 20, 20) - 1.0).abs() < 1e-6);
        // Orthonormal: off-diagonal cosines vanish.
        assert!(cos
            .iter()
            .enumerate()
            .all(|(i, c)| i / 20 == i % 20 || c.abs() < 1e-6));
        let other = dictionary(20, 32, 2);
        let c2 = cosines(&f, &other, 32);
        assert!(mmcs(&c2, 20, 20) < 0.8);
    }
}
