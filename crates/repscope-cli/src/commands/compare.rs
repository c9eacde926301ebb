//! `repscope compare`: similarity of two representations of the same rows.
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use repscope::similarity::{
    self, AnchorMode, CcaRoute, CompareConfig, RbfMedian, Route, SimilarityReport,
};
use serde_json::json;

use super::{print_json, SourceInput};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Global};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// First representation (n × d1): a .npy, .npz or .safetensors file, a folder of shards or a quoted
    /// pattern such as 'a/*.npy'.
    pub a: PathBuf,
    /// Second representation of the same n inputs, same order (n × d2, any width), given the same way.
    pub b: PathBuf,
    /// Array to read from A (.npz/.safetensors).
    #[arg(long)]
    pub key_a: Option<String>,
    /// Array to read from B (.npz/.safetensors).
    #[arg(long)]
    pub key_b: Option<String>,
    /// Measures (repeatable or comma-separated): cka_linear, cka_linear_debiased, cka_rbf, cka_minibatch,
    /// cca_mean_rho, cca_r2, svcca, pwcca, procrustes_angular, procrustes_euclidean, rsa_spearman,
    /// mutual_knn, knn_jaccard, cknna, relative_cos, stitching_accuracy; groups: cka, cca, procrustes, knn,
    /// relative, all. Default: every measure that fits in memory.
    #[arg(long = "metric", short = 'm', num_args = 1..)]
    pub metrics: Vec<String>,
    /// Route of linear CKA: auto (the cheaper), feature (d × d products) or gram (n × n).
    #[arg(long, default_value = "auto")]
    pub cka_route: String,
    /// Route of the CCA family: auto (svd when each side fits in memory), svd or covariance (streams).
    #[arg(long, default_value = "auto")]
    pub cca_route: String,
    /// Only rows A:B of both representations (0-based, B excluded).
    #[arg(long, value_name = "A:B")]
    pub rows: Option<String>,
    /// A uniform random sample of N rows (the same rows of both), drawn with --seed.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// RBF bandwidth t relative to the median squared distance.
    #[arg(long, default_value_t = 1.0)]
    pub rbf_threshold: f64,
    /// Median of the RBF bandwidth: pairs (i < j) or kornblith (all n² entries, zeros included).
    #[arg(long, default_value = "pairs")]
    pub rbf_median: String,
    /// Rows per batch of minibatch CKA.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Neighbours of mutual kNN and CKNNA (cosine).
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// Anchors of the relative representation (default min(100, n)).
    #[arg(long)]
    pub anchors: Option<usize>,
    /// first (rows 0..N) or random (a seeded sample).
    #[arg(long, default_value = "first")]
    pub anchor_mode: String,
    /// Labels (one per row) for the stitching accuracy.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Array to read from a labels .npz.
    #[arg(long)]
    pub labels_key: Option<String>,
    /// SVCCA's cumulative variance threshold.
    #[arg(long, default_value_t = 0.99)]
    pub svcca_threshold: f64,
    /// Largest n for measures that hold n × n matrices (RBF CKA, RSA, the Gram route).
    #[arg(long, default_value_t = 20_000)]
    pub gram_limit: usize,
    /// Seed for random anchors, the stitching split and --sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stream the rows in one pass even when they would fit in memory (two sides above 2^28 values in
    /// all always stream); only the streamed measures run then: linear CKA (feature route), the CCA
    /// family (covariance route) and Procrustes.
    #[arg(long)]
    pub stream: bool,
}

fn config(a: &CompareArgs) -> Result<CompareConfig, crate::Failure> {
    let route = match a.cka_route.to_ascii_lowercase().as_str() {
        "auto" => None,
        "feature" | "features" => Some(Route::Feature),
        "gram" => Some(Route::Gram),
        o => {
            return Err(usage(format!(
                "--cka-route '{o}': use auto, feature or gram"
            )))
        }
    };
    let rbf_median = match a.rbf_median.to_ascii_lowercase().as_str() {
        "pairs" => RbfMedian::DistinctPairs,
        "kornblith" => RbfMedian::IncludingDiagonal,
        o => return Err(usage(format!("--rbf-median '{o}': use pairs or kornblith"))),
    };
    let anchor_mode = match a.anchor_mode.to_ascii_lowercase().as_str() {
        "first" => AnchorMode::First,
        "random" => AnchorMode::Random,
        o => return Err(usage(format!("--anchor-mode '{o}': use first or random"))),
    };
    let cca_route = match a.cca_route.to_ascii_lowercase().as_str() {
        "auto" => None,
        "svd" => Some(CcaRoute::Svd),
        "covariance" | "cov" => Some(CcaRoute::Covariance),
        o => {
            return Err(usage(format!(
                "--cca-route '{o}': use auto, svd or covariance"
            )))
        }
    };
    let cfg = CompareConfig {
        measures: a.metrics.clone(),
        route,
        cca_route,
        chunk_rows: None,
        rbf_threshold: a.rbf_threshold,
        rbf_median,
        batch_size: a.batch_size,
        k: a.k,
        anchors: a.anchors,
        anchor_mode,
        svcca_threshold: a.svcca_threshold,
        gram_limit: a.gram_limit,
        seed: a.seed,
    };
    if !cfg.measures.is_empty() {
        similarity::canonical_measures(&cfg.measures)?;
    }
    Ok(cfg)
}

