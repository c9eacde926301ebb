//! The rows an SAE trains and is evaluated on: any row source (see [`crate::data::source`]).
use std::path::Path;

pub use crate::data::source::{Elem, FileRows, RowSource};
use crate::error::Result;

/// Opens a training or evaluation source: a file, a folder of shards or a pattern (see
/// [`crate::data::source::open`]), read by positioned reads where the layout allows.
pub fn open(path: &Path, key: Option<&str>) -> Result<Box<dyn RowSource>> {
    crate::data::source::open(&[path.to_path_buf()], key)
}
