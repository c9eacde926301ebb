//! `repscope knn`: the exact neighbour graph, or with `--approximate` one found by an HNSW index.
use std::path::PathBuf;

use clap::Args;
use repscope::data::npz::{self, NpzArray};
use repscope::neighbors::exact_knn;
use serde_json::json;

use super::{metric, print_json, require_ext, SourceInput};
use crate::progress::Bars;
use crate::{check_output, CliResult, Global};
use repscope::progress::Progress;

#[derive(Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub input: SourceInput,
    /// Neighbours per point (self excluded).
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Output .npz with `indices` (uint32, n × k) and `distances` (float32, n × k), in the numbering of the
    /// rows read; with --rows or --sample also `rows` (int64, n), the source row of each.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Find the neighbours with an HNSW index instead of the exact search: faster on large inputs, but some
    /// true neighbours are missed (the report gives the recall measured on sampled rows).
    #[arg(long)]
    pub approximate: bool,
    /// HNSW parameters (with --approximate).
    #[command(flatten)]
    pub hnsw: super::index::HnswArgs,
    /// Candidates searched per row (with --approximate; raised to k + 1 when smaller).
    #[arg(long, default_value_t = 64)]
    pub ef_search: usize,
}

/// Rows whose exact neighbours are compared with the approximate ones.
const RECALL_SAMPLE: usize = 500;

pub fn run(a: &KnnArgs, g: &Global) -> CliResult {
    require_ext(&a.output, "npz")?;
    check_output(&a.output, &a.input.input_paths(), a.force)?;
    let metric = metric(&a.metric)?;
    let (ds, input, total) = a.input.dataset("the kNN graph")?;
    ds.require_neighbours(a.k, 1, "the kNN graph")?;
    let bars = Bars::new(g.quiet);
    let (graph, approx) = if a.approximate {
        let params = repscope::search::HnswParams {
            m: a.hnsw.m,
            ef_construction: a.hnsw.ef_construction,
            seed: a.input.seed,
        };
        let (graph, info) = repscope::search::approximate_knn(
            ds.distinct(),
            a.k,
            metric,
            &params,
            a.ef_search,
            RECALL_SAMPLE,
            &bars,
        )?;
        if !g.quiet {
            for n in &info.notes {
                eprintln!("repscope: note: {n}");
            }
        }
        (graph, Some(info))
    } else {
        bars.stage("exact kNN", ds.dedup.n_distinct() as u64);
        let adv = |n: usize| bars.advance(n as u64);
        let graph = exact_knn(ds.distinct(), a.k, metric, Some(&adv))?;
        bars.finish_stage();
        (graph, None)
    };
    // Back to input numbering: a duplicate row takes its representative's neighbours.
    let n = ds.original().rows();
    let k = a.k;
    let (indices, distances) = graph.to_input_rows(&ds.dedup, |d| d as f32);
    let certificate = graph.certificate;
    drop(graph);
    let shape = [n, k];
    let rows = a.input.selected_rows(total);
    let mut arrays = vec![
        ("indices", NpzArray::U32(&shape, &indices)),
        ("distances", NpzArray::F32(&shape, &distances)),
    ];
    if let Some(r) = &rows {
        arrays.push(("rows", NpzArray::I64(std::slice::from_ref(&n), r)));
    }
    npz::write(&a.output, &arrays)?;
    let note = a.input.selection_note(total);
    let mut doc = json!({
        "input": input,
        "output": a.output.display().to_string(),
        "k": k,
        "metric": metric.name(),
        "duplicates_merged": ds.dedup.merged,
        "exact": approx.is_none(),
        "certificate": certificate,
        "approximate": approx,
    });
    if let (Some(o), Some(note)) = (doc.as_object_mut(), &note) {
        o.insert("selection".into(), json!(note));
    }
    if g.json {
        print_json(&doc)?;
    } else if let Some(info) = &approx {
        println!(
            "{n} × {k} approximate {} neighbours (HNSW: M {}, ef_construction {}, ef_search {}) written to {}",
            metric.name(),
            info.m,
            info.ef_construction,
            info.ef_search,
            a.output.display()
        );
        println!(
            "these are not the exact neighbours: recall@{k} against the exact search on {} sampled rows is {:.4}",
            info.recall_sample, info.sampled_recall
        );
        if ds.dedup.merged > 0 {
            println!(
                "{} duplicate rows merged first; a duplicate row lists its representative's neighbours",
                ds.dedup.merged
            );
        }
    } else {
        println!(
            "{n} × {k} exact {} neighbours written to {}",
            metric.name(),
            a.output.display()
        );
        println!("{}", super::certificate_line(&certificate));
        if ds.dedup.merged > 0 {
            println!(
                "{} duplicate rows merged first; a duplicate row lists its representative's neighbours",
                ds.dedup.merged
            );
        }
    }
    if let (false, Some(note)) = (g.json, &note) {
        println!("{note}; the output's `rows` gives the source row of each row, and indices count rows read");
    }
    Ok(())
}
