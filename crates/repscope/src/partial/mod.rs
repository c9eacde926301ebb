//! Passes over rows wherever they live, and their partial results, serialized and merged.
//!
//! A streaming measure reads its rows only through passes it describes ([`Pass`]): the values of some rows,
//! the moments about a shift, the largest squared projections on a direction, the row hashes. Whoever holds
//! the rows runs the pass ([`Passes`]): [`Local`] over a [`RowSource`] in this process; a cluster by running
//! [`map`] on every shard (each shard knows the global number of its first row) and merging the partial
//! results ([`Partial::merge`]). Passes and partials have a byte form ([`Pass::encode`],
//! [`Partial::encode`]) to travel between processes.
//!
//! Every partial result carries the span of global rows it covers, and a merge takes only two adjacent
//! spans: a shard counted twice (a retried task whose first result also arrived) or left out is an error,
//! never a silently different number, and the merged result must cover every row. Sums are added in f64 in
//! the order the merges give, so a fixed merge tree (the shards' order) gives the same bits on every run;
//! another sharding changes only the last digits. Lists (largest values, rows, hashes) merge exactly.
mod codec;

use crate::activations::{self, ActivationSums, ActivationsPass};
use crate::classes::{self, ClassSums, RowClasses, ScatterPass, ScatterSums};
use crate::data::duplicates::{self, Duplicates, FirstEqual};
use crate::data::source::{Elem, RowSource};
use crate::data::Matrix;
use crate::error::Result;
use crate::moments::{self, MomentSums, MomentsPass};
use crate::progress::Progress;
use crate::sae::eval::{SaeEvalPass, SaeSums};
use crate::similarity::cka::{FeaturePass, FeatureStats};

pub use codec::corrupt;
pub(crate) use codec::{Reader, Writer};

/// A pass over every row of a source.
#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    /// The values of these rows (global numbers, ascending), as f64.
    Rows(Vec<u64>),
    /// The one-pass moments about a shift ([`moments`]).
    Moments(MomentsPass),
    /// The `top` largest of ((x·scale − mean)·v)² over the rows, and their sum.
    Projection {
        top: usize,
        scale: f64,
        mean: Vec<f64>,
        v: Vec<f64>,
    },
    /// Every row's hash ([`duplicates::row_hash`]).
    Hashes,
    /// The largest |value| (f64 sources; 0 for others).
    MaxAbs,
    /// The activation statistics ([`crate::activations`]).
    Activations(ActivationsPass),
    /// Σx over the rows as f32 values (as an SAE reads them), `batch` rows read at a time.
    ColumnSums { batch: usize },
    /// The class sums and counts ([`crate::classes`], pass 1).
    ClassMeans(RowClasses),
    /// The within-class scatter and votes ([`crate::classes`], pass 2).
    ClassScatter(Box<ScatterPass>),
    /// The feature-route sums of two representations read side by side ([`crate::similarity::cka`]).
    Features(FeaturePass),
    /// An SAE's evaluation sums ([`crate::sae::eval`]).
    SaeEval(Box<SaeEvalPass>),
}

/// What one pass found in some rows: the span of global rows it covers, and the result.
#[derive(Clone, Debug, PartialEq)]
pub struct Partial {
    /// Global rows start..end.
    pub span: (usize, usize),
    pub value: Found,
}

/// A pass's result over its span.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// The rows asked for that lie in the span (global numbers, ascending) and their values, row-major.
    Rows {
        d: usize,
        rows: Vec<u64>,
        values: Vec<f64>,
    },
    Moments(Box<MomentSums>),
    /// The `top` largest values (largest first) and the sum of all of them.
    Projection {
        top: usize,
        largest: Vec<f64>,
        sum: f64,
    },
    Hashes(Vec<u64>),
    MaxAbs(f64),
    Activations(Box<ActivationSums>),
    ColumnSums(Vec<f64>),
    ClassSums(Box<ClassSums>),
    ClassScatter(Box<ScatterSums>),
    Features(Box<FeatureStats>),
    SaeEval(Box<SaeSums>),
}

const TAG_ROWS: u8 = 1;
const TAG_MOMENTS: u8 = 2;
const TAG_PROJECTION: u8 = 3;
const TAG_HASHES: u8 = 4;
const TAG_MAX_ABS: u8 = 5;
const TAG_ACTIVATIONS: u8 = 6;
const TAG_COLUMN_SUMS: u8 = 7;
const TAG_CLASS_MEANS: u8 = 8;
const TAG_CLASS_SCATTER: u8 = 9;
const TAG_FEATURES: u8 = 10;
const TAG_SAE_EVAL: u8 = 11;
const TAG_FOUND: u8 = 0x80;

