//! SAE evaluation in two streamed passes with f64 accumulators: the mean of the activations, then every
//! reconstruction and sparsity metric. Sums run over rows in row order, so the numbers are the same for any
//! thread count and any block size.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::Serialize;

use super::source::RowSource;
use super::{Architecture, InputNorm, Sae};
use crate::error::{Error, Result};
use crate::partial::{corrupt, Found, Local, Pass, Passes, Reader, Writer};
use crate::progress::Progress;

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Rows read and encoded at a time.
    pub batch: usize,
    /// Bins of the log10 feature-density histogram.
    pub density_bins: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            batch: 4096,
            density_bins: 50,
        }
    }
}

/// A histogram: `counts[i]` values in [edges[i], edges[i + 1]).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Every activation-only metric of an SAE on a set of rows.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EvalReport {
    pub rows: usize,
    pub d: usize,
    pub width: usize,
    pub arch: Architecture,
    /// Mean number of active latents per row.
    pub l0: f64,
    /// Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean of all rows.
    pub fvu: f64,
    /// 1 − FVU.
    pub explained_variance: f64,
    /// SAELens' per-token form: the mean over rows of 1 − ‖x − x̂‖² / ‖x − x̄‖² (rows at x̄ left out).
    pub explained_variance_legacy: f64,
    /// Mean of (x̂ − x)² over all values (SAELens' `mse`).
    pub mse: f64,
    /// Mean of ‖x − x̂‖² per row.
    pub mse_per_row: f64,
    /// Mean cosine of x and x̂ (rows where either is 0 left out).
    pub cosine: f64,
    /// Mean ‖x̂‖ / ‖x‖ (rows with x = 0 left out).
    pub l2_ratio: f64,
    /// E‖x̂‖² / E⟨x, x̂⟩: 1 for an unbiased scale, below 1 for shrinkage.
    pub relative_reconstruction_bias: f64,
    /// Latents that never fired on these rows.
    pub dead_latents: usize,
    pub dead_fraction: f64,
    /// Latents firing on more than 1% and more than 10% of the rows.
    pub dense_over_1pct: usize,
    pub dense_over_10pct: usize,
    /// log10(firing frequency + 1e-10) of every latent.
    pub density_histogram: Histogram,
    /// The mean, over latents, of the largest cosine of its decoder row with another.
    pub mean_max_decoder_cosine: f64,
    /// The largest cosine between two decoder rows.
    pub max_decoder_cosine: f64,
    /// The same for the encoder vectors.
    pub mean_max_encoder_cosine: f64,
    pub notes: Vec<String>,
    /// Firing frequency of every latent (not in the JSON document).
    #[serde(skip)]
    pub density: Vec<f64>,
}

/// Rows `start..start + count` of the source, checked against the SAE's width.
fn read(src: &dyn RowSource, start: usize, count: usize, buf: &mut Vec<f32>) -> Result<()> {
    buf.resize(count * src.cols(), 0.0);
    src.read(start, count, buf)
}

