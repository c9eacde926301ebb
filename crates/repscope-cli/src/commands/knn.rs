//! `repscope knn`: the exact neighbour graph.
use std::path::PathBuf;

use clap::Args;
use repscope::data::npz::{self, NpzArray};
use repscope::neighbors::exact_knn;
use serde_json::json;

use super::{metric, print_json, require_ext, Input};
use crate::progress::Bars;
use crate::{check_writable, CliResult, Global};
use repscope::progress::Progress;

#[derive(Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub input: Input,
    /// Neighbours per point (self excluded).
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Output .npz with `indices` (uint32, n × k) and `distances` (float32, n × k), in input row numbering.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

pub fn run(a: &KnnArgs, g: &Global) -> CliResult {
    require_ext(&a.output, "npz")?;
    check_writable(&a.output)?;
    let metric = metric(&a.metric)?;
    let ds = a.input.dataset()?;
    ds.require_neighbours(a.k, "the kNN graph")?;
    let bars = Bars::new(g.quiet);
    bars.stage("exact kNN", ds.dedup.n_distinct() as u64);
    let adv = |n: usize| bars.advance(n as u64);
    let graph = exact_knn(ds.distinct(), a.k, metric, Some(&adv))?;
    bars.finish_stage();
    // Back to input numbering: a duplicate row takes its representative's neighbours.
    let n = ds.original().rows();
    let k = a.k;
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for &r in &ds.dedup.representative {
        let r = r as usize;
        indices.extend(
            graph
                .neighbors(r)
                .iter()
                .map(|&j| ds.dedup.kept[j as usize]),
        );
        distances.extend(graph.dists(r).iter().map(|&d| d as f32));
    }
    let shape = [n, k];
    npz::write(
        &a.output,
        &[
            ("indices", NpzArray::U32(&shape, &indices)),
            ("distances", NpzArray::F32(&shape, &distances)),
        ],
    )?;
    let doc = json!({
        "input": a.input.describe(ds.original()),
        "output": a.output.display().to_string(),
        "k": k,
        "metric": metric.name(),
        "duplicates_merged": ds.dedup.merged,
    });
    if g.json {
        print_json(&doc)?;
    } else {
        println!(
            "{n} × {k} exact {} neighbours written to {}",
            metric.name(),
            a.output.display()
        );
        if ds.dedup.merged > 0 {
            println!(
                "{} duplicate rows merged first; a duplicate row lists its representative's neighbours",
                ds.dedup.merged
            );
        }
    }
    Ok(())
}
