//! Rows read in chunks: from a matrix in memory (or mapped), or from a `.npy` file by positioned reads, so
//! that a pass over a file larger than memory holds only the chunk it reads.
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::data::{npy, Matrix};
use crate::error::{Error, Result};

/// A source of rows, read by range. Every value read is checked finite; the row named in an error is the
/// row of the whole source.
pub trait RowSource: Sync + Send {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// The name used in messages (a file name).
    fn name(&self) -> &str;
    /// Rows start..start + count as f32, row-major, into `out` (count × cols values).
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()>;
}

fn check_finite(name: &str, start: usize, d: usize, v: &[f32]) -> Result<()> {
    if let Some(p) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            input: name.to_string(),
            row: start + p / d,
            col: p % d,
            value: v[p] as f64,
        });
    }
    Ok(())
}

impl RowSource for Matrix {
    fn rows(&self) -> usize {
        Matrix::rows(self)
    }
    fn cols(&self) -> usize {
        Matrix::cols(self)
    }
    fn name(&self) -> &str {
        Matrix::name(self)
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let d = Matrix::cols(self);
        for (i, o) in out[..count * d].chunks_exact_mut(d).enumerate() {
            o.copy_from_slice(self.row(start + i));
        }
        check_finite(Matrix::name(self), start, d, &out[..count * d])
    }
}

/// The element type of a streamed `.npy` file.
#[derive(Clone, Copy, Debug)]
enum Elem {
    F32,
    F64,
}

/// A 2-D little-endian C-order float32 or float64 `.npy` file, read by positioned reads.
pub struct NpyRows {
    file: File,
    path: PathBuf,
    name: String,
    rows: usize,
    cols: usize,
    offset: u64,
    elem: Elem,
}

impl NpyRows {
    /// Opens `path` when it is a `.npy` file that can be streamed (2-D, C order, little-endian float32 or
    /// float64); None otherwise (the caller loads it whole).
    pub fn open(path: &Path) -> Result<Option<NpyRows>> {
        use std::io::Read;
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if !is_npy {
            return Ok(None);
        }
        crate::data::check_regular(path)?;
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = vec![0u8; 65536];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        head.truncate(got);
        let h = match npy::parse_header(&head, path) {
            Ok(h) => h,
            // A header this reader cannot take is left to the whole-file loader and its message.
            Err(_) => return Ok(None),
        };
        let elem = match (h.kind, h.size) {
            (npy::Kind::Float, 4) => Elem::F32,
            (npy::Kind::Float, 8) => Elem::F64,
            _ => return Ok(None),
        };
        if h.big_endian || h.fortran_order || h.shape.len() != 2 {
            return Ok(None);
        }
        let (rows, cols) = (h.shape[0], h.shape[1]);
        let need = (h.data_offset as u64)
            + (rows as u64) * (cols as u64) * if matches!(elem, Elem::F32) { 4 } else { 8 };
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < need {
            return Err(Error::format(
                path,
                format!("the header promises {rows} × {cols} values ({need} bytes) but the file has {len} bytes"),
                "the file is truncated: write it again",
            ));
        }
        Ok(Some(NpyRows {
            file,
            path: path.to_path_buf(),
            name: path.display().to_string(),
            rows,
            cols,
            offset: h.data_offset as u64,
            elem,
        }))
    }
}

impl RowSource for NpyRows {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let d = self.cols;
        let size = if matches!(self.elem, Elem::F32) { 4 } else { 8 };
        let mut buf = vec![0u8; count * d * size];
        let at = self.offset + (start * d * size) as u64;
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| Error::io(&self.path, e))?;
        let out = &mut out[..count * d];
        match self.elem {
            Elem::F32 => {
                for (o, b) in out.iter_mut().zip(buf.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Elem::F64 => {
                for (o, b) in out.iter_mut().zip(buf.chunks_exact(8)) {
                    let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    if v.is_finite() && v.abs() > f32::MAX as f64 {
                        return Err(Error::data(
                            &self.name,
                            format!("the f64 value {v:e} overflows f32, which SAE training uses"),
                            "rescale the activations",
                        ));
                    }
                    *o = v as f32;
                }
            }
        }
        check_finite(&self.name, start, d, out)
    }
}

/// Opens a training or evaluation source: a streamable `.npy` file by positioned reads, anything else
/// (npz, safetensors, other dtypes) through the loader.
pub fn open(path: &Path, key: Option<&str>) -> Result<Box<dyn RowSource>> {
    if key.is_none() {
        if let Some(s) = NpyRows::open(path)? {
            return Ok(Box::new(s));
        }
    }
    Ok(Box::new(crate::data::load_matrix(path, key)?))
}
