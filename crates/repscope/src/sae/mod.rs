//! Sparse autoencoders: TopK and BatchTopK training, JumpReLU inference, streamed evaluation, and SAELens'
//! disk format. Definitions follow METRICS.md ("Activations and sparse features").
//!
//! Layout and notation follow SAELens: x ∈ R^d, n latents, W_enc is d × n, W_dec is n × d,
//! `pre = (x − b_dec) W_enc + b_enc` and `x̂ = f W_dec + b_dec`. The engine keeps the encoder as its transpose
//! (n × d, one row per latent) so that a latent's encoder and decoder vectors are both contiguous, which is
//! what the sparse backward pass reads.
pub mod encoder;
pub mod eval;
pub mod io;
pub mod source;
pub mod synthetic;
mod topk;
pub mod train;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Param, Result, Text};

pub use topk::top_k_row;

/// Rows per block of the training step's encoder product: each block is one sequential matrix product, so
/// the result of a row never depends on the thread count. (Inference blocks are `encoder`'s.)
pub(crate) const ROW_BLOCK: usize = 128;

thread_local! {
    /// Per-thread buffers for a block's pre-activations and centred rows, kept between blocks so that the
    /// hot loop does not map and fault in fresh pages for every block.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's pre-activation buffer (resized to `len`) and centred-row buffer.
pub(crate) fn with_scratch<T>(len: usize, f: impl FnOnce(&mut [f32], &mut Vec<f32>) -> T) -> T {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (pre, xc) = &mut *s;
        if pre.len() < len {
            pre.resize(len, 0.0);
        }
        f(&mut pre[..len], xc)
    })
}

/// How latents are selected from the pre-activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// The k largest pre-activations of each row, then ReLU (Gao et al. 2024).
    TopK,
    /// ReLU, then the k·B largest over a batch of B rows (Bussmann et al. 2024); at inference a JumpReLU with
    /// the threshold learnt in training.
    BatchTopK,
    /// `relu(pre) · (pre > θ_i)`, one threshold per latent.
    JumpRelu,
    /// ReLU alone (a standard L1-trained SAE).
    Relu,
}

impl Architecture {
    /// The name SAELens' `cfg.json` uses (BatchTopK is saved as JumpReLU).
    pub fn saelens_name(self) -> &'static str {
        match self {
            Architecture::TopK => "topk",
            Architecture::BatchTopK | Architecture::JumpRelu => "jumprelu",
            Architecture::Relu => "standard",
        }
    }
    /// Parses a name: topk, batchtopk, jumprelu, standard/relu.
    pub fn parse(s: &str) -> Option<Architecture> {
        match s.to_ascii_lowercase().as_str() {
            "topk" => Some(Architecture::TopK),
            "batchtopk" | "batch_topk" => Some(Architecture::BatchTopK),
            "jumprelu" => Some(Architecture::JumpRelu),
            "standard" | "relu" => Some(Architecture::Relu),
            _ => None,
        }
    }
}

/// A sparse autoencoder's weights, in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Sae {
    pub d: usize,
    pub n: usize,
    pub arch: Architecture,
    /// Active latents per row (TopK; the mean per row for BatchTopK).
    pub k: usize,
    /// The encoder, transposed: n × d, row i is latent i's encoder vector (W_enc[:, i]).
    pub w_enc_t: Vec<f32>,
    pub b_enc: Vec<f32>,
    /// n × d.
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    /// JumpReLU thresholds, one per latent (BatchTopK's inference threshold, broadcast).
    pub threshold: Option<Vec<f32>>,
    /// Whether b_dec is subtracted from the input before encoding.
    pub apply_b_dec_to_input: bool,
    /// A per-row normalisation of the input, undone on the reconstruction.
    pub input_norm: InputNorm,
}

