//! Training TopK and BatchTopK SAEs on rows streamed through a seeded shuffle buffer.
//!
//! One step on a batch of B rows:
//! - the encoder product is dense (B × d times d × n, in blocks of rows, each a sequential product);
//! - selection keeps k latents per row (TopK) or k·B over the batch (BatchTopK, exact: rows whose candidate
//!   list might be cut are recomputed whole);
//! - the decoder, the AuxK reconstruction and every backward product touch only the active latents: O(k·d)
//!   per row; gradients are summed per latent in row order, so the weights are bit-identical for any thread
//!   count;
//! - the decoder's gradient loses its component parallel to each (unit) decoder row, the global gradient
//!   norm is clipped, Adam steps, and the decoder rows are set back to unit norm.
use rayon::prelude::*;
use serde::Serialize;

use super::source::RowSource;
use super::{check_width_k, top_k_row, Architecture, Sae, ROW_BLOCK};
use crate::error::{Error, Param, Result};
use crate::linalg;
use crate::progress::Progress;
use crate::rng::Rng;

/// How b_dec starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BDecInit {
    /// The geometric median of the first shuffle buffer (Weiszfeld's iteration, in f64).
    GeometricMedian,
    /// The mean of the first shuffle buffer.
    Mean,
    Zero,
}

/// Training settings; the defaults are those of METRICS.md.
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub width: usize,
    pub k: usize,
    pub arch: Architecture,
    /// Rows drawn in all (several passes over the source when larger than it); None: one pass.
    pub tokens: Option<u64>,
    pub batch: usize,
    /// None: 2e-4 / √(width / 2¹⁴).
    pub lr: Option<f64>,
    /// None: 5% of the steps, at most 1000.
    pub warmup_steps: Option<usize>,
    /// The share of the steps, at the end, over which the learning rate decays linearly to 0.
    pub decay_fraction: f64,
    /// The largest global gradient norm (0: no clipping).
    pub clip: f64,
    /// AuxK latents per row (None: d/2); 0 turns AuxK off.
    pub aux_k: Option<usize>,
    pub aux_coef: f64,
    /// A latent is dead after this many rows without firing.
    pub dead_tokens: u64,
    pub b_dec_init: BDecInit,
    /// Scale inputs so that the mean row norm is √d (SAELens' "expected_average_only_in"); folded into the
    /// weights of the result.
    pub normalize: bool,
    /// BatchTopK: the rate of the moving average of the smallest selected activation.
    pub threshold_rate: f64,
    /// Rows in the shuffle buffer (None: as many as fit in 128 MiB, between one batch and 65,536).
    pub shuffle_rows: Option<usize>,
    pub seed: u64,
    /// None (the default): decoder rows held at unit norm, the gradient's part along each row removed.
    /// Some(r): SAELens' parametrisation (`rescale_acts_by_decoder_norm`, `decoder_init_norm = r`): free
    /// decoder rows started at norm r, latent j selected by its pre-activation times ‖d_j‖ and decoded by
    /// the free row, so that each latent carries a trained gain. The result is exported with unit rows and
    /// the norms folded into the encoder, the same SAE in the form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescaled_decoder: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            width: 16384,
            k: 32,
            arch: Architecture::TopK,
            tokens: None,
            batch: 4096,
            lr: None,
            warmup_steps: None,
            decay_fraction: 0.2,
            clip: 1.0,
            aux_k: None,
            aux_coef: 1.0 / 32.0,
            dead_tokens: 10_000_000,
            b_dec_init: BDecInit::GeometricMedian,
            normalize: true,
            threshold_rate: 0.01,
            shuffle_rows: None,
            seed: 0,
            rescaled_decoder: None,
        }
    }
}

impl TrainConfig {
    /// The learning rate used: the one given, or 2e-4 / √(width / 2¹⁴).
    pub fn learning_rate(&self) -> f64 {
        self.lr
            .unwrap_or_else(|| 2e-4 / (self.width as f64 / 16384.0).sqrt())
    }

    /// Checks every setting before any work.
    pub fn validate(&self) -> Result<()> {
        check_width_k(self.width, self.k)?;
        if !matches!(self.arch, Architecture::TopK | Architecture::BatchTopK) {
            return Err(Error::param(
                Param::Arch,
                format!(
                    "training supports topk and batchtopk, not {}",
                    self.arch.saelens_name()
                ),
                "choose topk or batchtopk",
            ));
        }
        if self.batch == 0 {
            return Err(Error::range(
                Param::BatchSize,
                0,
                "a batch of at least 1 row",
                "a batch of 0 rows",
            ));
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(Error::range(
                    Param::LearningRate,
                    lr,
                    "a finite learning rate > 0",
                    format!("the learning rate is {lr}"),
                ));
            }
        }
        if self.tokens == Some(0) {
            return Err(Error::range(
                Param::Tokens,
                0,
                "at least one batch of rows",
                "0 training rows",
            ));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return Err(Error::range(
                Param::Clip,
                self.clip,
                "a finite norm ≥ 0 (0: no clipping)",
                format!("the clipping norm is {}", self.clip),
            ));
        }
        if !(self.aux_coef.is_finite() && self.aux_coef >= 0.0) {
            return Err(Error::range(
                Param::AuxCoef,
                self.aux_coef,
                "a finite coefficient ≥ 0",
                format!("the AuxK coefficient is {}", self.aux_coef),
            ));
        }
        if !(self.decay_fraction.is_finite() && (0.0..=1.0).contains(&self.decay_fraction)) {
            return Err(Error::range(
                Param::DecayFraction,
                self.decay_fraction,
                "a share from 0 to 1",
                format!("the decay share is {}", self.decay_fraction),
            ));
        }
        if !(self.threshold_rate.is_finite()
            && self.threshold_rate > 0.0
            && self.threshold_rate <= 1.0)
        {
            return Err(Error::range(
                Param::ThresholdRate,
                self.threshold_rate,
                "a rate in (0, 1]",
                format!("the threshold rate is {}", self.threshold_rate),
            ));
        }
        if let Some(r) = self.rescaled_decoder {
            if !(r.is_finite() && r > 0.0) {
                return Err(Error::range(
                    Param::DecoderInitNorm,
                    r,
                    "a finite norm > 0 (SAELens starts at 0.1)",
                    format!("the decoder rows would start at norm {r}"),
                ));
            }
            if !matches!(self.arch, Architecture::TopK) {
                return Err(Error::param(
                    Param::Arch,
                    "a rescaled decoder is trained with topk only (BatchTopK's threshold reads unit rows)",
                    "choose topk, or keep the unit-norm decoder",
                ));
            }
        }
        Ok(())
    }
}

