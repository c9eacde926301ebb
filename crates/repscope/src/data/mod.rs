//! Loading representations and checking them before any measure runs.
pub mod columnar;
pub mod duplicates;
pub mod labels;
pub mod matrix;
pub mod npy;
pub mod npz;
pub mod safetensors;
pub mod source;

use crate::error::{Param, Text};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

pub use labels::Labels;
pub use matrix::Matrix;

use crate::error::{Error, Result};

/// File formats repscope reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Npy,
    Npz,
    Safetensors,
    /// Parquet: a column of float vectors, or one float column per dimension.
    Parquet,
    /// Arrow IPC, file or stream (`.arrow`, `.feather`, `.ipc`; Hugging Face datasets caches).
    Arrow,
}

/// Checks that `path` is an existing regular file before it is opened: a folder, a pipe or a device is named
/// as such (a pipe would block the reader, a folder fail with an unrelated error), and a missing file, a
/// dangling link or a link loop is diagnosed.
pub fn check_regular(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if !m.is_file() => Err(Error::io(path, std::io::Error::other("not a regular file"))),
        Ok(_) => Ok(()),
    }
}

/// The format of a path, from its extension.
pub fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "npy" => Ok(Format::Npy),
        "npz" => Ok(Format::Npz),
        "safetensors" => Ok(Format::Safetensors),
        "parquet" => Ok(Format::Parquet),
        "arrow" | "feather" | "ipc" => Ok(Format::Arrow),
        _ => Err(Error::format(
            path,
            if ext.is_empty() {
                "the file has no extension, so its format is unknown".to_string()
            } else {
                format!("unknown extension '.{ext}'")
            },
            "pass a .npy, .npz or .safetensors file (or a .parquet or .arrow file)",
        )),
    }
}

/// Loads a 2-D float matrix from `.npy`, `.npz` (choose with `key`) or `.safetensors` (choose with `key`).
/// f32 little-endian C-order data is memory-mapped; other dtypes and orders are converted once.
pub fn load_matrix(path: &Path, key: Option<&str>) -> Result<Matrix> {
    check_regular(path)?;
    let fmt = format_of(path)?;
    match fmt {
        Format::Npy => {
            if let Some(k) = key {
                return Err(Error::param(
                    Param::Key,
                    format!(
                        "'{k}' was given but {} is a single-array .npy file",
                        path.display()
                    ),
                    Text::from("drop ")
                        .param(Param::Key)
                        .then(" for .npy inputs"),
                ));
            }
            npy::read_matrix(path)
        }
        Format::Npz => npz::read_matrix(path, key),
        Format::Safetensors => safetensors::read_matrix(path, key),
        Format::Parquet | Format::Arrow => source::load(&columnar::open(path, key)?),
    }
}

/// The names of the arrays in a multi-array file (npz in archive order, safetensors sorted); a `.npy`
/// file has none.
pub fn list_keys(path: &Path) -> Result<Vec<String>> {
    check_regular(path)?;
    match format_of(path)? {
        Format::Npy => Ok(Vec::new()),
        Format::Npz => npz::keys(path),
        Format::Safetensors => safetensors::keys(path),
        Format::Parquet | Format::Arrow => columnar::keys(path),
    }
}

/// Loads labels: a `.npy`/`.npz` integer or string array, or a text file with one label per line.
pub fn load_labels(path: &Path, key: Option<&str>) -> Result<Labels> {
    check_regular(path)?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "npy" => {
            let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            npy::labels_from_npy(&buf, path)
        }
        "npz" => npz::read_labels(path, key),
        "safetensors" => Err(Error::format(
            path,
            "labels are not read from .safetensors files",
            "save them as .npy (np.save('labels.npy', y)), .npz, or a text file with one label per line",
        )),
        _ => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::format(
                    path,
                    format!(
                        "not a text file of labels (invalid UTF-8 at byte {})",
                        e.utf8_error().valid_up_to()
                    ),
                    "pass labels as .npy, .npz, or a UTF-8 text file with one label per line",
                )
            })?;
            let raw: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
            let numeric = raw.iter().all(|s| s.parse::<i64>().is_ok());
            Ok(Labels::from_strings(raw, numeric))
        }
    }
}

