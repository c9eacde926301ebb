//! The encoder forward pass on the CPU, on packed sequences: the real tokens of a batch are stored one
//! after another (no padding rows at all), every token-wise step (projections, LayerNorm, feed-forward) is
//! one matrix product over all tokens through faer, and attention runs per text over its own tokens only.
//! The arithmetic is the one the padded, masked computation does (a masked key gets weight exactly 0), so
//! the results are the reference's up to float summation order; the time spent on padding is gone.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::folder::{Activation, EncoderConfig, Family};

/// A linear layer: weight out × in (row-major, as PyTorch stores it) and bias.
pub(crate) struct Linear {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub out: usize,
    pub inp: usize,
}

/// A LayerNorm's scale and shift.
pub(crate) struct Norm {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

pub(crate) struct CpuBlock {
    /// Query, key and value stacked: 3h × h.
    pub qkv: Linear,
    pub out: Linear,
    pub ln1: Norm,
    pub ff1: Linear,
    pub ff2: Linear,
    pub ln2: Norm,
}

pub(crate) struct CpuEncoder {
    pub cfg: EncoderConfig,
    pub word: Vec<f32>,
    pub position: Vec<f32>,
    /// Token type 0's embedding (single-segment inputs), if the model has token types.
    pub token_type0: Option<Vec<f32>>,
    pub emb_ln: Norm,
    pub blocks: Vec<CpuBlock>,
}

/// Rows above which a product is split over the rayon threads.
pub(crate) const PAR_ROWS: usize = 64;

/// dst (rows × l.out, row-major) = x (rows × l.in) · Wᵀ + bias, or += when `accumulate` (dst holding a
/// residual); the bias is added first so the product lands on it.
pub(crate) fn linear(
    dst: &mut [f32],
    x: &[f32],
    rows: usize,
    l: &Linear,
    accumulate: bool,
    par: bool,
) {
    for row in dst.chunks_exact_mut(l.out) {
        if accumulate {
            row.iter_mut().zip(&l.b).for_each(|(d, b)| *d += b);
        } else {
            row.copy_from_slice(&l.b);
        }
    }
    let lhs = MatRef::from_row_major_slice(x, rows, l.inp);
    let rhs = MatRef::from_row_major_slice(&l.w, l.out, l.inp).transpose();
    let out = MatMut::from_row_major_slice_mut(dst, rows, l.out);
    let par = if par && rows >= PAR_ROWS {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    matmul(out, Accum::Add, lhs, rhs, 1.0f32, par);
}

/// LayerNorm of every row in place (statistics in f64).
pub(crate) fn layer_norm(x: &mut [f32], h: usize, n: &Norm, eps: f64, par: bool) {
    let work = |rows: &mut [f32]| {
        for row in rows.chunks_exact_mut(h) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
            let var = row
                .iter()
                .map(|&v| {
                    let d = v as f64 - mean;
                    d * d
                })
                .sum::<f64>()
                / h as f64;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&n.w).zip(&n.b) {
                *v = ((*v as f64 - mean) * inv) as f32 * w + b;
            }
        }
    };
    if par {
        x.par_chunks_mut(h * 16).for_each(work);
    } else {
        work(x);
    }
}

/// e^x for f32, branch-free (so loops over it vectorise): Cephes' expf, e^x = 2^n · e^r with
/// r = x − n·ln 2 in [−ln2/2, ln2/2] and a degree-5 polynomial; about 1 ulp. Arguments are clamped to
/// [−87, 88], where the result stays a normal float.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer without a libm call: adding 1.5·2²³ leaves n in the low
    // mantissa bits, read back with integer arithmetic (an `as i32` would not vectorise).
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    let n_int = t.to_bits().wrapping_sub(0x4B40_0000);
    y * f32::from_bits(n_int.wrapping_add(127) << 23)
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), the formula PyTorch's vectorised CPU
/// kernels use for GELU's exact (erf) form. Branch-free; beyond |x| = 4 it is 1 to f32 precision.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let r = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    // e^(−x²) clamped at e^−80: a normal float, and 1 − r·e^−80 is 1 in f32 anyway.
    (1.0 - r * exp((-ax * ax).max(-80.0))).copysign(x)
}

