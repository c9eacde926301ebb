//! The SAE encoder at inference (`eval`, `encode`): exact selection from a fast approximate product.
//!
//! A row's pre-activations `pre_j = (x − b_dec)·W_enc[:, j] + b_enc[j]` are defined here as the f32 rounding
//! of their f64 sum ("canonical values"), whatever the hardware. The dense product over all n latents runs in
//! lower precision: on AMX tiles with split bf16 ([`crate::amx`]), or else as a faer f32 product. Both come
//! with a bound Δ on |approximate − canonical| for every latent of the row. Only the latents that the bound
//! cannot exclude are computed canonically, and the selection is made among them:
//!
//! - TopK: with t the k-th largest approximate value, every latent whose approximate value is below t − 2Δ
//!   has a canonical value below k others, so it is not among the k largest. The candidates (those at or
//!   above t − 2Δ, at least k) get canonical values and the k largest are kept, ties to the lower index.
//! - Threshold rules (JumpReLU, BatchTopK at inference, ReLU): a latent whose approximate value is below
//!   max(θ_j, 0) − Δ cannot fire; the others get canonical values and are tested.
//!
//! So the codes are the ones an exact f64 evaluation gives, identical on every machine and thread count, and
//! the exact work is about k dot products per row. A row whose approximate values are not finite (overflow
//! at extreme magnitudes) is computed canonically in full.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::topk::Avx512;
use super::topk::{top_k_row_body, Lanes, Scalar};
use super::{layer_norm_rows, Architecture, Codes, InputNorm, Sae};
use crate::amx;

/// Rows per block: each block is one sequential product, so a row's codes never depend on the thread count.
const BLOCK: usize = 256;

/// How the approximate product runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AMX tiles with split bf16, where the CPU has them.
    Amx,
    /// faer's f32 product.
    F32,
}

impl Backend {
    /// AMX where [`amx::available`] says so, else f32.
    pub fn best() -> Backend {
        if amx::available() {
            Backend::Amx
        } else {
            Backend::F32
        }
    }
}

/// An SAE's encoder prepared for many blocks of rows: the encoder packed for the product, and the norms the
/// bound needs.
pub struct Encoder<'a> {
    sae: &'a Sae,
    backend: Backend,
    packed: Option<amx::Packed>,
    /// The largest encoder-column norm, max_j ‖W_enc[:, j]‖.
    w_max: f64,
    /// max_j |b_enc[j]|.
    b_max: f64,
}

/// The relative bound ε of a faer f32 product of length k: every product and sum rounded once, in any order,
/// |error| ≤ γ_{k+1}·Σ|a_t b_t| with γ_m = m·u/(1 − m·u); u is taken as 2⁻²³ (twice f32's unit roundoff) so
/// that the bound does not depend on how the kernel orders or fuses its operations.
fn f32_bound(k: usize) -> f64 {
    let m = (k + 1) as f64 * 2f64.powi(-23);
    m / (1.0 - m)
}

/// Σ a_t·b_t in f64, as every backend computes canonical values (see [`Lanes::dot_f64`]).
#[cfg(test)]
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    Scalar::dot_f64(a, b)
}

