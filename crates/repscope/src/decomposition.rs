//! The one decomposition of a source: the covariance from its moments pass and the covariance's
//! eigendecomposition, computed once and handed to every measure that needs principal directions: the
//! spectrum and the PCA rules, the search study's PCA at every dimension it tries, and the neighbour
//! engine's projected candidate plan.
use faer::Mat;

use crate::data::source::RowSource;
use crate::error::Result;
use crate::linalg;
use crate::moments::{self, Moments};
use crate::progress::Progress;

/// Principal directions of a source.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Rows.
    pub n: usize,
    /// Column means (of the rows times `scale`).
    pub mean: Vec<f64>,
    /// Covariance eigenvalues (divided by n − 1), largest first; rounding below 0 is clipped to 0.
    pub eigenvalues: Vec<f64>,
    /// The eigenvectors, as columns in the order of the eigenvalues.
    pub vectors: Mat<f64>,
    /// [`Moments::scale`]: the power of two the rows were multiplied by (1 unless they are f64 values whose
    /// squares would underflow); divide an eigenvalue by scale² for the data's own units.
    pub scale: f64,
}

impl Principal {
    /// One pass over `src` for its covariance, then its eigendecomposition.
    pub fn of(src: &dyn RowSource, progress: &dyn Progress) -> Result<Principal> {
        let cfg = moments::PassConfig::SCATTER;
        Principal::from_moments(&moments::moments(src, &cfg, progress)?)
    }

    /// The eigendecomposition of moments already taken (they must hold the rows' scatter).
    pub fn from_moments(mom: &Moments) -> Result<Principal> {
        let (vals, vectors) = linalg::sym_eigen_desc(mom.covariance().as_ref())?;
        Ok(Principal {
            n: mom.n,
            mean: mom.mean.clone(),
            eigenvalues: vals.iter().map(|&v| v.max(0.0)).collect(),
            vectors,
            scale: mom.scale,
        })
    }

    /// Width of the rows.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// The leading `m` directions as a d × m basis, direction c at `c·d..(c + 1)·d` (the layout of
    /// [`linalg::project_rows`]).
    pub fn basis(&self, m: usize) -> Vec<f64> {
        let d = self.dims();
        let mut b = Vec::with_capacity(d * m);
        for c in 0..m {
            b.extend((0..d).map(|r| self.vectors[(r, c)]));
        }
        b
    }

    /// The share of the variance the leading `m` directions carry (1 for data without variance).
    pub fn explained(&self, m: usize) -> f64 {
        let total: f64 = self.eigenvalues.iter().sum();
        if total > 0.0 {
            self.eigenvalues[..m.min(self.eigenvalues.len())]
                .iter()
                .sum::<f64>()
                / total
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Matrix;
    use crate::progress::Silent;
    use crate::rng::Rng;

    #[test]
    fn directions_of_a_planted_ellipsoid() {
        // Axis variances 9, 4, 1 along three orthogonal directions rotated by 45° in the (0, 1) plane.
        let (n, d) = (20_000, 3);
        let mut r = Rng::new(5);
        let c = std::f64::consts::FRAC_1_SQRT_2;
        let mut v = Vec::with_capacity(n * d);
        for _ in 0..n {
            let (a, b, e) = (3.0 * r.normal(), 2.0 * r.normal(), r.normal());
            v.extend([
                (c * a - c * b + 10.0) as f32,
                (c * a + c * b) as f32,
                e as f32,
            ]);
        }
        let m = Matrix::from_vec(n, d, v, "t").unwrap();
        let p = Principal::of(&m, &Silent).unwrap();
        for (got, want) in p.eigenvalues.iter().zip([9.0, 4.0, 1.0]) {
            assert!((got - want).abs() < 0.05 * want, "{got} against {want}");
        }
        let b = p.basis(2);
        // The first direction is ±(1, 1, 0)/√2, the second ±(−1, 1, 0)/√2.
        assert!(
            (b[0].abs() - c).abs() < 0.01 && (b[1].abs() - c).abs() < 0.01 && b[2].abs() < 0.01
        );
        assert!(b[0] * b[1] > 0.0 && b[3] * b[4] < 0.0);
        assert!((p.mean[0] - 10.0).abs() < 0.1);
        let e2 = p.explained(2);
        let want = 13.0 / 14.0;
        assert!((e2 - want).abs() < 0.01, "{e2}");
        assert_eq!(p.explained(3), 1.0);
    }
}