/// For each row of `w` (n × d), the largest cosine with another row; computed in blocks of rows, each a
/// sequential product.
pub fn max_cosines(w: &[f32], n: usize, d: usize) -> Vec<f32> {
    let mut unit = w.to_vec();
    unit.par_chunks_mut(d).for_each(|r| {
        let s = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        if s > 0.0 {
            let inv = (1.0 / s) as f32;
            r.iter_mut().for_each(|v| *v *= inv);
        }
    });
    const B: usize = 256;
    let all = MatRef::from_row_major_slice(&unit, n, d);
    (0..n.div_ceil(B))
        .into_par_iter()
        .flat_map_iter(|b| {
            let (s, e) = (b * B, ((b + 1) * B).min(n));
            let mut g = vec![0.0f32; (e - s) * n];
            let lhs = MatRef::from_row_major_slice(&unit[s * d..e * d], e - s, d);
            matmul(
                MatMut::from_row_major_slice_mut(&mut g, e - s, n),
                Accum::Replace,
                lhs,
                all.transpose(),
                1.0f32,
                Par::Seq,
            );
            (0..e - s)
                .map(|r| {
                    g[r * n..(r + 1) * n]
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != s + r)
                        .map(|(_, &c)| c)
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Evaluates `sae` on every row of `src`.
pub fn evaluate(
    sae: &Sae,
    src: &dyn RowSource,
    cfg: &EvalConfig,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    evaluate_passes(sae, &Local(src), cfg, progress)
}

/// A pass of evaluation sums: the SAE, the mean of every row (pass 1) and the rows encoded at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeEvalPass {
    pub sae: Sae,
    pub mean: Vec<f64>,
    pub batch: usize,
}

impl SaeEvalPass {
    pub(crate) fn encode(&self, w: &mut Writer) {
        let s = &self.sae;
        let arch = match s.arch {
            Architecture::TopK => 0,
            Architecture::BatchTopK => 1,
            Architecture::JumpRelu => 2,
            Architecture::Relu => 3,
        };
        w.usize(s.d)
            .usize(s.n)
            .u64(arch)
            .usize(s.k)
            .f32s(&s.w_enc_t)
            .f32s(&s.b_enc)
            .f32s(&s.w_dec)
            .f32s(&s.b_dec)
            .bool(s.threshold.is_some())
            .f32s(s.threshold.as_deref().unwrap_or(&[]))
            .bool(s.apply_b_dec_to_input)
            .bool(s.input_norm == InputNorm::LayerNorm)
            .f64s(&self.mean)
            .usize(self.batch);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<SaeEvalPass> {
        let (d, n) = (r.usize()?, r.usize()?);
        let arch = match r.u64()? {
            0 => Architecture::TopK,
            1 => Architecture::BatchTopK,
            2 => Architecture::JumpRelu,
            3 => Architecture::Relu,
            a => return Err(corrupt(format!("unknown SAE architecture {a}"))),
        };
        let k = r.usize()?;
        let (w_enc_t, b_enc, w_dec, b_dec) = (r.f32s()?, r.f32s()?, r.f32s()?, r.f32s()?);
        let has_threshold = r.bool()?;
        let t = r.f32s()?;
        let sae = Sae {
            d,
            n,
            arch,
            k,
            w_enc_t,
            b_enc,
            w_dec,
            b_dec,
            threshold: has_threshold.then_some(t),
            apply_b_dec_to_input: r.bool()?,
            input_norm: if r.bool()? {
                InputNorm::LayerNorm
            } else {
                InputNorm::None
            },
        };
        sae.validate("SAE")?;
        let (mean, batch) = (r.f64s()?, r.usize()?);
        if mean.len() != d {
            return Err(corrupt("the mean does not match the SAE's width"));
        }
        Ok(SaeEvalPass { sae, mean, batch })
    }
}

/// The evaluation sums over some rows (pass 2), added in row order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SaeSums {
    /// Σ‖x − x̂‖² and Σ‖x − x̄‖².
    pub err: f64,
    pub tot: f64,
    /// Σ (1 − ‖x − x̂‖²/‖x − x̄‖²) over the rows not at x̄, and their count.
    pub ev_sum: f64,
    pub ev_rows: u64,
    /// Σ cos(x, x̂) over rows where neither is 0, and their count.
    pub cos_sum: f64,
    pub cos_rows: u64,
    /// Σ ‖x̂‖/‖x‖ over rows with x ≠ 0, and their count.
    pub ratio_sum: f64,
    pub ratio_rows: u64,
    /// Σ‖x̂‖² and Σ⟨x, x̂⟩.
    pub xh2: f64,
    pub xxh: f64,
    /// Active latents, summed over rows.
    pub active: u64,
    /// Rows on which each latent fired.
    pub fires: Vec<u64>,
}

impl SaeSums {
    /// The sums of these rows and then `next`'s.
    pub fn merge(mut self, next: SaeSums) -> Result<SaeSums> {
        if self.fires.len() != next.fires.len() {
            return Err(corrupt("SAE sums of different SAEs cannot be merged"));
        }
        self.err += next.err;
        self.tot += next.tot;
        self.ev_sum += next.ev_sum;
        self.ev_rows += next.ev_rows;
        self.cos_sum += next.cos_sum;
        self.cos_rows += next.cos_rows;
        self.ratio_sum += next.ratio_sum;
        self.ratio_rows += next.ratio_rows;
        self.xh2 += next.xh2;
        self.xxh += next.xxh;
        self.active += next.active;
        self.fires
            .iter_mut()
            .zip(&next.fires)
            .for_each(|(a, b)| *a += b);
        Ok(self)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.f64(self.err)
            .f64(self.tot)
            .f64(self.ev_sum)
            .u64(self.ev_rows)
            .f64(self.cos_sum)
            .u64(self.cos_rows)
            .f64(self.ratio_sum)
            .u64(self.ratio_rows)
            .f64(self.xh2)
            .f64(self.xxh)
            .u64(self.active)
            .u64s(&self.fires);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<SaeSums> {
        Ok(SaeSums {
            err: r.f64()?,
            tot: r.f64()?,
            ev_sum: r.f64()?,
            ev_rows: r.u64()?,
            cos_sum: r.f64()?,
            cos_rows: r.u64()?,
            ratio_sum: r.f64()?,
            ratio_rows: r.u64()?,
            xh2: r.f64()?,
            xxh: r.f64()?,
            active: r.u64()?,
            fires: r.u64s()?,
        })
    }
}

/// Σx over every row of `src` as the SAE reads it (f32), added in row order: pass 1.
pub fn column_sums_f32(
    src: &dyn RowSource,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Vec<f64>> {
    let (rows, d) = (src.rows(), src.cols());
    let bsz = batch.max(1);
    let mut buf = Vec::new();
    progress.stage("sae eval: mean", rows as u64);
    let mut sum = vec![0.0f64; d];
    let mut start = 0;
    while start < rows {
        let c = bsz.min(rows - start);
        read(src, start, c, &mut buf)?;
        for r in buf.chunks_exact(d) {
            sum.iter_mut().zip(r).for_each(|(a, &b)| *a += b as f64);
        }
        progress.advance(c as u64);
        start += c;
    }
    progress.finish_stage();
    Ok(sum)
}

/// Pass 2 over `src`: every row encoded, decoded and its per-row quantities summed in row order.
pub fn sums(src: &dyn RowSource, pass: &SaeEvalPass, progress: &dyn Progress) -> Result<SaeSums> {
    let (sae, mean) = (&pass.sae, &pass.mean);
    let (rows, d, n) = (src.rows(), src.cols(), sae.n);
    if d != sae.d {
        return Err(width_error(src.name(), d, sae.d));
    }
    let bsz = pass.batch.max(1);
    let mut buf = Vec::new();
    progress.stage("sae eval", rows as u64);
    let mut s = SaeSums {
        fires: vec![0u64; n],
        ..SaeSums::default()
    };
    let mut xhat = Vec::new();
    let encoder = super::encoder::Encoder::new(sae, super::encoder::Backend::best());
    let mut start = 0;
    while start < rows {
        let c = bsz.min(rows - start);
        read(src, start, c, &mut buf)?;
        let codes = encoder.encode(&buf, c);
        xhat.resize(c * d, 0.0);
        sae.decode(&codes, &mut xhat);
        let per: Vec<[f64; 5]> = (0..c)
            .into_par_iter()
            .map(|r| {
                let x = &buf[r * d..(r + 1) * d];
                let y = &xhat[r * d..(r + 1) * d];
                let (mut e, mut t, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for j in 0..d {
                    let (a, b) = (x[j] as f64, y[j] as f64);
                    e += (a - b) * (a - b);
                    t += (a - mean[j]) * (a - mean[j]);
                    xx += a * a;
                    yy += b * b;
                    xy += a * b;
                }
                [e, t, xx, yy, xy]
            })
            .collect();
        for (r, p) in per.iter().enumerate() {
            let [e, t, xx, yy, xy] = *p;
            s.err += e;
            s.tot += t;
            if t > 0.0 {
                s.ev_sum += 1.0 - e / t;
                s.ev_rows += 1;
            }
            if xx > 0.0 && yy > 0.0 {
                s.cos_sum += xy / (xx.sqrt() * yy.sqrt());
                s.cos_rows += 1;
            }
            if xx > 0.0 {
                s.ratio_sum += (yy / xx).sqrt();
                s.ratio_rows += 1;
            }
            s.xh2 += yy;
            s.xxh += xy;
            for (i, _) in codes.row(r) {
                s.fires[i] += 1;
            }
            s.active += (codes.off[r + 1] - codes.off[r]) as u64;
        }
        progress.advance(c as u64);
        start += c;
    }
    progress.finish_stage();
    Ok(s)
}

fn width_error(name: &str, d: usize, d_in: usize) -> Error {
    Error::data(
        name,
        format!("the activations have d = {d} but the SAE reads d_in = {d_in}"),
        "pass the activations of the layer the SAE was trained on",
    )
}

/// [`evaluate`] of rows read through passes (in this process or on a cluster): pass 1 the mean, pass 2 the
/// sums ([`SaeEvalPass`]). Shards change only the order in which the f64 sums are added.
pub fn evaluate_passes(
    sae: &Sae,
    p: &dyn Passes,
    cfg: &EvalConfig,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    let (rows, d, n) = (p.rows(), p.cols(), sae.n);
    if d != sae.d {
        return Err(width_error(p.name(), d, sae.d));
    }
    if rows == 0 {
        return Err(Error::data(
            p.name(),
            "there are no rows to evaluate on",
            "pass a non-empty array",
        ));
    }
    let batch = cfg.batch.max(1);
    let Found::ColumnSums(sum) = p
        .run(&Pass::ColumnSums { batch }, progress)?
        .covering(rows)?
        .value
    else {
        return Err(corrupt("a column-sums pass returned another result"));
    };
    let mean: Vec<f64> = sum.iter().map(|s| s / rows as f64).collect();
    let pass = SaeEvalPass {
        sae: sae.clone(),
        mean,
        batch,
    };
    let Found::SaeEval(sums) = p
        .run(&Pass::SaeEval(Box::new(pass)), progress)?
        .covering(rows)?
        .value
    else {
        return Err(corrupt("an SAE pass returned another result"));
    };
    let SaeSums {
        err,
        tot,
        ev_sum,
        ev_rows,
        cos_sum,
        cos_rows,
        ratio_sum,
        ratio_rows,
        xh2,
        xxh,
        active,
        fires,
    } = *sums;
    let nf = rows as f64;
    let mut notes = Vec::new();
    let fvu = if tot > 0.0 {
        err / tot
    } else {
        notes.push("every row equals the mean: FVU is undefined".into());
        f64::NAN
    };
    let density: Vec<f64> = fires.iter().map(|&f| f as f64 / nf).collect();
    let logd: Vec<f64> = density.iter().map(|&p| (p + 1e-10).log10()).collect();
    let bins = cfg.density_bins.max(1);
    let (lo, hi) = (-10.0f64, 0.0f64);
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &v in &logd {
        let b = (((v - lo) / w).floor().max(0.0) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let dead = fires.iter().filter(|&&f| f == 0).count();
    let dec = max_cosines(&sae.w_dec, n, d);
    let enc = max_cosines(&sae.w_enc_t, n, d);
    let mean_of = |v: &[f32]| {
        let f: Vec<f64> = v
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| x as f64)
            .collect();
        if f.is_empty() {
            f64::NAN
        } else {
            f.iter().sum::<f64>() / f.len() as f64
        }
    };
    let safe = |v: f64| if v.is_finite() { v } else { f64::NAN };
    Ok(EvalReport {
        rows,
        d,
        width: n,
        arch: sae.arch,
        l0: active as f64 / nf,
        fvu,
        explained_variance: 1.0 - fvu,
        explained_variance_legacy: if ev_rows > 0 {
            ev_sum / ev_rows as f64
        } else {
            f64::NAN
        },
        mse: err / (nf * d as f64),
        mse_per_row: err / nf,
        cosine: if cos_rows > 0 {
            cos_sum / cos_rows as f64
        } else {
            f64::NAN
        },
        l2_ratio: if ratio_rows > 0 {
            ratio_sum / ratio_rows as f64
        } else {
            f64::NAN
        },
        relative_reconstruction_bias: safe(xh2 / xxh),
        dead_latents: dead,
        dead_fraction: dead as f64 / n as f64,
        dense_over_1pct: density.iter().filter(|&&p| p > 0.01).count(),
        dense_over_10pct: density.iter().filter(|&&p| p > 0.1).count(),
        density_histogram: Histogram {
            edges: (0..=bins).map(|i| lo + w * i as f64).collect(),
            counts,
        },
        mean_max_decoder_cosine: mean_of(&dec),
        max_decoder_cosine: dec.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64,
        mean_max_encoder_cosine: mean_of(&enc),
        notes,
        density,
    })
}