impl<'a> Encoder<'a> {
    pub fn new(sae: &'a Sae, backend: Backend) -> Encoder<'a> {
        let (d, n) = (sae.d, sae.n);
        let backend = if backend == Backend::Amx && !amx::available() {
            Backend::F32
        } else {
            backend
        };
        let packed = (backend == Backend::Amx).then(|| amx::Packed::new(&sae.w_enc_t, n, d));
        let w_max = sae
            .w_enc_t
            .par_chunks(d)
            .map(|w| w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
            .reduce(|| 0.0, f64::max);
        let b_max = sae
            .b_enc
            .iter()
            .fold(0.0f64, |m, &b| m.max((b as f64).abs()));
        Encoder {
            sae,
            backend,
            packed,
            w_max,
            b_max,
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The canonical pre-activation of latent j for the prepared row `xc`.
    #[inline(always)]
    fn exact<L: Lanes>(&self, xc: &[f32], j: usize) -> f32 {
        let d = self.sae.d;
        (L::dot_f64(xc, &self.sae.w_enc_t[j * d..(j + 1) * d]) + self.sae.b_enc[j] as f64) as f32
    }

    /// Sparse codes of `rows` rows of `x` (row-major, d columns), identical for any thread count and backend.
    pub fn encode(&self, x: &[f32], rows: usize) -> Codes {
        let blocks: Vec<Codes> = (0..rows.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let (s, e) = (b * BLOCK, ((b + 1) * BLOCK).min(rows));
                self.encode_block(&x[s * self.sae.d..e * self.sae.d], e - s)
            })
            .collect();
        let mut out = Codes {
            off: vec![0],
            ..Default::default()
        };
        for b in blocks {
            let base = out.idx.len();
            out.off.extend(b.off[1..].iter().map(|o| o + base));
            out.idx.extend(b.idx);
            out.val.extend(b.val);
            out.norm.extend(b.norm);
        }
        out
    }

    fn encode_block(&self, x: &[f32], rows: usize) -> Codes {
        let sae = self.sae;
        let (d, n) = (sae.d, sae.n);
        let mut c = Codes {
            off: vec![0],
            ..Default::default()
        };
        // The rows as the product reads them: layer-normalised if the SAE says so, then minus b_dec.
        let mut xc = x[..rows * d].to_vec();
        if sae.input_norm == InputNorm::LayerNorm {
            c.norm = layer_norm_rows(&mut xc, d);
        }
        if sae.apply_b_dec_to_input {
            for row in xc.chunks_exact_mut(d) {
                for (v, b) in row.iter_mut().zip(&sae.b_dec) {
                    *v -= b;
                }
            }
        }
        BUFFERS.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let b = &mut *bufs;
            let (stride, eps) = match (&self.packed, self.backend) {
                (Some(p), Backend::Amx) => {
                    b.lhs.fill(&xc, rows, p);
                    (amx::product(&b.lhs, p, &mut b.approx), amx::error_bound(d))
                }
                _ => {
                    b.approx.clear();
                    b.approx.resize(rows * n, 0.0);
                    matmul(
                        MatMut::from_row_major_slice_mut(&mut b.approx, rows, n),
                        Accum::Replace,
                        MatRef::from_row_major_slice(&xc, rows, d),
                        MatRef::from_row_major_slice(&sae.w_enc_t, n, d).transpose(),
                        1.0f32,
                        Par::Seq,
                    );
                    (n, f32_bound(d))
                }
            };
            let mut rows_of = Rows {
                xc: &xc,
                stride,
                eps,
                b,
                codes: &mut c,
            };
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { self.select_rows_avx512(&mut rows_of) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { self.select_rows_avx2(&mut rows_of) };
                }
            }
            self.select_rows::<Scalar>(&mut rows_of)
        });
        c
    }

