//! SAE evaluation in two streamed passes with f64 accumulators: the mean of the activations, then every
//! reconstruction and sparsity metric. Sums run over rows in row order, so the numbers are the same for any
//! thread count and any block size.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::Serialize;

use super::source::RowSource;
use super::{Architecture, Sae};
use crate::error::{Error, Result};
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
    let (rows, d, n) = (src.rows(), src.cols(), sae.n);
    if d != sae.d {
        return Err(Error::data(
            src.name(),
            format!(
                "the activations have d = {d} but the SAE reads d_in = {}",
                sae.d
            ),
            "pass the activations of the layer the SAE was trained on",
        ));
    }
    if rows == 0 {
        return Err(Error::data(
            src.name(),
            "there are no rows to evaluate on",
            "pass a non-empty array",
        ));
    }
    let bsz = cfg.batch.max(1);
    let mut buf = Vec::new();
    // Pass 1: the mean, summed over rows in order.
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
    let mean: Vec<f64> = sum.iter().map(|s| s / rows as f64).collect();
    // Pass 2: per-row quantities, summed in row order.
    progress.stage("sae eval", rows as u64);
    let mut fires = vec![0u64; n];
    let (mut err, mut tot, mut ev_sum, mut ev_rows) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    let (mut cos_sum, mut cos_rows, mut ratio_sum, mut ratio_rows) =
        (0.0f64, 0usize, 0.0f64, 0usize);
    let (mut xh2, mut xxh, mut active) = (0.0f64, 0.0f64, 0u64);
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
            err += e;
            tot += t;
            if t > 0.0 {
                ev_sum += 1.0 - e / t;
                ev_rows += 1;
            }
            if xx > 0.0 && yy > 0.0 {
                cos_sum += xy / (xx.sqrt() * yy.sqrt());
                cos_rows += 1;
            }
            if xx > 0.0 {
                ratio_sum += (yy / xx).sqrt();
                ratio_rows += 1;
            }
            xh2 += yy;
            xxh += xy;
            for (i, _) in codes.row(r) {
                fires[i] += 1;
            }
            active += (codes.off[r + 1] - codes.off[r]) as u64;
        }
        progress.advance(c as u64);
        start += c;
    }
    progress.finish_stage();
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
