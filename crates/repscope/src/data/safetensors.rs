//! `.safetensors` files: one named tensor read as a matrix.
use std::path::Path;
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};

use crate::data::matrix::Matrix;
use crate::data::npy;
use crate::data::npz::choose_key;
use crate::error::{Error, Result};

fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only map of an input file (see npy::read_matrix).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

fn parse<'a>(path: &Path, map: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(map).map_err(|e| {
        Error::format(
            path,
            format!("not a valid safetensors file ({e})"),
            "the file is truncated or corrupt: write it again with safetensors.save_file",
        )
    })
}

/// The tensor names in the file, sorted.
pub fn keys(path: &Path) -> Result<Vec<String>> {
    let map = map_file(path)?;
    let st = parse(path, &map)?;
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    Ok(names)
}

/// The rows and columns of a tensor that must be a non-empty 2-D matrix; `name` is the tensor's name in
/// messages.
pub(crate) fn matrix_shape(name: &str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [r, c] if *r > 0 && *c > 0 => Ok((*r, *c)),
        [_, _] => Err(Error::data(
            name,
            "the tensor is empty",
            "pass a tensor with rows and columns",
        )),
        [_] => Err(Error::data(
            name,
            format!("the tensor is 1-D, shape {shape:?}"),
            "store a 2-D tensor (rows = points): reshape it to (-1, 1) or (1, -1)",
        )),
        _ => Err(Error::data(
            name,
            format!("the tensor is {}-D, shape {shape:?}", shape.len()),
            "flatten it to 2-D first, e.g. x.reshape(-1, x.shape[-1])",
        )),
    }
}

/// Reads one 2-D tensor (f32, f16, bf16 or f64). f32 is memory-mapped; the others are converted once.
pub fn read_matrix(path: &Path, key: Option<&str>) -> Result<Matrix> {
    let map = map_file(path)?;
    let (offset, rows, cols, dtype, key) = {
        let st = parse(path, &map)?;
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        let key = choose_key(path, &names, key)?;
        let t = st.tensor(&key).map_err(|e| {
            Error::format(path, format!("tensor '{key}': {e}"), "write the file again")
        })?;
        let name = format!("{}[{key}]", path.display());
        let (rows, cols) = matrix_shape(&name, t.shape())?;
        let data = t.data();
        let offset = data.as_ptr() as usize - map.as_ptr() as usize;
        (offset, rows, cols, t.dtype(), key)
    };
    let name = format!("{}[{key}]", path.display());
    let len = map.len();
    match dtype {
        Dtype::F32 => Matrix::from_map(Arc::new(map), offset, rows, cols, name),
        Dtype::F16 => npy::convert_float_data(
            &map[offset..len],
            npy::Layout::little_c(2, rows, cols, "F16"),
            &name,
        ),
        Dtype::F64 => npy::convert_float_data(
            &map[offset..len],
            npy::Layout::little_c(8, rows, cols, "F64"),
            &name,
        ),
        Dtype::BF16 => {
            let n = rows * cols;
            let bytes = &map[offset..offset + n * 2];
            let data = bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect();
            Matrix::from_vec(rows, cols, data, name)
        }
        other => Err(Error::data(
            &name,
            format!("dtype {other:?} is not a supported float type"),
            "store the tensor as F32, F16, BF16 or F64",
        )),
    }
}
