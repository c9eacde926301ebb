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

/// Values (rows × columns) above which a command that can stream its rows streams them instead of loading.
pub const LOAD_LIMIT: usize = 1 << 28;

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

/// A row source: one file, several shards, a folder of shards or a pattern, with an optional selection of
/// rows. The rows are read in chunks, so the source may be larger than memory.
#[derive(Args, Debug, Clone)]
pub struct SourceInput {
    /// Input: a .npy, .npz or .safetensors file (rows = points); several files, read in order as shards of
    /// one matrix; a folder of shards (natural order: shard_2 before shard_10); or a quoted pattern such
    /// as 'cache/*.npy'.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Array to read from each .npz or .safetensors file.
    #[arg(long)]
    pub key: Option<String>,
    /// Only rows A:B (0-based, B excluded), e.g. --rows 0:100000.
    #[arg(long, value_name = "A:B")]
    pub rows: Option<String>,
    /// A uniform random sample of N distinct rows (after --rows), drawn with --seed.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed of --sample, and of the command's other random steps (decimation subsets in `id`, the index's
    /// level draws and the recall sample in `knn --approximate`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SourceInput {
    /// Opens the source with its selection.
    pub fn open(&self) -> Result<Box<dyn repscope::data::source::RowSource>, Failure> {
        self.select(self.open_whole()?)
    }

    /// Opens every row of the source, before --rows and --sample.
    pub fn open_whole(&self) -> Result<Box<dyn repscope::data::source::RowSource>, Failure> {
        Ok(repscope::data::source::open(
            &self.files,
            self.key.as_deref(),
        )?)
    }

    /// The rows of `src` that --rows and --sample select.
    pub fn select(
        &self,
        mut src: Box<dyn repscope::data::source::RowSource>,
    ) -> Result<Box<dyn repscope::data::source::RowSource>, Failure> {
        use repscope::data::source::Selected;
        if let Some((a, b)) = self.range(src.rows())? {
            src = Box::new(Selected::range(src, a, b)?);
        }
        if let Some(k) = self.sample {
            src = Box::new(Selected::sample(src, k, self.seed)?);
        }
        Ok(src)
    }

    /// The --rows range A:B as numbers (A defaulting to 0, B to `n`).
    fn range(&self, n: usize) -> Result<Option<(usize, usize)>, Failure> {
        let Some(r) = &self.rows else {
            return Ok(None);
        };
        let bad = || {
            usage(format!(
                "--rows '{r}': expected A:B with A < B (0-based, B excluded), e.g. 0:100000"
            ))
        };
        let (a, b) = r.split_once(':').ok_or_else(bad)?;
        let end = |s: &str, default: usize| -> Result<usize, Failure> {
            match s.trim() {
                "" => Ok(default),
                t => t.parse().map_err(|_| bad()),
            }
        };
        Ok(Some((end(a, 0)?, end(b, n)?)))
    }

    /// A per-row array of the whole source (token ids) cut to the selected rows, in the source's order.
    pub fn pick<T: Copy>(&self, v: Vec<T>) -> Vec<T> {
        match self.selected_indices(v.len()) {
            Some(idx) => idx.into_iter().map(|i| v[i]).collect(),
            None => v,
        }
    }

    /// The rows of a source of `total` rows that --rows and --sample select, in increasing order (the rows
    /// `select` reads); None when every row is selected.
    fn selected_indices(&self, total: usize) -> Option<Vec<usize>> {
        if self.rows.is_none() && self.sample.is_none() {
            return None;
        }
        // The selection was checked when the source was opened.
        let (a, b) = self.range(total).ok().flatten().unwrap_or((0, total));
        let (a, b) = (a.min(total), b.min(total));
        Some(match self.sample {
            Some(k) if k <= b - a => repscope::data::source::sample_indices(b - a, k, self.seed)
                .into_iter()
                .map(|i| a + i)
                .collect(),
            _ => (a..b).collect(),
        })
    }

    /// The selected rows in memory: a single file without a selection is loaded (or mapped) whole, as
    /// every in-memory command reads it; anything else is read from the source.
    pub fn load(&self, src: &dyn repscope::data::source::RowSource) -> Result<Matrix, Failure> {
        match self.single_file() {
            Some(f) if self.rows.is_none() && self.sample.is_none() => {
                Ok(repscope::data::load_matrix(f, self.key.as_deref())?)
            }
            _ => Ok(repscope::data::source::load(src)?),
        }
    }

    /// The selected rows in memory, for a command that holds every row (the neighbour search compares
    /// all pairs): as `load`, but a source that would not fit in the memory available is refused first,
    /// with the options that select fewer rows.
    pub fn load_all(
        &self,
        src: &dyn repscope::data::source::RowSource,
        what: &str,
    ) -> Result<Matrix, Failure> {
        let streamed = self.single_file().is_none() || self.rows.is_some() || self.sample.is_some();
        if streamed {
            let per_row = (src.cols() * src.elem().size().max(4)) as u128;
            crate::check_fits(
                &format!(
                    "rows of {} ({what} holds every row in memory)",
                    self.paths().join(" ")
                ),
                src.rows(),
                per_row,
                "--sample",
            )?;
        }
        self.load(src)
    }

