//! The encoder forward pass, written on candle's tensors so that every layer's hidden state is available:
//! embeddings (word + position + token type, LayerNorm), then post-LayerNorm blocks (self-attention with an
//! additive padding mask, residual, LayerNorm, feed-forward, residual, LayerNorm).
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};

use crate::cpu::{CpuBlock, CpuEncoder, Linear, Norm};
use crate::error::{Error, Result};
use crate::folder::{Activation, EncoderConfig, Family};

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

/// Reads tensors from a safetensors file, checking each one's shape against config.json.
struct Loader<'a> {
    path: &'a Path,
    st: safetensors::SafeTensors<'a>,
    prefix: String,
    device: &'a Device,
}

impl Loader<'_> {
    fn view(&self, name: &str) -> Option<safetensors::tensor::TensorView<'_>> {
        self.st.tensor(&format!("{}{name}", self.prefix)).ok()
    }

    /// The tensor `name`, of exactly `shape`, as f32 on the device.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let view = self.view(name).ok_or_else(|| {
            Error::format(
                self.path,
                format!("the weights have no tensor '{full}'"),
                "use the model.safetensors that belongs to this config.json",
            )
        })?;
        if view.shape() != shape {
            return Err(Error::format(
                self.path,
                format!(
                    "tensor '{full}' has shape {:?} but config.json implies {:?}",
                    view.shape(),
                    shape
                ),
                "the weights do not match config.json; use the model.safetensors and config.json of the same model",
            ));
        }
        let dtype = view.dtype();
        if !matches!(
            dtype,
            safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16
        ) {
            return Err(Error::format(
                self.path,
                format!("tensor '{full}' is stored as {dtype:?}"),
                "use weights stored as float32, float16 or bfloat16",
            ));
        }
        Ok(view.load(self.device)?.to_dtype(DType::F32)?)
    }

    /// A LayerNorm's (weight, bias), accepting the old TensorFlow names gamma / beta.
    fn layer_norm(&self, name: &str, h: usize) -> Result<(Tensor, Tensor)> {
        if self.view(&format!("{name}.weight")).is_none()
            && self.view(&format!("{name}.gamma")).is_some()
        {
            return Ok((
                self.get(&format!("{name}.gamma"), &[h])?,
                self.get(&format!("{name}.beta"), &[h])?,
            ));
        }
        Ok((
            self.get(&format!("{name}.weight"), &[h])?,
            self.get(&format!("{name}.bias"), &[h])?,
        ))
    }
}

impl Encoder {
    /// Loads the weights of `cfg` from a safetensors file, checking every tensor's name and shape.
    pub fn load(path: &Path, cfg: &EncoderConfig, device: &Device) -> Result<Encoder> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only and lives only while the weights are copied out below; a file
        // changed by another process while it is read is outside what any reader can guard against.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&mmap).map_err(|e| {
            Error::format(
                path,
                format!("is not a valid safetensors file ({e})"),
                "restore model.safetensors from the model's original release",
            )
        })?;
        let names = match cfg.family {
            Family::DistilBert => &DISTILBERT_NAMES,
            _ => &BERT_NAMES,
        };
        // Checkpoints saved from a task model carry the base model's name as a prefix.
        let word_key = format!("{}.weight", names.word);
        let prefix = ["", "bert.", "roberta.", "distilbert.", "model."]
            .into_iter()
            .find(|p| st.tensor(&format!("{p}{word_key}")).is_ok())
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "the weights have no tensor '{word_key}' (a {} checkpoint has one)",
                        cfg.family.name()
                    ),
                    "use the model.safetensors that belongs to this config.json",
                )
            })?
            .to_string();
        let ld = Loader {
            path,
            st,
            prefix,
            device,
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let word = ld.get(&word_key, &[cfg.vocab_size, h])?;
        let position = ld.get(
            &format!("{}.weight", names.position),
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type = match names.token_type {
            Some(n) if cfg.type_vocab_size > 0 => {
                Some(ld.get(&format!("{n}.weight"), &[cfg.type_vocab_size, h])?)
            }
            _ => None,
        };
        let (emb_ln_w, emb_ln_b) = ld.layer_norm(names.emb_ln, h)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("{}.{l}", names.layer);
            let lin = |n: &str, out: usize, inp: usize| -> Result<(Tensor, Tensor)> {
                Ok((
                    ld.get(&format!("{p}.{n}.weight"), &[out, inp])?,
                    ld.get(&format!("{p}.{n}.bias"), &[out])?,
                ))
            };
            let (qw, qb) = lin(names.q, h, h)?;
            let (kw, kb) = lin(names.k, h, h)?;
            let (vw, vb) = lin(names.v, h, h)?;
            let (out_w, out_b) = lin(names.out, h, h)?;
            let (ff1_w, ff1_b) = lin(names.ff1, i, h)?;
            let (ff2_w, ff2_b) = lin(names.ff2, h, i)?;
            let (ln1_w, ln1_b) = ld.layer_norm(&format!("{p}.{}", names.ln1), h)?;
            let (ln2_w, ln2_b) = ld.layer_norm(&format!("{p}.{}", names.ln2), h)?;
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
        let extra = ld
            .st
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{}{}.", ld.prefix, names.layer)))
            .filter_map(|n| {
                n[ld.prefix.len() + names.layer.len() + 1..]
                    .split('.')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
            })
            .max();
        if let Some(m) = extra {
            if m + 1 != cfg.num_layers {
                return Err(Error::format(
                    path,
                    format!(
                        "the weights hold {} layers but config.json says num_hidden_layers = {}",
                        m + 1,
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