/// Rows read at once by the rows pass.
const READ_ROWS: usize = 4096;

impl Pass {
    /// The pass as bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Pass::Rows(rows) => {
                let mut w = Writer::new(TAG_ROWS);
                w.u64s(rows);
                w.finish()
            }
            Pass::Moments(m) => {
                let mut w = Writer::new(TAG_MOMENTS);
                m.encode(&mut w);
                w.finish()
            }
            Pass::Projection {
                top,
                scale,
                mean,
                v,
            } => {
                let mut w = Writer::new(TAG_PROJECTION);
                w.usize(*top).f64(*scale).f64s(mean).f64s(v);
                w.finish()
            }
            Pass::Hashes => Writer::new(TAG_HASHES).finish(),
            Pass::MaxAbs => Writer::new(TAG_MAX_ABS).finish(),
            Pass::Activations(a) => {
                let mut w = Writer::new(TAG_ACTIVATIONS);
                a.encode(&mut w);
                w.finish()
            }
            Pass::ColumnSums { batch } => {
                let mut w = Writer::new(TAG_COLUMN_SUMS);
                w.usize(*batch);
                w.finish()
            }
            Pass::ClassMeans(c) => {
                let mut w = Writer::new(TAG_CLASS_MEANS);
                c.encode(&mut w);
                w.finish()
            }
            Pass::ClassScatter(c) => {
                let mut w = Writer::new(TAG_CLASS_SCATTER);
                c.encode(&mut w);
                w.finish()
            }
            Pass::Features(f) => {
                let mut w = Writer::new(TAG_FEATURES);
                f.encode(&mut w);
                w.finish()
            }
            Pass::SaeEval(e) => {
                let mut w = Writer::new(TAG_SAE_EVAL);
                e.encode(&mut w);
                w.finish()
            }
        }
    }
    /// How many rows a pass of row values (its bytes) asks for, or None for any other pass, whose body
    /// (an SAE's weights, say) is not decoded to tell.
    pub fn rows_asked(b: &[u8]) -> Result<Option<usize>> {
        match Reader::open(b)?.0 {
            TAG_ROWS => match Pass::decode(b)? {
                Pass::Rows(rows) => Ok(Some(rows.len())),
                _ => unreachable!("a rows tag decodes to a rows pass"),
            },
            _ => Ok(None),
        }
    }

    /// A pass from its bytes.
    pub fn decode(b: &[u8]) -> Result<Pass> {
        let (tag, mut r) = Reader::open(b)?;
        let p = match tag {
            TAG_ROWS => Pass::Rows(r.u64s()?),
            TAG_MOMENTS => Pass::Moments(MomentsPass::decode(&mut r)?),
            TAG_PROJECTION => Pass::Projection {
                top: r.usize()?,
                scale: r.f64()?,
                mean: r.f64s()?,
                v: r.f64s()?,
            },
            TAG_HASHES => Pass::Hashes,
            TAG_MAX_ABS => Pass::MaxAbs,
            TAG_ACTIVATIONS => Pass::Activations(ActivationsPass::decode(&mut r)?),
            TAG_COLUMN_SUMS => Pass::ColumnSums { batch: r.usize()? },
            TAG_CLASS_MEANS => Pass::ClassMeans(RowClasses::decode(&mut r)?),
            TAG_CLASS_SCATTER => Pass::ClassScatter(Box::new(ScatterPass::decode(&mut r)?)),
            TAG_FEATURES => Pass::Features(FeaturePass::decode(&mut r)?),
            TAG_SAE_EVAL => Pass::SaeEval(Box::new(SaeEvalPass::decode(&mut r)?)),
            t => return Err(corrupt(format!("unknown pass {t}"))),
        };
        r.end()?;
        Ok(p)
    }

    /// The pass as one shard of global rows `span` needs it, when that is less than the whole pass: the
    /// rows asked for that lie in the span, the labels of its rows. None when the pass is the same for
    /// every shard.
    pub fn narrowed(&self, span: (usize, usize)) -> Option<Pass> {
        match self {
            Pass::Rows(rows) => {
                let lo = rows.partition_point(|&r| (r as usize) < span.0);
                let hi = rows.partition_point(|&r| (r as usize) < span.1);
                (hi - lo < rows.len()).then(|| Pass::Rows(rows[lo..hi].to_vec()))
            }
            Pass::ClassMeans(c) => c.narrowed(span).map(Pass::ClassMeans),
            Pass::ClassScatter(p) => p.classes.narrowed(span).map(|classes| {
                Pass::ClassScatter(Box::new(ScatterPass {
                    classes,
                    means: p.means.clone(),
                    classifier: p.classifier.clone(),
                }))
            }),
            _ => None,
        }
    }
}

