//! The matrix every measure reads: n rows (points) × d columns, row-major f32, owned, memory-mapped, or
//! shared with the caller (a buffer another owner keeps alive, such as a numpy array).
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// A buffer of f32 values owned elsewhere and kept alive by this handle (for example a numpy array seen
/// through the Python bindings). The matrix reads it in place, without a copy.
pub type SharedValues = Arc<dyn AsRef<[f32]> + Send + Sync>;

enum Storage {
    Owned(Vec<f32>),
    /// Values owned by someone else; the handle keeps them alive.
    Shared(SharedValues),
    /// A read-only memory map and the byte offset of the first element (4-byte aligned).
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
    },
}

/// n × d, row-major, f32; for f64 input also the values as given, in f64 (see [`Matrix::values_f64`]).
pub struct Matrix {
    storage: Storage,
    /// The f64 values of an f64 input, kept where precision is the point (the exact re-rank, centring,
    /// spectra, similarity and class geometry read these); the f32 copy feeds the ranking kernels.
    exact: Option<Arc<[f64]>>,
    rows: usize,
    cols: usize,
    name: String,
}

/// The precision a matrix's values are held in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 (or f16/bf16 input widened to f32).
    F32,
    /// f64 input, kept in f64.
    F64,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("name", &self.name)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl Clone for Matrix {
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            Storage::Owned(v) => Storage::Owned(v.clone()),
            Storage::Shared(v) => Storage::Shared(Arc::clone(v)),
            Storage::Mapped { map, offset } => Storage::Mapped {
                map: Arc::clone(map),
                offset: *offset,
            },
        };
        Matrix {
            storage,
            exact: self.exact.clone(),
            rows: self.rows,
            cols: self.cols,
            name: self.name.clone(),
        }
    }
}

