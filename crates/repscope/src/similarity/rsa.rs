//! Representational similarity analysis: RDM_ij = 1 − Pearson(x_i, x_j) between rows, and the Spearman
//! correlation (average ranks for ties) of the two upper triangles.
use faer::Mat;
use rayon::prelude::*;

use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::linalg;

/// The upper triangle (i < j, row by row) of 1 − Pearson between rows.
pub fn rdm_upper(m: &Matrix) -> Result<Vec<f64>> {
    let (n, d) = (m.rows(), m.cols());
    let mut z = vec![0.0f64; n * d];
    for i in 0..n {
        let row = m.row(i);
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let out = &mut z[i * d..(i + 1) * d];
        let mut ss = 0.0;
        for (o, &v) in out.iter_mut().zip(row) {
            *o = v as f64 - mean;
            ss += *o * *o;
        }
        if ss <= 0.0 {
            return Err(Error::data(
                m.name(),
                format!(
                    "row {i} is constant, so its Pearson correlation with other rows is undefined"
                ),
                "remove constant rows before RSA",
            ));
        }
        let inv = 1.0 / ss.sqrt();
        out.iter_mut().for_each(|v| *v *= inv);
    }
    let zm = linalg::row_major(&z, n, d);
    let mut g = Mat::<f64>::zeros(n, n);
    linalg::gemm(g.as_mut(), false, zm, zm.transpose(), 1.0, true);
    let mut out = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            out.push(1.0 - g[(i, j)]);
        }
    }
    Ok(out)
}

/// Average ranks (1-based), ties sharing the mean of their positions.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.par_sort_unstable_by(|&a, &b| v[a as usize].total_cmp(&v[b as usize]));
    let mut ranks = vec![0.0; v.len()];
    let mut s = 0;
    while s < idx.len() {
        let mut e = s + 1;
        while e < idx.len() && v[idx[e] as usize] == v[idx[s] as usize] {
            e += 1;
        }
        let r = (s + e + 1) as f64 / 2.0;
        for &i in &idx[s..e] {
            ranks[i as usize] = r;
        }
        s = e;
    }
    ranks
}

/// Pearson correlation of two equal-length vectors.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (p, q) = (x - ma, y - mb);
        sab += p * q;
        saa += p * p;
        sbb += q * q;
    }
    sab / (saa.sqrt() * sbb.sqrt())
}

/// Spearman correlation of the two RDMs.
pub fn rsa_spearman(x: &Matrix, y: &Matrix) -> Result<f64> {
    let (a, b) = (rdm_upper(x)?, rdm_upper(y)?);
    let (ra, rb) = rayon::join(|| average_ranks(&a), || average_ranks(&b));
    Ok(pearson(&ra, &rb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn rdm_of_a_monotone_copy_gives_one() {
        let x = Matrix::from_vec(
            4,
            3,
            vec![1., 2., 4., 0., 1., 0., 3., 1., 2., 5., 5., 1.],
            "x",
        )
        .unwrap();
        let r = rsa_spearman(&x, &x).unwrap();
        assert!((r - 1.0).abs() < 1e-15);
        let rdm = rdm_upper(&x).unwrap();
        assert_eq!(rdm.len(), 6);
    }
}