/// How each input row is normalised before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// The rows are encoded as they are (any constant scale is folded into the weights).
    None,
    /// x ↦ (x − μ)/(σ + 10⁻⁵), μ the row's mean and σ its standard deviation with ddof 1; the reconstruction
    /// is x̂·σ + μ. OpenAI's TopK SAEs and SAELens' `normalize_activations = "layer_norm"`.
    LayerNorm,
}

/// The ε of [`InputNorm::LayerNorm`], as OpenAI and SAELens add it to σ.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Row-normalises `x` (rows × d) in place, returning each row's (μ, σ).
fn layer_norm_rows(x: &mut [f32], d: usize) -> Vec<(f32, f32)> {
    x.chunks_exact_mut(d)
        .map(|r| {
            let mu = r.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let ss: f64 = r.iter().map(|&v| (v as f64 - mu).powi(2)).sum();
            let sd = if d > 1 {
                (ss / (d - 1) as f64).sqrt()
            } else {
                0.0
            };
            let inv = 1.0 / (sd + LAYER_NORM_EPS);
            r.iter_mut()
                .for_each(|v| *v = ((*v as f64 - mu) * inv) as f32);
            (mu as f32, sd as f32)
        })
        .collect()
}

/// Sparse codes of a block of rows: row r's active latents are `idx[off[r]..off[r+1]]` with values
/// `val[..]`, latents ascending.
#[derive(Clone, Debug, Default)]
pub struct Codes {
    pub off: Vec<usize>,
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
    /// Each row's (μ, σ) when the SAE layer-normalises its input (empty otherwise); decoding undoes it.
    pub norm: Vec<(f32, f32)>,
}

impl Codes {
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.off.len().saturating_sub(1)
    }
    /// Row r's (latent, value) pairs.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let (a, b) = (self.off[r], self.off[r + 1]);
        self.idx[a..b]
            .iter()
            .zip(&self.val[a..b])
            .map(|(&i, &v)| (i as usize, v))
    }
    /// Dense codes, rows × n.
    pub fn to_dense(&self, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows() * n];
        for r in 0..self.rows() {
            for (i, v) in self.row(r) {
                out[r * n + i] = v;
            }
        }
        out
    }
}