impl Matrix {
    /// An owned matrix from row-major data. `name` is used in messages (a file name, for example).
    pub fn from_vec(
        rows: usize,
        cols: usize,
        data: Vec<f32>,
        name: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::data(
                &name,
                format!("{} values do not fill a {rows} × {cols} matrix", data.len()),
                "pass row-major data of exactly rows × cols values",
            ));
        }
        Ok(Matrix {
            storage: Storage::Owned(data),
            exact: None,
            rows,
            cols,
            name,
        })
    }

    /// An owned matrix from row-major f64 data, kept in f64 (an f32 copy feeds the ranking kernels).
    pub fn from_f64(
        rows: usize,
        cols: usize,
        data: Vec<f64>,
        name: impl Into<String>,
    ) -> Result<Self> {
        let f32s: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        let mut m = Matrix::from_vec(rows, cols, f32s, name)?;
        m.exact = Some(data.into());
        Ok(m)
    }

    /// The precision the values are held in.
    pub fn precision(&self) -> Precision {
        if self.exact.is_some() {
            Precision::F64
        } else {
            Precision::F32
        }
    }

    /// The f64 values of an f64 input, row-major (None for f32 data).
    pub fn values_f64(&self) -> Option<&[f64]> {
        self.exact.as_deref()
    }

    /// Row `i` in f64: the values as given for f64 input, the f32 values widened otherwise.
    #[inline]
    pub fn row_f64_into(&self, i: usize, out: &mut [f64]) {
        match &self.exact {
            Some(v) => out.copy_from_slice(&v[i * self.cols..(i + 1) * self.cols]),
            None => {
                for (o, &x) in out.iter_mut().zip(self.row(i)) {
                    *o = x as f64;
                }
            }
        }
    }

    /// The power of two that f64 values all below [`crate::moments::TINY`] (2⁻⁴⁰⁰) are multiplied by before
    /// squares or products of them are summed, so that those do not underflow ([`crate::moments::tiny_scale`]);
    /// 1 for f32 data and for f64 data of any other magnitude.
    pub fn tiny_scale(&self) -> f64 {
        self.max_abs_f64().map_or(1.0, crate::moments::tiny_scale)
    }

    /// The largest |value| of an f64 input (None for f32 data).
    pub fn max_abs_f64(&self) -> Option<f64> {
        self.values_f64().map(|v| {
            v.par_iter()
                .fold(|| 0f64, |a, x| a.max(x.abs()))
                .reduce(|| 0.0, f64::max)
        })
    }

    /// Row `i` of an f64 input (None for f32 data).
    #[inline]
    pub fn row_f64(&self, i: usize) -> Option<&[f64]> {
        self.exact
            .as_deref()
            .map(|v| &v[i * self.cols..(i + 1) * self.cols])
    }

    /// A matrix reading row-major values that another owner keeps alive, without copying them.
    pub fn from_shared(
        rows: usize,
        cols: usize,
        data: SharedValues,
        name: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        let len = (*data).as_ref().len();
        if rows.checked_mul(cols) != Some(len) {
            return Err(Error::data(
                &name,
                format!("{len} values do not fill a {rows} × {cols} matrix"),
                "pass row-major data of exactly rows × cols values",
            ));
        }
        Ok(Matrix {
            storage: Storage::Shared(data),
            exact: None,
            rows,
            cols,
            name,
        })
    }

    /// A matrix viewing `rows × cols` f32 values in a memory map, starting at byte `offset`.
    /// Falls back to a copy when the data is not 4-byte aligned.
    pub(crate) fn from_map(
        map: Arc<memmap2::Mmap>,
        offset: usize,
        rows: usize,
        cols: usize,
        name: String,
    ) -> Result<Self> {
        let len = rows
            .checked_mul(cols)
            .and_then(|e| e.checked_mul(4))
            .ok_or_else(|| {
                Error::data(
                    &name,
                    "the array shape overflows",
                    "check the file's header",
                )
            })?;
        if offset.checked_add(len).is_none_or(|end| end > map.len()) {
            return Err(Error::data(
                &name,
                format!(
                    "the header promises {len} bytes of data but the file has {}",
                    map.len().saturating_sub(offset)
                ),
                "the file is truncated: write it again",
            ));
        }
        let ptr = map[offset..].as_ptr();
        if !(ptr as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            let bytes = &map[offset..offset + len];
            let data = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return Matrix::from_vec(rows, cols, data, name);
        }
        Ok(Matrix {
            storage: Storage::Mapped { map, offset },
            exact: None,
            rows,
            cols,
            name,
        })
    }

    /// Number of rows (points).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns (dimensions).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Renames the matrix (for messages).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Whether the values are read in place from a buffer the caller owns (see [`Matrix::from_shared`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.storage, Storage::Shared(_))
    }
    /// Whether the values live in a memory map rather than owned memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
            Storage::Shared(v) => (**v).as_ref(),
            Storage::Mapped { map, offset } => {
                let bytes = &map[*offset..*offset + self.rows * self.cols * 4];
                // SAFETY: alignment was checked in `from_map`, the length is in bounds, f32 has no invalid
                // bit patterns, and the map is read-only and lives as long as `self`.
                unsafe {
                    std::slice::from_raw_parts(bytes.as_ptr() as *const f32, self.rows * self.cols)
                }
            }
        }
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * self.cols..(i + 1) * self.cols]
    }

    /// A new owned matrix made of the given rows, in that order.
    pub fn select_rows(&self, idx: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        let exact = self.exact.as_ref().map(|_| {
            let mut v = Vec::with_capacity(idx.len() * self.cols);
            for &i in idx {
                v.extend_from_slice(self.row_f64(i).expect("f64 values"));
            }
            v.into()
        });
        Matrix {
            storage: Storage::Owned(data),
            exact,
            rows: idx.len(),
            cols: self.cols,
            name: self.name.clone(),
        }
    }

    /// Rows `start..stop` as a new owned matrix.
    pub fn slice_rows(&self, start: usize, stop: usize) -> Matrix {
        let stop = stop.min(self.rows);
        let start = start.min(stop);
        Matrix {
            storage: Storage::Owned(self.as_slice()[start * self.cols..stop * self.cols].to_vec()),
            exact: self
                .exact
                .as_ref()
                .map(|v| v[start * self.cols..stop * self.cols].into()),
            rows: stop - start,
            cols: self.cols,
            name: self.name.clone(),
        }
    }

    /// Size of the values in bytes.
    pub fn nbytes(&self) -> usize {
        self.rows * self.cols * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_values_are_read_in_place() {
        let values: Arc<Vec<f32>> = Arc::new((0..6).map(|v| v as f32).collect());
        let ptr = values.as_ptr();
        let m = Matrix::from_shared(3, 2, values.clone(), "shared").unwrap();
        assert!(m.is_shared());
        assert_eq!(m.as_slice().as_ptr(), ptr);
        assert_eq!(m.row(2), &[4.0, 5.0]);
        let c = m.clone();
        assert_eq!(c.as_slice().as_ptr(), ptr);
        let e = Matrix::from_shared(4, 2, values, "shared").unwrap_err();
        assert!(
            e.to_string()
                .contains("6 values do not fill a 4 × 2 matrix"),
            "{e}"
        );
    }
}
