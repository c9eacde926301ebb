//! One module per subcommand.
pub mod activations;
#[cfg(feature = "model")]
pub mod analyze_model;
pub mod classes;
pub mod compare;
pub mod datasets;
pub mod demo;
#[cfg(feature = "model")]
pub mod embed;
pub mod id;
pub mod index;
pub mod knn;
pub mod layers;
pub mod lid;
#[cfg(feature = "model")]
pub mod model_path;
pub mod report;
pub mod sae;
pub mod search_study;
pub mod spectrum;

use std::path::{Path, PathBuf};

use clap::Args;
use repscope::{Dataset, Matrix};

use crate::{usage, Failure};

/// An input file and the array to take from it.
#[derive(Args, Debug, Clone)]
pub struct Input {
    /// Input file: .npy, .npz or .safetensors (rows = points).
    pub file: PathBuf,
    /// Array to read from an .npz or .safetensors file.
    #[arg(long)]
    pub key: Option<String>,
}

impl Input {
    pub fn load(&self) -> Result<Matrix, Failure> {
        Ok(repscope::data::load_matrix(
            &self.file,
            self.key.as_deref(),
        )?)
    }
    pub fn dataset(&self) -> Result<Dataset, Failure> {
        Ok(Dataset::new(self.load()?)?)
    }
    pub fn describe(&self, m: &Matrix) -> serde_json::Value {
        repscope::documents::input(
            Some(&self.file.display().to_string()),
            self.key.as_deref(),
            m,
        )
    }
}

/// Reads a labels file; a key for a multi-array labels file is named by `--labels-key`.
pub fn load_labels(path: &Path, key: Option<&str>) -> Result<repscope::data::Labels, Failure> {
    repscope::data::load_labels(path, key).map_err(|e| {
        Failure::engine(e, &|p| match p {
            repscope::Param::Key => "--labels-key".into(),
            other => crate::flag(other),
        })
    })
}

/// Parses a metric name.
pub fn metric(s: &str) -> Result<repscope::Metric, Failure> {
    repscope::Metric::parse(s)
        .ok_or_else(|| usage(format!("unknown metric '{s}'. Use euclidean or cosine.")))
}

/// Prints a JSON value to stdout.
pub fn print_json(v: &serde_json::Value) -> Result<(), Failure> {
    let s =
        serde_json::to_string_pretty(v).map_err(|e| usage(format!("cannot encode JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

/// The output extension, checked against what the command writes.
pub fn require_ext(path: &Path, ext: &str) -> Result<(), Failure> {
    let got = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if got.as_deref() != Some(ext) {
        return Err(usage(format!(
            "{}: the output must be a .{ext} file. Name it something.{ext}.",
            path.display()
        )));
    }
    Ok(())
}

/// One line on how an exact graph was proven: rows certified by the rounding bound of the candidate pass,
/// rows recomputed by the exact range pass.
pub fn certificate_line(c: &repscope::neighbors::Certificate) -> String {
    if !c.exact {
        return format!("{} rows from an approximate search (not certified)", c.rows);
    }
    let pct = |x: usize| 100.0 * x as f64 / c.rows.max(1) as f64;
    format!(
        "certified exact: {} rows ({:.2}%) proven by the rounding bound of the candidate pass, {} ({:.2}%) recomputed by the exact range pass{}",
        c.certified,
        pct(c.certified),
        c.recomputed,
        pct(c.recomputed),
        if c.projected > 0 {
            " (candidates from a PCA projection)"
        } else {
            ""
        }
    )
}