/// The partial result of a shard of `rows` × `cols` whose first row is global row `first_row`, when the pass
/// needs none of its values (a rows pass whose rows all lie elsewhere), so that no one reads the shard;
/// None when the shard must be read.
pub fn without_reading(pass: &Pass, first_row: usize, rows: usize, cols: usize) -> Option<Partial> {
    let span = (first_row, first_row + rows);
    match pass {
        Pass::Rows(wanted)
            if !wanted
                .iter()
                .any(|&r| (r as usize) >= span.0 && (r as usize) < span.1) =>
        {
            Some(Partial {
                span,
                value: Found::Rows {
                    d: cols,
                    rows: Vec::new(),
                    values: Vec::new(),
                },
            })
        }
        _ => None,
    }
}

/// Runs `pass` over `src`, whose first row is global row `first_row`: the partial result of that shard.
pub fn map(
    pass: &Pass,
    src: &dyn RowSource,
    first_row: usize,
    progress: &dyn Progress,
) -> Result<Partial> {
    let (n, d) = (src.rows(), src.cols());
    let span = (first_row, first_row + n);
    let value = match pass {
        Pass::Rows(rows) => {
            let lo = rows.partition_point(|&r| (r as usize) < span.0);
            let hi = rows.partition_point(|&r| (r as usize) < span.1);
            let mine = &rows[lo..hi];
            let mut values = vec![0.0f64; mine.len() * d];
            // Runs of rows that lie close together are read at once.
            let mut a = 0;
            let mut buf = Vec::new();
            while a < mine.len() {
                let start = mine[a] as usize - first_row;
                let mut b = a + 1;
                while b < mine.len() && (mine[b] as usize - first_row) < start + READ_ROWS {
                    b += 1;
                }
                let count = mine[b - 1] as usize - first_row + 1 - start;
                buf.resize(count * d, 0.0);
                src.read_f64(start, count, &mut buf)?;
                for (i, &r) in mine[a..b].iter().enumerate() {
                    let at = r as usize - first_row - start;
                    values[(a + i) * d..(a + i + 1) * d]
                        .copy_from_slice(&buf[at * d..(at + 1) * d]);
                }
                a = b;
            }
            Found::Rows {
                d,
                rows: mine.to_vec(),
                values,
            }
        }
        Pass::Moments(m) => Found::Moments(Box::new(moments::sums(src, m, progress)?)),
        Pass::Projection {
            top,
            scale,
            mean,
            v,
        } => {
            let (largest, sum) = moments::top_of_pass(src, *top, progress, |x| {
                moments::squared_projection(x, *scale, mean, v)
            })?;
            Found::Projection {
                top: *top,
                largest,
                sum,
            }
        }
        Pass::Hashes => Found::Hashes(duplicates::hash_source(src, progress)?),
        Pass::MaxAbs => Found::MaxAbs(activations::max_abs(src, progress)?),
        Pass::Activations(a) => {
            Found::Activations(Box::new(activations::sums(src, a, first_row, progress)?))
        }
        Pass::ColumnSums { batch } => {
            Found::ColumnSums(crate::sae::eval::column_sums_f32(src, *batch, progress)?)
        }
        Pass::ClassMeans(c) => {
            Found::ClassSums(Box::new(classes::class_sums(src, c, first_row, progress)?))
        }
        Pass::ClassScatter(c) => Found::ClassScatter(Box::new(classes::scatter_sums(
            src, c, first_row, progress,
        )?)),
        Pass::Features(f) => Found::Features(Box::new(FeatureStats::sums(src, f, progress)?)),
        Pass::SaeEval(e) => Found::SaeEval(Box::new(crate::sae::eval::sums(src, e, progress)?)),
    };
    Ok(Partial { span, value })
}