/// One line of training progress.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StepStats {
    pub step: usize,
    pub tokens: u64,
    /// Σ‖x − x̂‖² / Σ‖x − x̄‖² over the batch (x̄ its mean).
    pub fvu: f64,
    /// Mean active latents per row.
    pub l0: f64,
    /// Share of latents dead (no firing for `dead_tokens` rows).
    pub dead_fraction: f64,
    pub lr: f64,
}

/// What a training run did, beside the weights.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub tokens: u64,
    pub source_rows: usize,
    pub d: usize,
    pub width: usize,
    pub k: usize,
    pub arch: Architecture,
    pub lr: f64,
    pub warmup_steps: usize,
    pub decay_steps: usize,
    pub aux_k: usize,
    /// The factor inputs were multiplied by in training (1 when not normalised); folded into the weights.
    pub input_scale: f64,
    /// BatchTopK's inference threshold on the latent values (the input scale does not change them).
    pub threshold: Option<f64>,
    /// BatchTopK rows recomputed whole because their candidate list could have been cut.
    pub rows_recomputed: u64,
    /// Mean FVU and L0 over the last 10% of steps.
    pub final_fvu: f64,
    pub final_l0: f64,
    pub final_dead_fraction: f64,
    /// Statistics every `log_every` steps.
    pub log: Vec<StepStats>,
}

/// A trained SAE with what the run did.
pub struct Trained {
    pub sae: Sae,
    pub summary: TrainSummary,
}

/// Rows per chunk of the shuffle: chunk order is permuted per pass, rows are permuted inside the buffer.
const SHUFFLE_CHUNK: usize = 4096;

/// Seeded batches: a permutation of chunks per pass over the source, read into a buffer that is shuffled
/// each time it is refilled.
struct Batches<'a> {
    src: &'a dyn RowSource,
    seed: u64,
    d: usize,
    buffer_rows: usize,
    pass: u64,
    order: Vec<usize>,
    next_chunk: usize,
    buf: Vec<f32>,
    pos: usize,
    fills: u64,
}

impl<'a> Batches<'a> {
    fn new(src: &'a dyn RowSource, seed: u64, buffer_rows: usize) -> Self {
        let mut b = Batches {
            src,
            seed,
            d: src.cols(),
            buffer_rows,
            pass: 0,
            order: Vec::new(),
            next_chunk: 0,
            buf: Vec::new(),
            pos: 0,
            fills: 0,
        };
        b.new_pass();
        b
    }

    fn new_pass(&mut self) {
        let chunks = self.src.rows().div_ceil(SHUFFLE_CHUNK);
        self.order = (0..chunks).collect();
        Rng::stream(self.seed, 0x5348_0000 + self.pass).shuffle(&mut self.order);
        self.pass += 1;
        self.next_chunk = 0;
    }

    /// Refills the buffer: the rows not yet used, then chunks up to the buffer's size, shuffled.
    fn refill(&mut self) -> Result<()> {
        let d = self.d;
        let left = self.buf.split_off(self.pos * d);
        self.buf = left;
        self.pos = 0;
        while self.buf.len() / d < self.buffer_rows {
            if self.next_chunk == self.order.len() {
                self.new_pass();
            }
            let c = self.order[self.next_chunk];
            self.next_chunk += 1;
            let (s, e) = (
                c * SHUFFLE_CHUNK,
                ((c + 1) * SHUFFLE_CHUNK).min(self.src.rows()),
            );
            let at = self.buf.len();
            self.buf.resize(at + (e - s) * d, 0.0);
            self.src.read(s, e - s, &mut self.buf[at..])?;
        }
        let rows = self.buf.len() / d;
        let mut perm: Vec<usize> = (0..rows).collect();
        Rng::stream(self.seed, 0x5342_0000 + self.fills).shuffle(&mut perm);
        self.fills += 1;
        let mut out = vec![0.0f32; self.buf.len()];
        for (dst, &src) in out.chunks_exact_mut(d).zip(&perm) {
            dst.copy_from_slice(&self.buf[src * d..(src + 1) * d]);
        }
        self.buf = out;
        Ok(())
    }

    /// The next `b` rows into `out`.
    fn next(&mut self, b: usize, out: &mut Vec<f32>) -> Result<()> {
        let d = self.d;
        if self.buf.len() / d - self.pos < b {
            self.refill()?;
        }
        out.clear();
        out.extend_from_slice(&self.buf[self.pos * d..(self.pos + b) * d]);
        self.pos += b;
        Ok(())
    }
}