    /// [`Encoder::select_rows`] compiled for AVX-512: the same operations in the same order (Rust does not
    /// fuse a multiply and an add), so the codes are bit-identical.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn select_rows_avx512(&self, r: &mut Rows) {
        self.select_rows::<Avx512>(r)
    }

    /// [`Encoder::select_rows`] compiled for AVX2 (plain Rust, vectorised by the compiler).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn select_rows_avx2(&self, r: &mut Rows) {
        self.select_rows::<Scalar>(r)
    }

    /// Candidates for every row of the block, then their canonical values in latent order (each encoder
    /// row is read once per block, in memory order, however many rows need it), then each row's choice.
    #[inline(always)]
    fn select_rows<L: Lanes>(&self, r: &mut Rows) {
        let (d, n) = (self.sae.d, self.sae.n);
        let rows = r.xc.len() / d;
        let (xc, stride, eps) = (r.xc, r.stride, r.eps);
        let Buffers {
            approx,
            heap,
            bmax,
            tmp,
            cand,
            owner,
            offs,
            keys,
            vals,
            ..
        } = &mut *r.b;
        cand.clear();
        owner.clear();
        offs.clear();
        offs.push(0);
        for row in 0..rows {
            let xr = &xc[row * d..(row + 1) * d];
            let s = &mut approx[row * stride..row * stride + n];
            self.candidates::<L>(xr, s, eps, heap, bmax, tmp, cand);
            owner.resize(cand.len(), row as u32);
            offs.push(cand.len());
        }
        keys.clear();
        keys.extend(
            cand.iter()
                .enumerate()
                .map(|(slot, &j)| ((j as u64) << 32) | slot as u64),
        );
        keys.sort_unstable();
        vals.clear();
        vals.resize(cand.len(), 0.0);
        // A plain loop, so that the dot products are inlined into the vector-compiled caller.
        for &key in keys.iter() {
            let (j, slot) = ((key >> 32) as usize, (key & 0xffff_ffff) as usize);
            let row = owner[slot] as usize;
            vals[slot] = self.exact::<L>(&xc[row * d..(row + 1) * d], j);
        }
        for row in 0..rows {
            let (a, b) = (offs[row], offs[row + 1]);
            self.choose::<L>(&cand[a..b], &vals[a..b], heap, r.codes);
            r.codes.off.push(r.codes.idx.len());
        }
    }

    /// Appends to `cand` the latents of row `xr` that its approximate products `s` (without b_enc) cannot
    /// rule out, ascending.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn candidates<L: Lanes>(
        &self,
        xr: &[f32],
        s: &mut [f32],
        eps: f64,
        heap: &mut Vec<(f32, u32)>,
        bmax: &mut Vec<f32>,
        tmp: &mut Vec<f32>,
        cand: &mut Vec<u32>,
    ) {
        let sae = self.sae;
        let d = sae.d;
        let na = L::dot_f64(xr, xr).sqrt();
        let (big, finite) = L::add_bias(s, &sae.b_enc);
        if !(finite && na.is_finite()) {
            // Overflow somewhere: every latent canonically.
            cand.extend(0..sae.n as u32);
            return;
        }
        // |s_j − canonical_j| ≤ Δ: the product's bound, the rounding of adding b_enc in f32, and the f32
        // rounding of the canonical value (with its f64 sum's own error).
        let prod = eps * na * self.w_max + amx::flush_bound(d, na, self.w_max);
        let top = big as f64 + self.b_max + prod;
        let delta = prod
            + 2f64.powi(-23) * top
            + 2f64.powi(-24) * top
            + d as f64 * 2f64.powi(-52) * na * self.w_max;
        match sae.arch {
            Architecture::TopK => {
                // t is the k-th largest value. The k-th largest block maximum t₀ is at most t (k blocks
                // each hold a value ≥ t₀), so every value ≥ t − 2Δ is among those ≥ t₀ − 2Δ: gather those,
                // find t among them, and keep the ones ≥ t − 2Δ.
                L::block_max(s, bmax);
                let t0 = if sae.k <= bmax.len() {
                    top_k_row_body::<L>(bmax, sae.k, heap);
                    heap.iter().fold(f32::INFINITY, |m, p| m.min(p.0)) as f64
                } else {
                    f64::NEG_INFINITY
                };
                let first = cand.len();
                at_least::<L>(s, t0 - 2.0 * delta, cand);
                tmp.clear();
                tmp.extend(cand[first..].iter().map(|&j| s[j as usize]));
                top_k_row_body::<L>(tmp, sae.k, heap);
                let t = heap.iter().fold(f32::INFINITY, |m, p| m.min(p.0)) as f64;
                let cut = round_down(t - 2.0 * delta);
                let mut keep = first;
                for i in first..cand.len() {
                    if s[cand[i] as usize] >= cut {
                        cand[keep] = cand[i];
                        keep += 1;
                    }
                }
                cand.truncate(keep);
            }
            Architecture::JumpRelu | Architecture::BatchTopK | Architecture::Relu => {
                let th = sae.threshold.as_deref();
                cand.extend(
                    s.iter()
                        .enumerate()
                        .filter(|&(j, &v)| {
                            let t = th.map_or(0.0f32, |t| t[j]).max(0.0) as f64;
                            v as f64 + delta > t
                        })
                        .map(|(j, _)| j as u32),
                );
            }
        }
    }

    /// Appends a row's active latents to `c`, ascending, from its candidates and their canonical values.
    #[inline(always)]
    fn choose<L: Lanes>(
        &self,
        cand: &[u32],
        vals: &[f32],
        heap: &mut Vec<(f32, u32)>,
        c: &mut Codes,
    ) {
        let sae = self.sae;
        match sae.arch {
            Architecture::TopK => {
                top_k_row_body::<L>(vals, sae.k, heap);
                heap.sort_by_key(|p| p.1);
                for &(v, pos) in heap.iter() {
                    if v > 0.0 {
                        c.idx.push(cand[pos as usize]);
                        c.val.push(v);
                    }
                }
            }
            Architecture::JumpRelu | Architecture::BatchTopK | Architecture::Relu => {
                let th = sae.threshold.as_deref();
                for (&j, &v) in cand.iter().zip(vals) {
                    let t = th.map_or(0.0, |t| t[j as usize]);
                    if v > 0.0 && v > t {
                        c.idx.push(j);
                        c.val.push(v);
                    }
                }
            }
        }
    }
}

