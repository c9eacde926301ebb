//! The two streaming passes of the class geometry as mergeable partial results: the class sums and counts,
//! then the within-class scatter with the per-class spreads and the nearest-class-centre and classifier
//! votes. Each pass carries the class of every row it may read ([`RowClasses`]); a cluster narrows it to
//! each shard's rows ([`RowClasses::narrowed`]) so that no task receives every label.
use faer::Mat;
use rayon::prelude::*;

use super::{Classifier, BLOCK_ROWS};
use crate::data::source::{self, RowSource};
use crate::error::{Error, Result};
use crate::linalg;
use crate::moments::{add_lower, get_lower, put_lower};
use crate::partial::{corrupt, Reader, Writer};
use crate::progress::Progress;

/// The class of every row a pass may read: `ids[i]` (in 0..c) is the class of global row `offset + i`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowClasses {
    pub c: usize,
    pub offset: usize,
    pub ids: Vec<u32>,
}

impl RowClasses {
    /// The classes of global rows `span`, which must lie within these.
    fn of_span(&self, span: (usize, usize), name: &str) -> Result<&[u32]> {
        let end = self.offset + self.ids.len();
        if span.0 < self.offset || span.1 > end {
            return Err(Error::data(
                name,
                format!(
                    "rows {}..{} have no labels: the pass holds the labels of rows {}..{end}",
                    span.0, span.1, self.offset
                ),
                "pass one label per row",
            ));
        }
        Ok(&self.ids[span.0 - self.offset..span.1 - self.offset])
    }