/// Token ids stored in the files of a source beside its rows, one per row in row order: the `token_ids`
/// array of `.npz` and `.safetensors` files (as `embed --tokens` writes them), or the `token_ids` (else
/// `input_ids`) integer column of parquet and Arrow files (as Hugging Face and SAELens activation caches
/// hold them, a sequence of ids per record). `key` is the array the rows come from. None unless every file
/// of the source has ids for each of its rows; the string names where they came from.
pub fn token_ids_beside(
    paths: &[std::path::PathBuf],
    key: Option<&str>,
) -> Result<Option<(String, Vec<u32>)>> {
    let files = source::expand_paths(paths)?;
    let mut all = Vec::new();
    let mut name = None;
    for f in &files {
        let rows = source::open_file(f, key)?.rows();
        let ids = match format_of(f)? {
            Format::Npz | Format::Safetensors
                if key != Some("token_ids") && list_keys(f)?.iter().any(|k| k == "token_ids") =>
            {
                load_token_ids(f, Some("token_ids"))
                    .ok()
                    .map(|v| (v, "token_ids"))
            }
            Format::Parquet | Format::Arrow => {
                let mut found = None;
                for col in ["token_ids", "input_ids"] {
                    if key != Some(col) {
                        if let Some(v) = columnar::integer_column(f, col)? {
                            found = Some((v, col));
                            break;
                        }
                    }
                }
                found
            }
            _ => None,
        };
        match ids {
            Some((v, col)) if v.len() == rows => {
                name.get_or_insert_with(|| col.to_string());
                all.extend(v);
            }
            _ => return Ok(None),
        }
    }
    let col = name.unwrap_or_default();
    let what = match files.as_slice() {
        [f] => format!("{}:{col}", f.display()),
        fs => format!("the {col} of {} shards", fs.len()),
    };
    Ok(Some((what, all)))
}

/// Reads token ids, one per row of token states: a non-negative integer array in a `.npy`, `.npz` or
/// `.safetensors` file (`embed --tokens` writes them as `token_ids`).
pub fn load_token_ids(path: &Path, key: Option<&str>) -> Result<Vec<u32>> {
    check_regular(path)?;
    let bad = |v: &str| {
        Error::format(
            path,
            format!("holds '{v}', which is not a token id (an integer from 0 to 4294967295)"),
            "pass the integer token ids written beside the states",
        )
    };
    if format_of(path)? == Format::Safetensors {
        let m = safetensors::read_matrix(path, key)?;
        if m.cols() != 1 && m.rows() != 1 {
            return Err(Error::format(
                path,
                format!(
                    "token ids must be one column, not {} × {}",
                    m.rows(),
                    m.cols()
                ),
                "pass a 1-D array of token ids",
            ));
        }
        let mut out = Vec::with_capacity(m.rows() * m.cols());
        for i in 0..m.rows() {
            for &v in m.row(i) {
                // f32 holds every integer up to 2^24 exactly; beyond that an id may have been rounded.
                if !(v >= 0.0 && v.fract() == 0.0 && v <= 16_777_216.0) {
                    return Err(bad(&v.to_string()));
                }
                out.push(v as u32);
            }
        }
        return Ok(out);
    }
    let labels = load_labels(path, key)?;
    let ids: Vec<u32> = labels
        .names
        .iter()
        .map(|s| s.parse::<u32>().map_err(|_| bad(s)))
        .collect::<Result<_>>()?;
    Ok(labels.ids.iter().map(|&c| ids[c as usize]).collect())
}

/// Makes `dir` ready to take output files: creates it if missing; an existing folder must be empty unless
/// `force`.
pub fn prepare_folder(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(Error::data(
                dir.display().to_string(),
                "exists and is not a folder",
                "choose a folder for the output",
            ));
        }
        let non_empty = std::fs::read_dir(dir)
            .map(|mut r| r.next().is_some())
            .unwrap_or(false);
        if non_empty && !force {
            return Err(Error::OutputExists {
                path: dir.to_path_buf(),
                folder: true,
            });
        }
        Ok(())
    } else {
        std::fs::create_dir_all(dir).map_err(|e| Error::io_write(dir, e))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then renamed onto
/// `path`. On any failure (a full disk, say) the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    npy::write_file_with(path, |f| {
        use std::io::Write;
        f.write_all(bytes)
    })
}

