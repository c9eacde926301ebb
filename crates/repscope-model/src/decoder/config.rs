//! A decoder language model's shape and numerics from its config.json, in both the layout transformers 4
//! writes (`rope_theta`, `rope_scaling`, `rotary_pct`, `hidden_activation`) and the one transformers 5 writes
//! (`rope_parameters`, `layer_types`). Everything the forward pass needs is decided here, once: the norm, the
//! positional scheme with its inverse frequencies, the attention layout, the MLP and each layer's window.
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::folder::Activation;

/// The decoder families the forward pass implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderFamily {
    /// GPT-2: learned absolute positions, LayerNorm, fused Conv1D q/k/v, plain MLP.
    Gpt2,
    /// GPT-NeoX and Pythia: partial rotary, LayerNorm, per-head fused q/k/v, parallel or serial residual.
    GptNeox,
    /// Llama and the models that share its layout: rotary, RMSNorm, grouped-query attention, SwiGLU.
    Llama,
    /// Mistral: Llama's blocks with a sliding window on every layer.
    Mistral,
    /// Qwen2: Llama's blocks with q/k/v biases and sliding windows on the upper layers.
    Qwen2,
    /// Gemma: Llama's blocks with GeGLU, (1 + w) RMSNorm, scaled embeddings and a free head width.
    Gemma,
    /// Gemma 2: Gemma's blocks with norms after attention and after the MLP as well, soft-capped attention
    /// scores, its own score scale (query_pre_attn_scalar) and sliding windows on alternate layers.
    Gemma2,
    /// Qwen3: Llama's blocks with RMSNorm on each query and key head, and Qwen2's sliding windows.
    Qwen3,
    /// Gemma 3 (text): Gemma 2's blocks with (1 + w) RMSNorm on each query and key head instead of the
    /// score cap, and a rotary embedding of its own (base and scaling) on the sliding-window layers.
    Gemma3,
}

impl DecoderFamily {
    pub fn name(self) -> &'static str {
        match self {
            DecoderFamily::Gpt2 => "gpt2",
            DecoderFamily::GptNeox => "gpt_neox",
            DecoderFamily::Llama => "llama",
            DecoderFamily::Mistral => "mistral",
            DecoderFamily::Qwen2 => "qwen2",
            DecoderFamily::Gemma => "gemma",
            DecoderFamily::Gemma2 => "gemma2",
            DecoderFamily::Qwen3 => "qwen3",
            DecoderFamily::Gemma3 => "gemma3_text",
        }
    }

    /// The family of a config.json `architectures` entry, for a config without `model_type`
    /// (`GPT2LMHeadModel`, `GPTNeoXForCausalLM`, `LlamaForCausalLM`, `Qwen2Model`, ...).
    pub fn of_architecture(arch: &str) -> Option<DecoderFamily> {
        let stem = ["ForCausalLM", "LMHeadModel", "Model"]
            .iter()
            .find_map(|s| arch.strip_suffix(s))?;
        match stem {
            "GPT2" => Some(DecoderFamily::Gpt2),
            "GPTNeoX" => Some(DecoderFamily::GptNeox),
            "Llama" => Some(DecoderFamily::Llama),
            "Mistral" => Some(DecoderFamily::Mistral),
            "Qwen2" => Some(DecoderFamily::Qwen2),
            "Gemma" => Some(DecoderFamily::Gemma),
            "Gemma2" => Some(DecoderFamily::Gemma2),
            "Qwen3" => Some(DecoderFamily::Qwen3),
            "Gemma3" => Some(DecoderFamily::Gemma3),
            _ => None,
        }
    }

    /// The family of a config.json `model_type`.
    pub fn of(model_type: &str) -> Option<DecoderFamily> {
        match model_type {
            "gpt2" => Some(DecoderFamily::Gpt2),
            "gpt_neox" => Some(DecoderFamily::GptNeox),
            "llama" => Some(DecoderFamily::Llama),
            "mistral" => Some(DecoderFamily::Mistral),
            "qwen2" => Some(DecoderFamily::Qwen2),
            "gemma" => Some(DecoderFamily::Gemma),
            "gemma2" => Some(DecoderFamily::Gemma2),
            "qwen3" => Some(DecoderFamily::Qwen3),
            "gemma3_text" => Some(DecoderFamily::Gemma3),
            _ => None,
        }
    }
}

/// The decoder model types (config.json `model_type`) this crate runs (`gemma3`: the text model of a
/// multimodal Gemma 3 folder).
pub const DECODER_MODEL_TYPES: &[&str] = &[
    "gpt2",
    "gpt_neox",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gemma3",
];

/// How a block normalises its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// (x − mean) / √(var + ε) · w + b.
    LayerNorm,
    /// x / √(mean(x²) + ε) · w; with `unit_offset` (Gemma) the scale is (1 + w).
    RmsNorm { unit_offset: bool },
}

