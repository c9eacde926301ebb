//! The rows an SAE trains and is evaluated on: any row source (see [`crate::data::source`]).
use std::path::Path;

pub use crate::data::source::{Elem, FileRows, RowSource};
use crate::error::Result;

/// Opens a training or evaluation source: `.npy` and `.safetensors` by positioned reads, anything else
/// (npz, layouts that cannot be streamed) through the loader.
pub fn open(path: &Path, key: Option<&str>) -> Result<Box<dyn RowSource>> {
    crate::data::source::open_file(path, key)
}
