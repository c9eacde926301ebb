//! `repscope search-study`: HNSW recall against the exact graph, through the lens of intrinsic dimension.
use std::path::PathBuf;

use clap::Args;
use repscope::search::compress::{default_dims, CompressionConfig};
use repscope::search::study::{self, ParamSet, StudyConfig, StudyReport};
use serde_json::json;

use super::index::HnswArgs;
use super::{metric, print_json, Input};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Global};

#[derive(Args, Debug)]
pub struct SearchStudyArgs {
    #[command(flatten)]
    pub input: Input,
    /// Query rows (.npy, .npz, .safetensors); without it, rows of the input are held out as queries.
    #[arg(long, conflicts_with = "query_fraction")]
    pub queries: Option<PathBuf>,
    /// Array to read from an .npz or .safetensors query file.
    #[arg(long)]
    pub queries_key: Option<String>,
    /// Fraction of the distinct input rows held out as queries (seeded). Default: min(1000, n/10) rows.
    #[arg(long)]
    pub query_fraction: Option<f64>,
    /// Neighbours per query: recall@k.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// One label per input row (.npy, .npz or text): adds the label-grouped insertion order.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Array to read from an .npz label file.
    #[arg(long)]
    pub labels_key: Option<String>,
    #[command(flatten)]
    pub hnsw: HnswArgs,
    /// ef_search of your parameter set (raised to k when smaller).
    #[arg(long, default_value_t = 64)]
    pub ef_search: usize,
    /// ef_search values of the recall / queries-per-second curve (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,16,32,64,128,256")]
    pub ef_sweep: Vec<usize>,
    /// Seed for the query split, level draws, orders and projections.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Repetitions of each insertion order over seeds (seed, seed + 1, ...).
    #[arg(long, default_value_t = 3)]
    pub order_repeats: usize,
    /// Skip the insertion-order study.
    #[arg(long)]
    pub no_orders: bool,
    /// Target dimensions for PCA and random projection (comma-separated, each below d).
    /// Default: d/2, d/4, 64, 32 (those below d).
    #[arg(long, value_delimiter = ',')]
    pub dims: Vec<usize>,
    /// Scalar-quantization bit widths (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "8,4")]
    pub bits: Vec<u32>,
    /// Skip the compression curves.
    #[arg(long)]
    pub no_compression: bool,
    /// The recall@k the compression advice must keep.
    #[arg(long, default_value_t = 0.95)]
    pub target_recall: f64,
    /// Neighbours for local intrinsic dimension.
    #[arg(long, default_value_t = 20)]
    pub lid_k: usize,
}

pub fn run(a: &SearchStudyArgs, g: &Global) -> CliResult {
    let metric = metric(&a.metric)?;
    if let Some(f) = a.query_fraction {
        if !(f > 0.0 && f < 1.0) {
            return Err(usage(format!(
                "--query-fraction {f} is outside (0, 1). Give the share of rows to hold out, for example 0.05."
            )));
        }
    }
    if !(a.target_recall > 0.0 && a.target_recall <= 1.0) {
        return Err(usage(format!(
            "--target-recall {} is outside (0, 1]. Use for example 0.95.",
            a.target_recall
        )));
    }
    let ds = a.input.dataset()?;
    let distinct = ds.distinct();
    let d = distinct.cols();
    if !a.no_compression && !a.dims.is_empty() {
        repscope::search::compress::check_dims(&a.dims, d)?;
    }
    let labels = match &a.labels {
        Some(p) => {
            let l = super::load_labels(p, a.labels_key.as_deref())?;
            if l.ids.len() != ds.original().rows() {
                return Err(usage(format!(
                    "{}: {} labels for {} rows of {}. Pass one label per row of the data.",
                    p.display(),
                    l.ids.len(),
                    ds.original().rows(),
                    a.input.file.display()
                )));
            }
            Some(
                ds.dedup
                    .kept
                    .iter()
                    .map(|&r| l.ids[r as usize])
                    .collect::<Vec<u32>>(),
            )
        }
        None => None,
    };
    let nd = distinct.rows();
    let (refs, queries, ref_labels, split) = match &a.queries {
        Some(qp) => {
            let q = repscope::data::load_matrix(qp, a.queries_key.as_deref())?;
            repscope::data::check_finite(&q)?;
            if q.cols() != d {
                return Err(usage(format!(
                    "{}: queries have {} columns but {} has {d}. Pass queries of the same width as the data.",
                    qp.display(),
                    q.cols(),
                    a.input.file.display()
                )));
            }
            (
                distinct.clone(),
                q,
                labels,
                json!({"queries_file": qp.display().to_string()}),
            )
        }
        None => {
            let sp =
                study::held_out_split(distinct, labels.as_deref(), a.k, a.query_fraction, a.seed)?;
            (
                sp.refs,
                sp.queries,
                sp.ref_labels,
                json!({"held_out": sp.held_out, "query_fraction": sp.query_fraction}),
            )
        }
    };
    if a.k == 0 || a.k > refs.rows() {
        return Err(usage(format!(
            "invalid parameter k: k = {} but {} rows are searched. Choose 1 ≤ k ≤ {}.",
            a.k,
            refs.rows(),
            refs.rows()
        )));
    }
    let compression = if a.no_compression {
        None
    } else {
        Some(CompressionConfig {
            dims: if a.dims.is_empty() {
                default_dims(d)
            } else {
                a.dims.clone()
            },
            bits: a.bits.clone(),
            pca_sq: true,
            seed: a.seed,
            target_recall: a.target_recall,
        })
    };
    let cfg = StudyConfig {
        k: a.k,
        metric,
        user: ParamSet::new("yours", a.hnsw.m, a.hnsw.ef_construction, a.ef_search),
        vendors: study::vendor_defaults(),
        ef_sweep: a.ef_sweep.clone(),
        seed: a.seed,
        orders: !a.no_orders,
        order_repeats: a.order_repeats,
        lid_k: a.lid_k,
        compression,
    };
    study::validate(&refs, &queries, ref_labels.as_deref(), &cfg)?;
    if a.ef_search < a.k && !g.quiet {
        eprintln!(
            "repscope: note: ef_search = {} is below k = {}: raised to {}",
            a.ef_search, a.k, a.k
        );
    }
    let bars = Bars::new(g.quiet);
    let mut report = study::run(&refs, &queries, ref_labels.as_deref(), &cfg, &bars)?;
    if ds.dedup.merged > 0 {
        report.notes.insert(
            0,
            format!(
                "{} duplicate rows merged first; the study runs on the {} distinct rows",
                ds.dedup.merged, nd
            ),
        );
    }
    if g.json {
        let mut v = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
        if let Some(o) = v.as_object_mut() {
            o.insert("input".into(), a.input.describe(ds.original()));
            o.insert("queries".into(), split);
            o.insert("threads".into(), json!(rayon::current_num_threads()));
            o.insert("repscope_version".into(), json!(repscope::VERSION));
        }
        print_json(&v)
    } else {
        print!("{}", render(&report, &a.input.file.display().to_string()));
        Ok(())
    }
}