/// Rotary position embedding: which dimensions of each head rotate and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// `default`, `linear`, `dynamic`, `yarn` or `llama3`.
    pub kind: String,
    /// Rotated dimensions per head (even); the rest pass through.
    pub dims: usize,
    /// dims / 2 inverse frequencies, rounded to f32 as transformers holds them.
    pub inv_freq: Vec<f32>,
    /// The factor cos and sin are multiplied by (yarn's attention factor; 1 otherwise).
    pub attention_scaling: f64,
}

/// Where position information enters.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    /// A learned table added to the token embeddings (GPT-2).
    Learned,
    Rotary(Rope),
}

/// The decoder's shape and numerics, from config.json.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    pub family: DecoderFamily,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    /// act(gate(x)) · up(x) (SwiGLU, GeGLU) rather than act(fc(x)).
    pub gated_mlp: bool,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub positions: Positions,
    /// The longest context the position scheme was built for.
    pub max_positions: usize,
    /// NeoX's x + attn(ln1(x)) + mlp(ln2(x)) instead of two residual steps.
    pub parallel_residual: bool,
    pub qkv_bias: bool,
    pub out_bias: bool,
    pub mlp_bias: bool,
    /// GPT-2's scale_attn_weights: divide scores by √head_dim (true everywhere else).
    pub scale_attn: bool,
    /// Gemma 2's and 3's query_pre_attn_scalar: scores are divided by its square root instead of √head_dim.
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 2's attn_logit_softcapping c: a scaled score s becomes c · tanh(s / c).
    pub attn_softcap: Option<f32>,
    /// Gemma 2 and 3: the attention output and the MLP output are each normalised before their residual add.
    pub post_norms: bool,
    /// Qwen3 and Gemma 3: every query and key head is RMS-normalised (weights of head_dim, in the family's
    /// norm) before the rotation.
    pub qk_norm: bool,
    /// Gemma 3: the rotary embedding of the sliding-window layers, where it differs from `positions`.
    pub local_rope: Option<Box<Rope>>,
    /// GPT-2's scale_attn_by_inverse_layer_idx: also divide layer l's scores by l + 1.
    pub scale_attn_by_layer: bool,
    /// Per layer: the sliding window (a query sees the last `w` positions, itself included), or None.
    pub sliding_window: Vec<Option<usize>>,
    /// Gemma multiplies the embeddings by √hidden.
    pub embed_scale: Option<f32>,
    pub bos_token_id: Option<u32>,
}

impl DecoderConfig {
    /// Width of the concatenated query | key | value rows.
    pub fn qkv_width(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }
}

fn usize_of(v: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .map(|x| x as usize)
}