/// Adam's moments for one parameter array.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn new(len: usize) -> Self {
        Moments {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;
/// Elements per task of the element-wise passes.
const ELEM_CHUNK: usize = 1 << 15;

/// One Adam step on `p` with gradient `g` (already clipped), learning rate `lr`, step t ≥ 1.
fn adam(p: &mut [f32], g: &[f32], mo: &mut Moments, lr: f32, t: i32) {
    let c1 = 1.0 - BETA1.powi(t);
    let c2 = 1.0 - BETA2.powi(t);
    let step = lr / c1;
    let c2s = c2.sqrt();
    p.par_chunks_mut(ELEM_CHUNK)
        .zip(g.par_chunks(ELEM_CHUNK))
        .zip(mo.m.par_chunks_mut(ELEM_CHUNK))
        .zip(mo.v.par_chunks_mut(ELEM_CHUNK))
        .for_each(|(((p, g), m), v)| {
            for i in 0..p.len() {
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
                p[i] -= step * m[i] / (v[i].sqrt() / c2s + ADAM_EPS);
            }
        });
}

/// Σ g² over an array, in f64, with a fixed reduction tree.
fn sum_sq(g: &[f32]) -> f64 {
    linalg::tree_fold(
        g.len().div_ceil(ELEM_CHUNK),
        1,
        &|| 0.0f64,
        &|acc, c| {
            let s = &g[c * ELEM_CHUNK..((c + 1) * ELEM_CHUNK).min(g.len())];
            acc + s.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()
        },
        &|a, b| a + b,
    )
}

/// What the backward pass of one batch gives: the selection, the summed squared error and the raw gradients.
struct Gradients {
    sel: Vec<(u32, u32, f32)>,
    /// AuxK's (row, latent, value) pairs.
    #[cfg_attr(not(test), allow(dead_code))]
    aux: Vec<(u32, u32, f32)>,
    err: f64,
    g_wdec: Vec<f32>,
    g_wenc: Vec<f32>,
    g_benc: Vec<f32>,
    g_bdec: Vec<f32>,
}

/// Per-row results of the forward pass of one block.
#[derive(Default)]
struct BlockOut {
    /// Selected (row in batch, latent, value) with value > 0, rows ascending, latents ascending.
    sel: Vec<(u32, u32, f32)>,
    /// AuxK (row, latent, value), same order.
    aux: Vec<(u32, u32, f32)>,
    /// BatchTopK: per row, whether its candidate list is full (it might be cut) and its smallest candidate.
    cut: Vec<(u32, f32)>,
}

/// The geometric median of the rows (Weiszfeld's iteration from the mean, in f64), or their mean.
fn centre(x: &[f32], d: usize, median: bool) -> Vec<f64> {
    let rows = x.len() / d;
    let mean = {
        let mut m = vec![0.0f64; d];
        for r in x.chunks_exact(d) {
            for (a, &b) in m.iter_mut().zip(r) {
                *a += b as f64;
            }
        }
        m.iter_mut().for_each(|a| *a /= rows as f64);
        m
    };
    if !median {
        return mean;
    }
    let mut y = mean;
    for _ in 0..100 {
        let (num, den) = linalg::tree_fold(
            rows.div_ceil(1024),
            1,
            &|| (vec![0.0f64; d], 0.0f64),
            &|(mut num, mut den), c| {
                for r in x[c * 1024 * d..((c + 1) * 1024).min(rows) * d].chunks_exact(d) {
                    let dist: f64 = r
                        .iter()
                        .zip(&y)
                        .map(|(&a, b)| (a as f64 - b).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    if dist > 1e-12 {
                        let w = 1.0 / dist;
                        for (n, &a) in num.iter_mut().zip(r) {
                            *n += w * a as f64;
                        }
                        den += w;
                    }
                }
                (num, den)
            },
            &|(mut a, da), (b, db)| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                (a, da + db)
            },
        );
        if den == 0.0 {
            break;
        }
        let next: Vec<f64> = num.iter().map(|v| v / den).collect();
        let shift: f64 = next
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let size: f64 = next.iter().map(|a| a * a).sum::<f64>().sqrt();
        y = next;
        if shift <= 1e-9 * size.max(1e-30) {
            break;
        }
    }
    y
}

/// Unit-norm rows (a zero row stays zero).
/// A row's Euclidean norm, summed in f64.
fn row_norm(r: &[f32]) -> f64 {
    r.iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt()
}

fn normalise_rows(w: &mut [f32], d: usize) {
    w.par_chunks_mut(d).for_each(|r| {
        let n = row_norm(r);
        if n > 0.0 {
            let inv = (1.0 / n) as f32;
            r.iter_mut().for_each(|v| *v *= inv);
        }
    });
}

/// The training state: weights in the normalised input units, Adam's moments, firing counters.
pub struct Trainer<'a> {
    cfg: TrainConfig,
    src: &'a dyn RowSource,
    sae: Sae,
    m_wenc: Moments,
    m_benc: Moments,
    m_wdec: Moments,
    m_bdec: Moments,
    since_fired: Vec<u64>,
    scale: f32,
    threshold: Option<f64>,
    steps: usize,
    warmup: usize,
    decay: usize,
    aux_k: usize,
    batches: Batches<'a>,
    rows_recomputed: u64,
    /// Gradient buffers of the two matrices, kept between steps.
    g_wdec: Vec<f32>,
    g_wenc: Vec<f32>,
    /// The next step to run (0 for a fresh run, later for a resumed one).
    next_step: usize,
    log: Vec<StepStats>,
    fvu_tail: f64,
    l0_tail: f64,
    last_dead: f64,
    /// ‖d_j‖ of the free decoder rows (empty with unit-norm rows).
    norms: Vec<f32>,
}

/// The version of the checkpoint layout.
const CHECKPOINT_FORMAT: u32 = 1;

/// Where and when a run writes checkpoints.
#[derive(Clone, Debug, Default)]
pub struct Checkpoints {
    /// The checkpoint folder (replaced at each checkpoint).
    pub dir: Option<std::path::PathBuf>,
    /// Write one every this many steps.
    pub every: Option<usize>,
    /// Stop, after a checkpoint, once this many steps of this run are done.
    pub stop_after: Option<usize>,
}

/// How a run ended.
pub enum Outcome {
    Done(Box<Trained>),
    /// Stopped after a checkpoint at `step` of `steps`; resume to finish.
    Stopped {
        step: usize,
        steps: usize,
    },
}

impl<'a> Trainer<'a> {
    /// Initialises from the first shuffle buffer: the input scale, b_dec, and a seeded unit-norm decoder
    /// whose transpose is the encoder.
    pub fn new(src: &'a dyn RowSource, cfg: &TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let (rows, d) = (src.rows(), src.cols());
        if rows == 0 || d == 0 {
            return Err(Error::data(
                src.name(),
                format!("the activations are {rows} × {d}; training needs rows and columns"),
                "pass a non-empty 2-D array",
            ));
        }
        let n = cfg.width;
        let tokens = cfg.tokens.unwrap_or(rows as u64);
        let steps = (tokens / cfg.batch as u64).max(1) as usize;
        let warmup = cfg
            .warmup_steps
            .unwrap_or_else(|| (steps.div_ceil(20)).min(1000));
        let decay = (cfg.decay_fraction * steps as f64).round() as usize;
        let buffer_rows = cfg
            .shuffle_rows
            .unwrap_or_else(|| (128usize << 20) / (4 * d))
            .clamp(cfg.batch, 65536.max(cfg.batch));
        let mut batches = Batches::new(src, cfg.seed, buffer_rows);
        batches.refill()?;
        let sample = &batches.buf;
        let mean_norm: f64 = sample
            .chunks_exact(d)
            .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / (sample.len() / d) as f64;
        let scale = if cfg.normalize && mean_norm > 0.0 {
            ((d as f64).sqrt() / mean_norm) as f32
        } else {
            1.0
        };
        let b_dec: Vec<f32> = match cfg.b_dec_init {
            BDecInit::Zero => vec![0.0; d],
            init => centre(sample, d, init == BDecInit::GeometricMedian)
                .iter()
                .map(|&v| (v * scale as f64) as f32)
                .collect(),
        };
        // Decoder rows: seeded normal vectors, one stream per latent, set to unit norm.
        let mut w_dec = vec![0.0f32; n * d];
        w_dec.par_chunks_mut(d).enumerate().for_each(|(i, r)| {
            let mut g = Rng::stream(cfg.seed ^ 0x5AE0_5AE0, i as u64);
            r.iter_mut().for_each(|v| *v = g.normal() as f32);
        });
        normalise_rows(&mut w_dec, d);
        if let Some(r) = cfg.rescaled_decoder {
            let r = r as f32;
            w_dec.par_iter_mut().for_each(|v| *v *= r);
        }
        let sae = Sae {
            d,
            n,
            arch: cfg.arch,
            k: cfg.k,
            w_enc_t: w_dec.clone(),
            b_enc: vec![0.0; n],
            w_dec,
            b_dec,
            threshold: None,
            apply_b_dec_to_input: true,
            input_norm: super::InputNorm::None,
        };
        let mut t = Trainer {
            cfg: cfg.clone(),
            src,
            m_wenc: Moments::new(n * d),
            m_benc: Moments::new(n),
            m_wdec: Moments::new(n * d),
            m_bdec: Moments::new(d),
            since_fired: vec![0; n],
            scale,
            threshold: None,
            steps,
            warmup,
            decay,
            aux_k: cfg.aux_k.unwrap_or(d / 2).min(n),
            batches,
            rows_recomputed: 0,
            g_wdec: Vec::new(),
            g_wenc: Vec::new(),
            next_step: 0,
            log: Vec::new(),
            fvu_tail: 0.0,
            l0_tail: 0.0,
            last_dead: 0.0,
            norms: Vec::new(),
            sae,
        };
        t.refresh_norms();
        Ok(t)
    }