impl Sae {
    /// Checks shapes and values of loaded or built weights.
    pub fn validate(&self, name: &str) -> Result<()> {
        let (d, n) = (self.d, self.n);
        let bad = |what: String| {
            Err(Error::data(
                name,
                what,
                "pass an SAE folder whose tensors have the shapes of its cfg.json",
            ))
        };
        if d == 0 || n == 0 {
            return bad(format!(
                "the SAE is {d} × {n}; d_in and d_sae must be at least 1"
            ));
        }
        if self.w_enc_t.len() != n * d || self.w_dec.len() != n * d {
            return bad(format!("W_enc or W_dec does not hold {d} × {n} values"));
        }
        if self.b_enc.len() != n || self.b_dec.len() != d {
            return bad(format!("b_enc must hold {n} values and b_dec {d}"));
        }
        if let Some(t) = &self.threshold {
            if t.len() != n {
                return bad(format!("threshold must hold {n} values, not {}", t.len()));
            }
        }
        if matches!(self.arch, Architecture::TopK) && (self.k == 0 || self.k > n) {
            return Err(Error::range(
                Param::K,
                self.k,
                format!("1 ≤ k ≤ {n}"),
                format!("k = {} for an SAE of {n} latents", self.k),
            ));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !(finite(&self.w_enc_t)
            && finite(&self.w_dec)
            && finite(&self.b_enc)
            && finite(&self.b_dec)
            && self.threshold.as_deref().is_none_or(finite))
        {
            return bad("a weight is NaN or infinite".into());
        }
        Ok(())
    }

    /// The pre-activations of `rows` rows of `x` (row-major, d columns) into `pre` (rows × n).
    pub(crate) fn pre_block(&self, x: &[f32], rows: usize, xc: &mut Vec<f32>, pre: &mut [f32]) {
        let (d, n) = (self.d, self.n);
        xc.clear();
        xc.extend_from_slice(&x[..rows * d]);
        if self.apply_b_dec_to_input {
            for row in xc.chunks_exact_mut(d) {
                for (v, b) in row.iter_mut().zip(&self.b_dec) {
                    *v -= b;
                }
            }
        }
        for row in pre.chunks_exact_mut(n) {
            row.copy_from_slice(&self.b_enc);
        }
        let xm = MatRef::from_row_major_slice(xc, rows, d);
        let wt = MatRef::from_row_major_slice(&self.w_enc_t, n, d);
        let om = MatMut::from_row_major_slice_mut(&mut pre[..rows * n], rows, n);
        matmul(om, Accum::Add, xm, wt.transpose(), 1.0f32, Par::Seq);
    }

    /// Sparse codes of `rows` rows of `x` (row-major, d columns): the exact selection of [`encoder`],
    /// identical for any thread count and on any CPU. Many calls with one SAE should share one
    /// [`encoder::Encoder`], which packs the encoder once.
    pub fn encode(&self, x: &[f32], rows: usize) -> Codes {
        encoder::Encoder::new(self, encoder::Backend::best()).encode(x, rows)
    }

    /// x̂ = f W_dec + b_dec for each row of `codes`, into `out` (rows × d), in f32 with the sum of each
    /// row in latent order; then x̂·σ + μ with the row's own (μ, σ) when the input was layer-normalised.
    pub fn decode(&self, codes: &Codes, out: &mut [f32]) {
        let d = self.d;
        out.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { self.decode_row_avx512(codes, r, o) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { self.decode_row_avx2(codes, r, o) };
                }
            }
            self.decode_row(codes, r, o)
        });
    }

    /// [`Sae::decode_row`] compiled for AVX-512: the same operations in the same order (Rust does not fuse a
    /// multiply and an add), so the rows are bit-identical.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn decode_row_avx512(&self, codes: &Codes, r: usize, o: &mut [f32]) {
        self.decode_row(codes, r, o)
    }

    /// [`Sae::decode_row`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn decode_row_avx2(&self, codes: &Codes, r: usize, o: &mut [f32]) {
        self.decode_row(codes, r, o)
    }

    #[inline(always)]
    fn decode_row(&self, codes: &Codes, r: usize, o: &mut [f32]) {
        let d = self.d;
        o.copy_from_slice(&self.b_dec);
        let (a, b) = (codes.off[r], codes.off[r + 1]);
        for (&i, &v) in codes.idx[a..b].iter().zip(&codes.val[a..b]) {
            let w = &self.w_dec[i as usize * d..(i as usize + 1) * d];
            for (a, b) in o.iter_mut().zip(w) {
                *a += v * b;
            }
        }
        if let Some(&(mu, sd)) = codes.norm.get(r) {
            o.iter_mut().for_each(|a| *a = *a * sd + mu);
        }
    }

    /// Each row's (μ, σ) of `x` (rows × d) when this SAE layer-normalises its input, for decoding codes
    /// that came without them; empty otherwise.
    pub fn row_norms(&self, x: &[f32]) -> Vec<(f32, f32)> {
        match self.input_norm {
            InputNorm::None => Vec::new(),
            InputNorm::LayerNorm => layer_norm_rows(&mut x.to_vec(), self.d),
        }
    }
}

/// Checks an SAE width and k before any work.
pub fn check_width_k(width: usize, k: usize) -> Result<()> {
    if width == 0 {
        return Err(Error::range(
            Param::Width,
            width,
            "a width of at least 1",
            "width = 0 asks for no latents",
        ));
    }
    if k == 0 || k > width {
        return Err(Error::InvalidParameter {
            param: Param::K,
            value: Some(k.to_string()),
            allowed: Some(format!("1 ≤ k ≤ {width}")),
            problem: format!("k = {k} active latents of a width of {width}"),
            fix: Text::from(format!("choose k from 1 to the width ({width})")),
        });
    }
    Ok(())
}
