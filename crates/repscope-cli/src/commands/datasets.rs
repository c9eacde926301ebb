//! `repscope datasets`: generators with known answers.
use std::path::PathBuf;

use clap::Subcommand;
use repscope::data::npz::{self, NpzArray};
use repscope::datasets::manifolds::{self, MANIFOLDS};
use serde_json::json;

use super::print_json;
use crate::{usage, CliResult, Global};

#[derive(Subcommand, Debug)]
pub enum DatasetsCommand {
    /// The 24 benchmark manifolds of scikit-dimension, with their true intrinsic dimension.
    Manifolds {
        /// Output folder: manifolds.npz (one array per manifold) and manifolds_truth.json are written there.
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Points per manifold.
        #[arg(long, short = 'n', default_value_t = 2500)]
        n: usize,
        /// Seed of the random stream.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Only these manifolds (repeatable); default all.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Write into an output folder that already has files in it.
        #[arg(long)]
        force: bool,
    },
}

/// The requested manifolds, checked.
pub fn select(names: &[String]) -> Result<Vec<&'static manifolds::ManifoldInfo>, crate::Failure> {
    if names.is_empty() {
        return Ok(MANIFOLDS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            manifolds::info(n).ok_or_else(|| {
                usage(format!(
                    "unknown manifold '{n}'. Choose from: {}",
                    MANIFOLDS
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

pub fn run(c: &DatasetsCommand, g: &Global) -> CliResult {
    match c {
        DatasetsCommand::Manifolds {
            output,
            n,
            seed,
            names,
            force,
        } => {
            let chosen = select(names)?;
            if *n < 3 {
                return Err(usage("--n must be at least 3"));
            }
            // Every chosen manifold is held at once in f32, and each is generated in f64 first.
            let total: u128 = chosen.iter().map(|m| m.ambient_dim as u128 * 4).sum();
            let widest = chosen.iter().map(|m| m.ambient_dim).max().unwrap_or(0) as u128;
            crate::check_fits("points per manifold", *n, total + widest * 8, "-n")?;
            repscope::data::prepare_folder(output, *force)?;
            crate::check_writable(&output.join("manifolds.npz"))?;
            let mut data = Vec::new();
            for m in &chosen {
                let v = manifolds::generate(m.name, *n, *seed)
                    .ok_or_else(|| usage(format!("unknown manifold {}", m.name)))?;
                data.push((m.name, [*n, m.ambient_dim], v));
            }
            let arrays: Vec<(&str, NpzArray)> = data
                .iter()
                .map(|(name, shape, v)| (*name, NpzArray::F32(&shape[..], &v[..])))
                .collect();
            let npz_path = output.join("manifolds.npz");
            npz::write(&npz_path, &arrays)?;
            let truth = json!({
                "generator": format!("repscope {} datasets manifolds --n {n} --seed {seed}", repscope::VERSION),
                "n": n,
                "seed": seed,
                "manifolds": chosen.iter().map(|m| (m.name.to_string(), json!({"id": m.id, "ambient_dim": m.ambient_dim, "description": m.description}))).collect::<serde_json::Map<_, _>>(),
            });
            let truth_path = output.join("manifolds_truth.json");
            repscope::data::write_atomic(
                &truth_path,
                serde_json::to_string_pretty(&truth)
                    .unwrap_or_default()
                    .as_bytes(),
            )?;
            if g.json {
                print_json(
                    &json!({"npz": npz_path.display().to_string(), "truth": truth_path.display().to_string(), "count": chosen.len()}),
                )
            } else {
                println!(
                    "{} manifolds × {n} points written to {} (true dimensions in {})",
                    chosen.len(),
                    npz_path.display(),
                    truth_path.display()
                );
                Ok(())
            }
        }
    }
}