    /// Recomputes ‖d_j‖ when the decoder rows are free.
    fn refresh_norms(&mut self) {
        if self.cfg.rescaled_decoder.is_some() {
            let d = self.sae.d;
            self.norms = self
                .sae
                .w_dec
                .par_chunks(d)
                .map(|r| row_norm(r) as f32)
                .collect();
        }
    }

    /// The learning rate at step t (0-based): linear warm-up, constant, linear decay to 0 at the end.
    fn lr_at(&self, t: usize) -> f64 {
        let base = self.cfg.learning_rate();
        let mut f = 1.0;
        if self.warmup > 0 && t < self.warmup {
            f = (t + 1) as f64 / self.warmup as f64;
        }
        let decay_start = self.steps - self.decay;
        if self.decay > 0 && t >= decay_start {
            f = f.min((self.steps - t) as f64 / self.decay as f64);
        }
        base * f
    }

    /// Forward pass of a block of rows: pre-activations, selection, AuxK candidates.
    fn forward_block(
        &self,
        x: &[f32],
        first: usize,
        rows: usize,
        dead: &[u32],
        xc: &mut [f32],
    ) -> BlockOut {
        let sae = &self.sae;
        let n = sae.n;
        super::with_scratch(rows * n, |pre, xcv| {
            sae.pre_block(x, rows, xcv, pre);
            xc.copy_from_slice(xcv);
            self.select_block(pre, first, dead)
        })
    }

    /// Selection and AuxK candidates of a block's pre-activations.
    fn select_block(&self, pre: &[f32], first: usize, dead: &[u32]) -> BlockOut {
        let sae = &self.sae;
        let (n, k) = (sae.n, sae.k);
        let mut out = BlockOut::default();
        let mut scratch = Vec::new();
        let mut dead_pre = Vec::with_capacity(dead.len());
        let cap = match sae.arch {
            Architecture::BatchTopK => (4 * k).min(n),
            _ => k,
        };
        // With free decoder rows, latents are ranked by pre-activation × ‖d_j‖ and keep their raw value.
        let rescaled = !self.norms.is_empty();
        let mut ranked = Vec::new();
        for (r, row) in pre.chunks_exact(n).enumerate() {
            let b = (first + r) as u32;
            let rank = if rescaled {
                ranked.clear();
                ranked.extend(row.iter().zip(&self.norms).map(|(v, s)| v * s));
                &ranked[..]
            } else {
                row
            };
            top_k_row(rank, cap, &mut scratch);
            scratch.sort_by_key(|p| p.1);
            let mut smallest = f32::INFINITY;
            for &(v, i) in &scratch {
                smallest = smallest.min(v);
                if v > 0.0 {
                    out.sel.push((b, i, row[i as usize]));
                }
            }
            if matches!(sae.arch, Architecture::BatchTopK) {
                out.cut
                    .push((b, if cap < n { smallest } else { f32::NEG_INFINITY }));
            }
            if self.aux_k > 0 && !dead.is_empty() {
                dead_pre.clear();
                dead_pre.extend(dead.iter().map(|&j| rank[j as usize]));
                top_k_row(&dead_pre, self.aux_k, &mut scratch);
                let mut picked: Vec<(u32, f32)> = scratch
                    .iter()
                    .filter(|p| p.0 > 0.0)
                    .map(|&(_, i)| (dead[i as usize], row[dead[i as usize] as usize]))
                    .collect();
                picked.sort_by_key(|p| p.0);
                out.aux.extend(picked.into_iter().map(|(j, v)| (b, j, v)));
            }
        }
        out
    }

    /// BatchTopK: the k·B largest of the candidates (value, then batch-flat index, decides), with rows whose
    /// list might have been cut recomputed whole first.
    fn batch_select(
        &mut self,
        x: &[f32],
        cand: Vec<(u32, u32, f32)>,
        cut: &[(u32, f32)],
        b: usize,
    ) -> Vec<(u32, u32, f32)> {
        let keep = (self.sae.k * b).min(cand.len().max(1));
        let order = |a: &(u32, u32, f32), c: &(u32, u32, f32)| {
            c.2.total_cmp(&a.2).then(a.0.cmp(&c.0)).then(a.1.cmp(&c.1))
        };
        let select = |mut v: Vec<(u32, u32, f32)>| -> (Vec<(u32, u32, f32)>, f32) {
            let keep = keep.min(v.len());
            if keep == 0 {
                return (Vec::new(), f32::INFINITY);
            }
            v.select_nth_unstable_by(keep - 1, order);
            v.truncate(keep);
            let t = v.iter().map(|p| p.2).fold(f32::INFINITY, f32::min);
            (v, t)
        };
        let (sel, t) = select(cand.clone());
        // A row whose smallest kept candidate is at least the batch threshold may hold more values above it.
        let unsure: Vec<u32> = cut
            .iter()
            .filter(|&&(_, s)| s.is_finite() && s >= t)
            .map(|&(r, _)| r)
            .collect();
        let sel = if unsure.is_empty() {
            sel
        } else {
            self.rows_recomputed += unsure.len() as u64;
            let (d, n) = (self.sae.d, self.sae.n);
            let mut all: Vec<(u32, u32, f32)> = cand
                .into_iter()
                .filter(|p| unsure.binary_search(&p.0).is_err())
                .collect();
            let mut xc = Vec::new();
            let mut pre = vec![0.0f32; n];
            for &r in &unsure {
                let r0 = r as usize;
                self.sae
                    .pre_block(&x[r0 * d..(r0 + 1) * d], 1, &mut xc, &mut pre);
                all.extend(
                    pre.iter()
                        .enumerate()
                        .filter(|(_, &v)| v > 0.0)
                        .map(|(i, &v)| (r, i as u32, v)),
                );
            }
            select(all).0
        };
        let mut sel = sel;
        sel.sort_by(|a, c| a.0.cmp(&c.0).then(a.1.cmp(&c.1)));
        sel
    }