    /// The classes of global rows `span` alone, or None when they do not lie within these.
    pub fn narrowed(&self, span: (usize, usize)) -> Option<RowClasses> {
        let ids = self.of_span(span, "").ok()?;
        Some(RowClasses {
            c: self.c,
            offset: span.0,
            ids: ids.to_vec(),
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.usize(self.c).usize(self.offset).u32s(&self.ids);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<RowClasses> {
        let (c, offset, ids) = (r.usize()?, r.usize()?, r.u32s()?);
        if ids.iter().any(|&k| k as usize >= c) {
            return Err(corrupt("a row's class is beyond the number of classes"));
        }
        Ok(RowClasses { c, offset, ids })
    }
}

/// Pass 1's sums over some rows: Σx and the count of every class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSums {
    pub d: usize,
    /// C × d, row-major.
    pub sums: Vec<f64>,
    pub counts: Vec<u64>,
}

impl ClassSums {
    /// The sums of these rows and then `next`'s.
    pub fn merge(mut self, next: ClassSums) -> Result<ClassSums> {
        if self.d != next.d || self.counts.len() != next.counts.len() {
            return Err(corrupt("class sums of different passes cannot be merged"));
        }
        self.sums
            .iter_mut()
            .zip(&next.sums)
            .for_each(|(a, b)| *a += b);
        self.counts
            .iter_mut()
            .zip(&next.counts)
            .for_each(|(a, b)| *a += b);
        Ok(self)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.usize(self.d).f64s(&self.sums).u64s(&self.counts);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ClassSums> {
        let (d, sums, counts) = (r.usize()?, r.f64s()?, r.u64s()?);
        if sums.len() != counts.len().saturating_mul(d) {
            return Err(corrupt("class sums and counts disagree"));
        }
        Ok(ClassSums { d, sums, counts })
    }
}

/// Pass 1 over `src`, whose first row is global row `first_row`: the class sums, added in row order.
pub fn class_sums(
    src: &dyn RowSource,
    classes: &RowClasses,
    first_row: usize,
    progress: &dyn Progress,
) -> Result<ClassSums> {
    let (n, d, c) = (src.rows(), src.cols(), classes.c);
    let ids = classes.of_span((first_row, first_row + n), src.name())?;
    let mut sums = vec![0.0f64; c * d];
    let mut counts = vec![0u64; c];
    progress.stage("class means (pass 1 of 2)", n as u64);
    source::for_each_chunk(src, source::chunk_rows(src), progress, |start, rows, x| {
        for (t, row) in x.chunks_exact(d).enumerate().take(rows) {
            let k = ids[start + t] as usize;
            counts[k] += 1;
            sums[k * d..(k + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(a, v)| *a += v);
        }
        Ok(())
    })?;
    progress.finish_stage();
    Ok(ClassSums { d, sums, counts })
}

/// Pass 2: the class means and the classifier, for the rows' classes.
#[derive(Clone, Debug, PartialEq)]
pub struct ScatterPass {
    pub classes: RowClasses,
    /// C × d, row-major.
    pub means: Vec<f64>,
    pub classifier: Option<Classifier>,
}

impl ScatterPass {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.classes.encode(w);
        w.f64s(&self.means);
        w.bool(self.classifier.is_some());
        if let Some(cl) = &self.classifier {
            w.usize(cl.rows).usize(cl.cols).f64s(&cl.w).f64s(&cl.b);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ScatterPass> {
        let classes = RowClasses::decode(r)?;
        let means = r.f64s()?;
        let classifier = if r.bool()? {
            let (rows, cols, w, b) = (r.usize()?, r.usize()?, r.f64s()?, r.f64s()?);
            if rows != classes.c || w.len() != rows.saturating_mul(cols) || b.len() != rows {
                return Err(corrupt("a classifier's shape does not match its values"));
            }
            Some(Classifier { w, rows, cols, b })
        } else {
            None
        };
        if classes.c == 0 || means.len() % classes.c != 0 {
            return Err(corrupt(
                "the class means do not match the number of classes",
            ));
        }
        Ok(ScatterPass {
            classes,
            means,
            classifier,
        })
    }
}

/// Pass 2's sums over some rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ScatterSums {
    pub d: usize,
    /// The lower triangle of Σ (x − μ_y)(x − μ_y)ᵀ.
    pub sw: Mat<f64>,
    /// Σ ‖x − μ_y‖² per class.
    pub spread: Vec<f64>,
    /// Rows of each class whose nearest class mean is their own.
    pub ncc_right: Vec<u64>,
    /// Rows whose classifier vote differs from their nearest class mean.
    pub nc4_diff: u64,
}

impl ScatterSums {
    /// The sums of these rows and then `next`'s.
    pub fn merge(self, next: ScatterSums) -> Result<ScatterSums> {
        if self.d != next.d || self.spread.len() != next.spread.len() {
            return Err(corrupt("scatter sums of different passes cannot be merged"));
        }
        let mut sw = Some(self.sw);
        add_lower(&mut sw, Some(next.sw))?;
        let add = |mut a: Vec<f64>, b: &[f64]| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        };
        Ok(ScatterSums {
            d: self.d,
            sw: sw.expect("kept"),
            spread: add(self.spread, &next.spread),
            ncc_right: self
                .ncc_right
                .iter()
                .zip(&next.ncc_right)
                .map(|(a, b)| a + b)
                .collect(),
            nc4_diff: self.nc4_diff + next.nc4_diff,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.usize(self.d);
        put_lower(w, &Some(self.sw.clone()));
        w.f64s(&self.spread)
            .u64s(&self.ncc_right)
            .u64(self.nc4_diff);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ScatterSums> {
        let d = r.usize()?;
        let sw = match get_lower(r, d)? {
            Some(g) => g,
            None if d == 0 => Mat::zeros(0, 0),
            None => return Err(corrupt("scatter sums without their matrix")),
        };
        let (spread, ncc_right, nc4_diff) = (r.f64s()?, r.u64s()?, r.u64()?);
        if spread.len() != ncc_right.len() {
            return Err(corrupt("scatter sums of different numbers of classes"));
        }
        Ok(ScatterSums {
            d,
            sw,
            spread,
            ncc_right,
            nc4_diff,
        })
    }
}

/// Pass 2 over `src`, whose first row is global row `first_row`. Row-wise work runs in fixed blocks whose
/// partial sums are added in order, so the sums do not depend on the number of threads.
#[allow(clippy::needless_range_loop)]
pub fn scatter_sums(
    src: &dyn RowSource,
    pass: &ScatterPass,
    first_row: usize,
    progress: &dyn Progress,
) -> Result<ScatterSums> {
    let (n, d, c) = (src.rows(), src.cols(), pass.classes.c);
    let ids = pass
        .classes
        .of_span((first_row, first_row + n), src.name())?;
    let means = &pass.means;
    if means.len() != c * d {
        return Err(corrupt("the class means do not match the rows' width"));
    }
    let classifier = pass.classifier.as_ref();
    if let Some(cl) = classifier {
        if cl.cols != d || cl.rows != c {
            return Err(Error::data(
                "classifier",
                format!(
                    "the classifier is {} × {}, but the data has {c} classes and {d} features",
                    cl.rows, cl.cols
                ),
                "pass one row of weights per class, as wide as the rows",
            ));
        }
    }
    let mean_sq: Vec<f64> = (0..c)
        .map(|k| means[k * d..(k + 1) * d].iter().map(|v| v * v).sum())
        .collect();
    let mt = linalg::row_major(means, c, d);
    let wm = classifier.map(|cl| linalg::row_major(&cl.w, cl.rows, cl.cols));
    let mut sw = Mat::<f64>::zeros(d, d);
    let mut spread = vec![0.0f64; c];
    let mut ncc_right = vec![0u64; c];
    let mut nc4_diff = 0u64;
    let mut r = Vec::new();
    progress.stage("within-class scatter (pass 2 of 2)", n as u64);
    source::for_each_chunk(src, source::chunk_rows(src), progress, |start, rows, x| {
        // x·μ_c and the logits for every row and class.
        let xm = linalg::row_major(x, rows, d);
        let mut dots = Mat::<f64>::zeros(rows, c);
        linalg::gemm(dots.as_mut(), false, xm, mt.transpose(), 1.0, true);
        let logits = wm.map(|w| {
            let mut z = Mat::<f64>::zeros(rows, c);
            linalg::gemm(z.as_mut(), false, xm, w.transpose(), 1.0, true);
            z
        });
        r.clear();
        r.resize(rows * d, 0.0);
        let parts: Vec<(Vec<f64>, Vec<u64>, u64)> = r
            .par_chunks_mut(BLOCK_ROWS * d)
            .zip(x.par_chunks(BLOCK_ROWS * d))
            .enumerate()
            .map(|(b, (rb, xb))| {
                let mut sp = vec![0.0f64; c];
                let mut right = vec![0u64; c];
                let mut diff = 0u64;
                for (u, (ro, xr)) in rb.chunks_exact_mut(d).zip(xb.chunks_exact(d)).enumerate() {
                    let t = b * BLOCK_ROWS + u;
                    let k = ids[start + t] as usize;
                    let mu = &means[k * d..(k + 1) * d];
                    let mut ss = 0.0;
                    let mut xx = 0.0;
                    for j in 0..d {
                        let v = xr[j] - mu[j];
                        ro[j] = v;
                        ss += v * v;
                        xx += xr[j] * xr[j];
                    }
                    sp[k] += ss;
                    let mut best = (f64::INFINITY, 0usize);
                    for q in 0..c {
                        let dist = xx - 2.0 * dots[(t, q)] + mean_sq[q];
                        if dist < best.0 {
                            best = (dist, q);
                        }
                    }
                    if best.1 == k {
                        right[k] += 1;
                    }
                    if let (Some(z), Some(cl)) = (logits.as_ref(), classifier) {
                        let mut top = (f64::NEG_INFINITY, 0usize);
                        for q in 0..c {
                            let v = z[(t, q)] + cl.b[q];
                            if v > top.0 {
                                top = (v, q);
                            }
                        }
                        if top.1 != best.1 {
                            diff += 1;
                        }
                    }
                }
                (sp, right, diff)
            })
            .collect();
        for (sp, right, diff) in parts {
            spread.iter_mut().zip(&sp).for_each(|(a, b)| *a += b);
            ncc_right.iter_mut().zip(&right).for_each(|(a, b)| *a += b);
            nc4_diff += diff;
        }
        linalg::accumulate_gram_rows(sw.as_mut(), &r, rows, d, true);
        Ok(())
    })?;
    progress.finish_stage();
    Ok(ScatterSums {
        d,
        sw,
        spread,
        ncc_right,
        nc4_diff,
    })
}
