//! Decoder language models (GPT-2, GPT-NeoX/Pythia, Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3 text)
//! on the CPU: the weights of a Hugging Face folder laid out once in one common block form (fused query | key
//! | value rows, fused gate | up rows), and a forward pass over packed sequences, as the encoder's: every token-wise step is one matrix
//! product over all tokens through faer, and causal attention runs per text over its own tokens.
//!
//! What comes out is what transformers' `output_hidden_states` gives: the embedding output (index 0), each
//! block's output (1..L-1), and the last block's output after the final norm (L). The MLP hidden state of a
//! block is the input of its output projection: act(fc(x)), or act(gate(x)) · up(x) for gated MLPs.
pub mod config;
pub mod tokenizer;

use rayon::prelude::*;

use crate::cpu::{activate, attention, layer_norm, linear, split_rows, AttnShape, Linear, Norm};
use crate::error::{Error, Result};
use crate::weights::Weights;
pub use config::{DecoderConfig, DecoderFamily, NormKind, Positions, Rope};

thread_local! {
    /// Each thread's work buffers for [`CpuDecoder::forward`], kept between batches.
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One pre-norm block in the common form.
pub(crate) struct DecBlock {
    norm1: Norm,
    /// (heads + 2 kv heads) · head_dim rows: every query head, then every key head, then every value head.
    qkv: Linear,
    out: Linear,
    norm2: Norm,
    /// The MLP's input projection: [gate | up] (2 · I rows) when gated, fc (I rows) otherwise.
    up: Linear,
    down: Linear,
    /// Gemma 2's norms of the attention output and of the MLP output, before each residual add.
    post_attn: Option<Norm>,
    post_mlp: Option<Norm>,
    /// Qwen3's RMSNorm weights (head_dim each) for every query head and every key head.
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
}

/// A loaded decoder, ready for [`CpuDecoder::forward`].
pub(crate) struct CpuDecoder {
    pub cfg: DecoderConfig,
    embed: Vec<f32>,
    /// GPT-2's learned position table.
    wpe: Option<Vec<f32>>,
    blocks: Vec<DecBlock>,
    final_norm: Norm,
    /// cos and sin of position p and frequency i at p · (dims / 2) + i, for every position the model allows.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The same tables for the sliding-window layers' own rotary embedding (Gemma 3), else empty.
    local_cos: Vec<f32>,
    local_sin: Vec<f32>,
    /// The dtype most of the weights were stored in.
    pub stored_dtype: String,
}

/// What a forward pass returns, packed text after text.
pub(crate) struct DecoderOutput {
    /// Index 0..=L: tokens × hidden, where kept.
    pub states: Vec<Option<Vec<f32>>>,
    /// Index 0..L (block): tokens × intermediate, where kept.
    pub mlp: Vec<Option<Vec<f32>>>,
}

/// The tensor names of a family, relative to the checkpoint's prefix.
struct Names {
    embed: &'static str,
    layers: &'static str,
    final_norm: &'static str,
}

fn names(family: DecoderFamily) -> Names {
    match family {
        DecoderFamily::Gpt2 => Names {
            embed: "wte.weight",
            layers: "h",
            final_norm: "ln_f",
        },
        DecoderFamily::GptNeox => Names {
            embed: "embed_in.weight",
            layers: "layers",
            final_norm: "final_layer_norm",
        },
        _ => Names {
            embed: "embed_tokens.weight",
            layers: "layers",
            final_norm: "norm",
        },
    }
}

/// Row-major transpose of a rows × cols matrix.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

impl CpuDecoder {
    /// Lays out the weights of `cfg`, checking every tensor's name and shape.
    pub fn load(wt: &mut Weights<'_>, cfg: &DecoderConfig) -> Result<CpuDecoder> {
        let nm = names(cfg.family);
        // The base model's own names, a causal LM's prefixes, and Gemma 3's multimodal ones (transformers 4
        // and 5 layouts).
        wt.choose_prefix(
            &[
                "",
                "model.",
                "transformer.",
                "gpt_neox.",
                "language_model.model.",
                "model.language_model.",
            ],
            nm.embed,
        )
        .ok_or_else(|| {
            Error::format(
                wt.first_path(),
                format!(
                    "the weights have no tensor '{}' (a {} checkpoint has one)",
                    nm.embed,
                    cfg.family.name()
                ),
                "use the weights that belong to this config.json",
            )
        })?;
        let (h, v, inter) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
        let (hq, hkv, dh) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let qw = hq * dh;
        let stored_dtype = wt
            .dtype(nm.embed)
            .map(|d| format!("{d:?}").to_lowercase())
            .unwrap_or_default();
        let embed = wt.get(nm.embed, &[v, h])?;
        let wpe = match cfg.positions {
            Positions::Learned => Some(wt.get("wpe.weight", &[cfg.max_positions, h])?),
            Positions::Rotary(_) => None,
        };
        let norm = |name: &str| -> Result<Norm> {
            match cfg.norm {
                NormKind::LayerNorm => Ok(Norm {
                    w: wt.get(&format!("{name}.weight"), &[h])?,
                    b: wt.get(&format!("{name}.bias"), &[h])?,
                }),
                NormKind::RmsNorm { unit_offset } => {
                    let mut w = wt.get(&format!("{name}.weight"), &[h])?;
                    if unit_offset {
                        w.iter_mut().for_each(|x| *x += 1.0);
                    }
                    Ok(Norm { w, b: Vec::new() })
                }
            }
        };
        let lin = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            Ok(Linear {
                w: wt.get(&format!("{name}.weight"), &[out, inp])?,
                b: if bias {
                    wt.get(&format!("{name}.bias"), &[out])?
                } else {
                    vec![0.0; out]
                },
                out,
                inp,
            })
        };
        // GPT-2's Conv1D stores in × out.
        let conv = |name: &str, inp: usize, out: usize| -> Result<Linear> {
            Ok(Linear {
                w: transpose(&wt.get(&format!("{name}.weight"), &[inp, out])?, inp, out),
                b: wt.get(&format!("{name}.bias"), &[out])?,
                out,
                inp,
            })
        };
        let stack = |parts: &[Linear]| -> Linear {
            Linear {
                w: parts.iter().flat_map(|l| l.w.iter().copied()).collect(),
                b: parts.iter().flat_map(|l| l.b.iter().copied()).collect(),
                out: parts.iter().map(|l| l.out).sum(),
                inp: parts[0].inp,
            }
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("{}.{l}", nm.layers);
            let block = match cfg.family {
                DecoderFamily::Gpt2 => DecBlock {
                    norm1: norm(&format!("{p}.ln_1"))?,
                    qkv: conv(&format!("{p}.attn.c_attn"), h, 3 * h)?,
                    out: conv(&format!("{p}.attn.c_proj"), h, h)?,
                    norm2: norm(&format!("{p}.ln_2"))?,
                    up: conv(&format!("{p}.mlp.c_fc"), h, inter)?,
                    down: conv(&format!("{p}.mlp.c_proj"), inter, h)?,
                    post_attn: None,
                    post_mlp: None,
                    qk_norm: None,
                },
                DecoderFamily::GptNeox => {
                    // Rows are grouped per head ([q k v] of head 0, then of head 1, ...); regroup them
                    // as every q, then every k, then every v.
                    let fused = lin(
                        &format!("{p}.attention.query_key_value"),
                        3 * h,
                        h,
                        cfg.qkv_bias,
                    )?;
                    let mut w = Vec::with_capacity(fused.w.len());
                    let mut b = Vec::with_capacity(fused.b.len());
                    for part in 0..3 {
                        for hd in 0..hq {
                            let r0 = hd * 3 * dh + part * dh;
                            w.extend_from_slice(&fused.w[r0 * h..(r0 + dh) * h]);
                            b.extend_from_slice(&fused.b[r0..r0 + dh]);
                        }
                    }
                    DecBlock {
                        norm1: norm(&format!("{p}.input_layernorm"))?,
                        qkv: Linear {
                            w,
                            b,
                            out: 3 * h,
                            inp: h,
                        },
                        out: lin(&format!("{p}.attention.dense"), h, h, cfg.out_bias)?,
                        norm2: norm(&format!("{p}.post_attention_layernorm"))?,
                        up: lin(&format!("{p}.mlp.dense_h_to_4h"), inter, h, true)?,
                        down: lin(&format!("{p}.mlp.dense_4h_to_h"), h, inter, true)?,
                        post_attn: None,
                        post_mlp: None,
                        qk_norm: None,
                    }
                }
                _ => DecBlock {
                    norm1: norm(&format!("{p}.input_layernorm"))?,
                    qkv: stack(&[
                        lin(&format!("{p}.self_attn.q_proj"), qw, h, cfg.qkv_bias)?,
                        lin(&format!("{p}.self_attn.k_proj"), hkv * dh, h, cfg.qkv_bias)?,
                        lin(&format!("{p}.self_attn.v_proj"), hkv * dh, h, cfg.qkv_bias)?,
                    ]),
                    out: lin(&format!("{p}.self_attn.o_proj"), h, qw, cfg.out_bias)?,
                    // Gemma 2's post_attention_layernorm normalises the attention output; its MLP input
                    // norm is pre_feedforward_layernorm.
                    norm2: if cfg.post_norms {
                        norm(&format!("{p}.pre_feedforward_layernorm"))?
                    } else {
                        norm(&format!("{p}.post_attention_layernorm"))?
                    },
                    up: stack(&[
                        lin(&format!("{p}.mlp.gate_proj"), inter, h, cfg.mlp_bias)?,
                        lin(&format!("{p}.mlp.up_proj"), inter, h, cfg.mlp_bias)?,
                    ]),
                    down: lin(&format!("{p}.mlp.down_proj"), h, inter, cfg.mlp_bias)?,
                    post_attn: if cfg.post_norms {
                        Some(norm(&format!("{p}.post_attention_layernorm"))?)
                    } else {
                        None
                    },
                    post_mlp: if cfg.post_norms {
                        Some(norm(&format!("{p}.post_feedforward_layernorm"))?)
                    } else {
                        None
                    },
                    qk_norm: if cfg.qk_norm {
                        let offset = match cfg.norm {
                            NormKind::RmsNorm { unit_offset: true } => 1.0,
                            _ => 0.0,
                        };
                        let head = |name: &str| -> Result<Vec<f32>> {
                            let mut w = wt.get(&format!("{p}.self_attn.{name}.weight"), &[dh])?;
                            w.iter_mut().for_each(|x| *x += offset);
                            Ok(w)
                        };
                        Some((head("q_norm")?, head("k_norm")?))
                    } else {
                        None
                    },
                },
            };
            blocks.push(block);
        }
        // More layers in the weights than config.json says is a mismatch, not something to ignore.
        if let Some(m) = wt.count_layers(nm.layers) {
            if m != cfg.num_layers {
                return Err(Error::format(
                    wt.first_path(),
                    format!(
                        "the weights hold {m} layers but config.json says {}",
                        cfg.num_layers
                    ),
                    "use the weights and config.json of the same model",
                ));
            }
        }
        let final_norm = norm(nm.final_norm)?;
        let (cos, sin) = match &cfg.positions {
            Positions::Rotary(r) => rope_tables(r, cfg.max_positions),
            Positions::Learned => (Vec::new(), Vec::new()),
        };
        let (local_cos, local_sin) = match &cfg.local_rope {
            Some(r) => rope_tables(r, cfg.max_positions),
            None => (Vec::new(), Vec::new()),
        };
        Ok(CpuDecoder {
            cfg: cfg.clone(),
            embed,
            wpe,
            blocks,
            final_norm,
            cos,
            sin,
            local_cos,
            local_sin,
            stored_dtype,
        })
    }

    /// Runs the texts `seqs` (token ids, each at most max_positions long). `keep[i]` asks for hidden state
    /// i (0..=L), `keep_mlp[l]` for block l's MLP hidden state. `par` spreads each product and row-wise step
    /// over the rayon threads; without it everything runs on the calling thread.
    pub fn forward(
        &self,
        seqs: &[&[u32]],
        keep: &[bool],
        keep_mlp: &[bool],
        par: bool,
    ) -> DecoderOutput {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let nl = cfg.num_layers;
        let mut offs = Vec::with_capacity(seqs.len() + 1);
        offs.push(0usize);
        for s in seqs {
            offs.push(offs.last().copied().unwrap_or(0) + s.len());
        }
        let n = offs[seqs.len()];
        let mut x = vec![0f32; n * h];
        for (s, seq) in seqs.iter().enumerate() {
            for (t, &id) in seq.iter().enumerate() {
                let row = &mut x[(offs[s] + t) * h..(offs[s] + t + 1) * h];
                row.copy_from_slice(&self.embed[id as usize * h..(id as usize + 1) * h]);
                if let Some(sc) = cfg.embed_scale {
                    row.iter_mut().for_each(|v| *v *= sc);
                }
                if let Some(wpe) = &self.wpe {
                    row.iter_mut()
                        .zip(&wpe[t * h..(t + 1) * h])
                        .for_each(|(r, p)| *r += p);
                }
            }
        }
        let keep_at = |i: usize| keep.get(i).copied().unwrap_or(false);
        let mut states = Vec::with_capacity(nl + 1);
        states.push(keep_at(0).then(|| x.clone()));
        let mut mlp_out = Vec::with_capacity(nl);

        let qkv_w = cfg.qkv_width();
        let q_w = cfg.num_heads * cfg.head_dim;
        let inter = cfg.intermediate_size;
        // Work buffers come from this thread's scratch, so a run of batches does not fault fresh pages in
        // for every batch; each is written in full before it is read.
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        scratch.resize_with(6, Vec::new);
        let [a, a2, qkv, ctx, ff, m] = &mut scratch[..] else {
            unreachable!("six buffers were made above")
        };
        a.resize(n * h, 0.0);
        a2.resize(if cfg.parallel_residual { n * h } else { 0 }, 0.0);
        qkv.resize(n * qkv_w, 0.0);
        ctx.resize(n * q_w, 0.0);
        ff.resize(n * self.blocks.first().map_or(0, |b| b.up.out), 0.0);
        m.resize(if cfg.gated_mlp { n * inter } else { 0 }, 0.0);
        for (l, blk) in self.blocks.iter().enumerate() {
            a.copy_from_slice(&x);
            self.norm(a, &blk.norm1, par);
            if cfg.parallel_residual {
                a2.copy_from_slice(&x);
                self.norm(a2, &blk.norm2, par);
            }
            linear(qkv, a, n, &blk.qkv, false, par);
            if let Some((qn, kn)) = &blk.qk_norm {
                self.head_norms(qkv, qn, kn, par);
            }
            if let Positions::Rotary(r) = &cfg.positions {
                let local = cfg.local_rope.is_some()
                    && cfg.sliding_window.get(l).copied().flatten().is_some();
                self.rotate(qkv, &offs, r.dims, local, par);
            }
            attention(
                qkv,
                &offs,
                &self.attn_shape(l),
                split_rows(ctx, &offs, q_w),
                par,
            );
            // x += attn · Woᵀ + bo (normalised first where the block says so)
            self.residual_add(&mut x, a, ctx, n, &blk.out, blk.post_attn.as_ref(), par);
            let mlp_in: &[f32] = if cfg.parallel_residual {
                a2
            } else {
                a.copy_from_slice(&x);
                self.norm(a, &blk.norm2, par);
                a
            };
            linear(ff, mlp_in, n, &blk.up, false, par);
            let hidden: &[f32] = if cfg.gated_mlp {
                gate(ff, m, inter, cfg.activation, par);
                m
            } else {
                activate(ff, cfg.activation, par);
                ff
            };
            self.residual_add(&mut x, a, hidden, n, &blk.down, blk.post_mlp.as_ref(), par);
            mlp_out.push(
                keep_mlp
                    .get(l)
                    .copied()
                    .unwrap_or(false)
                    .then(|| hidden.to_vec()),
            );
            let keep_this = keep_at(l + 1);
            states.push(if keep_this && l + 1 == nl {
                let mut y = x.clone();
                self.norm(&mut y, &self.final_norm, par);
                Some(y)
            } else {
                keep_this.then(|| x.clone())
            });
        }
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        DecoderOutput {
            states,
            mlp: mlp_out,
        }
    }

    fn norm(&self, x: &mut [f32], n: &Norm, par: bool) {
        let h = self.cfg.hidden_size;
        match self.cfg.norm {
            NormKind::LayerNorm => layer_norm(x, h, n, self.cfg.norm_eps, par),
            NormKind::RmsNorm { .. } => rms_norm(x, h, &n.w, self.cfg.norm_eps, par),
        }
    }

    /// x += inp · Wᵀ + b for the `rows` rows; with a post-norm (Gemma 2 and 3) the projection is normalised
    /// in `work` (rows × hidden) before it is added.
    #[allow(clippy::too_many_arguments)]
    fn residual_add(
        &self,
        x: &mut [f32],
        work: &mut [f32],
        inp: &[f32],
        rows: usize,
        l: &Linear,
        post: Option<&Norm>,
        par: bool,
    ) {
        match post {
            None => linear(x, inp, rows, l, true, par),
            Some(pn) => {
                linear(work, inp, rows, l, false, par);
                self.norm(work, pn, par);
                add(x, work, par);
            }
        }
    }

    /// RMS-normalises every query head with `qn` and every key head with `kn` (head_dim weights each), in
    /// place in the packed query | key | value rows.
    fn head_norms(&self, qkv: &mut [f32], qn: &[f32], kn: &[f32], par: bool) {
        let cfg = &self.cfg;
        let (dh, width) = (cfg.head_dim, cfg.qkv_width());
        let (hq, hkv) = (cfg.num_heads, cfg.num_kv_heads);
        let eps = cfg.norm_eps;
        let work = |rows: &mut [f32]| {
            for row in rows.chunks_exact_mut(width) {
                let (q, rest) = row.split_at_mut(hq * dh);
                rms_norm(q, dh, qn, eps, false);
                rms_norm(&mut rest[..hkv * dh], dh, kn, eps, false);
            }
        };
        if par {
            qkv.par_chunks_mut(width * 16).for_each(work);
        } else {
            work(qkv);
        }
    }

    /// Rotates the first `dims` dimensions of every query and key head by the token's position
    /// (rotate-half layout: dimension i pairs with i + dims / 2), with the sliding layers' own tables where
    /// `local`.
    fn rotate(&self, qkv: &mut [f32], offs: &[usize], dims: usize, local: bool, par: bool) {
        let (cos_t, sin_t) = if local {
            (&self.local_cos, &self.local_sin)
        } else {
            (&self.cos, &self.sin)
        };
        let cfg = &self.cfg;
        let (dh, width) = (cfg.head_dim, cfg.qkv_width());
        let rotated_heads = cfg.num_heads + cfg.num_kv_heads;
        let half = dims / 2;
        let work = |rows: &mut [f32]| {
            for (t, row) in rows.chunks_exact_mut(width).enumerate() {
                let cos = &cos_t[t * half..(t + 1) * half];
                let sin = &sin_t[t * half..(t + 1) * half];
                for hd in 0..rotated_heads {
                    let v = &mut row[hd * dh..hd * dh + dims];
                    for i in 0..half {
                        let (x1, x2) = (v[i], v[i + half]);
                        v[i] = x1 * cos[i] - x2 * sin[i];
                        v[i + half] = x2 * cos[i] + x1 * sin[i];
                    }
                }
            }
        };
        let parts = split_rows(qkv, offs, width);
        if par {
            parts.into_par_iter().for_each(work);
        } else {
            parts.into_iter().for_each(work);
        }
    }

    /// The attention of `layer`: causal, with grouped key/value heads, the layer's sliding window and
    /// GPT-2's score scalings.
    fn attn_shape(&self, layer: usize) -> AttnShape {
        let cfg = &self.cfg;
        let mut scale = match cfg.query_pre_attn_scalar {
            Some(q) => q.powf(-0.5) as f32,
            None if cfg.scale_attn => 1.0 / (cfg.head_dim as f32).sqrt(),
            None => 1.0,
        };
        if cfg.scale_attn_by_layer {
            scale /= (layer + 1) as f32;
        }
        AttnShape {
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            scale,
            causal: true,
            window: cfg.sliding_window.get(layer).copied().flatten(),
            softcap: cfg.attn_softcap,
        }
    }
}

