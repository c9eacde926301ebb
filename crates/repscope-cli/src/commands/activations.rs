//! `repscope activations`: per-dimension statistics, massive activations, outlier and rogue dimensions,
//! sparsity, row norms and the outlier ratio γ.
use std::path::{Path, PathBuf};

use clap::Args;
use repscope::activations::{self, ActivationConfig, ActivationReport, Quantile};
use serde_json::json;

use super::{print_json, SourceInput};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Failure, Global};

#[derive(Args, Debug)]
pub struct ActivationsArgs {
    #[command(flatten)]
    pub input: SourceInput,
    /// Token ids, one per row (.npy, .npz or .safetensors). Default: the ids stored beside the rows in every
    /// file of the input, when each has one per row: the array token_ids of .npz/.safetensors files (as
    /// `embed --tokens` writes) or the integer column token_ids (else input_ids) of parquet and Arrow files
    /// (Hugging Face and SAELens caches).
    #[arg(long)]
    pub token_ids: Option<PathBuf>,
    /// The array to read from a multi-array --token-ids file.
    #[arg(long)]
    pub token_ids_key: Option<String>,
    /// A model folder (or its tokenizer.json) whose tokenizer spells the token ids.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Massive activations: |a| above this...
    #[arg(long, default_value_t = 100.0, allow_negative_numbers = true)]
    pub massive_abs: f64,
    /// ...and above this multiple of the median |a| of its row (Sun et al. 2024).
    #[arg(long, default_value_t = 1000.0, allow_negative_numbers = true)]
    pub massive_ratio: f64,
    /// Also count |a| < EPS as inactive (exact zeros are always counted).
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Peak rows: max|a|/median|a| at least this multiple of its median over the rows.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub peak_factor: f64,
    /// Outlier dimensions: a mean this many standard deviations from the mean of the dimension means.
    #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
    pub outlier_sigma: f64,
    /// How many rogue dimensions to list.
    #[arg(long, default_value_t = 10)]
    pub top_rogue: usize,
    /// How many massive values and peak-row groups to list (all are counted).
    #[arg(long, default_value_t = 100)]
    pub max_listed: usize,
    /// Skip the search for exact duplicate rows (a hash of every row, 8 bytes a row, and a pass comparing
    /// values where two rows share a hash).
    #[arg(long)]
    pub no_duplicates: bool,
    /// How many rows of each table the terminal shows (JSON always has all that were listed).
    #[arg(long, default_value_t = 10)]
    pub show: usize,
}

impl ActivationsArgs {
    pub fn config(&self) -> ActivationConfig {
        ActivationConfig {
            massive_abs: self.massive_abs,
            massive_ratio: self.massive_ratio,
            eps: self.eps,
            peak_factor: self.peak_factor,
            outlier_sigma: self.outlier_sigma,
            top_rogue: self.top_rogue,
            max_listed: self.max_listed,
            duplicates: !self.no_duplicates,
        }
    }
}

/// The token ids of the rows: from --token-ids (one per row of the whole source, cut like the rows by
/// --rows and --sample), or those stored beside the rows in the input's files.
fn token_ids(
    a: &ActivationsArgs,
    total: usize,
    rows: usize,
) -> Result<Option<(String, Vec<u32>)>, Failure> {
    if let Some(p) = &a.token_ids {
        let ids = repscope::data::load_token_ids(p, a.token_ids_key.as_deref()).map_err(|e| {
            Failure::engine(e, &|p| match p {
                repscope::Param::Key => "--token-ids-key".into(),
                other => crate::flag(other),
            })
        })?;
        if ids.len() != total {
            return Err(usage(format!(
                "{}: {} token ids for {total} rows of {}. Pass the token ids written beside these states.",
                p.display(),
                ids.len(),
                a.input.paths().join(" ")
            )));
        }
        return Ok(Some((p.display().to_string(), a.input.pick(ids))));
    }
    if a.token_ids_key.is_some() {
        return Err(usage(
            "--token-ids-key names an array of --token-ids, which was not given. Pass --token-ids FILE.",
        ));
    }
    match repscope::data::token_ids_beside(&a.input.files, a.input.key.as_deref())? {
        Some((what, ids)) if ids.len() == total => {
            let ids = a.input.pick(ids);
            debug_assert_eq!(ids.len(), rows);
            Ok(Some((what, ids)))
        }
        _ => Ok(None),
    }
}

/// Spells a token id.
type TokenNamer = Box<dyn Fn(u32) -> Option<String>>;

#[cfg(feature = "model")]
fn namer(model: Option<&Path>) -> Result<Option<TokenNamer>, Failure> {
    match model {
        None => Ok(None),
        Some(p) => {
            let v = repscope_model::Vocabulary::load(p)?;
            Ok(Some(Box::new(move |id| v.token(id))))
        }
    }
}

#[cfg(not(feature = "model"))]
fn namer(model: Option<&Path>) -> Result<Option<TokenNamer>, Failure> {
    match model {
        None => Ok(None),
        Some(_) => Err(usage(
            "--model: this build has no tokenizer (built without the model feature). Drop --model to list token ids.",
        )),
    }
}

