//! Texts to pooled sentence embeddings and per-layer states: tokenize (truncating at max_seq_length), sort
//! by length so that batches carry little padding, run the encoder batch by batch, pool with the attention
//! mask, and put every row back in input order.
use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use candle_core::Device;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::cpu::CpuEncoder;
use crate::decoder::{load_decoder, CpuDecoder};
use crate::encoder::{to_host, Encoder};
use repscope::{Param, Text};

use crate::error::{Error, Result};
use crate::folder::{read_folder, Arch, ModelSpec, PoolingMode};

/// Where the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl DeviceKind {
    /// Parses `cpu` or `cuda`.
    pub fn parse(s: &str) -> Result<DeviceKind> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda),
            _ => Err(Error::param(
                Param::Device,
                format!("'{s}' is not a device"),
                Text::from("use ")
                    .param(Param::Device)
                    .then(" cpu or ")
                    .param(Param::Device)
                    .then(" cuda"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// Opens the device, or says why it cannot be used.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => open_cuda(),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Device> {
    Device::new_cuda(0).map_err(|e| Error::Device {
        device: "cuda".into(),
        problem: format!("no CUDA GPU could be opened ({e})"),
        fix: Text::from("run on a machine with an NVIDIA GPU and its driver, or use ")
            .param(Param::Device)
            .then(" cpu"),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Device> {
    Err(Error::Device {
        device: "cuda".into(),
        problem: "this repscope was built without CUDA support, so no GPU can be used".into(),
        fix: Text::from("use ").param(Param::Device).then(
            " cpu, or rebuild with `cargo build --release --features cuda` on a machine with the CUDA \
             toolkit (nvcc)",
        ),
    })
}

/// Which implementation of the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The packed CPU pass (faer products, no padding work); the default on the CPU.
    Native,
    /// candle's tensors with padded batches and an additive mask; the pass used on CUDA, and on the CPU
    /// for cross-checking.
    Candle,
}

/// What to compute besides the pooled embedding.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Also the attention-masked mean of every layer's hidden state (layer 0 = embedding output).
    pub layers: bool,
    /// Also the token-level hidden states of this layer (0 = embedding output, L = last block).
    pub token_layer: Option<usize>,
    /// Also the token-level MLP hidden state (post-activation, the input of the output projection) of this
    /// block (0-based).
    pub mlp_layer: Option<usize>,
    /// Pool the embedding and the per-layer rows this way instead of the model's own pooling (the
    /// embedding: an encoder's Pooling module, a decoder's last token; the layers: the mean). No
    /// normalisation follows an override.
    pub pool: Option<PoolingMode>,
    /// A decoder's texts longer than its context are cut (and counted) instead of stopping the run.
    pub truncate: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch_size: 32,
            layers: false,
            token_layer: None,
            mlp_layer: None,
            pool: None,
            truncate: false,
        }
    }
}

/// Token-level hidden states of one layer, every text's tokens ([CLS] and [SEP] included) concatenated.
#[derive(Debug, Clone)]
pub struct TokenStates {
    pub layer: usize,
    /// total_tokens × hidden, row-major.
    pub states: Vec<f32>,
    /// The token id of each row.
    pub ids: Vec<u32>,
    /// Text i owns rows offsets[i]..offsets[i + 1]; n + 1 entries.
    pub offsets: Vec<u64>,
    /// True for a row that is the beginning-of-sequence token the tokenizer put first (decoders).
    pub bos: Vec<bool>,
}

/// The result of [`Model::embed`], rows in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub n: usize,
    /// Width of `embedding` (pooling modes × hidden).
    pub dim: usize,
    /// n × dim, pooled and normalised as the model's modules say.
    pub embedding: Vec<f32>,
    /// Width of the hidden states.
    pub hidden: usize,
    /// With `layers`: L + 1 arrays of n × hidden, layer 0 (embeddings) to L pooled by the mean over the
    /// text's tokens (or by the pooling asked for). Not normalised.
    pub layers: Vec<Vec<f32>>,
    /// How `embedding` was pooled (modes concatenated in this order), and whether it was normalised.
    pub pooling: Vec<PoolingMode>,
    pub normalized: bool,
    /// How `layers` were pooled.
    pub layer_pooling: PoolingMode,
    pub tokens: Option<TokenStates>,
    /// With `mlp_layer`: that block's MLP hidden states, rows as in `tokens` (`layer` is the block).
    pub mlp: Option<TokenStates>,
    /// Width of `mlp`'s rows.
    pub intermediate: usize,
    /// Tokens the model saw per text, special tokens included.
    pub n_tokens: Vec<u32>,
    /// Whether each text was cut at max_seq_length.
    pub truncated: Vec<bool>,
    /// Packed runs ([`Model::embed_packed`]): for every token of the windows, in order, the 0-based text it
    /// comes from (u32::MAX for a window's BOS and for separators).
    pub token_text: Option<Vec<u32>>,
}