impl Partial {
    /// The partial result of the union of two adjacent spans (in either order). Sums are added in f64,
    /// the earlier span's first; lists are merged exactly.
    pub fn merge(self, other: Partial) -> Result<Partial> {
        let (a, b) = if self.span.0 <= other.span.0 {
            (self, other)
        } else {
            (other, self)
        };
        if a.span.1 != b.span.0 {
            return Err(corrupt(format!(
                "the partial results of rows {}..{} and {}..{} are not adjacent: {}",
                a.span.0,
                a.span.1,
                b.span.0,
                b.span.1,
                if a.span.1 > b.span.0 {
                    "they overlap, so some rows would be counted twice"
                } else {
                    "the rows between them are missing"
                }
            )));
        }
        let span = (a.span.0, b.span.1);
        let value = match (a.value, b.value) {
            (
                Found::Rows {
                    d,
                    mut rows,
                    mut values,
                },
                Found::Rows {
                    d: d2,
                    rows: r2,
                    values: v2,
                },
            ) if d == d2 => {
                rows.extend(r2);
                values.extend(v2);
                Found::Rows { d, rows, values }
            }
            (Found::Moments(x), Found::Moments(y)) => Found::Moments(Box::new(x.merge(*y)?)),
            (
                Found::Projection {
                    top,
                    mut largest,
                    sum,
                },
                Found::Projection {
                    top: t2,
                    largest: l2,
                    sum: s2,
                },
            ) if top == t2 => {
                largest.extend(l2);
                largest.sort_by(|x, y| y.total_cmp(x));
                largest.truncate(top);
                Found::Projection {
                    top,
                    largest,
                    sum: sum + s2,
                }
            }
            (Found::Hashes(mut h), Found::Hashes(h2)) => {
                h.extend(h2);
                Found::Hashes(h)
            }
            (Found::MaxAbs(x), Found::MaxAbs(y)) => Found::MaxAbs(x.max(y)),
            (Found::Activations(x), Found::Activations(y)) => {
                Found::Activations(Box::new(x.merge(*y)?))
            }
            (Found::ColumnSums(mut x), Found::ColumnSums(y)) if x.len() == y.len() => {
                x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
                Found::ColumnSums(x)
            }
            (Found::ClassSums(x), Found::ClassSums(y)) => Found::ClassSums(Box::new(x.merge(*y)?)),
            (Found::ClassScatter(x), Found::ClassScatter(y)) => {
                Found::ClassScatter(Box::new(x.merge(*y)?))
            }
            (Found::Features(x), Found::Features(y)) => Found::Features(Box::new(x.merge(*y)?)),
            (Found::SaeEval(x), Found::SaeEval(y)) => Found::SaeEval(Box::new(x.merge(*y)?)),
            _ => {
                return Err(corrupt(
                    "two partial results of different passes cannot be merged",
                ))
            }
        };
        Ok(Partial { span, value })
    }

    /// Checks that the result covers rows 0..n, as the result of a whole pass must.
    pub fn covering(self, n: usize) -> Result<Partial> {
        if self.span != (0, n) {
            return Err(corrupt(format!(
                "the merged result covers rows {}..{}, not all {n} rows of the source",
                self.span.0, self.span.1
            )));
        }
        Ok(self)
    }