fn f64_of(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// x > 0, false for NaN.
fn positive(x: f64) -> bool {
    x > 0.0
}

fn bool_of(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// Reads a decoder's config.json (already parsed) of `family`; for Gemma 3, the keys it leaves out take
/// transformers' defaults first.
pub fn read_decoder_config(path: &Path, v: &Value, family: DecoderFamily) -> Result<DecoderConfig> {
    if let (DecoderFamily::Gemma3, Some(o)) = (family, v.as_object()) {
        let mut o = o.clone();
        gemma3_text_defaults(&mut o);
        return read_config(path, &Value::Object(o), family);
    }
    read_config(path, v, family)
}

fn read_config(path: &Path, v: &Value, family: DecoderFamily) -> Result<DecoderConfig> {
    let bad = |problem: String| {
        Error::format(
            path,
            problem,
            "restore config.json from the model's original release",
        )
    };
    let missing = |key: &str| bad(format!("config.json has no valid '{key}'"));
    let gpt2 = family == DecoderFamily::Gpt2;
    let hidden_size = if gpt2 {
        usize_of(v, &["n_embd", "hidden_size"]).ok_or_else(|| missing("n_embd"))?
    } else {
        usize_of(v, &["hidden_size"]).ok_or_else(|| missing("hidden_size"))?
    };
    let num_layers = if gpt2 {
        usize_of(v, &["n_layer", "num_hidden_layers"]).ok_or_else(|| missing("n_layer"))?
    } else {
        usize_of(v, &["num_hidden_layers"]).ok_or_else(|| missing("num_hidden_layers"))?
    };
    let num_heads = if gpt2 {
        usize_of(v, &["n_head", "num_attention_heads"]).ok_or_else(|| missing("n_head"))?
    } else {
        usize_of(v, &["num_attention_heads"]).ok_or_else(|| missing("num_attention_heads"))?
    };
    let vocab_size = usize_of(v, &["vocab_size"]).ok_or_else(|| missing("vocab_size"))?;
    let max_positions = if gpt2 {
        usize_of(v, &["n_positions", "max_position_embeddings"])
            .ok_or_else(|| missing("n_positions"))?
    } else {
        usize_of(v, &["max_position_embeddings"])
            .ok_or_else(|| missing("max_position_embeddings"))?
    };
    if hidden_size == 0 || num_heads == 0 || num_layers == 0 || vocab_size == 0 {
        return Err(bad(format!(
            "hidden size {hidden_size}, {num_heads} attention heads, {num_layers} layers and a vocabulary \
             of {vocab_size} do not make a model"
        )));
    }
    let llama_like = !matches!(family, DecoderFamily::Gpt2 | DecoderFamily::GptNeox);
    let gemma = matches!(
        family,
        DecoderFamily::Gemma | DecoderFamily::Gemma2 | DecoderFamily::Gemma3
    );
    // Gemma 2 and 3 share the four norms per block and the score scale.
    let gemma23 = matches!(family, DecoderFamily::Gemma2 | DecoderFamily::Gemma3);
    if bool_of(v, "use_bidirectional_attention", false) {
        return Err(Error::format(
            path,
            "use_bidirectional_attention is set: this is an embedding model, not a causal language model",
            "use a causal language model's folder",
        ));
    }
    let num_kv_heads = if llama_like {
        usize_of(v, &["num_key_value_heads"]).unwrap_or(num_heads)
    } else {
        num_heads
    };
    let head_dim = match usize_of(v, &["head_dim"]) {
        Some(d) if llama_like => d,
        _ => {
            if hidden_size % num_heads != 0 {
                return Err(bad(format!(
                    "the hidden size {hidden_size} is not a multiple of the {num_heads} attention heads"
                )));
            }
            hidden_size / num_heads
        }
    };
    if head_dim == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(bad(format!(
            "{num_heads} attention heads cannot share {num_kv_heads} key/value heads of width {head_dim}"
        )));
    }
    let intermediate_size = match family {
        DecoderFamily::Gpt2 => match v.get("n_inner").and_then(Value::as_u64) {
            Some(i) => i as usize,
            None => 4 * hidden_size,
        },
        _ => usize_of(v, &["intermediate_size"]).ok_or_else(|| missing("intermediate_size"))?,
    };
    if intermediate_size == 0 {
        return Err(bad("the MLP width is 0".into()));
    }
    // The activation: GPT-2's activation_function, Gemma's hidden_activation (transformers 4) or
    // hidden_act, which Gemma reads as the tanh GELU even when it says "gelu".
    let (act_key, act_default) = match family {
        DecoderFamily::Gpt2 => ("activation_function", "gelu_new"),
        DecoderFamily::GptNeox => ("hidden_act", "gelu"),
        DecoderFamily::Gemma | DecoderFamily::Gemma2 | DecoderFamily::Gemma3 => {
            ("hidden_act", "gelu_pytorch_tanh")
        }
        _ => ("hidden_act", "silu"),
    };
    let mut act_name = v
        .get(act_key)
        .and_then(Value::as_str)
        .unwrap_or(act_default)
        .to_string();
    if gemma {
        if let Some(a) = v.get("hidden_activation").and_then(Value::as_str) {
            act_name = a.to_string();
        }
        if act_name == "gelu" {
            act_name = "gelu_pytorch_tanh".into();
        }
    }
    let activation = Activation::parse(&act_name).ok_or_else(|| {
        Error::format(
            path,
            format!("unsupported activation {act_key} = '{act_name}'"),
            "use a model whose activation is gelu, gelu_new, gelu_pytorch_tanh, relu or silu",
        )
    })?;
    let (norm, norm_eps) = match family {
        DecoderFamily::Gpt2 => (
            NormKind::LayerNorm,
            f64_of(v, "layer_norm_epsilon").unwrap_or(1e-5),
        ),
        DecoderFamily::GptNeox => (
            NormKind::LayerNorm,
            f64_of(v, "layer_norm_eps").unwrap_or(1e-5),
        ),
        DecoderFamily::Gemma | DecoderFamily::Gemma2 | DecoderFamily::Gemma3 => (
            NormKind::RmsNorm { unit_offset: true },
            f64_of(v, "rms_norm_eps").unwrap_or(1e-6),
        ),
        _ => (
            NormKind::RmsNorm { unit_offset: false },
            f64_of(v, "rms_norm_eps").unwrap_or(1e-6),
        ),
    };
    let (positions, local_rope) = if gpt2 {
        (Positions::Learned, None)
    } else if family == DecoderFamily::Gemma3 {
        let (global, local) = gemma3_ropes(v);
        (
            Positions::Rotary(read_rope(path, &global, family, head_dim, max_positions)?),
            Some(Box::new(read_rope(
                path,
                &local,
                family,
                head_dim,
                max_positions,
            )?)),
        )
    } else {
        (
            Positions::Rotary(read_rope(path, v, family, head_dim, max_positions)?),
            None,
        )
    };
    let (qkv_bias, out_bias, mlp_bias) = match family {
        DecoderFamily::Gpt2 => (true, true, true),
        DecoderFamily::GptNeox => {
            let b = bool_of(v, "attention_bias", true);
            (b, b, true)
        }
        DecoderFamily::Qwen2 => (true, false, false),
        DecoderFamily::Llama => {
            let b = bool_of(v, "attention_bias", false);
            (b, b, bool_of(v, "mlp_bias", false))
        }
        DecoderFamily::Mistral
        | DecoderFamily::Gemma
        | DecoderFamily::Gemma2
        | DecoderFamily::Gemma3
        | DecoderFamily::Qwen3 => {
            let b = bool_of(v, "attention_bias", false);
            (b, b, false)
        }
    };
    // transformers' default for both is 256.
    let query_pre_attn_scalar = if gemma23 {
        match v.get("query_pre_attn_scalar") {
            None => Some(256.0),
            Some(q) => match q.as_f64() {
                Some(x) if positive(x) && x.is_finite() => Some(x),
                _ => return Err(bad(format!("query_pre_attn_scalar is {q}"))),
            },
        }
    } else {
        None
    };
    // Gemma 2 caps the scores at 50 unless config.json says otherwise, Gemma 3 only where it says so (null:
    // no capping).
    let attn_softcap = if gemma23 {
        match v.get("attn_logit_softcapping") {
            None if family == DecoderFamily::Gemma2 => Some(50.0),
            None => None,
            Some(Value::Null) => None,
            Some(c) => match c.as_f64() {
                Some(c) if positive(c) && c.is_finite() => Some(c as f32),
                _ => return Err(bad(format!("attn_logit_softcapping is {c}"))),
            },
        }
    } else {
        None
    };
    let sliding_window = read_windows(path, v, family, num_layers)?;
    Ok(DecoderConfig {
        family,
        model_type: family.name().to_string(),
        vocab_size,
        hidden_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size,
        activation,
        gated_mlp: llama_like,
        norm,
        norm_eps,
        positions,
        max_positions,
        parallel_residual: family == DecoderFamily::GptNeox
            && bool_of(v, "use_parallel_residual", true),
        qkv_bias,
        out_bias,
        mlp_bias,
        scale_attn: !gpt2 || bool_of(v, "scale_attn_weights", true),
        scale_attn_by_layer: gpt2 && bool_of(v, "scale_attn_by_inverse_layer_idx", false),
        query_pre_attn_scalar,
        attn_softcap,
        post_norms: gemma23,
        qk_norm: matches!(family, DecoderFamily::Qwen3 | DecoderFamily::Gemma3),
        local_rope,
        sliding_window,
        embed_scale: gemma.then(|| (hidden_size as f32).sqrt()),
        bos_token_id: usize_of(v, &["bos_token_id"]).map(|b| b as u32),
    })
}

/// Each layer's sliding window: Mistral's `sliding_window` on every layer; Qwen2's and Qwen3's on the layers
/// that `layer_types` marks (transformers 5), or from `max_window_layers` up when `use_sliding_window`;
/// Gemma 2's and 3's (4,096 unless set) on the layers `layer_types` marks, or else on Gemma 2's even layers
/// and on all but every `sliding_window_pattern`-th of Gemma 3's.
fn read_windows(
    path: &Path,
    v: &Value,
    family: DecoderFamily,
    layers: usize,
) -> Result<Vec<Option<usize>>> {
    let window = usize_of(v, &["sliding_window"]);
    let bad = |problem: String| {
        Error::format(
            path,
            problem,
            "restore config.json from the model's original release",
        )
    };
    // The layers that transformers 5's `layer_types` marks as sliding, if it is there.
    let marked = || -> Result<Option<Vec<bool>>> {
        let Some(types) = v.get("layer_types").and_then(Value::as_array) else {
            return Ok(None);
        };
        if types.len() != layers {
            return Err(bad(format!(
                "layer_types lists {} layers but num_hidden_layers is {layers}",
                types.len()
            )));
        }
        Ok(Some(
            types
                .iter()
                .map(|t| t.as_str() == Some("sliding_attention"))
                .collect(),
        ))
    };
    let windows = match family {
        DecoderFamily::Mistral => vec![window; layers],
        DecoderFamily::Qwen2 | DecoderFamily::Qwen3 => {
            let on = bool_of(v, "use_sliding_window", false);
            let window = if on { window } else { None };
            match marked()? {
                Some(m) => m.iter().map(|&s| if s { window } else { None }).collect(),
                None => {
                    let from = usize_of(v, &["max_window_layers"]).unwrap_or(layers);
                    (0..layers)
                        .map(|l| if l >= from { window } else { None })
                        .collect()
                }
            }
        }
        DecoderFamily::Gemma2 | DecoderFamily::Gemma3 => {
            let window = match v.get("sliding_window") {
                None => Some(4096),
                Some(_) => window,
            };
            // Without layer_types: Gemma 2 slides on even layers, Gemma 3 on all but every
            // sliding_window_pattern-th (6 by default).
            let period = if family == DecoderFamily::Gemma2 {
                2
            } else {
                match usize_of(v, &["sliding_window_pattern", "_sliding_window_pattern"]) {
                    Some(0) => return Err(bad("sliding_window_pattern is 0".into())),
                    Some(p) => p,
                    None => 6,
                }
            };
            let m =
                marked()?.unwrap_or_else(|| (0..layers).map(|l| (l + 1) % period != 0).collect());
            m.iter().map(|&s| if s { window } else { None }).collect()
        }
        _ => vec![None; layers],
    };
    if windows.contains(&Some(0)) {
        return Err(bad("sliding_window is 0".into()));
    }
    Ok(windows)
}

/// Fills the keys a Gemma 3 text config leaves out with transformers' `Gemma3TextConfig` defaults, as
/// transformers reads it (the multimodal releases, 4B and up, write only a few keys in `text_config`). The
/// defaults the reader already applies to every Gemma (activation, norm ε, score scale, windows, rope bases)
/// are not repeated here.
fn gemma3_text_defaults(cfg: &mut serde_json::Map<String, Value>) {
    let defaults: [(&str, Value); 9] = [
        ("vocab_size", 262_208.into()),
        ("hidden_size", 2304.into()),
        ("intermediate_size", 9216.into()),
        ("num_hidden_layers", 26.into()),
        ("num_attention_heads", 8.into()),
        ("num_key_value_heads", 4.into()),
        ("head_dim", 256.into()),
        ("max_position_embeddings", 131_072.into()),
        ("bos_token_id", 2.into()),
    ];
    for (key, value) in defaults {
        cfg.entry(key).or_insert(value);
    }
}

/// Gemma 3's two rotary embeddings as configs of their own for [`read_rope`]: (full attention, sliding).
/// transformers 5 writes `rope_parameters` per layer type; transformers 4 wrote `rope_theta` (1e6 unless set)
/// with `rope_scaling` for the full layers and `rope_local_base_freq` (1e4 unless set) for the sliding ones.
fn gemma3_ropes(v: &Value) -> (Value, Value) {
    let mut global = v.clone();
    let mut local = v.clone();
    let per_type = v
        .get("rope_parameters")
        .and_then(Value::as_object)
        .filter(|p| p.contains_key("full_attention") || p.contains_key("sliding_attention"));
    for (cfg, key, theta) in [
        (&mut global, "full_attention", 1e6),
        (&mut local, "sliding_attention", 1e4),
    ] {
        let Some(o) = cfg.as_object_mut() else {
            continue;
        };
        let mut params = match per_type.and_then(|p| p.get(key)).and_then(Value::as_object) {
            Some(p) => p.clone(),
            None if key == "full_attention" && per_type.is_none() => o
                .get("rope_scaling")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            None => serde_json::Map::new(),
        };
        if !params.contains_key("rope_theta") {
            let t = if key == "full_attention" {
                v.get("rope_theta").and_then(Value::as_f64)
            } else {
                v.get("rope_local_base_freq").and_then(Value::as_f64)
            };
            params.insert("rope_theta".into(), t.unwrap_or(theta).into());
        }
        o.remove("rope_scaling");
        o.insert("rope_parameters".into(), Value::Object(params));
    }
    (global, local)
}

/// The rotary embedding of config.json: `rope_parameters` (transformers 5) or `rope_theta` with
/// `rope_scaling` (transformers 4); NeoX's `rotary_pct` and `rotary_emb_base`. The inverse frequencies follow
/// transformers' `ROPE_INIT_FUNCTIONS` for the default, linear, dynamic, yarn and llama3 types.
fn read_rope(
    path: &Path,
    v: &Value,
    family: DecoderFamily,
    head_dim: usize,
    max_positions: usize,
) -> Result<Rope> {
    let bad = |problem: String| {
        Error::format(
            path,
            problem,
            "restore config.json from the model's original release",
        )
    };
    let empty = serde_json::Map::new();
    let params = v
        .get("rope_parameters")
        .and_then(Value::as_object)
        .or_else(|| v.get("rope_scaling").and_then(Value::as_object))
        .unwrap_or(&empty);
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let neox = family == DecoderFamily::GptNeox;
    let theta = params
        .get("rope_theta")
        .and_then(Value::as_f64)
        .or_else(|| f64_of(v, "rope_theta"))
        .or_else(|| {
            if neox {
                f64_of(v, "rotary_emb_base")
            } else {
                None
            }
        })
        .unwrap_or(10000.0);
    let partial = params
        .get("partial_rotary_factor")
        .and_then(Value::as_f64)
        .or_else(|| f64_of(v, "partial_rotary_factor"))
        .or_else(|| if neox { f64_of(v, "rotary_pct") } else { None })
        .unwrap_or(if neox { 0.25 } else { 1.0 });
    if !(positive(partial) && partial <= 1.0 && positive(theta - 1.0)) {
        return Err(bad(format!(
            "rotary settings base {theta} and partial factor {partial} are out of range"
        )));
    }
    if !neox && partial != 1.0 {
        return Err(Error::format(
            path,
            format!(
                "a partial rotary factor of {partial} is not supported for the {} family",
                family.name()
            ),
            "use a model that rotates every head dimension",
        ));
    }
    // transformers: head_dim from config (or hidden / heads), then int(head_dim · factor).
    let dim = ((head_dim as f64) * partial) as usize;
    if dim < 2 || !dim.is_multiple_of(2) {
        return Err(bad(format!(
            "{dim} rotary dimensions per head is not a positive even number"
        )));
    }
    let num = |k: &str| params.get(k).and_then(Value::as_f64);
    let base_freqs: Vec<f64> = (0..dim / 2)
        .map(|i| {
            let e = ((2 * i) as f32 / dim as f32) as f64;
            let p = (theta.powf(e)) as f32;
            (1.0f32 / p) as f64
        })
        .collect();
    let mut attention_scaling = 1.0;
    let inv: Vec<f64> = match kind.as_str() {
        "default" => base_freqs,
        "linear" => {
            let f =
                num("factor").ok_or_else(|| bad("rope scaling 'linear' has no factor".into()))?;
            if !positive(f) {
                return Err(bad(format!("rope scaling factor {f} is not positive")));
            }
            base_freqs.iter().map(|x| x / f).collect()
        }
        // Dynamic NTK changes the base only for contexts beyond max_position_embeddings, which repscope
        // does not run; within it the frequencies are the default ones.
        "dynamic" => base_freqs,
        "llama3" => {
            let f =
                num("factor").ok_or_else(|| bad("rope scaling 'llama3' has no factor".into()))?;
            let low = num("low_freq_factor").unwrap_or(1.0);
            let high = num("high_freq_factor").unwrap_or(4.0);
            let old = num("original_max_position_embeddings").unwrap_or(max_positions as f64);
            if !(positive(f) && positive(high - low) && positive(old)) {
                return Err(bad(format!(
                    "llama3 rope scaling (factor {f}, low {low}, high {high}, original {old}) is out of range"
                )));
            }
            let low_wavelen = old / low;
            let high_wavelen = old / high;
            base_freqs
                .iter()
                .map(|&x| {
                    let wavelen = 2.0 * std::f64::consts::PI / x;
                    let scaled = if wavelen > low_wavelen { x / f } else { x };
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let s = (old / wavelen - low) / (high - low);
                        (1.0 - s) * scaled / f + s * scaled
                    } else {
                        scaled
                    }
                })
                .collect()
        }
        "yarn" => {
            let old = num("original_max_position_embeddings")
                .or_else(|| f64_of(v, "original_max_position_embeddings"))
                .unwrap_or(max_positions as f64);
            let f = num("factor").unwrap_or(max_positions as f64 / old);
            if !(positive(f) && positive(old)) {
                return Err(bad(format!(
                    "yarn rope scaling (factor {f}, original {old}) is out of range"
                )));
            }
            let mscale = |scale: f64, m: f64| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * m * scale.ln() + 1.0
                }
            };
            attention_scaling = match (
                num("attention_factor"),
                num("mscale"),
                num("mscale_all_dim"),
            ) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(a)) if m != 0.0 && a != 0.0 => mscale(f, m) / mscale(f, a),
                _ => mscale(f, 1.0),
            };
            let beta_fast = num("beta_fast").filter(|&b| b != 0.0).unwrap_or(32.0);
            let beta_slow = num("beta_slow").filter(|&b| b != 0.0).unwrap_or(1.0);
            let truncate = params
                .get("truncate")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let d = dim as f64;
            let corr = |rot: f64| {
                (d * (old / (rot * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * theta.ln())
            };
            let (mut lo, mut hi) = (corr(beta_fast), corr(beta_slow));
            if truncate {
                lo = lo.floor();
                hi = hi.ceil();
            }
            let lo = lo.max(0.0);
            let mut hi = hi.min(d - 1.0);
            if lo == hi {
                hi += 0.001;
            }
            base_freqs
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let ramp = (((i as f32 - lo as f32) / (hi - lo) as f32).clamp(0.0, 1.0)) as f64;
                    let extrapolation = 1.0 - ramp;
                    (x / f) * (1.0 - extrapolation) + x * extrapolation
                })
                .collect()
        }
        other => {
            return Err(Error::format(
                path,
                format!("unsupported rope scaling type '{other}'"),
                "use a model whose rope scaling is default, linear, dynamic, yarn or llama3",
            ))
        }
    };
    Ok(Rope {
        kind,
        dims: dim,
        inv_freq: inv.iter().map(|&x| x as f32).collect(),
        attention_scaling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DecoderConfig> {
        let v: Value = serde_json::from_str(json).unwrap();
        let family = DecoderFamily::of(v["model_type"].as_str().unwrap_or(""))
            .or_else(|| {
                DecoderFamily::of_architecture(v["architectures"][0].as_str().unwrap_or(""))
            })
            .unwrap();
        read_decoder_config(Path::new("config.json"), &v, family)
    }

    #[test]
    fn transformers_4_layouts_are_read() {
        // Pythia-70m's config as published (rotary_pct, rotary_emb_base).
        let c = parse(
            r#"{"model_type":"gpt_neox","hidden_size":512,"num_hidden_layers":6,"num_attention_heads":8,
            "intermediate_size":2048,"max_position_embeddings":2048,"rotary_pct":0.25,
            "rotary_emb_base":10000,"use_parallel_residual":true,"vocab_size":50304,"hidden_act":"gelu",
            "layer_norm_eps":1e-5}"#,
        )
        .unwrap();
        let Positions::Rotary(r) = &c.positions else {
            panic!()
        };
        assert_eq!((r.dims, c.head_dim, c.parallel_residual), (16, 64, true));
        assert!((r.inv_freq[1] as f64 - 10000f64.powf(-2.0 / 16.0)).abs() < 1e-7);
        // A Llama 3.1 style config: rope_theta with rope_scaling of type llama3, and a Gemma with
        // hidden_activation.
        let c = parse(
            r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,
            "num_key_value_heads":2,"intermediate_size":128,"max_position_embeddings":131072,
            "vocab_size":100,"rope_theta":500000.0,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}}"#,
        )
        .unwrap();
        let Positions::Rotary(r) = &c.positions else {
            panic!()
        };
        assert_eq!((r.kind.as_str(), r.dims, c.num_kv_heads), ("llama3", 16, 2));
        // The highest frequency is untouched, the lowest divided by the factor.
        assert_eq!(r.inv_freq[0], 1.0);
        let lowest = (1.0f32 / (500000f64.powf(14.0 / 16.0) as f32)) as f64 / 8.0;
        assert!((r.inv_freq[7] as f64 / lowest - 1.0).abs() < 1e-6);
        let c = parse(
            r#"{"model_type":"gemma","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,
            "num_key_value_heads":1,"head_dim":48,"intermediate_size":128,"max_position_embeddings":64,
            "vocab_size":100,"hidden_activation":null,"hidden_act":"gelu"}"#,
        )
        .unwrap();
        assert_eq!(c.activation, Activation::GeluTanh);
        assert_eq!((c.head_dim, c.qkv_width()), (48, 4 * 48));
        assert_eq!(c.embed_scale, Some(8.0));
    }

    #[test]
    fn gemma2_and_qwen3_layouts_are_read() {
        // Gemma 2 2B's config as transformers 4 wrote it: no layer_types, so every even layer slides.
        let gemma2 = r#"{"model_type":"gemma2","hidden_size":2304,"num_hidden_layers":4,
            "num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,"intermediate_size":9216,
            "max_position_embeddings":8192,"vocab_size":256000,"hidden_activation":"gelu_pytorch_tanh",
            "query_pre_attn_scalar":256,"attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,
            "sliding_window":4096,"rope_theta":10000.0}"#;
        let c = parse(gemma2).unwrap();
        assert_eq!(c.sliding_window, vec![Some(4096), None, Some(4096), None]);
        assert_eq!(
            (
                c.query_pre_attn_scalar,
                c.attn_softcap,
                c.post_norms,
                c.qk_norm
            ),
            (Some(256.0), Some(50.0), true, false)
        );
        assert_eq!(c.embed_scale, Some((2304f32).sqrt()));
        assert_eq!(c.norm, NormKind::RmsNorm { unit_offset: true });
        // A null cap turns capping off; a missing one is Gemma 2's 50.
        let c = parse(&gemma2.replace("50.0,", "null,")).unwrap();
        assert_eq!(c.attn_softcap, None);
        let c = parse(&gemma2.replace(r#""attn_logit_softcapping":50.0,"#, "")).unwrap();
        assert_eq!(c.attn_softcap, Some(50.0));
        // transformers' default scale is 256; a bad one is named.
        let c = parse(&gemma2.replace(r#""query_pre_attn_scalar":256,"#, "")).unwrap();
        assert_eq!(c.query_pre_attn_scalar, Some(256.0));
        let e = parse(&gemma2.replace(
            r#""query_pre_attn_scalar":256"#,
            r#""query_pre_attn_scalar":0"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("query_pre_attn_scalar is 0"), "{e}");
        let e = parse(&gemma2.replace("50.0,", "-1.0,"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("attn_logit_softcapping is -1.0"), "{e}");
        let e = parse(&gemma2.replace("4096", "0")).unwrap_err().to_string();
        assert!(e.contains("sliding_window is 0"), "{e}");
        // Qwen3 as transformers 4 wrote it: windows from max_window_layers up when use_sliding_window.
        let qwen3 = r#"{"model_type":"qwen3","hidden_size":1024,"num_hidden_layers":3,
            "num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"intermediate_size":3072,
            "max_position_embeddings":40960,"vocab_size":151936,"rope_theta":1000000,
            "use_sliding_window":true,"sliding_window":4096,"max_window_layers":2}"#;
        let c = parse(qwen3).unwrap();
        assert_eq!(c.sliding_window, vec![None, None, Some(4096)]);
        assert_eq!((c.head_dim, c.qk_norm, c.post_norms), (128, true, false));
        assert_eq!(
            (c.qkv_bias, c.attn_softcap, c.query_pre_attn_scalar),
            (false, None, None)
        );
        let c = parse(&qwen3.replace("true", "false")).unwrap();
        assert_eq!(c.sliding_window, vec![None; 3]);
    }

    #[test]
    fn gemma3_layouts_are_read() {
        // Gemma 3 4B's text part as transformers 4 wrote it: rope_theta with a linear rope_scaling for the
        // full layers, rope_local_base_freq for the sliding ones, and sliding_window_pattern.
        let t4 = r#"{"model_type":"gemma3_text","hidden_size":2560,"num_hidden_layers":7,
            "num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,"intermediate_size":10240,
            "max_position_embeddings":131072,"vocab_size":262208,"query_pre_attn_scalar":256,
            "rope_theta":1000000.0,"rope_local_base_freq":10000.0,
            "rope_scaling":{"factor":8.0,"rope_type":"linear"},"sliding_window":1024,
            "sliding_window_pattern":6,"attn_logit_softcapping":null}"#;
        let c = parse(t4).unwrap();
        let w = Some(1024);
        assert_eq!(c.sliding_window, vec![w, w, w, w, w, None, w]);
        assert_eq!(
            (
                c.qk_norm,
                c.post_norms,
                c.attn_softcap,
                c.query_pre_attn_scalar
            ),
            (true, true, None, Some(256.0))
        );
        let (Positions::Rotary(g), Some(l)) = (&c.positions, &c.local_rope) else {
            panic!()
        };
        assert_eq!((g.kind.as_str(), l.kind.as_str()), ("linear", "default"));
        // Frequency 1 of 128: θ^(−2/256), the full layers' divided by the factor 8.
        let f = |theta: f64| (1.0f32 / (theta.powf(2.0 / 256.0) as f32)) as f64;
        assert!((g.inv_freq[1] as f64 - f(1e6) / 8.0).abs() < 1e-7);
        assert!((l.inv_freq[1] as f64 - f(1e4)).abs() < 1e-7);
        // Without rope settings: 1e6 on the full layers, 1e4 on the sliding ones, and no scaling.
        let bare = t4.replace(
            r#""rope_theta":1000000.0,"rope_local_base_freq":10000.0,
            "rope_scaling":{"factor":8.0,"rope_type":"linear"},"#,
            "",
        );
        let c = parse(&bare).unwrap();
        let (Positions::Rotary(g), Some(l)) = (&c.positions, &c.local_rope) else {
            panic!()
        };
        assert_eq!(g.kind, "default");
        assert!((g.inv_freq[1] as f64 - f(1e6)).abs() < 1e-7);
        assert!((l.inv_freq[1] as f64 - f(1e4)).abs() < 1e-7);
        // An embedding model built on Gemma 3 is not a causal language model.
        let e = parse(&t4.replace(
            r#""sliding_window":1024,"#,
            r#""use_bidirectional_attention":true,"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("use_bidirectional_attention"), "{e}");
    }

    #[test]
    fn a_sparse_gemma3_text_config_takes_transformers_defaults() {
        // gemma-3-4b's text_config as released: six keys, the rest Gemma3TextConfig's defaults.
        let c = parse(
            r#"{"hidden_size":2560,"intermediate_size":10240,"model_type":"gemma3_text",
            "num_hidden_layers":34,"rope_scaling":{"factor":8.0,"rope_type":"linear"},"sliding_window":1024}"#,
        )
        .unwrap();
        assert_eq!(
            (
                c.hidden_size,
                c.num_heads,
                c.num_kv_heads,
                c.head_dim,
                c.num_layers
            ),
            (2560, 8, 4, 256, 34)
        );
        assert_eq!(
            (c.vocab_size, c.max_positions, c.bos_token_id),
            (262_208, 131_072, Some(2))
        );
        assert_eq!(c.query_pre_attn_scalar, Some(256.0));
        assert_eq!(c.activation, Activation::GeluTanh);
        // Every sixth layer is global: layers 5, 11, ..., 29 of 34.
        let full: Vec<usize> = (0..34).filter(|&l| c.sliding_window[l].is_none()).collect();
        assert_eq!(full, vec![5, 11, 17, 23, 29]);
        let (Positions::Rotary(g), Some(l)) = (&c.positions, &c.local_rope) else {
            panic!()
        };
        assert_eq!((g.kind.as_str(), l.kind.as_str()), ("linear", "default"));
    }

    #[test]
    fn bad_configs_are_named() {
        let e = parse(
            r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,
            "num_key_value_heads":3,"intermediate_size":128,"max_position_embeddings":64,"vocab_size":9}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot share 3 key/value heads"), "{e}");
        let e = parse(
            r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,
            "intermediate_size":128,"max_position_embeddings":64,"vocab_size":9,
            "rope_scaling":{"type":"longrope","factor":2}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unsupported rope scaling type 'longrope'"),
            "{e}"
        );
        let e =
            parse(r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"vocab_size":9,"n_positions":8}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("no valid 'n_layer'"), "{e}");
    }

    #[test]
    fn the_family_comes_from_architectures_when_model_type_is_missing() {
        let c = parse(
            r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"num_hidden_layers":1,
            "num_attention_heads":4,"intermediate_size":128,"max_position_embeddings":64,"vocab_size":9}"#,
        )
        .unwrap();
        assert_eq!(
            (c.family, c.model_type.as_str()),
            (DecoderFamily::Qwen2, "qwen2")
        );
        assert_eq!(DecoderFamily::of_architecture("Phi3ForCausalLM"), None);
        assert_eq!(
            DecoderFamily::of_architecture("Gemma2ForCausalLM"),
            Some(DecoderFamily::Gemma2)
        );
        assert_eq!(
            DecoderFamily::of_architecture("GPT2LMHeadModel"),
            Some(DecoderFamily::Gpt2)
        );
    }
}