/// Checks every value is finite (and, for f64 input, within the range of f32, which the ranking kernels
/// use). The error names the first bad row and column (0-based).
pub fn check_finite(m: &Matrix) -> Result<()> {
    let d = m.cols();
    if let Some(v64) = m.values_f64() {
        let bad = v64
            .par_chunks(d.max(1) * 1024)
            .enumerate()
            .find_map_first(|(chunk, vals)| {
                vals.iter()
                    .position(|v| !v.is_finite() || v.abs() > f32::MAX as f64)
                    .map(|p| (chunk * 1024 + p / d, p % d, vals[p]))
            });
        if let Some((r, c, v)) = bad {
            return Err(Error::NonFinite {
                input: m.name().to_string(),
                row: r,
                col: c,
                value: v,
            });
        }
        return Ok(());
    }
    let bad = m
        .as_slice()
        .par_chunks(d * 1024)
        .enumerate()
        .find_map_first(|(chunk, vals)| {
            vals.iter()
                .position(|v| !v.is_finite())
                .map(|p| (chunk * 1024 + p / d, p % d, vals[p]))
        });
    if let Some((r, c, v)) = bad {
        return Err(Error::data(
            m.name(),
            format!("non-finite value {v} at row {r}, column {c} (0-based)"),
            "remove or impute rows with NaN/Inf before measuring (e.g. x[np.isfinite(x).all(1)])",
        ));
    }
    Ok(())
}

/// Exact duplicate rows grouped: one kept row per group of rows with identical values.
#[derive(Clone, Debug, Serialize)]
pub struct Dedup {
    /// For every original row, the index of its distinct row.
    #[serde(skip)]
    pub representative: Vec<u32>,
    /// For every distinct row, the original row kept for it (its first occurrence), ascending.
    #[serde(skip)]
    pub kept: Vec<u32>,
    /// For every distinct row, how many original rows it stands for.
    #[serde(skip)]
    pub multiplicity: Vec<u32>,
    /// Original rows minus distinct rows.
    pub merged: usize,
    /// The largest group.
    pub max_multiplicity: u32,
}

impl Dedup {
    /// Number of distinct rows.
    pub fn n_distinct(&self) -> usize {
        self.kept.len()
    }
    /// Whether any rows were merged.
    pub fn has_duplicates(&self) -> bool {
        self.merged > 0
    }
}

/// Groups exactly equal rows (values as given, compared as numbers, so -0.0 equals 0.0), through the one
/// duplicate finder of [`duplicates`]: a hash per row, then values compared where hashes repeat.
pub fn dedup(m: &Matrix) -> Result<Dedup> {
    let n = m.rows();
    let hashes: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|i| match m.row_f64(i) {
            Some(row) => duplicates::row_hash(row),
            None => duplicates::row_hash_f32(m.row(i)),
        })
        .collect();
    let (_, first) = duplicates::find(m, hashes, true, &crate::progress::Silent)?;
    Ok(Dedup::from_first(
        &first.expect("asked for the first equal rows"),
    ))
}

impl Dedup {
    /// The groups from every row's first equal row ([`duplicates::FirstEqual`]).
    pub fn from_first(first: &[u32]) -> Dedup {
        let n = first.len();
        let mut kept = Vec::new();
        let mut distinct_of_row = vec![u32::MAX; n];
        for i in 0..n {
            if first[i] as usize == i {
                distinct_of_row[i] = kept.len() as u32;
                kept.push(i as u32);
            }
        }
        let mut multiplicity = vec![0u32; kept.len()];
        let representative: Vec<u32> = (0..n)
            .map(|i| {
                let r = distinct_of_row[first[i] as usize];
                multiplicity[r as usize] += 1;
                r
            })
            .collect();
        let max_multiplicity = multiplicity.iter().copied().max().unwrap_or(0);
        Dedup {
            merged: n - kept.len(),
            representative,
            kept,
            multiplicity,
            max_multiplicity,
        }
    }
}

/// A validated input: the original matrix, its duplicate groups, and the distinct rows that neighbour
/// measures run on (the original matrix itself when there are no duplicates, so nothing is copied).
#[derive(Clone, Debug)]
pub struct Dataset {
    original: Matrix,
    distinct: Option<Matrix>,
    /// Duplicate groups of the original rows.
    pub dedup: Dedup,
}

