//! A decoder's tokenizer, as transformers 5's `AutoTokenizer` builds it. For the tokenizer classes that
//! define their own pipeline (`tokenizer_class` in tokenizer_config.json: GPT2Tokenizer, GPTNeoXTokenizer,
//! Qwen2Tokenizer, LlamaTokenizer, GemmaTokenizer), transformers takes only the vocabulary, the merges and
//! the post-processor from tokenizer.json and sets the normaliser and pre-tokeniser the class defines
//! (GPTNeoXTokenizer also rebuilds the post-processor from add_bos_token / add_eos_token). Any other class
//! uses tokenizer.json as it is. A Llama class over a byte-level tokenizer.json (Llama 3 style) is read
//! as it is too, as transformers does.
use std::path::Path;

use serde_json::{json, Value};
use tokenizers::{NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// Qwen2Tokenizer's pre-tokenisation pattern (transformers' PRETOKENIZE_REGEX).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The token string of a tokenizer_config.json entry: a string, or an AddedToken object with `content`.
fn token_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn component<T: serde::de::DeserializeOwned>(path: &Path, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::Internal(format!(
            "building the tokenizer pipeline for {}: {e}",
            path.display()
        ))
    })
}

/// Loads `dir`/tokenizer.json and applies the pipeline of the class tokenizer_config.json names. Returns
/// the tokenizer and the class it follows ("tokenizer.json" when the file is used as it is).
pub fn load(dir: &Path, tokenizer_path: &Path, model_type: &str) -> Result<(Tokenizer, String)> {
    let mut tok = Tokenizer::from_file(tokenizer_path).map_err(|e| {
        Error::format(
            tokenizer_path,
            format!("is not a tokenizer file this version of tokenizers reads ({e})"),
            "save the model's fast tokenizer again with a recent transformers \
             (AutoTokenizer.from_pretrained(folder).save_pretrained(folder))",
        )
    })?;
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: Value = match std::fs::read(&cfg_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::format(
                &cfg_path,
                format!("is not valid JSON ({e})"),
                "restore tokenizer_config.json from the model's original release",
            )
        })?,
        Err(_) => Value::Null,
    };
    let class = if matches!(model_type, "mistral" | "mixtral") {
        String::new()
    } else {
        cfg.get("tokenizer_class")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches("Fast")
            .to_string()
    };
    let flag = |k: &str, default: bool| cfg.get(k).and_then(Value::as_bool).unwrap_or(default);
    let byte_level = {
        let raw: Value = std::fs::read(tokenizer_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        raw.get("pre_tokenizer")
            .map(|p| p.to_string().contains("\"ByteLevel\""))
            .unwrap_or(false)
            || raw
                .get("decoder")
                .map(|p| p.to_string().contains("\"ByteLevel\""))
                .unwrap_or(false)
    };
    let (normalizer, pre): (Option<Value>, Value) = match class.as_str() {
        "GPT2Tokenizer" => (
            None,
            json!({"type": "ByteLevel", "add_prefix_space": flag("add_prefix_space", false),
                   "trim_offsets": true, "use_regex": true}),
        ),
        "GPTNeoXTokenizer" => (
            Some(json!({"type": "NFC"})),
            json!({"type": "ByteLevel", "add_prefix_space": flag("add_prefix_space", false),
                   "trim_offsets": flag("trim_offsets", true), "use_regex": true}),
        ),
        "Qwen2Tokenizer" => (
            Some(json!({"type": "NFC"})),
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
                 "invert": false},
                {"type": "ByteLevel", "add_prefix_space": flag("add_prefix_space", false),
                 "trim_offsets": true, "use_regex": false}]}),
        ),
        "LlamaTokenizer" if !byte_level => {
            let scheme = if flag("add_prefix_space", true) {
                if flag("legacy", false) {
                    "always"
                } else {
                    "first"
                }
            } else {
                "never"
            };
            (
                None,
                json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme,
                       "split": false}),
            )
        }
        "GemmaTokenizer" => (
            Some(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"})),
            json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                   "invert": false}),
        ),
        _ => return Ok((tok, "tokenizer.json".into())),
    };
    let normalizer: Option<NormalizerWrapper> = match normalizer {
        Some(n) => Some(component(tokenizer_path, n)?),
        None => None,
    };
    tok.with_normalizer(normalizer)
        .map_err(|e| Error::Internal(format!("setting the normaliser: {e}")))?;
    let pre: PreTokenizerWrapper = component(tokenizer_path, pre)?;
    tok.with_pre_tokenizer(Some(pre));
    if class == "GPTNeoXTokenizer" {
        // Rebuilt from add_bos_token / add_eos_token (both off unless tokenizer_config.json says so).
        let mut seq = vec![json!({"Sequence": {"id": "A", "type_id": 0}})];
        let mut specials = serde_json::Map::new();
        for (key, name) in [
            ("add_bos_token", "bos_token"),
            ("add_eos_token", "eos_token"),
        ] {
            if !flag(key, false) {
                continue;
            }
            let Some(t) = token_of(cfg.get(name)) else {
                continue;
            };
            let Some(id) = tok.token_to_id(&t) else {
                return Err(Error::format(
                    &cfg_path,
                    format!("{name} '{t}' is not in the tokenizer's vocabulary"),
                    "restore tokenizer_config.json from the model's original release",
                ));
            };
            let mark = json!({"SpecialToken": {"id": t, "type_id": 0}});
            if key == "add_bos_token" {
                seq.insert(0, mark);
            } else {
                seq.push(mark);
            }
            specials.insert(t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}));
        }
        let mut pair = seq.clone();
        pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
        let post: PostProcessorWrapper = component(
            tokenizer_path,
            json!({"type": "TemplateProcessing", "single": seq, "pair": pair,
                   "special_tokens": specials}),
        )?;
        tok.with_post_processor(Some(post));
    }
    Ok((tok, class))
}
