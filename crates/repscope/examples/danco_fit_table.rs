//! Writes DANCo's precomputed calibration table (`ver="DANCoFit"` in scikit-dimension's terms): for k = 10,
//! every dimension 1..100 and the sizes N below, the mean of DANCo's three statistics over 100 seeded
//! uniform balls (seeds 0..99, the same balls the simulated calibration draws at those seeds). The engine
//! compiles the table in from `src/intrinsic/danco_fit_table.json` and interpolates it in N.
//!
//! Usage: cargo run --release -p repscope --example danco_fit_table -- OUT.json [iterations] [max_dim]
use std::time::Instant;

use rayon::prelude::*;
use repscope::intrinsic::danco::{ball_statistics, FitTable};

const K: usize = 10;
const CARDINALITIES: [usize; 24] = [
    20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260, 280, 300, 320, 340, 360, 380, 400,
    500, 1000, 2000, 5000,
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: danco_fit_table OUT.json [iterations] [max_dim]");
        std::process::exit(2);
    }
    let iterations: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let max_dim: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let start = Instant::now();
    let mut dhat = vec![vec![0f64; CARDINALITIES.len()]; max_dim];
    let mut mu_nu = dhat.clone();
    let mut mu_tau = dhat.clone();
    for (c, &n) in CARDINALITIES.iter().enumerate() {
        for dim in 1..=max_dim {
            let cells: Vec<_> = (0..iterations as u64)
                .into_par_iter()
                .map(|seed| ball_statistics(n, dim, K, seed).expect("a calibration ball"))
                .collect();
            let mean = |f: fn(&repscope::intrinsic::danco::DancoStats) -> f64| {
                cells.iter().map(f).sum::<f64>() / iterations as f64
            };
            dhat[dim - 1][c] = mean(|s| s.dhat);
            mu_nu[dim - 1][c] = mean(|s| s.mu_nu);
            mu_tau[dim - 1][c] = mean(|s| s.mu_tau);
        }
        eprintln!("N = {n}: done at {:.1} s", start.elapsed().as_secs_f64());
    }
    let table = FitTable {
        k: K,
        iterations,
        seeds: format!("0..{}", iterations - 1),
        cardinalities: CARDINALITIES.to_vec(),
        dhat,
        mu_nu,
        mu_tau,
    };
    let text = serde_json::to_string(&table).expect("the table serialises");
    let out = &args[1];
    let tmp = format!("{out}.part");
    std::fs::write(&tmp, text + "\n").expect("write the table");
    std::fs::rename(&tmp, out).expect("move the table into place");
}