/// The largest f32 at or below `x`: for an f32 v, v ≥ x ⇔ v ≥ round_down(x).
#[inline(always)]
fn round_down(x: f64) -> f32 {
    let c = x as f32;
    if c as f64 > x {
        c.next_down()
    } else {
        c
    }
}

/// The indices j with s_j ≥ cut, ascending, into `out`. The compare runs in f32 against the largest f32 at
/// or below `cut`, which keeps exactly the same indices.
#[inline(always)]
fn at_least<L: Lanes>(s: &[f32], cut: f64, out: &mut Vec<u32>) {
    let c = round_down(cut);
    // v ≥ c ⇔ v > the next f32 below c.
    let below = c.next_down();
    for (bi, block) in s.chunks(16).enumerate() {
        if block.len() == 16 && !L::any_above(block, below) {
            continue;
        }
        for (j, &v) in block.iter().enumerate() {
            if v >= c {
                out.push((bi * 16 + j) as u32);
            }
        }
    }
}

/// One block's rows and the buffers their selection uses.
struct Rows<'b> {
    xc: &'b [f32],
    stride: usize,
    eps: f64,
    b: &'b mut Buffers,
    codes: &'b mut Codes,
}

#[derive(Default)]
struct Buffers {
    lhs: amx::Lhs,
    approx: Vec<f32>,
    heap: Vec<(f32, u32)>,
    bmax: Vec<f32>,
    tmp: Vec<f32>,
    cand: Vec<u32>,
    owner: Vec<u32>,
    offs: Vec<usize>,
    keys: Vec<u64>,
    vals: Vec<f32>,
}