impl Embeddings {
    pub fn truncated_count(&self) -> usize {
        self.truncated.iter().filter(|&&t| t).count()
    }
}

/// One tokenized text.
#[derive(Debug, Clone)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub truncated: bool,
}

/// A loaded sentence-transformers model: tokenizer, encoder, pooling and normalisation.
pub struct Model {
    spec: ModelSpec,
    tokenizer: Tokenizer,
    /// The transformers tokenizer class whose pipeline the tokenizer follows, or "tokenizer.json".
    tokenizer_class: String,
    encoder: Runner,
    device: DeviceKind,
}

enum Runner {
    Native(CpuEncoder),
    Candle(Encoder),
    Decoder(Box<CpuDecoder>),
}

impl Model {
    /// Reads the folder, checks it, and loads the weights onto the device (the native pass on the CPU,
    /// candle's on CUDA).
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Model> {
        let backend = match device {
            DeviceKind::Cpu => Backend::Native,
            DeviceKind::Cuda => Backend::Candle,
        };
        Model::load_with(dir, device, backend)
    }

    /// [`Model::load`] with a chosen forward pass; the native one runs on the CPU only.
    pub fn load_with(dir: &Path, device: DeviceKind, backend: Backend) -> Result<Model> {
        if backend == Backend::Native && device != DeviceKind::Cpu {
            return Err(Error::param(
                Param::Backend,
                "the native forward pass runs on the CPU only",
                "use the candle backend on CUDA",
            ));
        }
        let spec = read_folder(dir)?;
        if spec.is_decoder() && device != DeviceKind::Cpu {
            return Err(Error::Device {
                device: device.name().into(),
                problem: format!(
                    "the {} decoder runs on the CPU in this version of repscope",
                    spec.model_type()
                ),
                fix: Text::from("use ").param(Param::Device).then(" cpu"),
            });
        }
        let dev = device.open()?;
        let (mut tokenizer, tokenizer_class) = if spec.is_decoder() {
            crate::decoder::tokenizer::load(&spec.dir, &spec.tokenizer_path, spec.model_type())?
        } else {
            let t = Tokenizer::from_file(&spec.tokenizer_path).map_err(|e| {
                Error::format(
                    &spec.tokenizer_path,
                    format!("is not a tokenizer file this version of tokenizers reads ({e})"),
                    "save the model's fast tokenizer again with a recent transformers \
                     (AutoTokenizer.from_pretrained(folder).save_pretrained(folder))",
                )
            })?;
            (t, "tokenizer.json".to_string())
        };
        if spec.is_decoder() {
            // transformers' tokenizer(text) neither truncates nor pads; the context limit is checked per
            // text in embed.
            tokenizer.with_truncation(None).map_err(|e| {
                Error::format(
                    &spec.tokenizer_path,
                    format!("cannot switch truncation off ({e})"),
                    "restore tokenizer.json from the model's original release",
                )
            })?;
        } else {
            // sentence-transformers pads each batch to its longest text and truncates at max_seq_length,
            // whatever tokenizer.json says.
            tokenizer
                .with_truncation(Some(TruncationParams {
                    direction: TruncationDirection::Right,
                    max_length: spec.max_seq_length,
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                }))
                .map_err(|e| {
                    Error::format(
                        &spec.tokenizer_path,
                        format!(
                            "cannot truncate at max_seq_length {} ({e})",
                            spec.max_seq_length
                        ),
                        "raise max_seq_length in sentence_bert_config.json",
                    )
                })?;
        }
        tokenizer.with_padding(None);
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > spec.vocab_size() {
            return Err(Error::format(
                &spec.tokenizer_path,
                format!(
                    "the tokenizer has {vocab} tokens but the model's vocabulary holds {}",
                    spec.vocab_size()
                ),
                "use the tokenizer.json that belongs to this model",
            ));
        }
        let encoder = match &spec.arch {
            Arch::Decoder(cfg) => Runner::Decoder(Box::new(load_decoder(&spec.weights, cfg)?)),
            Arch::Encoder(cfg) => {
                let encoder = Encoder::load(&spec.weights, cfg, &dev)?;
                match backend {
                    Backend::Native => Runner::Native(encoder.into_cpu()?),
                    Backend::Candle => Runner::Candle(encoder),
                }
            }
        };
        Ok(Model {
            spec,
            tokenizer,
            tokenizer_class,
            encoder,
            device,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn device(&self) -> DeviceKind {
        self.device
    }

    /// Number of transformer blocks L (the layers are 0..=L).
    pub fn num_layers(&self) -> usize {
        self.spec.num_layers()
    }

    /// The transformers tokenizer class whose pipeline the tokenizer follows ("tokenizer.json" when the
    /// file is used as it is).
    pub fn tokenizer_class(&self) -> &str {
        &self.tokenizer_class
    }

    /// The dtype the weights are stored in, for decoders (f32 is computed either way).
    pub fn stored_dtype(&self) -> Option<&str> {
        match &self.encoder {
            Runner::Decoder(d) => Some(&d.stored_dtype),
            _ => None,
        }
    }

    /// Tokenizes as the model's own library does. An encoder as sentence-transformers: strip surrounding
    /// whitespace, lower-case when the model says so, add [CLS]/[SEP], truncate at max_seq_length. A decoder
    /// as transformers' `tokenizer(text)`: the text as it is, with the special tokens tokenizer.json's
    /// post-processor adds (a BOS for Llama and Gemma, none for GPT-2); the context is checked in embed.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Tokenized>> {
        let decoder = self.spec.is_decoder();
        let prepared: Vec<String> = texts
            .iter()
            .map(|t| {
                if decoder {
                    return t.clone();
                }
                let t = t.trim();
                if self.spec.do_lower_case {
                    t.to_lowercase()
                } else {
                    t.to_string()
                }
            })
            .collect();
        let enc = self
            .tokenizer
            .encode_batch_fast(prepared, true)
            .map_err(|e| {
                Error::input(
                    "input texts",
                    format!("the tokenizer failed ({e})"),
                    "check the texts and the model's tokenizer.json",
                )
            })?;
        Ok(enc
            .into_iter()
            .map(|e| Tokenized {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
            })
            .collect())
    }

    /// Checks the options against the model: batch size, the layer of the token states, the MLP block.
    fn check_options(&self, opts: &EmbedOptions) -> Result<()> {
        if opts.batch_size == 0 {
            return Err(Error::param(
                Param::BatchSize,
                "must be at least 1",
                Text::from("use ").param(Param::BatchSize).then(" 32"),
            ));
        }
        let nl = self.num_layers();
        if let Some(l) = opts.token_layer {
            if l > nl {
                return Err(Error::param(
                    Param::Tokens,
                    format!("layer {l} does not exist; this model has layers 0 to {nl}"),
                    format!("choose a layer from 0 (embedding output) to {nl} (last block)"),
                ));
            }
        }
        if let Some(l) = opts.mlp_layer {
            if l >= nl {
                return Err(Error::param(
                    Param::Mlp,
                    format!(
                        "block {l} does not exist; this model has blocks 0 to {}",
                        nl - 1
                    ),
                    format!("choose a block from 0 to {}", nl - 1),
                ));
            }
        }
        Ok(())
    }

    /// Embeds `texts`. `progress` is called with the number of texts finished after every batch.
    pub fn embed(
        &self,
        texts: &[String],
        opts: &EmbedOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Embeddings> {
        self.check_options(opts)?;
        let toks = self.tokenize(texts)?;
        self.embed_tokenized(&toks, opts, progress)
    }

    /// A decoder's texts against its context (an encoder's pass through): an empty text is an error, and a text longer than the
    /// context is an error unless `truncate`, which cuts it (the causal states of the kept prefix are the
    /// same as in the whole text) and marks it.
    pub fn fit_context<'a>(
        &self,
        toks: &'a [Tokenized],
        truncate: bool,
    ) -> Result<Cow<'a, [Tokenized]>> {
        if !self.spec.is_decoder() {
            return Ok(Cow::Borrowed(toks));
        }
        let max = self.spec.max_seq_length;
        for (i, t) in toks.iter().enumerate() {
            if t.ids.is_empty() {
                return Err(Error::input(
                    format!("input text {}", i + 1),
                    "the text has no tokens (it is empty and the tokenizer adds no BOS)",
                    "leave empty texts out of the input",
                ));
            }
            if t.ids.len() > max && !truncate {
                return Err(Error::input(
                    format!("input text {}", i + 1),
                    format!(
                        "{} tokens do not fit the model's context of {max} positions",
                        t.ids.len()
                    ),
                    Text::from("shorten the text, or ")
                        .param(Param::Truncate)
                        .then(" to cut long texts at the context (they are counted)"),
                ));
            }
        }
        if toks.iter().all(|t| t.ids.len() <= max) {
            return Ok(Cow::Borrowed(toks));
        }
        Ok(Cow::Owned(
            toks.iter()
                .map(|t| {
                    if t.ids.len() <= max {
                        t.clone()
                    } else {
                        Tokenized {
                            ids: t.ids[..max].to_vec(),
                            truncated: true,
                        }
                    }
                })
                .collect(),
        ))
    }

    /// Embeds texts tokenized by [`Model::tokenize`].
    pub fn embed_tokenized(
        &self,
        toks: &[Tokenized],
        opts: &EmbedOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Embeddings> {
        self.check_options(opts)?;
        let fitted = self.fit_context(toks, opts.truncate)?;
        let toks = &fitted[..];
        let n = toks.len();
        let h = self.spec.hidden_size();
        let inter = self.spec.intermediate_size();
        let nl = self.num_layers();
        let (pooling, normalize) = match opts.pool {
            Some(p) => (vec![p], false),
            None => (self.spec.pooling.clone(), self.spec.normalize),
        };
        // Layers pool by the mean unless told otherwise: a decoder's last token at layer 0 is only its own
        // embedding, which many texts share.
        let layer_pooling = opts.pool.unwrap_or(PoolingMode::Mean);
        let dim = pooling.len() * h;
        let bs = opts.batch_size.max(1);
        let mut keep = vec![opts.layers; nl + 1];
        keep[nl] = true;
        if let Some(l) = opts.token_layer {
            keep[l] = true;
        }
        let mut keep_mlp = vec![false; nl];
        if let Some(l) = opts.mlp_layer {
            keep_mlp[l] = true;
        }
        // Longest first (stable, so equal lengths keep input order): batches of similar lengths.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(toks[i].ids.len()));
        let chunks: Vec<&[usize]> = order.chunks(bs).collect();

        let acc = Mutex::new(Acc {
            embedding: vec![0f32; n * dim],
            layers: if opts.layers {
                vec![vec![0f32; n * h]; nl + 1]
            } else {
                Vec::new()
            },
            tok_rows: if opts.token_layer.is_some() {
                vec![Vec::new(); n]
            } else {
                Vec::new()
            },
            mlp_rows: if opts.mlp_layer.is_some() {
                vec![Vec::new(); n]
            } else {
                Vec::new()
            },
            done: 0,
        });
        let job = |chunk: &[usize], inner_par: bool| -> Result<()> {
            let (states, mlp, starts) = self.run_chunk(toks, chunk, &keep, &keep_mlp, inner_par)?;
            let mut a = acc
                .lock()
                .map_err(|_| Error::Internal("a worker thread panicked".into()))?;
            for (l, host) in states.iter().enumerate() {
                let Some(host) = host else { continue };
                for (r, &i) in chunk.iter().enumerate() {
                    let len = toks[i].ids.len();
                    let rows = &host[starts[r] * h..(starts[r] + len) * h];
                    if l == nl {
                        pool(
                            rows,
                            len,
                            h,
                            &pooling,
                            normalize,
                            &mut a.embedding[i * dim..(i + 1) * dim],
                        );
                    }
                    if opts.layers {
                        pool(
                            rows,
                            len,
                            h,
                            &[layer_pooling],
                            false,
                            &mut a.layers[l][i * h..(i + 1) * h],
                        );
                    }
                    if opts.token_layer == Some(l) {
                        a.tok_rows[i] = rows.to_vec();
                    }
                }
            }
            if let Some(host) = mlp {
                for (r, &i) in chunk.iter().enumerate() {
                    let len = toks[i].ids.len();
                    a.mlp_rows[i] = host[starts[r] * inter..(starts[r] + len) * inter].to_vec();
                }
            }
            a.done += chunk.len();
            progress(a.done);
            Ok(())
        };
        match &self.encoder {
            // Batches in parallel, each on one thread: no synchronisation inside a forward pass, which
            // matters on few, shared cores. A single batch uses the threads inside its products instead.
            Runner::Native(_) | Runner::Decoder(_)
                if chunks.len() > 1 && rayon::current_num_threads() > 1 =>
            {
                chunks
                    .par_iter()
                    .with_max_len(1)
                    .try_for_each(|c| job(c, false))?
            }
            Runner::Native(_) | Runner::Decoder(_) => {
                chunks.iter().try_for_each(|c| job(c, true))?
            }
            // candle runs its own threads inside each operation.
            Runner::Candle(_) => chunks.iter().try_for_each(|c| job(c, false))?,
        }
        let acc = acc
            .into_inner()
            .map_err(|_| Error::Internal("a worker thread panicked".into()))?;
        let bos_id = match &self.spec.arch {
            Arch::Decoder(c) => c.bos_token_id,
            Arch::Encoder(_) => None,
        };
        let gather = |layer: usize, rows: Vec<Vec<f32>>, width: usize| -> TokenStates {
            let total: usize = toks.iter().map(|t| t.ids.len()).sum();
            let mut states = Vec::with_capacity(total * width);
            let mut ids = Vec::with_capacity(total);
            let mut bos = Vec::with_capacity(total);
            let mut offsets = Vec::with_capacity(n + 1);
            offsets.push(0u64);
            for (t, r) in toks.iter().zip(rows) {
                states.extend_from_slice(&r);
                ids.extend_from_slice(&t.ids);
                bos.extend(
                    t.ids
                        .iter()
                        .enumerate()
                        .map(|(j, &id)| j == 0 && Some(id) == bos_id),
                );
                offsets.push(ids.len() as u64);
            }
            TokenStates {
                layer,
                states,
                ids,
                offsets,
                bos,
            }
        };
        let tokens = opts.token_layer.map(|l| gather(l, acc.tok_rows, h));
        let mlp = opts.mlp_layer.map(|l| gather(l, acc.mlp_rows, inter));
        Ok(Embeddings {
            n,
            dim,
            embedding: acc.embedding,
            hidden: h,
            layers: acc.layers,
            pooling,
            normalized: normalize,
            layer_pooling,
            tokens,
            mlp,
            intermediate: inter,
            n_tokens: toks.iter().map(|t| t.ids.len() as u32).collect(),
            truncated: toks.iter().map(|t| t.truncated).collect(),
            token_text: None,
        })
    }

    /// Packs texts into windows of `context` tokens, as SAE activation caches are built: every text is
    /// tokenized without special tokens, the texts are joined with the model's BOS token between them,
    /// and the stream is cut into windows that each start with the BOS (a model without a BOS token id
    /// gets plain concatenation). The last window may be shorter. `max_tokens` caps the tokens of all
    /// windows together. Returns the windows and, for each of their tokens, the text it comes from.
    pub fn pack(
        &self,
        texts: &[String],
        context: usize,
        max_tokens: Option<usize>,
    ) -> Result<(Vec<Tokenized>, Vec<u32>)> {
        let Arch::Decoder(cfg) = &self.spec.arch else {
            return Err(Error::param(
                Param::Context,
                "packing texts into windows is for decoder language models",
                Text::from("leave ")
                    .param(Param::Context)
                    .then(" out for an encoder, which embeds each text on its own"),
            ));
        };
        let lead = cfg.bos_token_id;
        let least = if lead.is_some() { 2 } else { 1 };
        let max = self.spec.max_seq_length;
        if context < least || context > max {
            return Err(Error::param(
                Param::Context,
                format!(
                    "{context} tokens is outside 1 BOS + 1 token to the model's {max} positions"
                ),
                format!("choose a window from {least} to {max} tokens"),
            ));
        }
        if max_tokens == Some(0) {
            return Err(Error::param(
                Param::MaxTokens,
                "must be at least 1",
                "give the most tokens to run, or leave it out for every token",
            ));
        }
        let enc = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), false)
            .map_err(|e| {
                Error::input(
                    "input texts",
                    format!("the tokenizer failed ({e})"),
                    "check the texts and the model's tokenizer.json",
                )
            })?;
        let cap = max_tokens.unwrap_or(usize::MAX);
        let mut windows: Vec<Tokenized> = Vec::new();
        let mut origin: Vec<u32> = Vec::new();
        // Appends one token, opening a window (with its BOS) when none is open or the last is full.
        // A separator that would open a window is dropped: the window's own BOS separates. Returns false
        // once the cap is reached.
        let mut push = |id: u32, text: u32, separator: bool| -> bool {
            let fresh = windows.last().is_none_or(|w| w.ids.len() == context);
            if fresh && separator {
                return true;
            }
            let extra = usize::from(fresh && lead.is_some());
            if origin.len() + extra + 1 > cap {
                return false;
            }
            if fresh {
                let mut ids = Vec::with_capacity(context);
                if let Some(b) = lead {
                    ids.push(b);
                    origin.push(u32::MAX);
                }
                windows.push(Tokenized {
                    ids,
                    truncated: false,
                });
            }
            if let Some(w) = windows.last_mut() {
                w.ids.push(id);
            }
            origin.push(text);
            true
        };
        'texts: for (i, e) in enc.iter().enumerate() {
            if let (true, Some(b)) = (i > 0, lead) {
                if !push(b, u32::MAX, true) {
                    break 'texts;
                }
            }
            for &id in e.get_ids() {
                if !push(id, i as u32, false) {
                    break 'texts;
                }
            }
        }
        if windows.is_empty() {
            return Err(Error::input(
                "input texts",
                "the texts hold no tokens to pack",
                "give texts that are not empty",
            ));
        }
        Ok((windows, origin))
    }

    /// Embeds the windows [`Model::pack`] makes of `texts`; `token_text` names each token's text.
    pub fn embed_packed(
        &self,
        texts: &[String],
        context: usize,
        max_tokens: Option<usize>,
        opts: &EmbedOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Embeddings> {
        self.check_options(opts)?;
        let (windows, origin) = self.pack(texts, context, max_tokens)?;
        let mut out = self.embed_tokenized(&windows, opts, progress)?;
        out.token_text = Some(origin);
        Ok(out)
    }

    /// Runs one batch of texts. Returns the host states per layer (None where not kept), the kept MLP
    /// hidden states, and the row at which each text of the batch starts in them.
    #[allow(clippy::type_complexity)]
    fn run_chunk(
        &self,
        toks: &[Tokenized],
        chunk: &[usize],
        keep: &[bool],
        keep_mlp: &[bool],
        inner_par: bool,
    ) -> Result<(Vec<Option<Vec<f32>>>, Option<Vec<f32>>, Vec<usize>)> {
        let b = chunk.len();
        let packed_starts = || {
            let mut starts = Vec::with_capacity(b);
            let mut at = 0;
            for &i in chunk {
                starts.push(at);
                at += toks[i].ids.len();
            }
            starts
        };
        match &self.encoder {
            Runner::Native(enc) => {
                let seqs: Vec<&[u32]> = chunk.iter().map(|&i| toks[i].ids.as_slice()).collect();
                Ok((enc.forward(&seqs, keep, inner_par), None, packed_starts()))
            }
            Runner::Decoder(dec) => {
                let seqs: Vec<&[u32]> = chunk.iter().map(|&i| toks[i].ids.as_slice()).collect();
                let out = dec.forward(&seqs, keep, keep_mlp, inner_par);
                let mlp = out.mlp.into_iter().flatten().next();
                Ok((out.states, mlp, packed_starts()))
            }
            Runner::Candle(enc) => {
                if keep_mlp.iter().any(|&k| k) {
                    return Err(Error::param(
                        Param::Mlp,
                        "the candle forward pass does not expose MLP hidden states",
                        "use the native CPU pass",
                    ));
                }
                let seq = chunk.iter().map(|&i| toks[i].ids.len()).max().unwrap_or(0);
                if seq == 0 {
                    return Err(Error::Internal("a tokenized text has no tokens".into()));
                }
                let Arch::Encoder(cfg) = &self.spec.arch else {
                    return Err(Error::Internal("the candle pass runs encoders only".into()));
                };
                let pad = cfg.pad_token_id;
                let mut ids = vec![pad; b * seq];
                let mut mask = vec![0u32; b * seq];
                for (r, &i) in chunk.iter().enumerate() {
                    let t = &toks[i].ids;
                    ids[r * seq..r * seq + t.len()].copy_from_slice(t);
                    mask[r * seq..r * seq + t.len()]
                        .iter_mut()
                        .for_each(|m| *m = 1);
                }
                let st = enc.forward(&ids, &mask, b, seq, keep)?;
                let host = st
                    .iter()
                    .map(|t| t.as_ref().map(to_host).transpose())
                    .collect::<Result<Vec<_>>>()?;
                Ok((host, None, (0..b).map(|r| r * seq).collect()))
            }
        }
    }
}