    /// The selected rows as a dataset, for the neighbour measures (`what` names the measure in the memory
    /// check of `load_all`), with the input document and the row count of the whole source.
    pub fn dataset(&self, what: &str) -> Result<(Dataset, serde_json::Value, usize), Failure> {
        let whole = self.open_whole()?;
        let total = whole.rows();
        let src = self.select(whole)?;
        let input = self.describe(&*src);
        let ds = Dataset::new(self.load_all(&*src, what)?)?;
        Ok((ds, input, total))
    }

    /// The source row number of each selected row, or None when every row is selected (row i is row i).
    pub fn selected_rows(&self, total: usize) -> Option<Vec<i64>> {
        self.selected_indices(total)
            .map(|idx| idx.into_iter().map(|i| i as i64).collect())
    }

    /// A note for the output of a measure taken on selected rows: which rows, of how many.
    pub fn selection_note(&self, total: usize) -> Option<String> {
        let range = self.range(total).ok().flatten();
        let span = range.map_or(total, |(a, b)| b.min(total) - a.min(total));
        match (self.sample, &self.rows) {
            (Some(k), Some(r)) => Some(format!(
                "measured on a uniform sample of {k} of the {span} rows {r} (seed {}; {total} rows in all), not on every row",
                self.seed
            )),
            (Some(k), None) => Some(format!(
                "measured on a uniform sample of {k} of {total} rows (seed {}), not on every row",
                self.seed
            )),
            (None, Some(r)) => Some(format!(
                "measured on rows {r} ({span} of {total} rows), not on every row"
            )),
            (None, None) => None,
        }
    }

    /// Per-row labels of the whole source cut to the selected rows.
    pub fn pick_labels(&self, l: repscope::data::Labels) -> repscope::data::Labels {
        if self.rows.is_none() && self.sample.is_none() {
            return l;
        }
        repscope::data::Labels {
            ids: self.pick(l.ids),
            ..l
        }
    }

    /// The one file of the source, when it is a single file (not shards).
    pub fn single_file(&self) -> Option<&Path> {
        match self.files.as_slice() {
            [f] if f.is_file() => Some(f),
            _ => None,
        }
    }

    /// The files the source reads (folders and patterns expanded), for the check that an output is none
    /// of them.
    pub fn input_paths(&self) -> Vec<PathBuf> {
        repscope::data::source::expand_paths(&self.files).unwrap_or_else(|_| self.files.clone())
    }

    /// The paths as given.
    pub fn paths(&self) -> Vec<String> {
        self.files.iter().map(|p| p.display().to_string()).collect()
    }

    pub fn describe(&self, src: &dyn repscope::data::source::RowSource) -> serde_json::Value {
        let mut v = repscope::documents::source(&self.paths(), self.key.as_deref(), src);
        if let Some(o) = v.as_object_mut() {
            o.insert("row_range".into(), serde_json::json!(self.rows));
            o.insert(
                "sample".into(),
                serde_json::json!(self
                    .sample
                    .map(|n| serde_json::json!({"rows": n, "seed": self.seed}))),
            );
        }
        v
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

/// Labels, renamed from a names file (one per line, the name of label 0 first) when one is given.
pub fn load_named_labels(
    path: &Path,
    key: Option<&str>,
    names: Option<&Path>,
) -> Result<repscope::data::Labels, Failure> {
    let labels = load_labels(path, key)?;
    match names {
        Some(n) => {
            let list = repscope::data::labels::read_names(n)?;
            Ok(labels.with_names(&list, &n.display().to_string())?)
        }
        None => Ok(labels),
    }
}

/// Parses a metric name.
pub fn metric(s: &str) -> Result<repscope::Metric, Failure> {
    repscope::Metric::parse(s)
        .ok_or_else(|| usage(format!("unknown metric '{s}'. Use euclidean or cosine.")))
}

/// The table row that says how many rows repeat an earlier one.
pub fn duplicates_row(dup: &repscope::data::duplicates::Duplicates) -> Vec<String> {
    vec![
        "duplicate rows".into(),
        dup.merged.to_string(),
        format!(
            "rows repeating an earlier row exactly; {} distinct of {}, largest group {}",
            dup.distinct, dup.rows, dup.max_multiplicity
        ),
    ]
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
/// rows recomputed by the exact range pass, and rows compared with every reference row.
pub fn certificate_line(c: &repscope::neighbors::Certificate) -> String {
    if !c.exact {
        return format!("{} rows from an approximate search (not certified)", c.rows);
    }
    let pct = |x: usize| 100.0 * x as f64 / c.rows.max(1) as f64;
    let swept = if c.exhaustive > 0 {
        format!(
            ", {} ({:.2}%) compared with every reference row (their f32 ranking keys overflow)",
            c.exhaustive,
            pct(c.exhaustive)
        )
    } else {
        String::new()
    };
    format!(
        "certified exact: {} rows ({:.2}%) proven by the rounding bound of the candidate pass, {} ({:.2}%) recomputed by the exact range pass{swept}{}",
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
