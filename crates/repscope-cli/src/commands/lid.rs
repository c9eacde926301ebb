//! `repscope lid`: local intrinsic dimension per row.
use std::path::PathBuf;

use clap::Args;
use repscope::intrinsic::lid::Lid;
use repscope::intrinsic::Summary;
use repscope::neighbors::{exact_knn, KnnGraph};
use serde_json::json;

use super::{metric, print_json, require_ext, Input};
use crate::progress::Bars;
use crate::{check_output, CliResult, Global};
use repscope::progress::Progress;

#[derive(Args, Debug)]
pub struct LidArgs {
    #[command(flatten)]
    pub input: Input,
    /// Neighbours per point.
    #[arg(long, short = 'k', default_value_t = 20)]
    pub k: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Output .npy: one float64 per input row (NaN where all k distances tie).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: &LidArgs, g: &Global) -> CliResult {
    require_ext(&a.output, "npy")?;
    check_output(&a.output, &[&a.input.file], a.force)?;
    let metric = metric(&a.metric)?;
    let ds = a.input.dataset()?;
    ds.require_neighbours(a.k, 2, "LID")?;
    let bars = Bars::new(g.quiet);
    bars.stage("exact kNN", ds.dedup.n_distinct() as u64);
    let adv = |n: usize| bars.advance(n as u64);
    let graph = exact_knn(ds.distinct(), a.k, metric, Some(&adv))?;
    bars.finish_stage();
    let per_distinct = Lid { k: a.k }.per_point(&graph)?;
    let per_row: Vec<f64> = KnnGraph::per_input_row(&per_distinct, &ds.dedup)
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let undefined = per_distinct.iter().filter(|v| v.is_none()).count();
    repscope::data::npy::write(&a.output, &[per_row.len()], &per_row)?;
    let summary = Summary::of(&per_row);
    let doc = json!({
        "input": a.input.describe(ds.original()),
        "output": a.output.display().to_string(),
        "k": a.k,
        "metric": metric.name(),
        "duplicates_merged": ds.dedup.merged,
        "undefined_points": undefined,
        "certificate": graph.certificate,
        "summary": summary,
    });
    if g.json {
        print_json(&doc)?;
    } else {
        println!(
            "LID (k = {}) of {} rows written to {}: mean {:.3}, median {:.3}, min {:.3}, max {:.3}",
            a.k,
            per_row.len(),
            a.output.display(),
            summary.mean,
            summary.median,
            summary.min,
            summary.max
        );
        if ds.dedup.merged > 0 {
            println!(
                "{} duplicate rows merged; each takes its representative's value",
                ds.dedup.merged
            );
        }
        if undefined > 0 {
            println!("{undefined} points have all {} neighbour distances equal: LID undefined, written as NaN", a.k);
        }
    }
    Ok(())
}