#[inline(always)]
fn activate_slice(c: &mut [f32], act: Activation) {
    match act {
        Activation::GeluErf => c.iter_mut().for_each(|v| {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }),
        // 0.5 · z · (1 + tanh(u)) = z · σ(2u) = z / (1 + e^(−2u)), u = √(2/π)(z + 0.044715 z³): the same
        // function through the branch-free exp, which vectorises (libm's tanhf does not).
        Activation::GeluTanh => c.iter_mut().for_each(|v| {
            let z = *v;
            let u = 0.797_884_6 * (z + 0.044_715 * z * z * z);
            *v = z / (1.0 + exp(-2.0 * u));
        }),
        Activation::Relu => c.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Silu => c.iter_mut().for_each(|v| *v /= 1.0 + exp(-*v)),
    }
}

/// [`activate_slice`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn activate_avx512(c: &mut [f32], act: Activation) {
    activate_slice(c, act)
}

/// [`activate_slice`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn activate_avx2(c: &mut [f32], act: Activation) {
    activate_slice(c, act)
}

/// The activation in place, on the widest vectors the CPU has. No fused multiply-adds are formed at any
/// width (Rust does not contract), so the result is the same on every CPU.
fn activate_wide(c: &mut [f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { activate_avx512(c, act) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { activate_avx2(c, act) };
        }
    }
    activate_slice(c, act)
}

pub(crate) fn activate(x: &mut [f32], act: Activation, par: bool) {
    if par {
        x.par_chunks_mut(4096).for_each(|c| activate_wide(c, act));
    } else {
        activate_wide(x, act);
    }
}

/// Which keys each query sees, and how the packed query | key | value rows are laid out.
pub(crate) struct AttnShape {
    pub heads: usize,
    /// Key/value heads; query head h reads key/value head h / (heads / kv_heads).
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies every score.
    pub scale: f32,
    /// A query sees only itself and earlier tokens (decoders); otherwise every token of its text.
    pub causal: bool,
    /// With `causal`: only the last `w` positions, itself included.
    pub window: Option<usize>,
    /// Soft-capping c of the scaled scores: s becomes c · tanh(s / c) (Gemma 2).
    pub softcap: Option<f32>,
}

/// The rows of `buf` (`width` values each) cut per text: text s owns rows offs[s]..offs[s + 1].
pub(crate) fn split_rows<'a>(
    buf: &'a mut [f32],
    offs: &[usize],
    width: usize,
) -> Vec<&'a mut [f32]> {
    let mut parts = Vec::with_capacity(offs.len().saturating_sub(1));
    let mut rest = buf;
    for w in offs.windows(2) {
        let (a, b) = rest.split_at_mut((w[1] - w[0]) * width);
        parts.push(a);
        rest = b;
    }
    parts
}

/// Self-attention of every text over its own tokens. `qkv` holds the packed rows: every query head, then
/// every key head, then every value head (tokens × (heads + 2 kv_heads) · head_dim); text s owns rows
/// offs[s]..offs[s + 1], and `parts[s]` receives its context rows (len × heads · head_dim). A key outside the
/// query's view gets weight exactly 0, as under an additive mask.
pub(crate) fn attention(
    qkv: &[f32],
    offs: &[usize],
    a: &AttnShape,
    parts: Vec<&mut [f32]>,
    par: bool,
) {
    let (hq, hkv, dh) = (a.heads, a.kv_heads, a.head_dim);
    let q_w = hq * dh;
    let width = (hq + 2 * hkv) * dh;
    let group = hq / hkv;
    let work = |(s, dst): (usize, &mut [f32])| {
        let len = offs[s + 1] - offs[s];
        let base = &qkv[offs[s] * width..offs[s + 1] * width];
        let span = (len - 1) * width + dh;
        let mut scores = vec![0f32; len * len];
        for hd in 0..hq {
            let g = hd / group;
            let (qo, ko, vo) = (hd * dh, q_w + g * dh, q_w + (hkv + g) * dh);
            let q = MatRef::from_row_major_slice_with_stride(&base[qo..qo + span], len, dh, width);
            let k = MatRef::from_row_major_slice_with_stride(&base[ko..ko + span], len, dh, width);
            let v = MatRef::from_row_major_slice_with_stride(&base[vo..vo + span], len, dh, width);
            let sm = MatMut::from_row_major_slice_mut(&mut scores, len, len);
            matmul(sm, Accum::Replace, q, k.transpose(), a.scale, Par::Seq);
            for (i, row) in scores.chunks_exact_mut(len).enumerate() {
                let (lo, hi) = if a.causal {
                    (a.window.map_or(0, |w| (i + 1).saturating_sub(w)), i + 1)
                } else {
                    (0, len)
                };
                let live = &mut row[lo..hi];
                if let Some(c) = a.softcap {
                    live.iter_mut().for_each(|v| *v = (*v / c).tanh() * c);
                }
                let m = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for v in live.iter_mut() {
                    // Below e^-80 a weight is 0 next to the maximum's 1 (and exp's underflow path is slow).
                    let d = *v - m;
                    *v = if d > -80.0 { exp(d) } else { 0.0 };
                    sum += *v;
                }
                let inv = 1.0 / sum;
                live.iter_mut().for_each(|v| *v *= inv);
                row[..lo].iter_mut().for_each(|v| *v = 0.0);
                row[hi..].iter_mut().for_each(|v| *v = 0.0);
            }
            let p = MatRef::from_row_major_slice(&scores, len, len);
            let cspan = (len - 1) * q_w + dh;
            // Row-major with a row stride, built as the transpose of a column-major view
            // (faer 0.24's from_row_major_slice_with_stride_mut lays the data out column-major).
            let c = MatMut::from_column_major_slice_with_stride_mut(
                &mut dst[hd * dh..hd * dh + cspan],
                dh,
                len,
                q_w,
            )
            .transpose_mut();
            matmul(c, Accum::Replace, p, v, 1.0f32, Par::Seq);
        }
    };
    if par {
        parts.into_par_iter().enumerate().for_each(work);
    } else {
        parts.into_iter().enumerate().for_each(work);
    }
}

