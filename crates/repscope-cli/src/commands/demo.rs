//! `repscope demo`: the intrinsic-dimension suite on the built-in benchmark manifolds, beside the truth,
//! with the full report written to a folder (a temporary one unless `-o` says where).
use std::path::PathBuf;

use clap::Args;
use repscope::datasets::manifolds;
use repscope::intrinsic::suite::IdConfig;
use repscope::report::{self, ReportConfig};
use repscope::Matrix;
use serde_json::{json, Value};

use super::datasets::select;
use super::print_json;
use super::report::{document, prepare_output, write_files, write_report};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Global};
use repscope::progress::{Progress, Silent};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Points per manifold.
    #[arg(long, short = 'n', default_value_t = 2500)]
    pub n: usize,
    /// Seed of the manifolds and of every random step.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only these manifolds (repeatable).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Folder for report.json and report.html (default: a new folder in the system's temporary directory).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Write into an output folder that already has files in it.
    #[arg(long)]
    pub force: bool,
}

const COLUMNS: &[&str] = &["twonn", "mle", "gride", "pca_fo"];

/// The same estimators in scikit-dimension 0.5.0, with the same parameters, on its own generator of these
/// manifolds (n = 2500, seed 0): mean relative error, recorded by `bench/id_estimators.py` (BENCHMARKS.md).
/// DADApy's estimators have no scikit-dimension counterpart: their peer values are DADApy's own, recorded by
/// `bench/id_dadapy.py` on the same manifolds.
const PEER_MRE: &[(&str, &str, Option<f64>)] = &[
    ("mom", "MOM", Some(0.255)),
    ("tle", "TLE", Some(0.202)),
    ("mada", "MADA", Some(0.286)),
    ("ess", "ESS (not run: about 70 s a manifold in skdim)", None),
    ("mle_unbiased", "MLE(unbiased=True)", Some(0.212)),
    ("mle_global", "MLE(neighborhood_based=False)", Some(0.257)),
    ("corrint", "CorrInt", Some(0.360)),
    ("fisher_s", "FisherS", Some(0.393)),
    ("mind_mlk", "MiND_ML(ver='MLk')", Some(0.235)),
    ("mind_mli", "MiND_ML(ver='MLi')", Some(0.210)),
    (
        "mind_kl",
        "(no peer in Python: the authors' MATLAB MiND_KL)",
        None,
    ),
    ("twonn_bayes", "(DADApy compute_id_2NN_wprior)", Some(0.130)),
    ("binomial", "(DADApy compute_id_binomial_k)", Some(0.157)),
    (
        "binomial_rk",
        "(DADApy compute_id_binomial_rk)",
        Some(0.178),
    ),
    ("danco", "DANCo", Some(0.122)),
    ("danco_fit", "DANCo(ver='DANCoFit')", Some(0.108)),
    ("knn", "KNN", Some(1.418)),
    (
        "ph",
        "PH (skdim at nsteps=10: its default takes 5 min a manifold)",
        Some(0.140),
    ),
    (
        "kstar_gride",
        "(DADApy return_ids_kstar_gride)",
        Some(0.249),
    ),
    (
        "kstar_binomial",
        "(DADApy return_ids_kstar_binomial)",
        Some(0.224),
    ),
    (
        "hidalgo",
        "(no peer in Python: the authors' code, R's intRinsic)",
        None,
    ),
    ("pca_maxgap", "lPCA(ver='maxgap')", Some(1.103)),
    ("pca_ratio", "lPCA(ver='ratio')", Some(0.731)),
    ("pca_kaiser", "lPCA(ver='Kaiser')", Some(0.486)),
    ("pca_broken_stick", "lPCA(ver='broken_stick')", Some(0.780)),
    ("pca_fan", "lPCA(ver='Fan')", Some(0.550)),
];