pub fn run(a: &ActivationsArgs, g: &Global) -> CliResult {
    let cfg = a.config();
    cfg.validate()?;
    if let Some(p) = &a.model {
        if !p.exists() {
            return Err(usage(format!(
                "{}: no such model folder or tokenizer file. Pass the folder of the model that wrote the states.",
                p.display()
            )));
        }
    }
    let name = namer(a.model.as_deref())?;
    let whole = a.input.open_whole()?;
    let total = whole.rows();
    let src = a.input.select(whole)?;
    let tokens = token_ids(a, total, src.rows())?;
    let bars = Bars::new(g.quiet);
    let mut r =
        activations::analyse_source(&*src, &cfg, tokens.as_ref().map(|t| t.1.as_slice()), &bars)?;
    if let Some(f) = &name {
        r.name_tokens(f.as_ref());
    }
    if g.json {
        let doc = repscope::documents::activations(
            &r,
            a.input.describe(&*src),
            &cfg,
            json!({
                "token_ids": tokens.as_ref().map(|t| t.0.clone()),
                "tokenizer": a.model.as_ref().map(|p| p.display().to_string()),
            }),
        );
        print_json(&doc)
    } else {
        print!("{}", render(&r, src.name(), a.show));
        Ok(())
    }
}

fn quantile_line(qs: &[Quantile]) -> String {
    qs.iter()
        .filter(|q| [0.0, 0.05, 0.5, 0.95, 1.0].contains(&q.q))
        .map(|q| format!("q{:.0} {}", q.q * 100.0, num(q.value)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn token_cell(id: Option<u32>, token: &Option<String>) -> String {
    match (id, token) {
        (Some(i), Some(t)) => format!("{t} ({i})"),
        (Some(i), None) => i.to_string(),
        _ => "-".into(),
    }
}

pub fn render(r: &ActivationReport, name: &str, show: usize) -> String {
    let mut out = format!("{name}: n = {}, d = {}\n\n", r.n, r.d);
    let mut t = Table::new(&["measure", "value", "definition"]);
    t.row(vec![
        "outlier ratio gamma".into(),
        r.outlier_ratio.map(num).unwrap_or_else(|| "-".into()),
        "||mean|| / ||std|| over dimensions".into(),
    ]);
    t.row(vec![
        "zero fraction".into(),
        format!("{:.4}", r.zero_fraction),
        "share of values exactly 0".into(),
    ]);
    if let (Some(s), Some(e)) = (r.small_fraction, r.eps) {
        t.row(vec![
            "small fraction".into(),
            format!("{s:.4}"),
            format!("share of values with |a| < {e}"),
        ]);
    }
    t.row(vec![
        "always-zero dimensions".into(),
        r.always_zero_dims.len().to_string(),
        "0 in every row".into(),
    ]);
    t.row(vec![
        "mean row norm".into(),
        num(r.mean_row_norm),
        quantile_line(&r.row_norm_quantiles),
    ]);
    t.row(vec![
        "massive activations".into(),
        r.massive.count.to_string(),
        format!(
            "|a| > {} and > {} x row median |a|, in {} rows",
            r.massive.abs_threshold, r.massive.ratio_threshold, r.massive.rows
        ),
    ]);
    t.row(vec![
        "peak rows".into(),
        r.peak_rows.rows.to_string(),
        match r.peak_rows.threshold {
            Some(th) => format!(
                "max|a|/median|a| >= {} x its median over rows ({}) = {}",
                r.peak_rows.factor,
                num(r.peak_rows.median_ratio.unwrap_or(f64::NAN)),
                num(th)
            ),
            None => "rule does not apply (every row median is 0)".into(),
        },
    ]);
    t.row(vec![
        "anisotropy".into(),
        r.anisotropy.map(num).unwrap_or_else(|| "-".into()),
        "mean cosine over distinct pairs".into(),
    ]);
    if let Some(dup) = &r.duplicates {
        t.row(super::duplicates_row(dup));
    }
    out.push_str(&t.render());
    if !r.massive.listed.is_empty() {
        out.push_str("\nmassive activations (largest first)\n");
        let mut t = Table::new(&["row", "dim", "value", "row median |a|", "ratio", "token"]);
        for m in r.massive.listed.iter().take(show) {
            t.row(vec![
                m.row.to_string(),
                m.dim.to_string(),
                num(m.value),
                num(m.row_median_abs),
                m.ratio.map(num).unwrap_or_else(|| "inf".into()),
                token_cell(m.token_id, &m.token),
            ]);
        }
        out.push_str(&t.render());
        let dims: Vec<String> = r
            .massive
            .by_dimension
            .iter()
            .take(show)
            .map(|(d, c)| format!("{d} ({c})"))
            .collect();
        out.push_str(&format!("by dimension: {}\n", dims.join(", ")));
    }
    if !r.peak_rows.groups.is_empty() {
        out.push_str("\npeak rows by token and peak dimension\n");
        let mut t = Table::new(&["token", "dim", "rows", "median peak", "median ratio"]);
        for p in r.peak_rows.groups.iter().take(show) {
            t.row(vec![
                token_cell(p.token_id, &p.token),
                p.dim.to_string(),
                p.rows.to_string(),
                num(p.median_peak),
                num(p.median_ratio),
            ]);
        }
        out.push_str(&t.render());
    }
    if !r.outlier_dimensions.is_empty() {
        out.push_str(&format!(
            "\noutlier dimensions (mean more than {} sd from the mean of dimension means)\n",
            r.outlier_sigma
        ));
        let mut t = Table::new(&["dim", "mean", "z"]);
        for o in r.outlier_dimensions.iter().take(show) {
            t.row(vec![o.dim.to_string(), num(o.mean), format!("{:.2}", o.z)]);
        }
        out.push_str(&t.render());
    }
    if !r.rogue_dimensions.is_empty() {
        out.push_str("\nrogue dimensions (share of the mean cosine similarity)\n");
        let mut t = Table::new(&["dim", "contribution", "share"]);
        for d in r.rogue_dimensions.iter().take(show) {
            t.row(vec![
                d.dim.to_string(),
                num(d.contribution),
                format!("{:.4}", d.share),
            ]);
        }
        out.push_str(&t.render());
    }
    if !r.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
