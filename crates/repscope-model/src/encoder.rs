//! The encoder forward pass, written on candle's tensors so that every layer's hidden state is available:
//! embeddings (word + position + token type, LayerNorm), then post-LayerNorm blocks (self-attention with an
//! additive padding mask, residual, LayerNorm, feed-forward, residual, LayerNorm).
use std::path::PathBuf;

use candle_core::{Device, Tensor};

use crate::cpu::{CpuBlock, CpuEncoder, Linear, Norm};
use crate::error::{Error, Result};
use crate::folder::{Activation, EncoderConfig, Family};
use crate::weights::{Maps, Weights};

/// Weights of one post-LayerNorm transformer block.
struct Block {
    /// Query, key and value projections stacked: (3 h) × h, and their biases (3 h).
    qkv_w: Tensor,
    qkv_b: Tensor,
    out_w: Tensor,
    out_b: Tensor,
    ln1_w: Tensor,
    ln1_b: Tensor,
    ff1_w: Tensor,
    ff1_b: Tensor,
    ff2_w: Tensor,
    ff2_b: Tensor,
    ln2_w: Tensor,
    ln2_b: Tensor,
}

/// The loaded encoder.
pub struct Encoder {
    cfg: EncoderConfig,
    device: Device,
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    emb_ln_w: Tensor,
    emb_ln_b: Tensor,
    blocks: Vec<Block>,
}

/// The tensor names of one family, relative to the prefix the checkpoint uses.
struct Names {
    word: &'static str,
    position: &'static str,
    token_type: Option<&'static str>,
    emb_ln: &'static str,
    layer: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    out: &'static str,
    ln1: &'static str,
    ff1: &'static str,
    ff2: &'static str,
    ln2: &'static str,
}

const BERT_NAMES: Names = Names {
    word: "embeddings.word_embeddings",
    position: "embeddings.position_embeddings",
    token_type: Some("embeddings.token_type_embeddings"),
    emb_ln: "embeddings.LayerNorm",
    layer: "encoder.layer",
    q: "attention.self.query",
    k: "attention.self.key",
    v: "attention.self.value",
    out: "attention.output.dense",
    ln1: "attention.output.LayerNorm",
    ff1: "intermediate.dense",
    ff2: "output.dense",
    ln2: "output.LayerNorm",
};

const DISTILBERT_NAMES: Names = Names {
    word: "embeddings.word_embeddings",
    position: "embeddings.position_embeddings",
    token_type: None,
    emb_ln: "embeddings.LayerNorm",
    layer: "transformer.layer",
    q: "attention.q_lin",
    k: "attention.k_lin",
    v: "attention.v_lin",
    out: "attention.out_lin",
    ln1: "sa_layer_norm",
    ff1: "ffn.lin1",
    ff2: "ffn.lin2",
    ln2: "output_layer_norm",
};

/// A LayerNorm's (weight, bias) as tensors on `device`, accepting the old TensorFlow names gamma / beta.
fn layer_norm(wt: &Weights<'_>, name: &str, h: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let (w, b) = if !wt.has(&format!("{name}.weight")) && wt.has(&format!("{name}.gamma")) {
        ("gamma", "beta")
    } else {
        ("weight", "bias")
    };
    Ok((
        wt.tensor(&format!("{name}.{w}"), &[h], device)?,
        wt.tensor(&format!("{name}.{b}"), &[h], device)?,
    ))
}