/// cos and sin tables of a rotary embedding, as transformers computes them: the angle is the f32 product of
/// the position and the f32 inverse frequency, and the attention scaling multiplies both.
fn rope_tables(r: &Rope, positions: usize) -> (Vec<f32>, Vec<f32>) {
    let half = r.dims / 2;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for &f in &r.inv_freq {
            let angle = (p as f32 * f) as f64;
            cos.push((angle.cos() * r.attention_scaling) as f32);
            sin.push((angle.sin() * r.attention_scaling) as f32);
        }
    }
    (cos, sin)
}

/// RMSNorm of every row in place: x / √(mean(x²) + ε) · w, statistics in f64.
fn rms_norm(x: &mut [f32], h: usize, w: &[f32], eps: f64, par: bool) {
    let work = |rows: &mut [f32]| {
        for row in rows.chunks_exact_mut(h) {
            let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / h as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            for (v, w) in row.iter_mut().zip(w) {
                *v = (*v as f64 * inv) as f32 * w;
            }
        }
    };
    if par {
        x.par_chunks_mut(h * 16).for_each(work);
    } else {
        work(x);
    }
}

/// x += y, element by element.
fn add(x: &mut [f32], y: &[f32], par: bool) {
    if par {
        x.par_chunks_mut(1 << 14)
            .zip(y.par_chunks(1 << 14))
            .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(a, b)| *a += b));
    } else {
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }
}

/// m = act(gate) · up for rows of ff = [gate | up] (2 · inter wide).
fn gate(ff: &[f32], m: &mut [f32], inter: usize, act: crate::folder::Activation, par: bool) {
    let work = |(src, dst): (&[f32], &mut [f32])| {
        for (f, o) in src.chunks_exact(2 * inter).zip(dst.chunks_exact_mut(inter)) {
            o.copy_from_slice(&f[..inter]);
            activate(o, act, false);
            o.iter_mut().zip(&f[inter..]).for_each(|(g, u)| *g *= u);
        }
    };
    const ROWS: usize = 16;
    if par {
        ff.par_chunks(ROWS * 2 * inter)
            .zip(m.par_chunks_mut(ROWS * inter))
            .for_each(work);
    } else {
        work((ff, m));
    }
}

/// Loads a decoder from its weight files.
pub(crate) fn load_decoder(
    files: &[std::path::PathBuf],
    cfg: &DecoderConfig,
) -> Result<CpuDecoder> {
    let maps = crate::weights::Maps::open(files)?;
    let mut wt = maps.weights()?;
    CpuDecoder::load(&mut wt, cfg)
}