    /// The partial result as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TAG_FOUND);
        w.usize(self.span.0).usize(self.span.1);
        match &self.value {
            Found::Rows { d, rows, values } => {
                w.u64(TAG_ROWS as u64).usize(*d).u64s(rows).f64s(values);
            }
            Found::Moments(m) => {
                w.u64(TAG_MOMENTS as u64);
                m.encode(&mut w);
            }
            Found::Projection { top, largest, sum } => {
                w.u64(TAG_PROJECTION as u64)
                    .usize(*top)
                    .f64s(largest)
                    .f64(*sum);
            }
            Found::Hashes(h) => {
                w.u64(TAG_HASHES as u64).u64s(h);
            }
            Found::MaxAbs(m) => {
                w.u64(TAG_MAX_ABS as u64).f64(*m);
            }
            Found::Activations(a) => {
                w.u64(TAG_ACTIVATIONS as u64);
                a.encode(&mut w);
            }
            Found::ColumnSums(v) => {
                w.u64(TAG_COLUMN_SUMS as u64).f64s(v);
            }
            Found::ClassSums(c) => {
                w.u64(TAG_CLASS_MEANS as u64);
                c.encode(&mut w);
            }
            Found::ClassScatter(c) => {
                w.u64(TAG_CLASS_SCATTER as u64);
                c.encode(&mut w);
            }
            Found::Features(f) => {
                w.u64(TAG_FEATURES as u64);
                f.encode(&mut w);
            }
            Found::SaeEval(e) => {
                w.u64(TAG_SAE_EVAL as u64);
                e.encode(&mut w);
            }
        }
        w.finish()
    }

    /// A partial result from its bytes.
    pub fn decode(b: &[u8]) -> Result<Partial> {
        let (tag, mut r) = Reader::open(b)?;
        if tag != TAG_FOUND {
            return Err(corrupt("the bytes are a pass, not a partial result"));
        }
        let span = (r.usize()?, r.usize()?);
        if span.0 > span.1 {
            return Err(corrupt("a partial result's span ends before it starts"));
        }
        let len = span.1 - span.0;
        let value = match r.u64()? as u8 {
            TAG_ROWS => {
                let d = r.usize()?;
                let rows = r.u64s()?;
                let values = r.f64s()?;
                if values.len() != rows.len().saturating_mul(d) {
                    return Err(corrupt("rows and values of a rows result disagree"));
                }
                Found::Rows { d, rows, values }
            }
            TAG_MOMENTS => Found::Moments(Box::new(MomentSums::decode(&mut r)?)),
            TAG_PROJECTION => Found::Projection {
                top: r.usize()?,
                largest: r.f64s()?,
                sum: r.f64()?,
            },
            TAG_HASHES => {
                let h = r.u64s()?;
                if h.len() != len {
                    return Err(corrupt(
                        "a hashes result holds a different number of rows than its span",
                    ));
                }
                Found::Hashes(h)
            }
            TAG_MAX_ABS => Found::MaxAbs(r.f64()?),
            TAG_ACTIVATIONS => Found::Activations(Box::new(ActivationSums::decode(&mut r)?)),
            TAG_COLUMN_SUMS => Found::ColumnSums(r.f64s()?),
            TAG_CLASS_MEANS => Found::ClassSums(Box::new(ClassSums::decode(&mut r)?)),
            TAG_CLASS_SCATTER => Found::ClassScatter(Box::new(ScatterSums::decode(&mut r)?)),
            TAG_FEATURES => Found::Features(Box::new(FeatureStats::decode(&mut r)?)),
            TAG_SAE_EVAL => Found::SaeEval(Box::new(SaeSums::decode(&mut r)?)),
            t => return Err(corrupt(format!("unknown partial result {t}"))),
        };
        r.end()?;
        Ok(Partial { span, value })
    }
}

/// Rows that a measure reads through passes: in this process ([`Local`]) or on a cluster.
pub trait Passes: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// The name used in messages.
    fn name(&self) -> &str;
    /// The element type as stored.
    fn elem(&self) -> Elem;
    /// The shards behind the rows.
    fn shards(&self) -> usize;
    /// The result of `pass` over every row, merged.
    fn run(&self, pass: &Pass, progress: &dyn Progress) -> Result<Partial>;

    /// The duplicate rows from every row's hash ([`duplicates::find`]): the rows whose hash repeats are
    /// fetched by a rows pass and compared value by value.
    fn duplicates(
        &self,
        hashes: Vec<u64>,
        first_equal: bool,
        progress: &dyn Progress,
    ) -> Result<(Duplicates, Option<FirstEqual>)> {
        let n = self.rows();
        let wanted = duplicates::repeated_rows(&hashes);
        if wanted.is_empty() {
            return Ok((
                duplicates::none(n),
                first_equal.then(|| (0..n as u32).collect()),
            ));
        }
        let values = row_values(self, &wanted, progress)?;
        let rows = wanted;
        let sub = Matrix::from_f64(rows.len(), self.cols(), values, self.name())?;
        let sub_hashes: Vec<u64> = rows.iter().map(|&r| hashes[r as usize]).collect();
        let (found, first) = duplicates::find(&sub, sub_hashes, true, progress)?;
        Ok(duplicates::spread(
            found,
            first.expect("asked for"),
            &rows,
            n,
            first_equal,
        ))
    }
}

/// Every row's first equal row (the row itself when it is the first) and the duplicates found: a hashes
/// pass, then a rows pass over the rows whose hash repeats.
pub fn first_equal(p: &dyn Passes, progress: &dyn Progress) -> Result<(Duplicates, FirstEqual)> {
    let Found::Hashes(h) = p.run(&Pass::Hashes, progress)?.covering(p.rows())?.value else {
        return Err(corrupt("a hashes pass returned another result"));
    };
    let (dup, first) = p.duplicates(h, true, progress)?;
    Ok((dup, first.expect("asked for")))
}

/// The values of rows `wanted` (increasing global numbers), row-major, by a rows pass over every row.
pub fn row_values<P: Passes + ?Sized>(
    p: &P,
    wanted: &[u64],
    progress: &dyn Progress,
) -> Result<Vec<f64>> {
    let Found::Rows { rows, values, .. } = p
        .run(&Pass::Rows(wanted.to_vec()), progress)?
        .covering(p.rows())?
        .value
    else {
        return Err(corrupt("a rows pass returned another result"));
    };
    if rows != wanted {
        return Err(corrupt(
            "a rows pass returned other rows than it was asked for",
        ));
    }
    Ok(values)
}

