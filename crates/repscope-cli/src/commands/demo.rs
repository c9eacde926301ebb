//! `repscope demo`: the intrinsic-dimension suite on the built-in benchmark manifolds, beside the truth.
use clap::Args;
use repscope::datasets::manifolds;
use repscope::intrinsic::suite::{self, IdConfig};
use repscope::{Dataset, Matrix};
use serde_json::json;

use super::datasets::select;
use super::print_json;
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
}

const COLUMNS: &[&str] = &["twonn", "mle", "gride", "pca_fo"];

pub fn run(a: &DemoArgs, g: &Global) -> CliResult {
    let chosen = select(&a.names)?;
    if a.n < 100 {
        return Err(usage("--n must be at least 100 for the demo"));
    }
    let cfg = IdConfig {
        seed: a.seed,
        ..IdConfig::default()
    };
    let bars = Bars::new(g.quiet);
    bars.stage("benchmark manifolds", chosen.len() as u64);
    let mut rows = Vec::new();
    for m in &chosen {
        let v = manifolds::generate(m.name, a.n, a.seed)
            .ok_or_else(|| usage(format!("unknown manifold {}", m.name)))?;
        let mat = Matrix::from_vec(a.n, m.ambient_dim, v, m.name)?;
        let ds = Dataset::new(mat)?;
        let r = suite::run(&ds, &cfg, &Silent)?;
        bars.advance(1);
        rows.push((m, r));
    }
    bars.finish_stage();
    let rel = |est: f64, truth: usize| (est - truth as f64).abs() / truth as f64;
    let mut sums = vec![0.0; COLUMNS.len() + 1];
    for (m, r) in &rows {
        if let Some(d) = &r.dimension {
            sums[0] += rel(d.value, m.id);
        }
        for (i, c) in COLUMNS.iter().enumerate() {
            if let Some(e) = r.estimates.iter().find(|e| e.estimator == *c) {
                sums[i + 1] += rel(e.value, m.id);
            }
        }
    }
    let count = rows.len().max(1) as f64;
    let mean_rel: Vec<f64> = sums.iter().map(|s| s / count).collect();
    if g.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(m, r)| {
                json!({
                    "name": m.name, "true_id": m.id, "ambient_dim": m.ambient_dim,
                    "dimension": r.dimension,
                    "estimates": r.estimates.iter().map(|e| (e.estimator.clone(), json!(e.value))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        let mut summary = serde_json::Map::new();
        summary.insert("recommended".into(), json!(mean_rel[0]));
        for (i, c) in COLUMNS.iter().enumerate() {
            summary.insert((*c).into(), json!(mean_rel[i + 1]));
        }
        return print_json(
            &json!({"n": a.n, "seed": a.seed, "manifolds": items, "mean_relative_error": summary}),
        );
    }
    let mut header = vec!["manifold", "true d", "ambient", "repscope d", "± se"];
    header.extend_from_slice(COLUMNS);
    let mut t = Table::new(&header);
    for (m, r) in &rows {
        let mut cells = vec![
            m.name.to_string(),
            m.id.to_string(),
            m.ambient_dim.to_string(),
        ];
        match &r.dimension {
            Some(d) => {
                cells.push(num(d.value));
                cells.push(d.stderr.map(num).unwrap_or_else(|| "-".into()));
            }
            None => {
                cells.push("-".into());
                cells.push("-".into());
            }
        }
        for c in COLUMNS {
            cells.push(
                r.estimates
                    .iter()
                    .find(|e| e.estimator == *c)
                    .map(|e| num(e.value))
                    .unwrap_or_else(|| "-".into()),
            );
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
    if let Some((_, r)) = rows.first() {
        if let Some(d) = &r.dimension {
            println!("\nrecommended estimator: {} — {}", d.estimator, d.why);
        }
    }
    Ok(())
}
