//! The matrix every measure reads: n rows (points) × d columns, row-major f32, owned or memory-mapped.
use std::sync::Arc;

use crate::error::{Error, Result};

enum Storage {
    Owned(Vec<f32>),
    /// A read-only memory map and the byte offset of the first element (4-byte aligned).
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
    },
}

/// n × d, row-major, f32.
pub struct Matrix {
    storage: Storage,
    rows: usize,
    cols: usize,
    name: String,
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
            Storage::Mapped { map, offset } => Storage::Mapped {
                map: Arc::clone(map),
                offset: *offset,
            },
        };
        Matrix {
            storage,
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
        if (ptr as usize) % std::mem::align_of::<f32>() != 0 {
            let bytes = &map[offset..offset + len];
            let data = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return Matrix::from_vec(rows, cols, data, name);
        }
        Ok(Matrix {
            storage: Storage::Mapped { map, offset },
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
    /// Whether the values live in a memory map rather than owned memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
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
        Matrix {
            storage: Storage::Owned(data),
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