/// Human-readable report.
pub fn render(r: &StudyReport, name: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{name}: {} rows searched, {} queries, d = {}, metric {}, recall@{}\n",
        r.n_refs,
        r.n_queries,
        r.d,
        r.metric.name(),
        r.k
    ));
    let gi = &r.global_id;
    out.push_str(&format!(
        "\nintrinsic dimension: {} [{}]; TwoNN {}, MLE {}; median LID (k = {}) of the data {}, of the queries {}\n",
        num(gi.value),
        gi.estimator,
        num(gi.twonn),
        num(gi.mle),
        gi.lid_k,
        num(gi.median_lid_refs),
        num(gi.median_lid_queries)
    ));
    out.push_str(&format!(
        "\nHNSW recall@{} against the exact neighbours (insertion in input order, seed {})\n",
        r.k, r.seed
    ));
    let mut t = Table::new(&[
        "parameters",
        "M",
        "ef_construction",
        "ef_search",
        "recall",
        "queries/s",
        "build s",
        "bytes/vector",
    ]);
    for s in r.vendor_defaults.iter().chain(std::iter::once(&r.user)) {
        t.row(vec![
            s.name.clone(),
            s.m.to_string(),
            s.ef_construction.to_string(),
            s.ef_search.to_string(),
            format!("{:.4}", s.recall),
            num(s.queries_per_second),
            num(s.build_seconds),
            num(s.index_bytes_per_vector),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(&format!(
        "\nyour set (M {}, ef_construction {}) by ef_search\n",
        r.user.m, r.user.ef_construction
    ));
    let mut t = Table::new(&["ef_search", "recall", "queries/s"]);
    for p in &r.ef_curve {
        t.row(vec![
            p.ef_search.to_string(),
            format!("{:.4}", p.recall),
            num(p.queries_per_second),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(&format!(
        "\nrecall by query LID quartile (easy to hard), your set at ef_search {}\n",
        r.user.ef_search
    ));
    let mut t = Table::new(&["quartile", "LID from", "LID to", "queries", "recall"]);
    for q in &r.lid_quartiles {
        t.row(vec![
            format!("Q{}", q.quartile),
            num(q.lid_min),
            num(q.lid_max),
            q.queries.to_string(),
            format!("{:.4}", q.recall),
        ]);
    }
    out.push_str(&t.render());
    for o in &r.insertion_orders {
        out.push_str(&format!(
            "\ninsertion order, your set at ef_search {} ({} repetitions over seeds)\n",
            o.ef_search, o.repetitions
        ));
        let mut t = Table::new(&["order", "mean recall", "sd", "min", "max"]);
        for x in &o.orders {
            t.row(vec![
                x.order.clone(),
                format!("{:.4}", x.mean),
                format!("{:.4}", x.sd),
                format!("{:.4}", x.min),
                format!("{:.4}", x.max),
            ]);
        }
        out.push_str(&t.render());
        out.push_str(&format!("{}\n", o.statement));
    }
    if let Some(c) = &r.compression {
        out.push_str(&format!(
            "\ncompression: recall@{} of exact kNN in the reduced space against the full space\n",
            r.k
        ));
        let mut t = Table::new(&[
            "representation",
            "bytes/vector",
            "smaller by",
            "recall",
            "variance kept",
        ]);
        for p in &c.points {
            t.row(vec![
                p.label(),
                p.bytes_per_vector.to_string(),
                format!("{:.1}×", p.compression_ratio),
                format!("{:.4}", p.recall),
                p.explained_variance
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&t.render());
        out.push_str(&format!("advice: {}\n", c.advice.text));
    }
    if !r.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