impl Encoder {
    /// Loads the weights of `cfg` from its safetensors files (one, or the shards of an index), checking
    /// every tensor's name and shape.
    pub fn load(files: &[PathBuf], cfg: &EncoderConfig, device: &Device) -> Result<Encoder> {
        let maps = Maps::open(files)?;
        let mut wt = maps.weights()?;
        let names = match cfg.family {
            Family::DistilBert => &DISTILBERT_NAMES,
            _ => &BERT_NAMES,
        };
        let word_key = format!("{}.weight", names.word);
        wt.choose_prefix(
            &["", "bert.", "roberta.", "distilbert.", "model."],
            &word_key,
        )
        .ok_or_else(|| {
            Error::format(
                wt.first_path(),
                format!(
                    "the weights have no tensor '{word_key}' (a {} checkpoint has one)",
                    cfg.family.name()
                ),
                "use the model.safetensors that belongs to this config.json",
            )
        })?;
        let get = |name: &str, shape: &[usize]| wt.tensor(name, shape, device);
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let word = get(&word_key, &[cfg.vocab_size, h])?;
        let position = get(
            &format!("{}.weight", names.position),
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type = match names.token_type {
            Some(n) if cfg.type_vocab_size > 0 => {
                Some(get(&format!("{n}.weight"), &[cfg.type_vocab_size, h])?)
            }
            _ => None,
        };
        let (emb_ln_w, emb_ln_b) = layer_norm(&wt, names.emb_ln, h, device)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("{}.{l}", names.layer);
            let lin = |n: &str, out: usize, inp: usize| -> Result<(Tensor, Tensor)> {
                Ok((
                    get(&format!("{p}.{n}.weight"), &[out, inp])?,
                    get(&format!("{p}.{n}.bias"), &[out])?,
                ))
            };
            let (qw, qb) = lin(names.q, h, h)?;
            let (kw, kb) = lin(names.k, h, h)?;
            let (vw, vb) = lin(names.v, h, h)?;
            let (out_w, out_b) = lin(names.out, h, h)?;
            let (ff1_w, ff1_b) = lin(names.ff1, i, h)?;
            let (ff2_w, ff2_b) = lin(names.ff2, h, i)?;
            let (ln1_w, ln1_b) = layer_norm(&wt, &format!("{p}.{}", names.ln1), h, device)?;
            let (ln2_w, ln2_b) = layer_norm(&wt, &format!("{p}.{}", names.ln2), h, device)?;
            blocks.push(Block {
                qkv_w: Tensor::cat(&[&qw, &kw, &vw], 0)?,
                qkv_b: Tensor::cat(&[&qb, &kb, &vb], 0)?,
                out_w,
                out_b,
                ln1_w,
                ln1_b,
                ff1_w,
                ff1_b,
                ff2_w,
                ff2_b,
                ln2_w,
                ln2_b,
            });
        }
        if let Some(m) = wt.count_layers(names.layer) {
            if m != cfg.num_layers {
                return Err(Error::format(
                    wt.first_path(),
                    format!(
                        "the weights hold {m} layers but config.json says num_hidden_layers = {}",
                        cfg.num_layers
                    ),
                    "use the model.safetensors and config.json of the same model",
                ));
            }
        }
        Ok(Encoder {
            cfg: cfg.clone(),
            device: device.clone(),
            word,
            position,
            token_type,
            emb_ln_w,
            emb_ln_b,
            blocks,
        })
    }