thread_local! {
    /// Per-thread buffers kept between blocks, so that the hot loop does not map fresh pages for every block.
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn sae(d: usize, n: usize, k: usize, arch: Architecture, seed: u64) -> Sae {
        let mut r = Rng::new(seed);
        let w: Vec<f32> = (0..n * d)
            .map(|_| r.normal() as f32 / (d as f32).sqrt())
            .collect();
        Sae {
            d,
            n,
            arch,
            k,
            w_enc_t: w.clone(),
            b_enc: (0..n).map(|_| (r.normal() * 0.1) as f32).collect(),
            w_dec: w,
            b_dec: (0..d).map(|_| (r.normal() * 0.1) as f32).collect(),
            threshold: matches!(arch, Architecture::JumpRelu)
                .then(|| (0..n).map(|_| r.uniform() as f32).collect()),
            apply_b_dec_to_input: true,
            input_norm: InputNorm::None,
        }
    }

    /// The reference: every latent's canonical value, then the rule, by a full sort.
    fn brute(sae: &Sae, x: &[f32], rows: usize) -> Vec<Vec<(u32, f32)>> {
        let (d, n) = (sae.d, sae.n);
        (0..rows)
            .map(|r| {
                let xr: Vec<f32> = x[r * d..(r + 1) * d]
                    .iter()
                    .zip(&sae.b_dec)
                    .map(|(v, b)| v - b)
                    .collect();
                let e: Vec<f32> = (0..n)
                    .map(|j| {
                        (dot_f64(&xr, &sae.w_enc_t[j * d..(j + 1) * d]) + sae.b_enc[j] as f64)
                            as f32
                    })
                    .collect();
                let mut keep: Vec<(u32, f32)> = match sae.arch {
                    Architecture::TopK => {
                        let mut o: Vec<u32> = (0..n as u32).collect();
                        o.sort_by(|&a, &b| e[b as usize].total_cmp(&e[a as usize]).then(a.cmp(&b)));
                        o[..sae.k]
                            .iter()
                            .map(|&j| (j, e[j as usize]))
                            .filter(|p| p.1 > 0.0)
                            .collect()
                    }
                    _ => (0..n as u32)
                        .map(|j| (j, e[j as usize]))
                        .filter(|&(j, v)| {
                            v > 0.0 && v > sae.threshold.as_ref().map_or(0.0, |t| t[j as usize])
                        })
                        .collect(),
                };
                keep.sort_by_key(|p| p.0);
                keep
            })
            .collect()
    }

    fn rows_of(c: &Codes) -> Vec<Vec<(u32, f32)>> {
        (0..c.rows())
            .map(|r| c.row(r).map(|(i, v)| (i as u32, v)).collect())
            .collect()
    }

    /// Both backends give the brute-force codes exactly, on data built to tie: exact duplicates of latents
    /// (equal values, decided by the lower index), near-duplicates whose values differ by less than either
    /// product's rounding (decided by the canonical values), rows along one latent's vector, and thresholds
    /// set within rounding of the canonical values.
    #[test]
    fn both_backends_give_the_exact_codes() {
        for (case, &(d, n, k, arch)) in [
            (24usize, 200usize, 7usize, Architecture::TopK),
            (384, 1000, 31, Architecture::TopK),
            (33, 97, 97, Architecture::TopK),
            (40, 300, 0, Architecture::JumpRelu),
            (40, 300, 0, Architecture::Relu),
        ]
        .iter()
        .enumerate()
        {
            let mut s = sae(d, n, k.max(1), arch, case as u64);
            let mut r = Rng::new(100 + case as u64);
            // Latent 2i + 1 is a near-copy of 2i (every 7th pair an exact copy).
            for j in (1..n).step_by(2) {
                let w = s.w_enc_t[(j - 1) * d..j * d].to_vec();
                let exact = j % 7 == 1;
                for (t, &v) in w.iter().enumerate() {
                    let nudge = if exact {
                        0.0
                    } else {
                        (r.normal() * 1e-6) as f32 * v.abs()
                    };
                    s.w_enc_t[j * d + t] = v + nudge;
                }
                s.b_enc[j] = s.b_enc[j - 1];
            }
            let rows = 300;
            let mut x: Vec<f32> = (0..rows * d).map(|_| (r.normal() * 3.0) as f32).collect();
            // Some rows along one latent's encoder vector, and one huge row.
            for row in 0..10 {
                let j = r.below(n as u64) as usize;
                for t in 0..d {
                    x[row * d + t] = s.w_enc_t[j * d + t] * 50.0 + s.b_dec[t];
                }
            }
            x[20 * d..21 * d].iter_mut().for_each(|v| *v *= 1e30);
            if let Some(th) = s.threshold.as_mut() {
                // Latent j's threshold a few ulps from its canonical value on row j mod rows.
                for (j, t) in th.iter_mut().enumerate() {
                    let row = j % rows;
                    let xr: Vec<f32> = x[row * d..(row + 1) * d]
                        .iter()
                        .zip(&s.b_dec)
                        .map(|(v, b)| v - b)
                        .collect();
                    let e =
                        (dot_f64(&xr, &s.w_enc_t[j * d..(j + 1) * d]) + s.b_enc[j] as f64) as f32;
                    let ulps = (j % 5) as i32 - 2;
                    *t = f32::from_bits((e.abs().to_bits() as i32 + ulps) as u32).copysign(e);
                }
            }
            let want = brute(&s, &x, rows);
            for backend in [Backend::F32, Backend::Amx] {
                let enc = Encoder::new(&s, backend);
                let got = rows_of(&enc.encode(&x, rows));
                for (row, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g, w, "case {case}, {backend:?}, row {row}");
                }
            }
        }
    }
}
