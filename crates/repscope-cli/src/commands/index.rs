//! `repscope index build|query`: an HNSW index saved to a file, and searched from it.
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use repscope::data::npz::{self, NpzArray};
use repscope::neighbors::exact::knn_search;
use repscope::progress::Progress;
use repscope::search::study::{insertion_order, ORDERS};
use repscope::search::{effective_ef, recall_at_k, Hnsw, HnswParams};
use serde_json::json;

use super::{metric, print_json, Input};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{check_output, usage, CliResult, Global};

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Build an HNSW index over the distinct rows of a file and save it.
    Build(BuildArgs),
    /// Search a saved index with query rows.
    Query(QueryArgs),
}

/// HNSW construction parameters shared by the commands that build an index.
#[derive(Args, Debug, Clone)]
pub struct HnswArgs {
    /// Neighbours per node on the upper layers (2M on layer 0).
    #[arg(long = "m", default_value_t = 16)]
    pub m: usize,
    /// Candidates searched while inserting.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub hnsw: HnswArgs,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Seed of the level draws (and of the random order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Insertion order: input, random, lid_ascending or lid_descending (LID with k = 20).
    #[arg(long, default_value = "input")]
    pub order: String,
    /// Output index file.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Index file written by `repscope index build`.
    pub index: PathBuf,
    /// Query rows: .npy, .npz or .safetensors.
    #[arg(long)]
    pub queries: PathBuf,
    /// Array to read from an .npz or .safetensors query file.
    #[arg(long)]
    pub queries_key: Option<String>,
    /// Neighbours per query.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// Candidates searched per query; several values (comma-separated) give a curve.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub ef_search: Vec<usize>,
    /// Timed passes over the queries, each sweeping every ef_search (queries per second is the median pass;
    /// the fastest is also reported).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Also compute recall@k against the exact neighbours in the indexed rows.
    #[arg(long)]
    pub recall: bool,
    /// Output .npz with `indices_ef<E>` (uint32, rows of the index's input) and `distances_ef<E>` (float32)
    /// for every ef_search.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(c: &IndexCommand, g: &Global) -> CliResult {
    match c {
        IndexCommand::Build(a) => build(a, g),
        IndexCommand::Query(a) => query(a, g),
    }
}

fn build(a: &BuildArgs, g: &Global) -> CliResult {
    check_output(&a.output, &[&a.input.file], a.force)?;
    let metric = metric(&a.metric)?;
    let params = HnswParams {
        m: a.hnsw.m,
        ef_construction: a.hnsw.ef_construction,
        seed: a.seed,
    };
    params.validate()?;
    if a.order != "input" && !ORDERS[..3].contains(&a.order.as_str()) {
        return Err(usage(format!(
            "unknown insertion order '{}'. Use input, random, lid_ascending or lid_descending.",
            a.order
        )));
    }
    let ds = a.input.dataset()?;
    let data = ds.distinct();
    let bars = Bars::new(g.quiet);
    let order = if a.order == "input" {
        None
    } else {
        let lid = if a.order == "random" {
            vec![None; data.rows()]
        } else {
            ds.require_neighbours(20, 20, "the LID order")?;
            bars.stage("exact kNN for LID", data.rows() as u64);
            let adv = |n: usize| bars.advance(n as u64);
            let gr = repscope::neighbors::exact_knn(data, 20, metric, Some(&adv))?;
            bars.finish_stage();
            repscope::intrinsic::lid::Lid { k: 20 }.per_point(&gr)?
        };
        Some(insertion_order(&a.order, &lid, None, a.seed)?)
    };
    bars.stage("HNSW build", data.rows() as u64);
    let adv = |n: usize| bars.advance(n as u64);
    let t = Instant::now();
    let index = Hnsw::build(data, metric, &params, order.as_deref(), Some(&adv))?;
    let secs = t.elapsed().as_secs_f64();
    bars.finish_stage();
    index.save(&a.output)?;
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    let doc = json!({
        "input": a.input.describe(ds.original()),
        "output": a.output.display().to_string(),
        "rows_indexed": data.rows(),
        "duplicates_merged": ds.dedup.merged,
        "metric": metric.name(),
        "m": params.m,
        "ef_construction": index.params().ef_construction,
        "seed": a.seed,
        "order": a.order,
        "threads": rayon::current_num_threads(),
        "build_seconds": secs,
        "max_level": index.max_level(),
        "file_bytes": bytes,
        "format_version": repscope::search::index_file::FORMAT_VERSION,
        "repscope_version": repscope::VERSION,
    });
    if g.json {
        print_json(&doc)?;
    } else {
        println!(
            "HNSW index of {} rows (M {}, ef_construction {}, {}, {} order) built in {:.2} s, written to {} ({} bytes)",
            data.rows(),
            params.m,
            index.params().ef_construction,
            metric.name(),
            a.order,
            secs,
            a.output.display(),
            bytes
        );
        if ds.dedup.merged > 0 {
            println!(
                "{} duplicate rows merged first: results use the row numbers of the distinct rows",
                ds.dedup.merged
            );
        }
    }
    Ok(())
}

