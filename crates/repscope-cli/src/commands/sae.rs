//! `repscope sae train|eval`: sparse autoencoders trained on activation files and evaluated on them, in
//! SAELens' folder layout.
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use repscope::sae::eval::{evaluate, EvalConfig, EvalReport};
use repscope::sae::train::{BDecInit, Checkpoints, Outcome, TrainConfig, TrainSummary, Trainer};
use repscope::sae::{self, source, Architecture};
use serde_json::json;

use super::print_json;
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Failure, Global};

#[derive(Subcommand, Debug)]
pub enum SaeCommand {
    /// Train a TopK or BatchTopK SAE on the rows of a file; writes an SAELens folder.
    Train(Box<TrainArgs>),
    /// Evaluate an SAE (a SAELens or sparsify folder, or an OpenAI .pt file) on the rows of a file.
    Eval(EvalArgs),
    /// Encode the rows of a file: sparse codes as .npz (indptr, indices, values: row r's latents are
    /// indices[indptr[r]:indptr[r+1]]; with ln_mean and ln_std per row for a layer-normalising SAE).
    Encode(EncodeArgs),
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// SAE: a SAELens or sparsify folder, or an OpenAI sparse_autoencoder .pt file.
    pub sae: PathBuf,
    /// Activations: a .npy, .npz or .safetensors file, or a folder or quoted pattern of shards (streamed).
    pub file: PathBuf,
    /// Array to read from an .npz or .safetensors file.
    #[arg(long)]
    pub key: Option<String>,
    /// Output .npz.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Rows encoded at a time.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Activations, rows = tokens: a .npy, .npz or .safetensors file, or a folder or quoted pattern of shards
    /// (streamed).
    pub file: PathBuf,
    /// Array to read from an .npz or .safetensors file.
    #[arg(long)]
    pub key: Option<String>,
    /// Output folder (SAELens layout: cfg.json, sae_weights.safetensors).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Latents.
    #[arg(long)]
    pub width: usize,
    /// Active latents per row (TopK) or per row on average (BatchTopK).
    #[arg(long, short = 'k', default_value_t = 32)]
    pub k: usize,
    /// topk or batchtopk (saved as jumprelu with the learnt threshold).
    #[arg(long, default_value = "topk")]
    pub arch: String,
    /// Rows to train on in all (default: one pass over the file).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Rows per step.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Learning rate (default 2e-4 / sqrt(width / 2^14)).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Warm-up steps (default 5% of the steps, at most 1000).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// The share of the steps, at the end, over which the learning rate decays linearly to 0.
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    pub decay_fraction: f64,
    /// The largest global gradient norm; 0 turns clipping off.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub clip: f64,
    /// AuxK latents per row (default d/2; 0 turns AuxK off).
    #[arg(long)]
    pub aux_k: Option<usize>,
    /// AuxK loss coefficient.
    #[arg(long, default_value_t = 1.0 / 32.0, allow_negative_numbers = true)]
    pub aux_coef: f64,
    /// A latent is dead after this many rows without firing.
    #[arg(long, default_value_t = 10_000_000)]
    pub dead_tokens: u64,
    /// Initial b_dec: median (geometric median), mean or zero.
    #[arg(long, default_value = "median")]
    pub b_dec_init: String,
    /// Train on the inputs as given, without scaling the mean row norm to sqrt(d).
    #[arg(long)]
    pub no_normalize: bool,
    /// Decoder rows: unit (held at unit norm, the recipe) or rescaled (SAELens' free rows, each
    /// latent ranked by its pre-activation times its row's norm; exported with unit rows).
    #[arg(long, default_value = "unit")]
    pub decoder: String,
    /// Initial norm of the decoder rows with --decoder rescaled (SAELens' decoder_init_norm).
    #[arg(long, default_value_t = 0.1)]
    pub decoder_init_norm: f64,
    /// Rows of the shuffle buffer (default: 128 MiB of rows, between one batch and 65,536).
    #[arg(long)]
    pub shuffle_rows: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the whole training state to OUTPUT.checkpoint every N steps.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Continue from OUTPUT.checkpoint, bit-identically (same file and settings as the run that wrote it).
    #[arg(long)]
    pub resume: bool,
    /// Stop after N steps of this run, with a checkpoint to --resume from.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Replace the output folder if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The checkpoint folder of an output folder: a sibling named OUTPUT.checkpoint.
fn checkpoint_dir(out: &std::path::Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "sae".into());
    name.push(".checkpoint");
    out.with_file_name(name)
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// SAE: a SAELens folder (cfg.json, sae_weights.safetensors), a sparsify folder (cfg.json,
    /// sae.safetensors), or an OpenAI sparse_autoencoder .pt file.
    pub sae: PathBuf,
    /// Activations: a .npy, .npz or .safetensors file, or a folder or quoted pattern of shards (streamed).
    pub file: PathBuf,
    /// Array to read from an .npz or .safetensors file.
    #[arg(long)]
    pub key: Option<String>,
    /// Rows encoded at a time.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
}