impl CpuEncoder {
    /// Runs the texts `seqs` (token ids, no padding). Returns, for each layer index 0..=L that `keep`
    /// marks, the packed hidden states: total_tokens × hidden, text after text in the order given.
    /// `par` spreads each product and row-wise step over the rayon threads (for a single batch); without
    /// it everything runs on the calling thread.
    pub fn forward(&self, seqs: &[&[u32]], keep: &[bool], par: bool) -> Vec<Option<Vec<f32>>> {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let heads = cfg.num_heads;
        let eps = cfg.layer_norm_eps;
        let mut offs = Vec::with_capacity(seqs.len() + 1);
        offs.push(0usize);
        for s in seqs {
            offs.push(offs.last().copied().unwrap_or(0) + s.len());
        }
        let n = offs[seqs.len()];

        // Embeddings: word + position (+ token type 0), then LayerNorm.
        let mut x = vec![0f32; n * h];
        let pad = cfg.pad_token_id as usize;
        for (s, seq) in seqs.iter().enumerate() {
            for (t, &id) in seq.iter().enumerate() {
                let pos = match cfg.family {
                    // Real tokens are never padding here, so RoBERTa positions are pad + 1 + t.
                    Family::Roberta => pad + 1 + t,
                    _ => t,
                };
                let row = &mut x[(offs[s] + t) * h..(offs[s] + t + 1) * h];
                let wv = &self.word[id as usize * h..(id as usize + 1) * h];
                let pv = &self.position[pos * h..(pos + 1) * h];
                for ((r, a), b) in row.iter_mut().zip(wv).zip(pv) {
                    *r = a + b;
                }
                if let Some(tt) = &self.token_type0 {
                    row.iter_mut().zip(tt).for_each(|(r, v)| *r += v);
                }
            }
        }
        layer_norm(&mut x, h, &self.emb_ln, eps, par);
        let keep_at = |i: usize| keep.get(i).copied().unwrap_or(false);
        let mut out = Vec::with_capacity(cfg.num_layers + 1);
        out.push(keep_at(0).then(|| x.clone()));

        let shape = AttnShape {
            heads,
            kv_heads: heads,
            head_dim: h / heads,
            scale: 1.0 / ((h / heads) as f32).sqrt(),
            causal: false,
            window: None,
            softcap: None,
        };
        let mut qkv = vec![0f32; n * 3 * h];
        let mut ctx = vec![0f32; n * h];
        let mut ff = vec![0f32; n * cfg.intermediate_size];
        for (l, blk) in self.blocks.iter().enumerate() {
            linear(&mut qkv, &x, n, &blk.qkv, false, par);
            // Attention, text by text: each writes its own rows of ctx.
            attention(&qkv, &offs, &shape, split_rows(&mut ctx, &offs, h), par);
            // a = LayerNorm(ctx·Woᵀ + bo + x); the residual x is overwritten in place.
            linear(&mut x, &ctx, n, &blk.out, true, par);
            layer_norm(&mut x, h, &blk.ln1, eps, par);
            linear(&mut ff, &x, n, &blk.ff1, false, par);
            activate(&mut ff, cfg.activation, par);
            // x = LayerNorm(f·W2ᵀ + b2 + a)
            linear(&mut x, &ff, n, &blk.ff2, true, par);
            layer_norm(&mut x, h, &blk.ln2, eps, par);
            out.push(keep_at(l + 1).then(|| x.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn exp_is_accurate_to_a_few_ulp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = super::exp(x) as f64;
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got} not {want}"
            );
            x += 0.0137;
        }
    }