/// The rows `rows` (increasing global numbers) by a rows pass, as one matrix in the source's precision
/// (f64 for f64 sources, f32 otherwise, as [`crate::data::source::gather`] gives them).
pub fn gathered(p: &dyn Passes, rows: &[usize], progress: &dyn Progress) -> Result<Matrix> {
    let wanted: Vec<u64> = rows.iter().map(|&r| r as u64).collect();
    let values = row_values(p, &wanted, progress)?;
    if p.elem() == Elem::F64 {
        Matrix::from_f64(rows.len(), p.cols(), values, p.name())
    } else {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        Matrix::from_vec(rows.len(), p.cols(), v, p.name())
    }
}

/// The error of a pass whose answer never came (the run was stopped).
pub fn stopped(name: &str) -> crate::Error {
    crate::Error::data(
        name,
        "the run was stopped before the passes over the rows were answered",
        "run it again",
    )
}

/// A row source in this process: each pass is one shard covering every row.
pub struct Local<'a>(pub &'a dyn RowSource);

impl Passes for Local<'_> {
    fn rows(&self) -> usize {
        self.0.rows()
    }
    fn cols(&self) -> usize {
        self.0.cols()
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn elem(&self) -> Elem {
        self.0.elem()
    }
    fn shards(&self) -> usize {
        self.0.shards()
    }
    fn run(&self, pass: &Pass, progress: &dyn Progress) -> Result<Partial> {
        map(pass, self.0, 0, progress)
    }
    fn duplicates(
        &self,
        hashes: Vec<u64>,
        first_equal: bool,
        progress: &dyn Progress,
    ) -> Result<(Duplicates, Option<FirstEqual>)> {
        duplicates::find(self.0, hashes, first_equal, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::Window;
    use crate::moments::{self, PassConfig};
    use crate::progress::Silent;
    use crate::rng::Rng;

    /// The passes of a source split into shards, as a cluster runs them: each shard mapped with its first
    /// row, the partial results sent as bytes and merged in the shards' order.
    struct Sharded<'a> {
        src: &'a Matrix,
        bounds: Vec<usize>,
    }

    impl Passes for Sharded<'_> {
        fn rows(&self) -> usize {
            self.src.rows()
        }
        fn cols(&self) -> usize {
            self.src.cols()
        }
        fn name(&self) -> &str {
            "sharded"
        }
        fn elem(&self) -> Elem {
            self.src.elem()
        }
        fn shards(&self) -> usize {
            self.bounds.len() - 1
        }
        fn run(&self, pass: &Pass, progress: &dyn Progress) -> Result<Partial> {
            let pass = Pass::decode(&pass.encode())?;
            let parts: Vec<Partial> = self
                .bounds
                .windows(2)
                .map(|w| {
                    let shard = Window::new(self.src, w[0], w[1]);
                    // Each shard gets the pass narrowed to its rows, as a cluster sends it.
                    let mine = pass.narrowed((w[0], w[1]));
                    if let Some(m) = &mine {
                        assert_eq!(&Pass::decode(&m.encode()).unwrap(), m);
                    }
                    let p = map(mine.as_ref().unwrap_or(&pass), &shard, w[0], progress).unwrap();
                    Partial::decode(&p.encode()).unwrap()
                })
                .collect();
            let mut it = parts.into_iter();
            let mut acc = it.next().unwrap();
            for p in it {
                acc = acc.merge(p)?;
            }
            Ok(acc)
        }
    }

    fn data(n: usize, d: usize) -> Matrix {
        let mut r = Rng::new(9);
        let mut v: Vec<f32> = (0..n * d)
            .map(|i| (r.normal() * (1.0 + (i % d) as f64) + 3.0) as f32)
            .collect();
        // Rows 10 and 1500 repeat row 7; row 2500 repeats row 1999 (across shards).
        for (dst, src) in [(10, 7), (1500, 7), (2500, 1999)]
            .into_iter()
            .filter(|p| p.0 < n)
        {
            let row: Vec<f32> = v[src * d..(src + 1) * d].to_vec();
            v[dst * d..(dst + 1) * d].copy_from_slice(&row);
        }
        Matrix::from_vec(n, d, v, "t").unwrap()
    }

    #[test]
    fn sharded_passes_give_the_single_process_moments_and_duplicates() {
        let m = data(3000, 9);
        let all = PassConfig {
            rows: true,
            unit_rows: true,
            unit_gram: true,
            row_hashes: true,
            chunk_rows: None,
        };
        let base = moments::moments(&m, &all, &Silent).unwrap();
        for bounds in [vec![0, 3000], vec![0, 1, 1000, 1000, 2999, 3000]] {
            let s = Sharded { src: &m, bounds };
            let got = moments::moments_of(&s, &all, &Silent).unwrap();
            assert_eq!(got.n, base.n);
            assert_eq!(got.top_deviations, base.top_deviations);
            assert_eq!(got.row_hashes, base.row_hashes);
            let (g, b) = (&got.scatter, &base.scatter);
            for i in 0..9 {
                assert!((got.mean[i] - base.mean[i]).abs() <= 1e-14 * base.mean[i].abs());
                for j in 0..9 {
                    let scale = (b[(i, i)] * b[(j, j)]).sqrt();
                    assert!((g[(i, j)] - b[(i, j)]).abs() <= 1e-13 * scale);
                }
            }
            let (dl, fl) = Local(&m)
                .duplicates(base.row_hashes.clone().unwrap(), true, &Silent)
                .unwrap();
            let (ds, fs) = s
                .duplicates(got.row_hashes.clone().unwrap(), true, &Silent)
                .unwrap();
            assert_eq!((dl.merged, dl.groups, &dl.largest), (3, 2, &ds.largest));
            assert_eq!((ds.merged, ds.groups), (3, 2));
            assert_eq!(fl, fs);
            assert_eq!(fs.unwrap()[2500], 1999);
        }
    }

    #[test]
    fn rows_asked_tells_a_rows_pass_from_the_others() {
        let rows = Pass::Rows(vec![0, 5, 9]).encode();
        assert_eq!(Pass::rows_asked(&rows).unwrap(), Some(3));
        assert_eq!(Pass::rows_asked(&Pass::Hashes.encode()).unwrap(), None);
        assert_eq!(
            Pass::rows_asked(&Pass::ColumnSums { batch: 4 }.encode()).unwrap(),
            None
        );
        // A cut rows pass and bytes that are no pass are errors.
        assert!(Pass::rows_asked(&rows[..rows.len() - 1]).is_err());
        assert!(Pass::rows_asked(b"not a pass").is_err());
    }

    #[test]
    fn merges_refuse_overlaps_gaps_and_partial_coverage() {
        let m = data(100, 3);
        let part =
            |a: usize, b: usize| map(&Pass::Hashes, &Window::new(&m, a, b), a, &Silent).unwrap();
        assert!(part(0, 50).merge(part(40, 100)).is_err(), "overlap");
        assert!(part(0, 50).merge(part(60, 100)).is_err(), "gap");
        let whole = part(50, 100).merge(part(0, 50)).unwrap();
        assert_eq!(whole.span, (0, 100));
        assert!(whole.clone().covering(100).is_ok());
        assert!(part(0, 50).covering(100).is_err());
        // Different passes do not merge, and damaged bytes are errors.
        let rows = map(
            &Pass::Rows(vec![3, 70]),
            &Window::new(&m, 50, 100),
            50,
            &Silent,
        )
        .unwrap();
        assert!(part(0, 50).merge(rows).is_err());
        let b = whole.encode();
        assert!(Partial::decode(&b[..b.len() - 1]).is_err());
        assert!(Partial::decode(&Pass::Hashes.encode()).is_err());
        assert!(Pass::decode(&b).is_err());
    }

    fn near(a: f64, b: f64, what: &str) {
        assert!(
            (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) || a == b,
            "{what}: {a} vs {b}"
        );
    }

    #[test]
    fn sharded_classes_compare_and_sae_sums_equal_the_single_process_ones() {
        use crate::classes::{self, ClassConfig};
        use crate::data::Labels;
        use crate::sae::{eval, Architecture, InputNorm, Sae};
        use crate::similarity::{self, CompareConfig};
        let m = data(3000, 9);
        let shardings = [vec![0, 3000], vec![0, 1, 1000, 1000, 2999, 3000]];
        // Classes: every measure over shards, each task holding only its labels.
        let labels =
            Labels::from_strings((0..3000).map(|i| ((i * 7) % 4).to_string()).collect(), true);
        let w = Matrix::from_vec(
            4,
            9,
            (0..36).map(|i| ((i * 5) % 7) as f32 - 3.0).collect(),
            "W",
        )
        .unwrap();
        let cl = classes::Classifier::new(&w, Some(&[0.5, 0.0, -0.5, 1.0]), 4, 9).unwrap();
        let cfg = ClassConfig::default();
        let base = classes::analyse_source(&m, &labels, Some(&cl), None, &cfg, &Silent).unwrap();
        // Features: the first 4 columns against the other 5.
        let ccfg = CompareConfig::default();
        let cbase = similarity::compare_passes(&Local(&m), 4, ("x", "y"), &ccfg, &Silent).unwrap();
        // An SAE of 12 latents over the 9 columns.
        let mut r = Rng::new(3);
        let wts: Vec<f32> = (0..12 * 9).map(|_| r.normal() as f32 / 3.0).collect();
        let sae = Sae {
            d: 9,
            n: 12,
            arch: Architecture::TopK,
            k: 3,
            w_enc_t: wts.clone(),
            b_enc: vec![0.1; 12],
            w_dec: wts,
            b_dec: vec![3.0; 9],
            threshold: None,
            apply_b_dec_to_input: true,
            input_norm: InputNorm::None,
        };
        let ecfg = eval::EvalConfig {
            batch: 700,
            ..Default::default()
        };
        let sbase = eval::evaluate(&sae, &m, &ecfg, &Silent).unwrap();
        for bounds in shardings {
            let s = Sharded { src: &m, bounds };
            let got = classes::analyse_passes(&s, &labels, Some(&cl), None, &cfg, &Silent).unwrap();
            assert_eq!(got.class_counts, base.class_counts);
            assert_eq!((got.ncc_accuracy, got.nc4), (base.ncc_accuracy, base.nc4));
            near(got.neural_collapse.nc1, base.neural_collapse.nc1, "nc1");
            near(got.cdnv, base.cdnv, "cdnv");
            near(got.nc3.unwrap(), base.nc3.unwrap(), "nc3");
            for (a, b) in got.per_class.iter().zip(&base.per_class) {
                near(a.within_variance, b.within_variance, "within variance");
            }
            let c = similarity::compare_passes(&s, 4, ("x", "y"), &ccfg, &Silent).unwrap();
            assert_eq!(c.measures.len(), cbase.measures.len());
            for (k, v) in &cbase.measures {
                near(c.measures[k], *v, k);
            }
            let e = eval::evaluate_passes(&sae, &s, &ecfg, &Silent).unwrap();
            assert_eq!((e.l0, e.dead_latents), (sbase.l0, sbase.dead_latents));
            assert_eq!(e.density, sbase.density);
            for (a, b, what) in [
                (e.fvu, sbase.fvu, "fvu"),
                (e.cosine, sbase.cosine, "cosine"),
                (
                    e.explained_variance_legacy,
                    sbase.explained_variance_legacy,
                    "ev",
                ),
                (
                    e.relative_reconstruction_bias,
                    sbase.relative_reconstruction_bias,
                    "bias",
                ),
            ] {
                near(a, b, what);
            }
        }
        // A label-carrying pass narrowed to a span outside its labels is refused, not read past its end.
        let classes = classes::RowClasses {
            c: 4,
            offset: 100,
            ids: vec![0; 50],
        };
        assert!(classes.narrowed((90, 120)).is_none());
        assert_eq!(classes.narrowed((120, 130)).unwrap().ids.len(), 10);
        let err = map(
            &Pass::ClassMeans(classes),
            &Window::new(&m, 0, 10),
            0,
            &Silent,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("rows 0..10 have no labels"),
            "{err}"
        );
        // A classifier as wide as something else is an error where the product would be taken, not a panic.
        let means = vec![0.0; 4 * 9];
        let narrow = classes::Classifier {
            w: vec![0.0; 4 * 5],
            rows: 4,
            cols: 5,
            b: vec![0.0; 4],
        };
        let scatter = Pass::ClassScatter(Box::new(classes::ScatterPass {
            classes: classes::RowClasses {
                c: 4,
                offset: 0,
                ids: vec![0; 10],
            },
            means,
            classifier: Some(narrow),
        }));
        let err = map(&scatter, &Window::new(&m, 0, 10), 0, &Silent).unwrap_err();
        assert!(err.to_string().contains("4 × 5"), "{err}");
        // Damaged pass bytes are errors.
        let b = Pass::SaeEval(Box::new(eval::SaeEvalPass {
            sae: sae.clone(),
            mean: vec![0.0; 9],
            batch: 7,
        }))
        .encode();
        for cut in [b.len() - 1, b.len() / 2, 20] {
            assert!(Pass::decode(&b[..cut]).is_err());
        }
    }
}
