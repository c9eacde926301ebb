//! `repscope lid`: local intrinsic dimension per row.
use std::path::PathBuf;

use clap::Args;
use repscope::intrinsic::lid::Lid;
use repscope::intrinsic::Summary;
use repscope::neighbors::{exact_knn, KnnGraph};
use serde_json::json;

use super::{metric, print_json, SourceInput};
use crate::progress::Bars;
use crate::{check_output, CliResult, Global};
use repscope::progress::Progress;

#[derive(Args, Debug)]
pub struct LidArgs {
    #[command(flatten)]
    pub input: SourceInput,
    /// Neighbours per point.
    #[arg(long, short = 'k', default_value_t = 20)]
    pub k: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Output .npy: one float64 per row read (NaN where all k distances tie); or .npz with `lid` and, with
    /// --rows or --sample, `rows` (int64), the source row of each. A sample needs the .npz.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: &LidArgs, g: &Global) -> CliResult {
    let npz = match a
        .output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
    {
        Some(e) if e == "npz" => true,
        Some(e) if e == "npy" => false,
        _ => {
            return Err(crate::usage(format!(
                "{}: the output must be a .npy or .npz file",
                a.output.display()
            )))
        }
    };
    if a.input.sample.is_some() && !npz {
        return Err(crate::usage(format!(
            "{}: a .npy output cannot say which rows --sample drew. Write an .npz (keys lid and rows).",
            a.output.display()
        )));
    }
    check_output(&a.output, &a.input.input_paths(), a.force)?;
    let metric = metric(&a.metric)?;
    let (ds, input, total) = a.input.dataset("LID")?;
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
    let shape = [per_row.len()];
    if npz {
        use repscope::data::npz::{self, NpzArray};
        let rows = a.input.selected_rows(total);
        let mut arrays = vec![("lid", NpzArray::F64(&shape, &per_row))];
        if let Some(r) = &rows {
            arrays.push(("rows", NpzArray::I64(&shape, r)));
        }
        npz::write(&a.output, &arrays)?;
    } else {
        repscope::data::npy::write(&a.output, &shape, &per_row)?;
    }
    let summary = Summary::of(&per_row);
    let note = a.input.selection_note(total);
    let mut doc = json!({
        "input": input,
        "output": a.output.display().to_string(),
        "k": a.k,
        "metric": metric.name(),
        "duplicates_merged": ds.dedup.merged,
        "undefined_points": undefined,
        "certificate": graph.certificate,
        "summary": summary,
    });
    if let (Some(o), Some(note)) = (doc.as_object_mut(), &note) {
        o.insert("selection".into(), json!(note));
    }
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
        if let Some(note) = &note {
            println!("{note}");
        }
    }
    Ok(())
}