    /// The forward pass of a batch (already scaled) and the gradients of the loss
    /// (1/B) Σ‖x̂ − x‖² + α (1/B) Σ‖ê − (x − x̂)‖² (ê the AuxK reconstruction from the dead latents, the residual
    /// held fixed) with respect to every parameter, the decoder's not yet projected.
    fn gradients(&mut self, x: &[f32], dead: &[u32]) -> Gradients {
        let (d, n) = (self.sae.d, self.sae.n);
        let bsz = x.len() / d;
        // Forward, in blocks of rows.
        let mut xc = vec![0.0f32; bsz * d];
        let blocks: Vec<BlockOut> = {
            let this = &*self;
            xc.par_chunks_mut(ROW_BLOCK * d)
                .enumerate()
                .map(|(bi, xcb)| {
                    let s = bi * ROW_BLOCK;
                    let rows = xcb.len() / d;
                    this.forward_block(&x[s * d..(s + rows) * d], s, rows, dead, xcb)
                })
                .collect()
        };
        let mut sel = Vec::new();
        let mut aux = Vec::new();
        let mut cut = Vec::new();
        for b in blocks {
            sel.extend(b.sel);
            aux.extend(b.aux);
            cut.extend(b.cut);
        }
        if matches!(self.sae.arch, Architecture::BatchTopK) {
            sel = self.batch_select(x, sel, &cut, bsz);
            let min = sel.iter().map(|p| p.2).fold(f32::INFINITY, f32::min);
            if min.is_finite() {
                let m = min as f64;
                self.threshold = Some(match self.threshold {
                    None => m,
                    Some(th) => th + self.cfg.threshold_rate * (m - th),
                });
            }
        }
        // Row offsets of the sorted selections.
        let offsets = |v: &[(u32, u32, f32)]| {
            let mut off = vec![0usize; bsz + 1];
            for p in v {
                off[p.0 as usize + 1] += 1;
            }
            for i in 0..bsz {
                off[i + 1] += off[i];
            }
            off
        };
        let so = offsets(&sel);
        let ao = offsets(&aux);
        // Decode, residuals and the gradients with respect to x̂ (g) and the AuxK reconstruction (ga).
        let inv_b = 1.0 / bsz as f32;
        // AuxK's weight falls with the number of dead latents below k_aux (min(dead / k_aux, 1)), as in sparsify
        // and SAELens.
        let alpha =
            (self.cfg.aux_coef * (dead.len() as f64 / self.aux_k.max(1) as f64).min(1.0)) as f32;
        let aux_on = !aux.is_empty() && alpha > 0.0;
        let sae = &self.sae;
        let per_row: Vec<(Vec<f32>, Vec<f32>, f64, f64)> = (0..bsz)
            .into_par_iter()
            .map(|r| {
                let xr = &x[r * d..(r + 1) * d];
                let mut xh = sae.b_dec.clone();
                for &(_, i, v) in &sel[so[r]..so[r + 1]] {
                    let w = &sae.w_dec[i as usize * d..(i as usize + 1) * d];
                    xh.iter_mut().zip(w).for_each(|(a, b)| *a += v * b);
                }
                let e: Vec<f32> = xh.iter().zip(xr).map(|(a, b)| a - b).collect();
                let err: f64 = e.iter().map(|&v| (v as f64) * (v as f64)).sum();
                let g: Vec<f32> = e.iter().map(|&v| 2.0 * v * inv_b).collect();
                let mut ga = Vec::new();
                let mut aerr = 0.0;
                if aux_on && ao[r + 1] > ao[r] {
                    // AuxK reconstructs the residual x − x̂ (detached) from dead latents, without b_dec.
                    let mut ah = vec![0.0f32; d];
                    for &(_, j, v) in &aux[ao[r]..ao[r + 1]] {
                        let w = &sae.w_dec[j as usize * d..(j as usize + 1) * d];
                        ah.iter_mut().zip(w).for_each(|(a, b)| *a += v * b);
                    }
                    let ea: Vec<f32> = ah.iter().zip(&e).map(|(a, ei)| a + ei).collect();
                    aerr = ea.iter().map(|&v| (v as f64) * (v as f64)).sum();
                    ga = ea.iter().map(|&v| 2.0 * alpha * v * inv_b).collect();
                }
                (g, ga, err, aerr)
            })
            .collect();
        // dpre of every active pair: g · W_dec[i] (the ReLU passes it: every kept value is > 0).
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let sel_dpre: Vec<f32> = sel
            .par_iter()
            .map(|&(r, i, _)| {
                dot(
                    &per_row[r as usize].0,
                    &sae.w_dec[i as usize * d..(i as usize + 1) * d],
                )
            })
            .collect();
        let aux_dpre: Vec<f32> = if aux_on {
            aux.par_iter()
                .map(|&(r, j, _)| {
                    dot(
                        &per_row[r as usize].1,
                        &sae.w_dec[j as usize * d..(j as usize + 1) * d],
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        // Pairs grouped by latent, in row order (a counting sort): (pair index, is aux).
        let mut count = vec![0usize; n + 1];
        for p in &sel {
            count[p.1 as usize + 1] += 1;
        }
        if aux_on {
            for p in &aux {
                count[p.1 as usize + 1] += 1;
            }
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let mut fill = count.clone();
        let mut by_latent = vec![(0u32, false); count[n]];
        // Main pairs then aux pairs of each latent, each in row order.
        for (pi, p) in sel.iter().enumerate() {
            let l = p.1 as usize;
            by_latent[fill[l]] = (pi as u32, false);
            fill[l] += 1;
        }
        if aux_on {
            for (pi, p) in aux.iter().enumerate() {
                let l = p.1 as usize;
                by_latent[fill[l]] = (pi as u32, true);
                fill[l] += 1;
            }
        }
        // Per-latent gradients, one latent per task: W_dec row, W_enc row, b_enc.
        let mut g_wdec = std::mem::take(&mut self.g_wdec);
        let mut g_wenc = std::mem::take(&mut self.g_wenc);
        g_wdec.resize(n * d, 0.0);
        g_wenc.resize(n * d, 0.0);
        g_wdec.par_chunks_mut(ELEM_CHUNK).for_each(|c| c.fill(0.0));
        g_wenc.par_chunks_mut(ELEM_CHUNK).for_each(|c| c.fill(0.0));
        let mut g_benc = vec![0.0f32; n];
        g_wdec
            .par_chunks_mut(d)
            .zip(g_wenc.par_chunks_mut(d))
            .zip(g_benc.par_iter_mut())
            .enumerate()
            .for_each(|(l, ((gd, ge), gb))| {
                let pairs = &by_latent[count[l]..count[l + 1]];
                if pairs.is_empty() {
                    return;
                }
                for &(pi, is_aux) in pairs {
                    let (r, v, dp) = if is_aux {
                        let p = aux[pi as usize];
                        (p.0 as usize, p.2, aux_dpre[pi as usize])
                    } else {
                        let p = sel[pi as usize];
                        (p.0 as usize, p.2, sel_dpre[pi as usize])
                    };
                    let g = if is_aux { &per_row[r].1 } else { &per_row[r].0 };
                    let xr = &xc[r * d..(r + 1) * d];
                    for j in 0..d {
                        gd[j] += v * g[j];
                        ge[j] += dp * xr[j];
                    }
                    *gb += dp;
                }
            });
        // b_dec: the decoder's bias directly, and through the input's centring (pre = (x − b_dec) W_enc + …).
        let mut g_bdec = vec![0.0f64; d];
        for (g, _, _, _) in &per_row {
            g_bdec.iter_mut().zip(g).for_each(|(a, &b)| *a += b as f64);
        }
        for (l, &gbl) in g_benc.iter().enumerate() {
            if gbl != 0.0 {
                let w = &sae.w_enc_t[l * d..(l + 1) * d];
                let gb = gbl as f64;
                g_bdec
                    .iter_mut()
                    .zip(w)
                    .for_each(|(a, &b)| *a -= gb * b as f64);
            }
        }
        let g_bdec: Vec<f32> = g_bdec.iter().map(|&v| v as f32).collect();
        let err: f64 = per_row.iter().map(|p| p.2).sum();
        Gradients {
            sel,
            aux,
            err,
            g_wdec,
            g_wenc,
            g_benc,
            g_bdec,
        }
    }

    /// One training step on the next batch.
    fn step(&mut self, t: usize) -> Result<StepStats> {
        let (d, n) = (self.sae.d, self.sae.n);
        let bsz = self.cfg.batch;
        let mut x = Vec::new();
        self.batches.next(bsz, &mut x)?;
        if self.scale != 1.0 {
            let s = self.scale;
            x.iter_mut().for_each(|v| *v *= s);
        }
        let dead: Vec<u32> = (0..n as u32)
            .filter(|&i| self.since_fired[i as usize] > self.cfg.dead_tokens)
            .collect();
        let Gradients {
            sel,
            err,
            aux: _,
            mut g_wdec,
            mut g_wenc,
            mut g_benc,
            mut g_bdec,
        } = self.gradients(&x, &dead);
        // Keep the decoder on the unit sphere: drop each row's gradient component along the row (free rows
        // keep their whole gradient).
        let unit = self.cfg.rescaled_decoder.is_none();
        if unit {
            g_wdec
                .par_chunks_mut(d)
                .zip(self.sae.w_dec.par_chunks(d))
                .for_each(|(gd, w)| {
                    let along = gd.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
                    if along != 0.0 {
                        gd.iter_mut().zip(w).for_each(|(a, b)| *a -= along * b);
                    }
                });
        }
        // Clip the global norm, then Adam.
        if self.cfg.clip > 0.0 {
            let norm =
                (sum_sq(&g_wdec) + sum_sq(&g_wenc) + sum_sq(&g_benc) + sum_sq(&g_bdec)).sqrt();
            if norm > self.cfg.clip {
                let s = (self.cfg.clip / norm) as f32;
                for g in [&mut g_wdec, &mut g_wenc, &mut g_benc, &mut g_bdec] {
                    g.par_iter_mut().for_each(|v| *v *= s);
                }
            }
        }
        let lr = self.lr_at(t);
        let tt = (t + 1) as i32;
        adam(
            &mut self.sae.w_dec,
            &g_wdec,
            &mut self.m_wdec,
            lr as f32,
            tt,
        );
        adam(
            &mut self.sae.w_enc_t,
            &g_wenc,
            &mut self.m_wenc,
            lr as f32,
            tt,
        );
        adam(
            &mut self.sae.b_enc,
            &g_benc,
            &mut self.m_benc,
            lr as f32,
            tt,
        );
        adam(
            &mut self.sae.b_dec,
            &g_bdec,
            &mut self.m_bdec,
            lr as f32,
            tt,
        );
        if unit {
            normalise_rows(&mut self.sae.w_dec, d);
        } else {
            self.refresh_norms();
        }
        self.g_wdec = g_wdec;
        self.g_wenc = g_wenc;
        // Firing counters.
        let mut fired = vec![false; n];
        for p in &sel {
            fired[p.1 as usize] = true;
        }
        for (c, f) in self.since_fired.iter_mut().zip(&fired) {
            *c = if *f { 0 } else { *c + bsz as u64 };
        }
        // Batch statistics.
        let mut mean = vec![0.0f64; d];
        for r in x.chunks_exact(d) {
            mean.iter_mut().zip(r).for_each(|(a, &b)| *a += b as f64);
        }
        mean.iter_mut().for_each(|a| *a /= bsz as f64);
        let tot: f64 = x
            .chunks_exact(d)
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(&a, b)| (a as f64 - b).powi(2))
                    .sum::<f64>()
            })
            .sum();
        let dead_now = self
            .since_fired
            .iter()
            .filter(|&&c| c > self.cfg.dead_tokens)
            .count();
        Ok(StepStats {
            step: t + 1,
            tokens: ((t + 1) * bsz) as u64,
            fvu: if tot > 0.0 { err / tot } else { f64::NAN },
            l0: sel.len() as f64 / bsz as f64,
            dead_fraction: dead_now as f64 / n as f64,
            lr,
        })
    }

    /// Runs every step; progress counts rows and its status line shows FVU, L0 and the dead share.
    pub fn run(self, progress: &dyn Progress) -> Result<Trained> {
        match self.run_with(progress, &Checkpoints::default())? {
            Outcome::Done(t) => Ok(*t),
            Outcome::Stopped { .. } => unreachable!("no stop was asked for"),
        }
    }

    /// Runs the remaining steps, writing a checkpoint every `ck.every` steps, and stopping (after a
    /// checkpoint) once `ck.stop_after` steps of this run are done.
    pub fn run_with(mut self, progress: &dyn Progress, ck: &Checkpoints) -> Result<Outcome> {
        let steps = self.steps;
        let bsz = self.cfg.batch;
        progress.stage("sae train", (steps * bsz) as u64);
        progress.advance((self.next_step * bsz) as u64);
        let log_every = (steps / 100).max(1);
        let tail = (steps / 10).max(1);
        let first = self.next_step;
        while self.next_step < steps {
            let t = self.next_step;
            let s = self.step(t)?;
            if t + tail >= steps {
                self.fvu_tail += s.fvu / tail as f64;
                self.l0_tail += s.l0 / tail as f64;
            }
            self.last_dead = s.dead_fraction;
            progress.status(&format!(
                "FVU {:.4}  L0 {:.1}  dead {:.2}%",
                s.fvu,
                s.l0,
                100.0 * s.dead_fraction
            ));
            if (t + 1).is_multiple_of(log_every) || t + 1 == steps {
                self.log.push(s);
            }
            progress.advance(bsz as u64);
            self.next_step += 1;
            let done_here = self.next_step - first;
            if let Some(dir) = &ck.dir {
                let due = ck
                    .every
                    .is_some_and(|e| e > 0 && self.next_step.is_multiple_of(e));
                let stop = ck.stop_after.is_some_and(|m| done_here >= m) && self.next_step < steps;
                if due || stop {
                    self.save_checkpoint(dir)?;
                }
                if stop {
                    progress.finish_stage();
                    return Ok(Outcome::Stopped {
                        step: self.next_step,
                        steps,
                    });
                }
            }
        }
        progress.finish_stage();
        let summary = TrainSummary {
            steps,
            tokens: (steps * bsz) as u64,
            source_rows: self.src.rows(),
            d: self.sae.d,
            width: self.sae.n,
            k: self.sae.k,
            arch: self.cfg.arch,
            lr: self.cfg.learning_rate(),
            warmup_steps: self.warmup,
            decay_steps: self.decay,
            aux_k: self.aux_k,
            input_scale: self.scale as f64,
            threshold: self.threshold,
            rows_recomputed: self.rows_recomputed,
            final_fvu: self.fvu_tail,
            final_l0: self.l0_tail,
            final_dead_fraction: self.last_dead,
            log: std::mem::take(&mut self.log),
        };
        let sae = self.export();
        Ok(Outcome::Done(Box::new(Trained { sae, summary })))
    }

    /// The settings and source a checkpoint must match to be resumed.
    fn identity(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.cfg,
            "source": {"rows": self.src.rows(), "cols": self.src.cols()},
            "format": CHECKPOINT_FORMAT,
        })
    }