    /// The same weights as plain f32 vectors for the packed CPU forward pass ([`CpuEncoder`]).
    pub fn into_cpu(self) -> Result<CpuEncoder> {
        let v = |t: &Tensor| to_host(t);
        let lin = |w: &Tensor, b: &Tensor| -> Result<Linear> {
            let (out, inp) = w.dims2()?;
            Ok(Linear {
                w: v(w)?,
                b: v(b)?,
                out,
                inp,
            })
        };
        let norm = |w: &Tensor, b: &Tensor| -> Result<Norm> { Ok(Norm { w: v(w)?, b: v(b)? }) };
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            blocks.push(CpuBlock {
                qkv: lin(&b.qkv_w, &b.qkv_b)?,
                out: lin(&b.out_w, &b.out_b)?,
                ln1: norm(&b.ln1_w, &b.ln1_b)?,
                ff1: lin(&b.ff1_w, &b.ff1_b)?,
                ff2: lin(&b.ff2_w, &b.ff2_b)?,
                ln2: norm(&b.ln2_w, &b.ln2_b)?,
            });
        }
        Ok(CpuEncoder {
            cfg: self.cfg.clone(),
            word: v(&self.word)?,
            position: v(&self.position)?,
            token_type0: match &self.token_type {
                Some(t) => Some(v(&t.narrow(0, 0, 1)?)?),
                None => None,
            },
            emb_ln: norm(&self.emb_ln_w, &self.emb_ln_b)?,
            blocks,
        })
    }

    /// Runs one padded batch. `ids` and `mask` are batch × seq, row-major; `mask` is 1 for real tokens, 0
    /// for padding (right padding). Returns the hidden state (batch × seq × hidden) after the embeddings
    /// (index 0) and after each block (index 1..=L) for the indices `keep` marks true, None for the others.
    pub fn forward(
        &self,
        ids: &[u32],
        mask: &[u32],
        batch: usize,
        seq: usize,
        keep: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let heads = cfg.num_heads;
        let dh = h / heads;
        let dev = &self.device;
        let ids_t = Tensor::from_slice(ids, (batch * seq,), dev)?;
        let mut x = self.word.index_select(&ids_t, 0)?;
        // Positions: 0.. for BERT and DistilBERT; for RoBERTa pad+1.. over real tokens, pad on padding.
        let positions: Vec<u32> = match cfg.family {
            Family::Roberta => {
                let pad = cfg.pad_token_id;
                (0..batch)
                    .flat_map(|b| {
                        let mut c = 0u32;
                        (0..seq)
                            .map(|t| {
                                if mask[b * seq + t] != 0 {
                                    c += 1;
                                    pad + c
                                } else {
                                    pad
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            _ => (0..batch).flat_map(|_| 0..seq as u32).collect(),
        };
        let pos_t = Tensor::from_slice(&positions, (batch * seq,), dev)?;
        x = (x + self.position.index_select(&pos_t, 0)?)?;
        if let Some(tt) = &self.token_type {
            // Single-segment inputs: token type 0 everywhere.
            x = x.broadcast_add(&tt.narrow(0, 0, 1)?)?;
        }
        let eps = cfg.layer_norm_eps as f32;
        x = candle_nn::ops::layer_norm(&x, &self.emb_ln_w, &self.emb_ln_b, eps)?;

        // Additive mask over keys: 0 for real tokens, the lowest f32 for padding.
        let add: Vec<f32> = mask
            .iter()
            .map(|&m| if m != 0 { 0.0 } else { f32::MIN })
            .collect();
        let add = Tensor::from_vec(add, (batch, 1, 1, seq), dev)?;
        let scale = 1.0 / (dh as f64).sqrt();

        let mut out: Vec<Option<Tensor>> = Vec::with_capacity(cfg.num_layers + 1);
        let keep_at = |i: usize| keep.get(i).copied().unwrap_or(false);
        out.push(if keep_at(0) {
            Some(x.reshape((batch, seq, h))?)
        } else {
            None
        });
        for (l, blk) in self.blocks.iter().enumerate() {
            // x: (batch·seq) × h
            let qkv = x.matmul(&blk.qkv_w.t()?)?.broadcast_add(&blk.qkv_b)?;
            let qkv = qkv
                .reshape((batch, seq, 3, heads, dh))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            let q = qkv.get(0)?;
            let k = qkv.get(1)?;
            let v = qkv.get(2)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&add)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch * seq, h))?;
            let attn = ctx.matmul(&blk.out_w.t()?)?.broadcast_add(&blk.out_b)?;
            let a = candle_nn::ops::layer_norm(&(attn + &x)?, &blk.ln1_w, &blk.ln1_b, eps)?;
            let f = a.matmul(&blk.ff1_w.t()?)?.broadcast_add(&blk.ff1_b)?;
            let f = match cfg.activation {
                Activation::GeluErf => f.gelu_erf()?,
                Activation::GeluTanh => f.gelu()?,
                Activation::Relu => f.relu()?,
                Activation::Silu => f.silu()?,
            };
            let f = f.matmul(&blk.ff2_w.t()?)?.broadcast_add(&blk.ff2_b)?;
            x = candle_nn::ops::layer_norm(&(f + &a)?, &blk.ln2_w, &blk.ln2_b, eps)?;
            out.push(if keep_at(l + 1) {
                Some(x.reshape((batch, seq, h))?)
            } else {
                None
            });
        }
        Ok(out)
    }
}

/// Copies a tensor to host memory as f32, row-major.
pub(crate) fn to_host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}