/// The engine's parameters as this command's flags.
fn flag(p: repscope::Param) -> String {
    use repscope::Param;
    match p {
        Param::K => "-k".into(),
        Param::BatchSize => "--batch".into(),
        Param::LearningRate => "--lr".into(),
        other => crate::flag(other),
    }
}

fn engine(e: repscope::Error) -> Failure {
    Failure::engine(e, &flag)
}

pub fn run(c: &SaeCommand, g: &Global) -> CliResult {
    match c {
        SaeCommand::Train(a) => run_train(a, g),
        SaeCommand::Eval(a) => run_eval(a, g),
        SaeCommand::Encode(a) => run_encode(a, g),
    }
}

fn run_train(a: &TrainArgs, g: &Global) -> CliResult {
    let arch = match Architecture::parse(&a.arch) {
        Some(x @ (Architecture::TopK | Architecture::BatchTopK)) => x,
        _ => {
            return Err(usage(format!(
                "--arch '{}': training supports topk and batchtopk. Choose one of them.",
                a.arch
            )))
        }
    };
    let b_dec_init = match a.b_dec_init.as_str() {
        "median" => BDecInit::GeometricMedian,
        "mean" => BDecInit::Mean,
        "zero" => BDecInit::Zero,
        other => {
            return Err(usage(format!(
                "--b-dec-init '{other}': choose median, mean or zero."
            )))
        }
    };
    let rescaled_decoder = match a.decoder.as_str() {
        "unit" => None,
        "rescaled" => Some(a.decoder_init_norm),
        other => {
            return Err(usage(format!(
                "--decoder '{other}': choose unit or rescaled."
            )))
        }
    };
    let cfg = TrainConfig {
        rescaled_decoder,
        width: a.width,
        k: a.k,
        arch,
        tokens: a.tokens,
        batch: a.batch,
        lr: a.lr,
        warmup_steps: a.warmup_steps,
        decay_fraction: a.decay_fraction,
        clip: a.clip,
        aux_k: a.aux_k,
        aux_coef: a.aux_coef,
        dead_tokens: a.dead_tokens,
        b_dec_init,
        normalize: !a.no_normalize,
        shuffle_rows: a.shuffle_rows,
        seed: a.seed,
        ..TrainConfig::default()
    };
    cfg.validate().map_err(engine)?;
    let input = std::fs::canonicalize(&a.file).ok();
    if let (Some(i), Ok(o)) = (&input, std::fs::canonicalize(&a.output)) {
        if i.starts_with(&o) {
            return Err(usage(format!(
                "{}: the output folder holds the input {}. Choose another folder.",
                a.output.display(),
                a.file.display()
            )));
        }
    }
    if a.output.exists() && !a.force {
        repscope::data::prepare_folder(&a.output, false)?;
    }
    let src = source::open(&a.file, a.key.as_deref()).map_err(engine)?;
    let bars = Bars::new(g.quiet);
    let t0 = Instant::now();
    let ck_dir = checkpoint_dir(&a.output);
    let trainer = if a.resume {
        if !ck_dir.join("state.json").is_file() {
            return Err(usage(format!(
                "{}: no checkpoint to resume from. Train without --resume, or pass the -o of the run that wrote it.",
                ck_dir.display()
            )));
        }
        Trainer::resume(src.as_ref(), &cfg, &ck_dir).map_err(engine)?
    } else {
        Trainer::new(src.as_ref(), &cfg).map_err(engine)?
    };
    let ck = Checkpoints {
        dir: (a.checkpoint_every.is_some() || a.stop_after.is_some()).then(|| ck_dir.clone()),
        every: a.checkpoint_every,
        stop_after: a.stop_after,
    };
    let trained = match trainer.run_with(&bars, &ck).map_err(engine)? {
        Outcome::Done(t) => *t,
        Outcome::Stopped { step, steps } => {
            let msg = format!(
                "stopped after step {step} of {steps}; the state is in {}. Continue with the same command and --resume.",
                ck_dir.display()
            );
            if g.json {
                return print_json(
                    &json!({"stopped": true, "step": step, "steps": steps, "checkpoint": ck_dir.display().to_string()}),
                );
            }
            println!("{msg}");
            return Ok(());
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let s = &trained.summary;
    let meta = json!({
        "trained_by": "repscope",
        "training": {
            "source": a.file.display().to_string(),
            "key": a.key,
            "arch": s.arch,
            "width": s.width,
            "k": s.k,
            "steps": s.steps,
            "tokens": s.tokens,
            "batch": cfg.batch,
            "lr": s.lr,
            "warmup_steps": s.warmup_steps,
            "decay_steps": s.decay_steps,
            "clip": cfg.clip,
            "aux_k": s.aux_k,
            "aux_coef": cfg.aux_coef,
            "dead_tokens": cfg.dead_tokens,
            "b_dec_init": cfg.b_dec_init,
            "input_scale_folded": s.input_scale,
            "threshold": s.threshold,
            "seed": cfg.seed,
        },
    });
    let log = serde_json::to_vec_pretty(&json!({"summary": s, "seconds": secs}))
        .map_err(|e| usage(format!("cannot encode JSON: {e}")))?;
    sae::io::save(
        &trained.sae,
        &a.output,
        meta,
        &[("repscope_training.json", log)],
        a.force,
    )
    .map_err(engine)?;
    let _ = std::fs::remove_dir_all(&ck_dir);
    if g.json {
        print_json(&json!({
            "output": a.output.display().to_string(),
            "summary": s,
            "seconds": secs,
            "tokens_per_second": s.tokens as f64 / secs,
            "repscope_version": repscope::VERSION,
        }))
    } else {
        print!("{}", render_train(s, &a.output.display().to_string(), secs));
        Ok(())
    }
}

fn render_train(s: &TrainSummary, out: &str, secs: f64) -> String {
    let mut t = Table::new(&["measure", "value"]);
    t.row(vec!["steps".into(), s.steps.to_string()]);
    t.row(vec!["tokens".into(), s.tokens.to_string()]);
    t.row(vec![
        "tokens/s".into(),
        format!("{:.0}", s.tokens as f64 / secs),
    ]);
    t.row(vec!["FVU (last 10% of steps)".into(), num(s.final_fvu)]);
    t.row(vec!["L0 (last 10% of steps)".into(), num(s.final_l0)]);
    t.row(vec![
        "dead latents".into(),
        format!("{:.2}%", 100.0 * s.final_dead_fraction),
    ]);
    t.row(vec!["learning rate".into(), format!("{:.3e}", s.lr)]);
    if let Some(th) = s.threshold {
        t.row(vec!["BatchTopK threshold".into(), num(th)]);
    }
    format!(
        "SAE {} x {} ({:?}, k = {}) written to {out}\n\n{}",
        s.d,
        s.width,
        s.arch,
        s.k,
        t.render()
    )
}

fn run_eval(a: &EvalArgs, g: &Global) -> CliResult {
    let model = sae::io::load(&a.sae).map_err(engine)?;
    let src = source::open(&a.file, a.key.as_deref()).map_err(engine)?;
    let bars = Bars::new(g.quiet);
    let t0 = Instant::now();
    let r = evaluate(
        &model,
        src.as_ref(),
        &EvalConfig {
            batch: a.batch.max(1),
            ..Default::default()
        },
        &bars,
    )
    .map_err(engine)?;
    let secs = t0.elapsed().as_secs_f64();
    if g.json {
        let mut v =
            serde_json::to_value(&r).map_err(|e| usage(format!("cannot encode JSON: {e}")))?;
        v["sae"] = json!(a.sae.display().to_string());
        v["input"] = json!({"path": a.file.display().to_string(), "key": a.key});
        v["seconds"] = json!(secs);
        v["repscope_version"] = json!(repscope::VERSION);
        print_json(&v)
    } else {
        print!("{}", render_eval(&r, &a.sae.display().to_string()));
        Ok(())
    }
}

fn render_eval(r: &EvalReport, name: &str) -> String {
    let mut t = Table::new(&["metric", "value", "definition"]);
    let rows: Vec<(&str, f64, &str)> = vec![
        ("L0", r.l0, "mean active latents per row"),
        ("FVU", r.fvu, "sum |x - x^|^2 / sum |x - mean|^2"),
        (
            "explained variance (legacy)",
            r.explained_variance_legacy,
            "mean over rows of 1 - |x - x^|^2 / |x - mean|^2",
        ),
        ("MSE", r.mse, "mean of (x^ - x)^2 over all values"),
        ("cosine", r.cosine, "mean cos(x, x^)"),
        (
            "relative reconstruction bias",
            r.relative_reconstruction_bias,
            "E|x^|^2 / E<x, x^>",
        ),
        (
            "mean max decoder cosine",
            r.mean_max_decoder_cosine,
            "per latent, the largest cosine with another",
        ),
    ];
    for (m, v, d) in rows {
        t.row(vec![m.into(), num(v), d.into()]);
    }
    t.row(vec![
        "dead latents".into(),
        format!("{} ({:.2}%)", r.dead_latents, 100.0 * r.dead_fraction),
        "never fired on these rows".into(),
    ]);
    t.row(vec![
        "dense latents".into(),
        format!("{} / {}", r.dense_over_1pct, r.dense_over_10pct),
        "firing on > 1% / > 10% of rows".into(),
    ]);
    let mut out = format!(
        "{name}: {} x {} ({:?}) on {} rows\n\n{}",
        r.d,
        r.width,
        r.arch,
        r.rows,
        t.render()
    );
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

fn run_encode(a: &EncodeArgs, g: &Global) -> CliResult {
    super::require_ext(&a.output, "npz")?;
    crate::check_output(&a.output, &[&a.file], a.force)?;
    let model = sae::io::load(&a.sae).map_err(engine)?;
    let src = source::open(&a.file, a.key.as_deref()).map_err(engine)?;
    if src.cols() != model.d {
        return Err(usage(format!(
            "{}: the activations have d = {} but the SAE {} reads d_in = {}. Pass the activations of the layer the SAE was trained on.",
            a.file.display(),
            src.cols(),
            a.sae.display(),
            model.d
        )));
    }
    let (rows, d) = (src.rows(), src.cols());
    let bars = Bars::new(g.quiet);
    use repscope::progress::Progress;
    bars.stage("sae encode", rows as u64);
    let t0 = Instant::now();
    let (mut indptr, mut indices, mut values) = (vec![0i64], Vec::new(), Vec::new());
    let (mut ln_mean, mut ln_std) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    let encoder =
        repscope::sae::encoder::Encoder::new(&model, repscope::sae::encoder::Backend::best());
    let mut start = 0;
    while start < rows {
        let c = a.batch.max(1).min(rows - start);
        buf.resize(c * d, 0.0);
        src.read(start, c, &mut buf).map_err(engine)?;
        let codes = encoder.encode(&buf, c);
        let base = indices.len() as i64;
        indptr.extend(codes.off[1..].iter().map(|&o| base + o as i64));
        indices.extend(codes.idx);
        values.extend(codes.val);
        for (m, sd) in codes.norm {
            ln_mean.push(m);
            ln_std.push(sd);
        }
        bars.advance(c as u64);
        start += c;
    }
    bars.finish_stage();
    let secs = t0.elapsed().as_secs_f64();
    use repscope::data::npz::{self, NpzArray};
    let (s1, s2, s3, s4) = (
        [indptr.len()],
        [indices.len()],
        [values.len()],
        [ln_mean.len()],
    );
    let mut arrays = vec![
        ("indptr", NpzArray::I64(&s1, &indptr)),
        ("indices", NpzArray::U32(&s2, &indices)),
        ("values", NpzArray::F32(&s3, &values)),
    ];
    // A layer-normalising SAE (OpenAI's) decodes a row with its own mean and standard deviation.
    if !ln_mean.is_empty() {
        arrays.push(("ln_mean", NpzArray::F32(&s4, &ln_mean)));
        arrays.push(("ln_std", NpzArray::F32(&s4, &ln_std)));
    }
    npz::write(&a.output, &arrays)?;
    let l0 = values.len() as f64 / rows.max(1) as f64;
    if g.json {
        print_json(&json!({
            "output": a.output.display().to_string(),
            "rows": rows,
            "width": model.n,
            "l0": l0,
            "seconds": secs,
            "repscope_version": repscope::VERSION,
        }))
    } else {
        println!(
            "{rows} rows encoded by {} latents (L0 {l0:.2}) written to {}",
            model.n,
            a.output.display()
        );
        Ok(())
    }
}