    /// Writes the whole training state into the folder `dir` (replaced atomically).
    pub fn save_checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        use super::io::{f32_tensor, i64_tensor};
        let b = &self.batches;
        let state = serde_json::json!({
            "identity": self.identity(),
            "next_step": self.next_step,
            "scale": self.scale,
            "threshold": self.threshold,
            "rows_recomputed": self.rows_recomputed,
            "batches": {"pass": b.pass, "next_chunk": b.next_chunk, "pos": b.pos, "fills": b.fills},
            "fvu_tail": self.fvu_tail,
            "l0_tail": self.l0_tail,
            "last_dead": self.last_dead,
            "log": self.log,
        });
        let (d, n) = (self.sae.d, self.sae.n);
        let tensors = vec![
            f32_tensor("w_enc_t", vec![n, d], &self.sae.w_enc_t),
            f32_tensor("b_enc", vec![n], &self.sae.b_enc),
            f32_tensor("w_dec", vec![n, d], &self.sae.w_dec),
            f32_tensor("b_dec", vec![d], &self.sae.b_dec),
            f32_tensor("m_wenc", vec![n * d], &self.m_wenc.m),
            f32_tensor("v_wenc", vec![n * d], &self.m_wenc.v),
            f32_tensor("m_benc", vec![n], &self.m_benc.m),
            f32_tensor("v_benc", vec![n], &self.m_benc.v),
            f32_tensor("m_wdec", vec![n * d], &self.m_wdec.m),
            f32_tensor("v_wdec", vec![n * d], &self.m_wdec.v),
            f32_tensor("m_bdec", vec![d], &self.m_bdec.m),
            f32_tensor("v_bdec", vec![d], &self.m_bdec.v),
            i64_tensor(
                "since_fired",
                &self
                    .since_fired
                    .iter()
                    .map(|&v| v as i64)
                    .collect::<Vec<_>>(),
            ),
            i64_tensor(
                "order",
                &b.order.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            ),
            f32_tensor("buffer", vec![b.buf.len()], &b.buf),
        ];
        let st = super::io::encode_tensors(&tensors)?;
        let js = serde_json::to_vec_pretty(&state).map_err(|e| Error::Numerical {
            what: "checkpoint".into(),
            problem: e.to_string(),
        })?;
        super::io::write_folder(dir, &[("state.json", js), ("state.safetensors", st)], true)
    }

    /// A trainer restored from a checkpoint folder written by the same settings on the same source.
    pub fn resume(
        src: &'a dyn RowSource,
        cfg: &TrainConfig,
        dir: &std::path::Path,
    ) -> Result<Self> {
        use super::io::{read_f32, read_i64};
        let mut t = Trainer::new(src, cfg)?;
        let sp = dir.join("state.json");
        crate::data::check_regular(&sp)?;
        let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
        let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &sp,
                format!("is not valid JSON ({e})"),
                "the checkpoint is damaged: train again without resuming",
            )
        })?;
        if state["identity"] != t.identity() {
            return Err(Error::format(
                dir,
                "the checkpoint was written by a run with other settings or another source",
                "resume with the settings and the file of the run that wrote it, or train again without resuming",
            ));
        }
        let tp = dir.join("state.safetensors");
        let bytes = std::fs::read(&tp).map_err(|e| Error::io(&tp, e))?;
        let (d, n) = (t.sae.d, t.sae.n);
        let f = |name: &str, len: usize| read_f32(&bytes, &tp, name, len);
        t.sae.w_enc_t = f("w_enc_t", n * d)?;
        t.sae.b_enc = f("b_enc", n)?;
        t.sae.w_dec = f("w_dec", n * d)?;
        t.sae.b_dec = f("b_dec", d)?;
        t.m_wenc = Moments {
            m: f("m_wenc", n * d)?,
            v: f("v_wenc", n * d)?,
        };
        t.m_benc = Moments {
            m: f("m_benc", n)?,
            v: f("v_benc", n)?,
        };
        t.m_wdec = Moments {
            m: f("m_wdec", n * d)?,
            v: f("v_wdec", n * d)?,
        };
        t.m_bdec = Moments {
            m: f("m_bdec", d)?,
            v: f("v_bdec", d)?,
        };
        t.since_fired = read_i64(&bytes, &tp, "since_fired", Some(n))?
            .into_iter()
            .map(|v| v as u64)
            .collect();
        let damaged = || {
            Error::format(
                &sp,
                "a field is missing or has the wrong type",
                "the checkpoint is damaged: train again without resuming",
            )
        };
        let u = |v: &serde_json::Value| v.as_u64().ok_or_else(damaged);
        let bs = &state["batches"];
        t.batches.order = read_i64(&bytes, &tp, "order", None)?
            .into_iter()
            .map(|v| v as usize)
            .collect();
        t.batches.buf = read_f32(&bytes, &tp, "buffer", usize::MAX)?;
        t.batches.pass = u(&bs["pass"])?;
        t.batches.next_chunk = u(&bs["next_chunk"])? as usize;
        t.batches.pos = u(&bs["pos"])? as usize;
        t.batches.fills = u(&bs["fills"])?;
        t.next_step = u(&state["next_step"])? as usize;
        t.scale = state["scale"].as_f64().ok_or_else(damaged)? as f32;
        t.threshold = state["threshold"].as_f64();
        t.rows_recomputed = u(&state["rows_recomputed"])?;
        t.fvu_tail = state["fvu_tail"].as_f64().ok_or_else(damaged)?;
        t.l0_tail = state["l0_tail"].as_f64().ok_or_else(damaged)?;
        t.last_dead = state["last_dead"].as_f64().ok_or_else(damaged)?;
        t.log = serde_json::from_value(state["log"].clone()).map_err(|_| damaged())?;
        if t.batches.pos * d > t.batches.buf.len()
            || t.batches.next_chunk > t.batches.order.len()
            || t.next_step > t.steps
        {
            return Err(damaged());
        }
        t.refresh_norms();
        Ok(t)
    }

    /// The weights for raw (unscaled) input: the input scale s folded in (W_enc·s, W_dec/s, b_dec/s), and
    /// BatchTopK's threshold as a JumpReLU.
    fn export(self) -> Sae {
        let s = self.scale;
        let mut sae = self.sae;
        // Free decoder rows: unit rows, the norms folded into the encoder rows and biases (the same codes
        // times ‖d_j‖, the same selection and reconstruction).
        if !self.norms.is_empty() {
            let d = sae.d;
            sae.w_dec
                .par_chunks_mut(d)
                .zip(sae.w_enc_t.par_chunks_mut(d))
                .zip(sae.b_enc.par_iter_mut())
                .zip(self.norms.par_iter())
                .for_each(|(((wd, we), be), &nj)| {
                    if nj > 0.0 {
                        wd.iter_mut().for_each(|v| *v /= nj);
                        we.iter_mut().for_each(|v| *v *= nj);
                        *be *= nj;
                    }
                });
        }
        if s != 1.0 {
            sae.w_enc_t.iter_mut().for_each(|v| *v *= s);
            sae.w_dec.iter_mut().for_each(|v| *v /= s);
            sae.b_dec.iter_mut().for_each(|v| *v /= s);
        }
        if matches!(sae.arch, Architecture::BatchTopK) {
            let t = self.threshold.unwrap_or(0.0) as f32;
            sae.threshold = Some(vec![t; sae.n]);
            sae.arch = Architecture::JumpRelu;
        }
        sae
    }
}