/// Mean relative error of every estimator beyond the default eight on the manifolds, from one suite run
/// per manifold on the same points.
fn peer_estimators(
    manifolds: &[(&'static manifolds::ManifoldInfo, Matrix)],
    seed: u64,
) -> Result<Vec<(&'static str, f64, usize)>, crate::Failure> {
    let cfg = IdConfig {
        estimators: repscope::intrinsic::method::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        scale_curve: false,
        seed,
        ..IdConfig::default()
    };
    let mut sums = vec![(0.0f64, 0usize); repscope::intrinsic::method::NAMES.len()];
    for (m, mat) in manifolds {
        let ds = repscope::Dataset::new(mat.clone())?;
        let r = repscope::intrinsic::suite::run(&ds, &cfg, &Silent)?;
        for (s, name) in sums.iter_mut().zip(repscope::intrinsic::method::NAMES) {
            if let Some(e) = r.estimates.iter().find(|e| e.estimator == *name) {
                s.0 += (e.value - m.id as f64).abs() / m.id as f64;
                s.1 += 1;
            }
        }
    }
    Ok(repscope::intrinsic::method::NAMES
        .iter()
        .zip(sums)
        .filter(|(_, s)| s.1 > 0)
        .map(|(n, s)| (*n, s.0 / s.1 as f64, s.1))
        .collect())
}

fn estimate(id: &Value, name: &str) -> Option<f64> {
    id["estimates"]
        .as_array()?
        .iter()
        .find(|e| e["estimator"] == name)?["value"]
        .as_f64()
}

pub fn run(a: &DemoArgs, g: &Global) -> CliResult {
    let chosen = select(&a.names)?;
    if a.n < 100 {
        return Err(usage("--n must be at least 100 for the demo"));
    }
    // One manifold at a time: generated in f64, stored in f32, plus the neighbour graph (20 neighbours,
    // index and distance) and the f64 work of the report's measures.
    let widest = chosen.iter().map(|m| m.ambient_dim).max().unwrap_or(0) as u128;
    crate::check_fits(
        "points per manifold",
        a.n,
        widest * 28 + 20 * 16 + 256,
        "-n",
    )?;
    let out_dir = match &a.output {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("repscope-demo-{}", std::process::id())),
    };
    prepare_output(&out_dir, a.force || a.output.is_none())?;
    let cfg = ReportConfig {
        id: IdConfig {
            seed: a.seed,
            ..IdConfig::default()
        },
        seed: a.seed,
        ..ReportConfig::default()
    };
    let bars = Bars::new(g.quiet);
    bars.stage("benchmark manifolds", chosen.len() as u64);
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    let mut mats = Vec::new();
    for m in &chosen {
        let v = manifolds::generate(m.name, a.n, a.seed)
            .ok_or_else(|| usage(format!("unknown manifold {}", m.name)))?;
        let mat = Matrix::from_vec(a.n, m.ambient_dim, v, m.name)?;
        mats.push((*m, mat.clone()));
        let (mut rep, _) = report::input_report(m.name, mat, None, &cfg, &Silent)?;
        rep.known_dimension = Some(m.id as f64);
        let id = rep.sections["intrinsic_dimension"]["value"].clone();
        inputs.push(serde_json::to_value(&rep).unwrap_or(Value::Null));
        bars.advance(1);
        rows.push((m, id));
    }
    bars.finish_stage();
    bars.stage("the peers' other estimators", 0);
    let peers = peer_estimators(&mats, a.seed)?;
    bars.finish_stage();
    let peer_of = |name: &str| PEER_MRE.iter().find(|p| p.0 == name);
    let rel = |est: f64, truth: usize| (est - truth as f64).abs() / truth as f64;
    let mut sums = vec![0.0; COLUMNS.len() + 1];
    for (m, id) in &rows {
        if let Some(v) = id["dimension"]["value"].as_f64() {
            sums[0] += rel(v, m.id);
        }
        for (i, c) in COLUMNS.iter().enumerate() {
            if let Some(v) = estimate(id, c) {
                sums[i + 1] += rel(v, m.id);
            }
        }
    }
    let count = rows.len().max(1) as f64;
    let mean_rel: Vec<f64> = sums.iter().map(|s| s / count).collect();
    let mut doc = document(inputs, a.seed);
    // The page opens on the question the demo answers: each estimator against the truth, all manifolds.
    let names: Vec<String> = std::iter::once("recommended".to_string())
        .chain(
            rows.first()
                .and_then(|(_, id)| id["estimates"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|e| e["estimator"].as_str().map(String::from)),
        )
        .collect();
    let manifolds = rows
        .iter()
        .enumerate()
        .map(|(i, (m, id))| report::BenchmarkManifold {
            name: m.name.to_string(),
            input: i,
            true_dimension: m.id as f64,
            ambient_dimension: m.ambient_dim,
            estimates: names
                .iter()
                .map(|n| match n.as_str() {
                    "recommended" => id["dimension"]["value"].as_f64(),
                    other => estimate(id, other),
                })
                .collect(),
        })
        .collect();
    doc["benchmark"] =
        serde_json::to_value(report::Benchmark::new(a.n, names, manifolds)).unwrap_or(Value::Null);
    if g.json {
        // The paths go into the JSON below instead of two lines of text.
        write_files(&out_dir, &doc)?;
        let items: Vec<_> = rows
            .iter()
            .map(|(m, id)| {
                json!({
                    "name": m.name, "true_id": m.id, "ambient_dim": m.ambient_dim,
                    "dimension": id["dimension"],
                    "estimates": id["estimates"].as_array().into_iter().flatten()
                        .map(|e| (e["estimator"].as_str().unwrap_or("").to_string(), e["value"].clone()))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        let mut summary = serde_json::Map::new();
        summary.insert("recommended".into(), json!(mean_rel[0]));
        for (i, c) in COLUMNS.iter().enumerate() {
            summary.insert((*c).into(), json!(mean_rel[i + 1]));
        }
        let others: serde_json::Map<String, Value> = peers
            .iter()
            .map(|(name, mre, count)| {
                let p = peer_of(name);
                (
                    (*name).to_string(),
                    json!({"repscope": mre, "manifolds": count, "peer": p.map(|p| p.1), "peer_mean_relative_error": p.and_then(|p| p.2)}),
                )
            })
            .collect();
        return print_json(&json!({
            "n": a.n, "seed": a.seed, "manifolds": items, "mean_relative_error": summary,
            "other_estimators_mean_relative_error": others,
            "report": {"html": out_dir.join("report.html").display().to_string(), "json": out_dir.join("report.json").display().to_string()},
        }));
    }
    let mut header = vec!["manifold", "true d", "ambient", "repscope d", "± se"];
    header.extend_from_slice(COLUMNS);
    let mut t = Table::new(&header);
    for (m, id) in &rows {
        let mut cells = vec![
            m.name.to_string(),
            m.id.to_string(),
            m.ambient_dim.to_string(),
        ];
        cells.push(
            id["dimension"]["value"]
                .as_f64()
                .map(num)
                .unwrap_or_else(|| "-".into()),
        );
        cells.push(
            id["dimension"]["stderr"]
                .as_f64()
                .map(num)
                .unwrap_or_else(|| "-".into()),
        );
        for c in COLUMNS {
            cells.push(estimate(id, c).map(num).unwrap_or_else(|| "-".into()));
        }
        t.row(cells);
    }
    let mut cells = vec![
        "mean |d̂-d|/d".to_string(),
        String::new(),
        String::new(),
        num(mean_rel[0]),
        String::new(),
    ];
    cells.extend(mean_rel[1..].iter().map(|v| num(*v)));
    t.row(cells);
    println!(
        "repscope {} intrinsic-dimension suite on the {} benchmark manifolds (n = {}, seed {})\n",
        repscope::VERSION,
        rows.len(),
        a.n,
        a.seed
    );
    print!("{}", t.render());
    if let Some((_, id)) = rows.first() {
        if let Some(e) = id["dimension"]["estimator"].as_str() {
            println!(
                "\nrecommended estimator: {e} — {}",
                id["dimension"]["why"].as_str().unwrap_or("")
            );
        }
    }
    let mut t = Table::new(&["estimator", "mean |d̂-d|/d", "manifolds", "peer", "as"]);
    for (name, mre, count) in &peers {
        let p = peer_of(name);
        t.row(vec![
            (*name).to_string(),
            num(*mre),
            count.to_string(),
            p.and_then(|p| p.2).map(num).unwrap_or_else(|| "-".into()),
            p.map(|p| p.1.to_string()).unwrap_or_default(),
        ]);
    }
    println!(
        "\nthe peers' other estimators on the same manifolds (`repscope id --estimator NAME`); the peer's mean \
         relative error (scikit-dimension's, or DADApy's where named) as recorded by bench/id_estimators.py and \
         bench/id_dadapy.py on skdim's generator (n = 2500, seed 0); \
         `manifolds` counts those where the estimator had a signal (binomial at r = 0.5 sees none above about \
         20 dimensions and says so)\n"
    );
    print!("{}", t.render());
    println!();
    write_report(&out_dir, &doc, g)?;
    Ok(())
}
