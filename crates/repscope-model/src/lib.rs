//! repscope-model: run a local sentence-transformers model offline, in Rust, and get what it computes.
//!
//! It reads a sentence-transformers folder (modules.json, config.json, model.safetensors, tokenizer.json,
//! 1_Pooling/config.json, sentence_bert_config.json), tokenizes with the model's own tokenizer, runs the
//! encoder on candle (CPU, or CUDA with the `cuda` feature) and returns the pooled, normalised sentence
//! embeddings, the attention-masked mean of every layer's hidden state, and token-level states of one layer.
//!
//! ```no_run
//! use repscope_model::{DeviceKind, EmbedOptions, Model};
//! let model = Model::load(std::path::Path::new("model/"), DeviceKind::Cpu)?;
//! let texts = vec!["Hello world!".to_string()];
//! let out = model.embed(&texts, &EmbedOptions { layers: true, ..Default::default() }, &|_| {})?;
//! assert_eq!(out.embedding.len(), out.dim);
//! # Ok::<(), repscope_model::Error>(())
//! ```
mod cpu;
pub mod decoder;
mod embed;
mod encoder;
pub mod error;
pub mod folder;
pub mod locate;
pub mod texts;
mod vocab;
pub mod weights;

pub use embed::{Backend, DeviceKind, EmbedOptions, Embeddings, Model, TokenStates, Tokenized};
pub use error::{Error, Result};
pub use folder::{read_folder, Arch, Family, ModelSpec, PoolingMode};
pub use vocab::Vocabulary;

/// True when this build can run on a CUDA GPU.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");