/// Trains an SAE on `src` with `cfg`.
pub fn train(src: &dyn RowSource, cfg: &TrainConfig, progress: &dyn Progress) -> Result<Trained> {
    Trainer::new(src, cfg)?.run(progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Matrix;

    /// The loss of one batch in f64, parameters [W_enc (transposed), b_enc, W_dec, b_dec], with the selection
    /// and AuxK sets held at `g`'s and the AuxK target (the residual) held at its value for `base`.
    fn loss(
        sae: &[Vec<f64>; 4],
        x: &[f32],
        d: usize,
        g: &Gradients,
        alpha: f64,
        base: &[Vec<f64>; 4],
    ) -> f64 {
        let rows = x.len() / d;
        let pre = |p: &[Vec<f64>; 4], r: usize, i: usize| {
            let (we, be) = (&p[0], &p[1]);
            (0..d)
                .map(|j| (x[r * d + j] as f64 - p[3][j]) * we[i * d + j])
                .sum::<f64>()
                + be[i]
        };
        let recon = |p: &[Vec<f64>; 4], r: usize| {
            let mut xh = p[3].clone();
            for &(_, i, _) in g.sel.iter().filter(|q| q.0 as usize == r) {
                let v = pre(p, r, i as usize);
                (0..d).for_each(|j| xh[j] += v * p[2][i as usize * d + j]);
            }
            xh
        };
        let mut total = 0.0;
        for r in 0..rows {
            let xh = recon(sae, r);
            let xr = &x[r * d..(r + 1) * d];
            total += (0..d).map(|j| (xh[j] - xr[j] as f64).powi(2)).sum::<f64>();
            let xb = recon(base, r);
            let mut e = vec![0.0f64; d];
            for &(_, i, _) in g.aux.iter().filter(|q| q.0 as usize == r) {
                let v = pre(sae, r, i as usize);
                (0..d).for_each(|j| e[j] += v * sae[2][i as usize * d + j]);
            }
            total += alpha
                * (0..d)
                    .map(|j| (e[j] - (xr[j] as f64 - xb[j])).powi(2))
                    .sum::<f64>();
        }
        total / rows as f64
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (d, n, rows) = (6, 10, 8);
        let mut rng = Rng::stream(11, 0);
        let x: Vec<f32> = (0..rows * d).map(|_| rng.normal() as f32).collect();
        let m = Matrix::from_vec(rows, d, x.clone(), "x").unwrap();
        for arch in [Architecture::TopK, Architecture::BatchTopK] {
            let cfg = TrainConfig {
                width: n,
                k: 3,
                arch,
                batch: rows,
                aux_k: Some(4),
                aux_coef: 0.5,
                normalize: false,
                ..TrainConfig::default()
            };
            let mut t = Trainer::new(&m, &cfg).unwrap();
            // Move every parameter off its initial value, so that no term of the gradient is zero by symmetry.
            for v in t.sae.w_enc_t.iter_mut().chain(&mut t.sae.w_dec) {
                *v += 0.3 * rng.normal() as f32;
            }
            for v in t.sae.b_enc.iter_mut().chain(&mut t.sae.b_dec) {
                *v = 0.2 * rng.normal() as f32;
            }
            // Four dead latents for k_aux = 4 weigh AuxK fully; two weigh it by 2/4.
            for (dead, alpha) in [((6..10).collect::<Vec<u32>>(), 0.5), (vec![6, 7], 0.25)] {
                let g = t.gradients(&x, &dead);
                assert!(!g.aux.is_empty(), "{arch:?}: AuxK has pairs");
                let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
                let base = [
                    to64(&t.sae.w_enc_t),
                    to64(&t.sae.b_enc),
                    to64(&t.sae.w_dec),
                    to64(&t.sae.b_dec),
                ];
                let analytic = [&g.g_wenc, &g.g_benc, &g.g_wdec, &g.g_bdec];
                let h = 1e-5;
                for (pi, an) in analytic.iter().enumerate() {
                    let scale = an.iter().fold(0.0f32, |a, &b| a.max(b.abs())) as f64;
                    assert!(scale > 0.0, "{arch:?}: gradient {pi} is not all zero");
                    for (c, &a) in an.iter().enumerate() {
                        let mut up = base.clone();
                        up[pi][c] += h;
                        let mut dn = base.clone();
                        dn[pi][c] -= h;
                        let fd = (loss(&up, &x, d, &g, alpha, &base)
                            - loss(&dn, &x, d, &g, alpha, &base))
                            / (2.0 * h);
                        assert!(
                            (fd - a as f64).abs() <= 1e-4 * scale + 1e-6,
                            "{arch:?}: parameter {pi}[{c}]: finite difference {fd}, analytic {a}"
                        );
                    }
                }
            }
        }
    }
}