    #[test]
    fn tanh_gelu_matches_its_definition() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let z = x as f64;
            let want = 0.5
                * z
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z * z * z)).tanh());
            let mut v = [x];
            super::activate(&mut v, crate::folder::Activation::GeluTanh, false);
            assert!(
                (v[0] as f64 - want).abs() <= 2e-7 * want.abs().max(1.0),
                "gelu_tanh({x}) = {} not {want}",
                v[0]
            );
            x += 0.0071;
        }
    }

    #[test]
    fn erf_matches_known_values() {
        // Reference values of erf (Python's math.erf).
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (-1.5, -0.966_105_146_475_310_7),
            (5.0, 0.999_999_999_998_462_5),
        ] {
            let got = erf(x as f32) as f64;
            assert!((got - want).abs() < 2e-7, "erf({x}) = {got} not {want}");
        }
    }
}

#[cfg(test)]
mod product_tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32
                    / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn linear_matches_a_naive_product() {
        for (rows, inp, out) in [
            (18, 384, 384),
            (18, 384, 1152),
            (5, 1536, 384),
            (130, 384, 1536),
        ] {
            let x = data(rows * inp, 1);
            let l = Linear {
                w: data(out * inp, 2),
                b: data(out, 3),
                out,
                inp,
            };
            let res = data(rows * out, 4);
            let mut dst = vec![0f32; rows * out + 8];
            dst[..rows * out].copy_from_slice(&res);
            let guard: Vec<f32> = dst[rows * out..].to_vec();
            linear(&mut dst[..rows * out], &x, rows, &l, true, true);
            assert_eq!(&dst[rows * out..], &guard[..], "wrote past the end");
            for r in 0..rows {
                for o in 0..out {
                    let want: f64 = res[r * out + o] as f64
                        + l.b[o] as f64
                        + (0..inp)
                            .map(|k| x[r * inp + k] as f64 * l.w[o * inp + k] as f64)
                            .sum::<f64>();
                    assert!(
                        (dst[r * out + o] as f64 - want).abs() < 1e-3,
                        "{rows}x{inp}x{out} at {r},{o}"
                    );
                }
            }
        }
    }

    #[test]
    fn attention_matches_a_naive_softmax_attention() {
        let (h, heads) = (8, 2);
        let dh = h / heads;
        let lens = [3usize, 1, 5];
        let mut offs = vec![0];
        for l in lens {
            offs.push(offs.last().unwrap() + l);
        }
        let n = offs[3];
        let qkv = data(n * 3 * h, 7);
        let mut ctx = vec![0f32; n * h + 4];
        {
            let (body, _) = ctx.split_at_mut(n * h);
            let mut parts = Vec::new();
            let mut rest = body;
            for &len in &lens[..3] {
                let (a, b) = rest.split_at_mut(len * h);
                parts.push(a);
                rest = b;
            }
            let shape = AttnShape {
                heads,
                kv_heads: heads,
                head_dim: dh,
                scale: 1.0 / (dh as f32).sqrt(),
                causal: false,
                window: None,
                softcap: None,
            };
            attention(&qkv, &offs, &shape, parts, true);
        }
        assert_eq!(&ctx[n * h..], &[0.0; 4], "wrote past the end");
        for s in 0..3 {
            for hd in 0..heads {
                for i in 0..lens[s] {
                    let row = |t: usize, part: usize| {
                        let r = offs[s] + t;
                        &qkv[r * 3 * h + part * h + hd * dh..r * 3 * h + part * h + (hd + 1) * dh]
                    };
                    let sc: Vec<f64> = (0..lens[s])
                        .map(|j| {
                            row(i, 0)
                                .iter()
                                .zip(row(j, 1))
                                .map(|(a, b)| (*a as f64) * (*b as f64))
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
                    for c in 0..dh {
                        let want: f64 = (0..lens[s])
                            .map(|j| (sc[j] - m).exp() / z * row(j, 2)[c] as f64)
                            .sum();
                        let got = ctx[(offs[s] + i) * h + hd * dh + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "text {s} head {hd} token {i} col {c}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