fn query(a: &QueryArgs, g: &Global) -> CliResult {
    if let Some(o) = &a.output {
        super::require_ext(o, "npz")?;
        check_output(o, &[&a.index, &a.queries], a.force)?;
    }
    if a.repeats == 0 {
        return Err(usage("--repeats must be at least 1"));
    }
    let index = Hnsw::load(&a.index)?;
    let queries = repscope::data::load_matrix(&a.queries, a.queries_key.as_deref())?;
    repscope::data::check_finite(&queries)?;
    if queries.cols() != index.dim() {
        return Err(usage(format!(
            "{}: queries have {} columns but the index holds {}-dimensional rows. Pass queries of the same width as the indexed data.",
            a.queries.display(),
            queries.cols(),
            index.dim()
        )));
    }
    if a.k == 0 || a.k > index.len() {
        return Err(usage(format!(
            "invalid parameter k: k = {} but the index holds {} rows. Choose 1 ≤ k ≤ {}.",
            a.k,
            index.len(),
            index.len()
        )));
    }
    let mut notes = Vec::new();
    let mut efs = Vec::new();
    for &e in &a.ef_search {
        let (ef, note) = effective_ef(e, a.k);
        if let Some(n) = note {
            if !g.quiet {
                eprintln!("repscope: note: {n}");
            }
            notes.push(n);
        }
        efs.push(ef);
    }
    let truth = if a.recall {
        let bars = Bars::new(g.quiet);
        bars.stage("exact kNN", queries.rows() as u64);
        let adv = |n: usize| bars.advance(n as u64);
        let rows = index.rows_matrix(&a.index.display().to_string())?;
        let t = knn_search(&queries, &rows, a.k, index.metric(), false, Some(&adv))?;
        bars.finish_stage();
        Some(t)
    } else {
        None
    };
    // Repeats outermost: every pass sweeps all ef_search values, so a slow spell of a shared machine is
    // spread over the curve instead of landing on one point.
    let mut times = vec![Vec::with_capacity(a.repeats); efs.len()];
    let mut last: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); efs.len()];
    for _ in 0..a.repeats {
        for (i, &ef) in efs.iter().enumerate() {
            let t = Instant::now();
            last[i] = index.search_batch(&queries, a.k, ef)?;
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    let mut points = Vec::new();
    let mut arrays: Vec<(String, Vec<u32>, Vec<f32>)> = Vec::new();
    for ((&ef, t), found) in efs.iter().zip(times).zip(last) {
        let mut sorted = t.clone();
        sorted.sort_by(f64::total_cmp);
        let med = sorted[sorted.len() / 2];
        let nq = queries.rows() as f64;
        let recall = truth.as_ref().map(|tr| recall_at_k(&found.0, a.k, tr, a.k));
        points.push(json!({
            "ef_search": ef,
            "queries_per_second": nq / med.max(1e-12),
            "best_queries_per_second": nq / sorted[0].max(1e-12),
            "seconds": t,
            "recall": recall,
        }));
        arrays.push((format!("ef{ef}"), found.0, found.1));
    }
    if let Some(o) = &a.output {
        let shape = [queries.rows(), a.k];
        let names: Vec<(String, String)> = arrays
            .iter()
            .map(|(s, _, _)| (format!("indices_{s}"), format!("distances_{s}")))
            .collect();
        let mut members = Vec::new();
        for ((_, i, d), (ni, nd)) in arrays.iter().zip(&names) {
            members.push((ni.as_str(), NpzArray::U32(&shape, i)));
            members.push((nd.as_str(), NpzArray::F32(&shape, d)));
        }
        npz::write(o, &members)?;
    }
    let p = index.params();
    let doc = json!({
        "index": a.index.display().to_string(),
        "queries": a.queries.display().to_string(),
        "n_queries": queries.rows(),
        "rows_indexed": index.len(),
        "metric": index.metric().name(),
        "m": p.m,
        "ef_construction": p.ef_construction,
        "k": a.k,
        "threads": rayon::current_num_threads(),
        "repeats": a.repeats,
        "points": points,
        "output": a.output.as_ref().map(|o| o.display().to_string()),
        "notes": notes,
        "repscope_version": repscope::VERSION,
    });
    if g.json {
        print_json(&doc)?;
    } else {
        println!(
            "{} queries against {} rows (M {}, ef_construction {}, {}), k = {}",
            queries.rows(),
            index.len(),
            p.m,
            p.ef_construction,
            index.metric().name(),
            a.k
        );
        let mut t = Table::new(&["ef_search", "queries/s", "recall"]);
        for pt in &points {
            t.row(vec![
                pt["ef_search"].to_string(),
                num(pt["queries_per_second"].as_f64().unwrap_or(f64::NAN)),
                pt["recall"]
                    .as_f64()
                    .map(|r| format!("{r:.4}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        print!("{}", t.render());
        for n in &notes {
            println!("note: {n}");
        }
    }
    Ok(())
}
