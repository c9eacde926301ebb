//! A model's safetensors weights, in one file or in shards listed by `model.safetensors.index.json`: every
//! tensor is found by name across the shards, checked against the shape config.json implies, and widened to
//! f32 from f32, f16 or bf16 as stored.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::error::{Error, Result};

/// The weight files of a folder: `model.safetensors`, or the shards an index names (in index order).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let bytes = std::fs::read(&index).map_err(|e| Error::io(&index, e))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::format(
                &index,
                format!("is not valid JSON ({e})"),
                "restore the index from the model's original release",
            )
        })?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::format(
                    &index,
                    "has no weight_map",
                    "restore the index from the model's original release",
                )
            })?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(Error::format(
                    &index,
                    format!("names a shard outside the folder ('{f}')"),
                    "restore the index from the model's original release",
                ));
            }
            let p = dir.join(&f);
            if !p.is_file() {
                return Err(Error::format(
                    &p,
                    "the shard named in model.safetensors.index.json is missing",
                    "download every shard of the model into the folder",
                ));
            }
            out.push(p);
        }
        if out.is_empty() {
            return Err(Error::format(
                &index,
                "lists no shards",
                "restore the index from the model's original release",
            ));
        }
        return Ok(out);
    }
    let fix = if dir.join("pytorch_model.bin").is_file() {
        "the folder holds only pytorch_model.bin; convert it to safetensors \
         (model.save_pretrained(folder, safe_serialization=True) in transformers)"
    } else {
        "put the model's weights (model.safetensors, or its shards with model.safetensors.index.json) \
         next to config.json"
    };
    Err(Error::format(&single, "model.safetensors is missing", fix))
}

/// The memory maps of the weight files, kept open while the tensors are copied out.
pub struct Maps {
    files: Vec<(PathBuf, memmap2::Mmap)>,
}

impl Maps {
    pub fn open(files: &[PathBuf]) -> Result<Maps> {
        let mut out = Vec::with_capacity(files.len());
        for p in files {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            // SAFETY: the map is read-only and lives only while the weights are copied out; a file changed
            // by another process while it is read is outside what any reader can guard against.
            let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(p, e))?;
            out.push((p.clone(), m));
        }
        Ok(Maps { files: out })
    }

    /// Parses every file's header.
    pub fn weights(&self) -> Result<Weights<'_>> {
        let mut sts = Vec::with_capacity(self.files.len());
        let mut where_ = HashMap::new();
        for (i, (p, m)) in self.files.iter().enumerate() {
            let st = safetensors::SafeTensors::deserialize(m).map_err(|e| {
                Error::format(
                    p,
                    format!("is not a valid safetensors file ({e})"),
                    "restore the weights from the model's original release",
                )
            })?;
            for n in st.names() {
                where_.insert(n.to_string(), i);
            }
            sts.push((p.as_path(), st));
        }
        Ok(Weights {
            sts,
            where_,
            prefix: String::new(),
        })
    }
}

/// Named tensors across the weight files, read under a prefix.
pub struct Weights<'a> {
    sts: Vec<(&'a Path, safetensors::SafeTensors<'a>)>,
    where_: HashMap<String, usize>,
    /// Prepended to every name (`model.`, `transformer.`, ...), as the checkpoint was saved.
    prefix: String,
}

impl Weights<'_> {
    /// True when the tensor exists (under the prefix).
    pub fn has(&self, name: &str) -> bool {
        self.where_.contains_key(&format!("{}{name}", self.prefix))
    }

    /// The first file, for messages that concern the weights as a whole.
    pub fn first_path(&self) -> &Path {
        self.sts.first().map(|(p, _)| *p).unwrap_or(Path::new("."))
    }

    /// The stored dtype of a tensor.
    pub fn dtype(&self, name: &str) -> Option<safetensors::Dtype> {
        let full = format!("{}{name}", self.prefix);
        let i = *self.where_.get(&full)?;
        self.sts[i].1.tensor(&full).ok().map(|v| v.dtype())
    }

    /// Uses the first of `candidates` under which the tensor `name` exists as the prefix of every name
    /// (checkpoints saved from a task model carry the base model's name). Returns it, or None.
    pub fn choose_prefix(
        &mut self,
        candidates: &[&'static str],
        name: &str,
    ) -> Option<&'static str> {
        let p = candidates
            .iter()
            .copied()
            .find(|p| self.where_.contains_key(&format!("{p}{name}")))?;
        self.prefix = p.to_string();
        Some(p)
    }

    /// The number of numbered blocks under `layers` (`{prefix}{layers}.N.…`), from the largest N.
    pub fn count_layers(&self, layers: &str) -> Option<usize> {
        let head = format!("{}{layers}.", self.prefix);
        self.where_
            .keys()
            .filter_map(|n| n.strip_prefix(&head))
            .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .max()
            .map(|m| m + 1)
    }

    /// The tensor `name`, of exactly `shape`, as f32 on `device`.
    pub fn tensor(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let Some(&i) = self.where_.get(&full) else {
            return Err(Error::format(
                self.first_path(),
                format!("the weights have no tensor '{full}'"),
                "use the weights that belong to this config.json",
            ));
        };
        let (path, st) = &self.sts[i];
        let view = st
            .tensor(&full)
            .map_err(|e| Error::Internal(format!("tensor '{full}': {e}")))?;
        if view.shape() != shape {
            return Err(Error::format(
                *path,
                format!(
                    "tensor '{full}' has shape {:?} but config.json implies {:?}",
                    view.shape(),
                    shape
                ),
                "the weights do not match config.json; use the weights and config.json of the same model",
            ));
        }
        let dtype = view.dtype();
        if !matches!(
            dtype,
            safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16
        ) {
            return Err(Error::format(
                *path,
                format!("tensor '{full}' is stored as {dtype:?}"),
                "use weights stored as float32, float16 or bfloat16",
            ));
        }
        Ok(view.load(device)?.to_dtype(DType::F32)?)
    }

    /// The tensor `name`, of exactly `shape`, widened to f32, row-major.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.tensor(name, shape, &Device::Cpu)?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    }
}