/// The outputs, filled batch by batch.
struct Acc {
    embedding: Vec<f32>,
    layers: Vec<Vec<f32>>,
    tok_rows: Vec<Vec<f32>>,
    mlp_rows: Vec<Vec<f32>>,
    done: usize,
}

/// Mean over the `len` real tokens (rows of width h), accumulated in f64.
fn masked_mean(rows: &[f32], len: usize, h: usize, out: &mut [f32]) {
    let mut acc = vec![0f64; h];
    for tok in rows.chunks_exact(h).take(len) {
        for (a, &v) in acc.iter_mut().zip(tok) {
            *a += v as f64;
        }
    }
    let denom = (len as f64).max(1e-9);
    for (o, a) in out.iter_mut().zip(acc) {
        *o = (a / denom) as f32;
    }
}

/// sentence-transformers' Pooling (modes concatenated in order) and, if present, Normalize.
fn pool(
    rows: &[f32],
    len: usize,
    h: usize,
    modes: &[PoolingMode],
    normalize: bool,
    out: &mut [f32],
) {
    for (m, o) in modes.iter().zip(out.chunks_exact_mut(h)) {
        match m {
            PoolingMode::Cls => o.copy_from_slice(&rows[..h]),
            PoolingMode::Max => {
                o.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                for tok in rows.chunks_exact(h).take(len) {
                    for (a, &v) in o.iter_mut().zip(tok) {
                        *a = a.max(v);
                    }
                }
            }
            PoolingMode::Mean => masked_mean(rows, len, h, o),
            PoolingMode::MeanSqrtLen => {
                masked_mean(rows, len, h, o);
                let s = (len as f64).sqrt();
                o.iter_mut()
                    .for_each(|v| *v = (*v as f64 * len as f64 / s) as f32);
            }
            PoolingMode::WeightedMean => {
                let mut acc = vec![0f64; h];
                let mut wsum = 0f64;
                for (t, tok) in rows.chunks_exact(h).take(len).enumerate() {
                    let w = (t + 1) as f64;
                    wsum += w;
                    for (a, &v) in acc.iter_mut().zip(tok) {
                        *a += w * v as f64;
                    }
                }
                for (a, v) in o.iter_mut().zip(acc) {
                    *a = (v / wsum.max(1e-9)) as f32;
                }
            }
            PoolingMode::LastToken => o.copy_from_slice(&rows[(len - 1) * h..len * h]),
        }
    }
    if normalize {
        let norm = out
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        out.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_follow_their_definitions() {
        // Two real tokens of width 2, then padding that must be ignored.
        let rows = [1.0f32, -2.0, 3.0, 4.0];
        let mut o = [0f32; 2];
        pool(&rows, 2, 2, &[PoolingMode::Mean], false, &mut o);
        assert_eq!(o, [2.0, 1.0]);
        pool(&rows, 2, 2, &[PoolingMode::Max], false, &mut o);
        assert_eq!(o, [3.0, 4.0]);
        pool(&rows, 2, 2, &[PoolingMode::Cls], false, &mut o);
        assert_eq!(o, [1.0, -2.0]);
        pool(&rows, 2, 2, &[PoolingMode::LastToken], false, &mut o);
        assert_eq!(o, [3.0, 4.0]);
        pool(&rows, 2, 2, &[PoolingMode::MeanSqrtLen], false, &mut o);
        assert!((o[0] - 4.0 / 2f32.sqrt()).abs() < 1e-6 && (o[1] - 2.0 / 2f32.sqrt()).abs() < 1e-6);
        pool(&rows, 2, 2, &[PoolingMode::WeightedMean], false, &mut o);
        assert!((o[0] - 7.0 / 3.0).abs() < 1e-6 && (o[1] - 2.0).abs() < 1e-6);
        let mut o4 = [0f32; 4];
        pool(
            &rows,
            2,
            2,
            &[PoolingMode::Cls, PoolingMode::Mean],
            true,
            &mut o4,
        );
        let norm = (1.0f32 + 4.0 + 4.0 + 1.0).sqrt();
        for (a, b) in o4.iter().zip([1.0, -2.0, 2.0, 1.0]) {
            assert!((a - b / norm).abs() < 1e-6);
        }
    }

    #[test]
    fn device_names_parse() {
        assert_eq!(DeviceKind::parse("CPU").unwrap(), DeviceKind::Cpu);
        assert_eq!(DeviceKind::parse("cuda").unwrap(), DeviceKind::Cuda);
        assert!(DeviceKind::parse("tpu").is_err());
    }
}