fn side(path: &std::path::Path, key: Option<&str>, a: &CompareArgs) -> SourceInput {
    SourceInput {
        files: vec![path.to_path_buf()],
        key: key.map(String::from),
        rows: a.rows.clone(),
        sample: a.sample,
        seed: a.seed,
    }
}

pub fn run(a: &CompareArgs, g: &Global) -> CliResult {
    let cfg = config(a)?;
    let t0 = Instant::now();
    let (ia, ib) = (
        side(&a.a, a.key_a.as_deref(), a),
        side(&a.b, a.key_b.as_deref(), a),
    );
    let (sa, sb) = (ia.open()?, ib.open()?);
    // Stream when asked to, or when the two sides are too large to load and every measure asked for (or,
    // by default, the streamed ones) can stream; in memory, the routes are chosen by cost.
    let large = sa.rows().saturating_mul(sa.cols() + sb.cols()) > super::LOAD_LIMIT;
    let streamable = cfg.measures.is_empty()
        || similarity::canonical_measures(&cfg.measures)?
            .iter()
            .all(|m| similarity::STREAMED.contains(&m.as_str()));
    if a.stream && a.labels.is_some() {
        return Err(usage(
            "--labels are for the stitching accuracy, which needs the rows in memory. Leave out --stream, or --labels",
        ));
    }
    // An explicit --stream goes to the streamed pass, which refuses what it cannot do (an in-memory route,
    // a measure that does not stream); a large input streams only when nothing asks for memory.
    let stream = a.stream
        || (large
            && streamable
            && a.labels.is_none()
            && cfg.route != Some(Route::Gram)
            && cfg.cca_route != Some(CcaRoute::Svd));
    let bars = Bars::new(g.quiet);
    let (r, load_s, compute_s) = if stream {
        let r = similarity::compare_sources(&*sa, &*sb, &cfg, &bars)?;
        (r, 0.0, t0.elapsed().as_secs_f64())
    } else {
        let x = ia.load(&*sa)?;
        let y = ib.load(&*sb)?;
        let labels = match &a.labels {
            Some(p) => Some(ia.pick_labels(super::load_labels(p, a.labels_key.as_deref())?)),
            None => None,
        };
        if let (Some(l), Some(p)) = (&labels, &a.labels) {
            if l.ids.len() != x.rows() {
                return Err(usage(format!(
                    "{}: {} labels for {} rows of {}. Pass exactly one label per row, in the same order.",
                    p.display(),
                    l.ids.len(),
                    x.rows(),
                    a.a.display()
                )));
            }
        }
        let load_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let r = similarity::compare(&x, &y, labels.as_ref(), &cfg, &bars)?;
        (r, load_s, t1.elapsed().as_secs_f64())
    };
    if g.json {
        print_json(&repscope::documents::compare(
            &r,
            ia.describe(&*sa),
            ib.describe(&*sb),
            json!({"load": load_s, "compute": compute_s}),
        ))
    } else {
        print!(
            "{}",
            render(&r, &a.a.display().to_string(), &a.b.display().to_string())
        );
        Ok(())
    }
}

fn describe(m: &str) -> &'static str {
    match m {
        "cka_linear" => "linear CKA, biased (HSIC0)",
        "cka_linear_debiased" => "linear CKA, debiased (HSIC1)",
        "cka_rbf" => "RBF CKA, biased, t x median sq. distance",
        "cka_minibatch" => "minibatch CKA (HSIC1 averaged over batches)",
        "cca_mean_rho" => "CCA, mean canonical correlation",
        "cca_r2" => "CCA, sum rho^2 / min(d1, d2)",
        "svcca" => "SVCCA (99% variance), mean rho",
        "pwcca" => "PWCCA, X-side projection weights",
        "procrustes_angular" => "Procrustes angular distance (0 = same shape)",
        "procrustes_euclidean" => "Procrustes euclidean distance",
        "rsa_spearman" => "RSA: Spearman of 1 - Pearson RDMs",
        "mutual_knn" => "mutual kNN overlap (cosine)",
        "knn_jaccard" => "kNN Jaccard overlap (cosine)",
        "cknna" => "CKNNA (debiased CKA on mutual neighbours)",
        "relative_cos" => "relative representations, mean cosine",
        "stitching_accuracy" => "stitching accuracy (fit on A, test on B)",
        "imbalance_x_to_y" => {
            "information imbalance A -> B (0: A's neighbours are B's, 1: no information)"
        }
        "imbalance_y_to_x" => "information imbalance B -> A",
        _ => "",
    }
}

pub fn render(r: &SimilarityReport, a: &str, b: &str) -> String {
    let mut out = format!("{a} ({} × {}) vs {b} ({} × {})\n\n", r.n, r.d1, r.n, r.d2);
    let mut t = Table::new(&["measure", "value", "what"]);
    for m in similarity::MEASURES {
        if let Some(v) = r.measures.get(*m) {
            t.row(vec![m.to_string(), num(*v), describe(m).to_string()]);
        }
    }
    out.push_str(&t.render());
    if let Some(c) = &r.details.cka_linear {
        out.push_str(&format!("\nlinear CKA route: {:?}\n", c.route).to_lowercase());
    }
    if r.details.cca.is_some() || r.details.svcca.is_some() || r.details.pwcca.is_some() {
        if let Some(route) = r.params.get("cca_route").and_then(|v| v.as_str()) {
            out.push_str(&format!("CCA route: {route}\n"));
        }
    }
    if !r.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for w in &r.warnings {
            out.push_str(&format!("  ! {w}\n"));
        }
    }
    if !r.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