impl Dataset {
    /// Validates (finite values, at least two distinct rows) and groups duplicates.
    pub fn new(m: Matrix) -> Result<Dataset> {
        check_finite(&m)?;
        let dedup = dedup(&m)?;
        if dedup.n_distinct() < 2 {
            return Err(Error::data(
                m.name(),
                format!("all {} rows are identical (zero variance)", m.rows()),
                "there is no geometry to measure: check that the right array was saved",
            ));
        }
        let distinct = if dedup.has_duplicates() {
            let idx: Vec<usize> = dedup.kept.iter().map(|&i| i as usize).collect();
            Some(m.select_rows(&idx))
        } else {
            None
        };
        Ok(Dataset {
            original: m,
            distinct,
            dedup,
        })
    }
    /// The matrix as loaded.
    pub fn original(&self) -> &Matrix {
        &self.original
    }
    /// The distinct rows, in order of first occurrence.
    pub fn distinct(&self) -> &Matrix {
        self.distinct.as_ref().unwrap_or(&self.original)
    }
    /// Checks that there are more than `k` distinct rows, as a k-neighbour measure needs. `least` is the
    /// smallest k the measure accepts, so that the advice never suggests a k it would refuse.
    pub fn require_neighbours(&self, k: usize, least: usize, what: &str) -> Result<()> {
        require_neighbours(
            self.original.name(),
            self.original.rows(),
            self.dedup.n_distinct(),
            self.dedup.merged,
            k,
            least,
            what,
        )
    }
}

/// The error of `what`, which needs `k` neighbours per point, when `nd` distinct rows (of `n`, `merged`
/// duplicates merged, in `name`) have fewer; `least` is the smallest useful k.
pub fn require_neighbours(
    name: &str,
    n: usize,
    nd: usize,
    merged: usize,
    k: usize,
    least: usize,
    what: &str,
) -> Result<()> {
    if k + 1 > nd {
        return Err(Error::data(
            name,
            format!(
                "{what} needs {k} neighbours per point, so more than {k} distinct rows, but there are {nd} ({n} rows, {merged} duplicates merged)"
            ),
            if nd > least {
                Text::from(format!(
                    "use k ≤ {} or pass more rows",
                    nd.saturating_sub(1)
                ))
            } else {
                Text::from(format!("pass at least {} distinct rows", least + 1))
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails part-way (as on a full disk) leaves the old file as it was and no temporary file.
    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("repscope-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.hnsw");
        write_atomic(&p, b"old contents").unwrap();
        let r = npy::write_file_with(&p, |f| {
            use std::io::Write;
            f.write_all(b"half of the new")?;
            Err(std::io::Error::other("no space left on device"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old contents");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn dedup_groups_equal_rows_and_negative_zero() {
        let data = vec![
            1.0, 2.0, //
            0.0, 0.0, //
            1.0, 2.0, //
            -0.0, 0.0, //
            3.0, 4.0, //
            1.0, 2.0,
        ];
        let m = Matrix::from_vec(6, 2, data, "t").unwrap();
        let d = dedup(&m).unwrap();
        assert_eq!(d.kept, vec![0, 1, 4]);
        assert_eq!(d.representative, vec![0, 1, 0, 1, 2, 0]);
        assert_eq!(d.multiplicity, vec![3, 2, 1]);
        assert_eq!(d.merged, 3);
        assert_eq!(d.max_multiplicity, 3);
    }

    #[test]
    fn non_finite_names_row_and_column() {
        let mut data = vec![0.5f32; 3000 * 4];
        data[2100 * 4 + 3] = f32::NAN;
        let m = Matrix::from_vec(3000, 4, data, "x.npy").unwrap();
        let e = check_finite(&m).unwrap_err().to_string();
        assert!(e.contains("row 2100, column 3"), "{e}");
    }

    #[test]
    fn identical_rows_are_rejected() {
        let m = Matrix::from_vec(5, 2, vec![1.0; 10], "same").unwrap();
        let e = Dataset::new(m).unwrap_err().to_string();
        assert!(e.contains("identical"), "{e}");
    }
}
