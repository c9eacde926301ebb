//! SAE folders on disk: SAELens' layout (`cfg.json` + `sae_weights.safetensors`, read by
//! `sae_lens.SAE.load_from_disk`), and, for reading, EleutherAI sparsify's (`cfg.json` + `sae.safetensors`)
//! and OpenAI's (`sparse_autoencoder`: one PyTorch `.pt` state dict).
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

use super::{Architecture, InputNorm, Sae};
use crate::error::{Error, Result};

/// The SAELens version whose on-disk layout is written: `load_from_disk` reads `metadata.sae_lens_version`
/// to choose how to read the config, and 6.x configs are read as written.
pub const SAELENS_LAYOUT: &str = "6.54.0";

/// The folder formats repscope reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    SaeLens,
    Sparsify,
    /// OpenAI's `sparse_autoencoder`: a `.pt` file (or a folder holding exactly one).
    OpenAi,
}

fn bad(path: &Path, problem: impl Into<String>, fix: &str) -> Error {
    Error::format(path, problem, fix.to_string())
}

/// Little-endian f32 bytes of a slice.
fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The cfg.json SAELens reads, with `metadata` (free-form) saying what made the SAE.
pub fn saelens_config(sae: &Sae, metadata: Value) -> Value {
    let mut meta = json!({
        "sae_lens_version": SAELENS_LAYOUT,
        "repscope_version": crate::VERSION,
    });
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), metadata.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let mut cfg = json!({
        "architecture": sae.arch.saelens_name(),
        "d_in": sae.d,
        "d_sae": sae.n,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": match sae.input_norm {
            InputNorm::None => "none",
            InputNorm::LayerNorm => "layer_norm",
        },
        "reshape_activations": "none",
        "metadata": meta,
    });
    if matches!(sae.arch, Architecture::TopK) {
        cfg["k"] = json!(sae.k);
        cfg["rescale_acts_by_decoder_norm"] = json!(false);
    }
    cfg
}

/// The tensors of SAELens' `sae_weights.safetensors`: W_enc [d, n], W_dec [n, d], b_enc [n], b_dec [d],
/// and threshold [n] for JumpReLU.
fn saelens_tensors(sae: &Sae) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let (d, n) = (sae.d, sae.n);
    let mut w_enc = vec![0.0f32; d * n];
    for i in 0..n {
        for j in 0..d {
            w_enc[j * n + i] = sae.w_enc_t[i * d + j];
        }
    }
    let mut t = vec![
        ("W_enc".to_string(), vec![d, n], bytes(&w_enc)),
        ("W_dec".to_string(), vec![n, d], bytes(&sae.w_dec)),
        ("b_enc".to_string(), vec![n], bytes(&sae.b_enc)),
        ("b_dec".to_string(), vec![d], bytes(&sae.b_dec)),
    ];
    if matches!(sae.arch, Architecture::JumpRelu | Architecture::BatchTopK) {
        let th = sae.threshold.clone().unwrap_or_else(|| vec![0.0; n]);
        t.push(("threshold".to_string(), vec![n], bytes(&th)));
    }
    t
}

/// A sibling of `dir` for writing before the rename.
fn temp_sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sae".into());
    dir.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// A named tensor to write: (name, dtype, shape, little-endian bytes).
pub type TensorBytes = (String, Dtype, Vec<usize>, Vec<u8>);

/// An f32 tensor to write.
pub fn f32_tensor(name: &str, shape: Vec<usize>, v: &[f32]) -> TensorBytes {
    (name.to_string(), Dtype::F32, shape, bytes(v))
}

/// A 1-D i64 tensor to write.
pub fn i64_tensor(name: &str, v: &[i64]) -> TensorBytes {
    (
        name.to_string(),
        Dtype::I64,
        vec![v.len()],
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// The bytes of a safetensors file holding `tensors`.
pub fn encode_tensors(tensors: &[TensorBytes]) -> Result<Vec<u8>> {
    let mut views = Vec::new();
    for (name, dt, shape, b) in tensors {
        let v = safetensors::tensor::TensorView::new(*dt, shape.clone(), b).map_err(|e| {
            Error::Numerical {
                what: format!("tensor {name}"),
                problem: e.to_string(),
            }
        })?;
        views.push((name.clone(), v));
    }
    safetensors::serialize(views, None).map_err(|e| Error::Numerical {
        what: "safetensors".into(),
        problem: e.to_string(),
    })
}

/// An f32 tensor of a safetensors buffer, of `len` values (usize::MAX: any length).
pub fn read_f32(buf: &[u8], path: &Path, name: &str, len: usize) -> Result<Vec<f32>> {
    let st = parse(path, buf)?;
    let t = st.tensor(name).map_err(|_| {
        bad(
            path,
            format!("has no tensor '{name}'"),
            "the file is damaged: write it again",
        )
    })?;
    let n: usize = t.shape().iter().product();
    if t.dtype() != Dtype::F32 || (len != usize::MAX && n != len) {
        return Err(bad(
            path,
            format!("tensor '{name}' has the wrong type or size"),
            "the file is damaged: write it again",
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A 1-D i64 tensor of a safetensors buffer, of `len` values when given.
pub fn read_i64(buf: &[u8], path: &Path, name: &str, len: Option<usize>) -> Result<Vec<i64>> {
    let st = parse(path, buf)?;
    let t = st.tensor(name).map_err(|_| {
        bad(
            path,
            format!("has no tensor '{name}'"),
            "the file is damaged: write it again",
        )
    })?;
    let n: usize = t.shape().iter().product();
    if t.dtype() != Dtype::I64 || len.is_some_and(|l| l != n) {
        return Err(bad(
            path,
            format!("tensor '{name}' has the wrong type or size"),
            "the file is damaged: write it again",
        ));
    }
    Ok(t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Writes `files` (name, bytes) into the folder `dir`, atomically: into a sibling folder, synced, then
/// renamed. An existing `dir` that is not empty is replaced only with `replace`.
pub fn write_folder(dir: &Path, files: &[(&str, Vec<u8>)], replace: bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(bad(
            dir,
            "exists and is not a folder",
            "choose a folder path",
        ));
    }
    if dir.exists() && !replace {
        let empty = std::fs::read_dir(dir)
            .map(|mut r| r.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::OutputExists {
                path: dir.to_path_buf(),
                folder: true,
            });
        }
    }
    let tmp = temp_sibling(dir, "part");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io_write(&tmp, e))?;
    for (name, b) in files {
        if let Err(e) = write_synced(&tmp.join(name), b) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    }
    if dir.exists() {
        let old = temp_sibling(dir, "old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(|e| Error::io_write(dir, e))?;
        if let Err(e) = std::fs::rename(&tmp, dir) {
            let _ = std::fs::rename(&old, dir);
            return Err(Error::io_write(dir, e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, dir).map_err(|e| Error::io_write(dir, e))?;
    }
    Ok(())
}

/// Writes `sae` in SAELens' layout into the folder `dir`, atomically: everything is written into a sibling
/// folder, synced, then renamed to `dir`. An existing `dir` is replaced only with `force`; `extra` files
/// (name, bytes) are written beside the weights.
pub fn save(
    sae: &Sae,
    dir: &Path,
    metadata: Value,
    extra: &[(&str, Vec<u8>)],
    force: bool,
) -> Result<()> {
    let cfg = serde_json::to_vec_pretty(&saelens_config(sae, metadata)).map_err(|e| {
        Error::Numerical {
            what: "cfg.json".into(),
            problem: e.to_string(),
        }
    })?;
    let tensors: Vec<TensorBytes> = saelens_tensors(sae)
        .into_iter()
        .map(|(n, s, b)| (n, Dtype::F32, s, b))
        .collect();
    let mut files = vec![
        ("cfg.json", cfg),
        ("sae_weights.safetensors", encode_tensors(&tensors)?),
    ];
    files.extend(extra.iter().map(|(n, b)| (*n, b.clone())));
    write_folder(dir, &files, force)
}

fn write_synced(path: &Path, b: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| Error::io_write(path, e))?;
    f.write_all(b).map_err(|e| Error::io_write(path, e))?;
    f.sync_all().map_err(|e| Error::io_write(path, e))
}

/// One f32 tensor of an expected shape (f16, bf16 and f64 are converted).
fn tensor(st: &SafeTensors, path: &Path, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = st.tensor(name).map_err(|_| {
        bad(
            path,
            format!("has no tensor '{name}'"),
            "pass a complete SAE folder (SAELens writes W_enc, W_dec, b_enc and b_dec)",
        )
    })?;
    if t.shape() != shape {
        return Err(bad(
            path,
            format!(
                "tensor '{name}' has shape {:?}, not {:?} as cfg.json says",
                t.shape(),
                shape
            ),
            "pass the weights that belong to this cfg.json",
        ));
    }
    let b = t.data();
    let v: Vec<f32> = match t.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("tensor '{name}' has dtype {other:?}"),
                "save the SAE in float32, float16, bfloat16 or float64",
            ))
        }
    };
    Ok(v)
}

fn read_json(path: &Path) -> Result<Value> {
    crate::data::check_regular(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        bad(
            path,
            format!("is not valid JSON ({e})"),
            "write the SAE's cfg.json again",
        )
    })
}

fn field_usize(cfg: &Value, path: &Path, key: &str) -> Result<usize> {
    cfg.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| {
            bad(
                path,
                format!("has no integer '{key}'"),
                "pass a complete cfg.json (d_in, d_sae, architecture, and k for topk)",
            )
        })
}

fn map(path: &Path) -> Result<memmap2::Mmap> {
    crate::data::check_regular(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: a read-only map of an input file; the bytes are copied out before it is dropped.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

fn parse<'a>(path: &Path, m: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(m).map_err(|e| {
        bad(
            path,
            format!("is not a valid safetensors file ({e})"),
            "the file is truncated or corrupt: save the SAE again",
        )
    })
}

/// The `.pt` files directly inside a folder.
fn pt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().is_some_and(|e| {
                            e.eq_ignore_ascii_case("pt") || e.eq_ignore_ascii_case("pth")
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Which layout a path holds: a SAELens or sparsify folder, or an OpenAI `.pt` file (or a folder holding
/// exactly one).
pub fn layout_of(dir: &Path) -> Result<Layout> {
    if dir.is_file() {
        return Ok(Layout::OpenAi);
    }
    if !dir.is_dir() {
        return Err(bad(
            dir,
            "does not exist",
            "pass an SAE folder (cfg.json with sae_weights.safetensors or sae.safetensors) or an OpenAI .pt file",
        ));
    }
    if dir.join("sae_weights.safetensors").exists() {
        Ok(Layout::SaeLens)
    } else if dir.join("sae.safetensors").exists() {
        Ok(Layout::Sparsify)
    } else if pt_files(dir).len() == 1 {
        Ok(Layout::OpenAi)
    } else {
        Err(bad(
            dir,
            "holds neither sae_weights.safetensors (SAELens), sae.safetensors (sparsify) nor one .pt file (OpenAI)",
            "pass an SAE folder as SAELens or sparsify save it, or an OpenAI SAE .pt file",
        ))
    }
}

/// Loads an SAE: a folder in SAELens' or sparsify's layout, or an OpenAI `.pt` file.
pub fn load(dir: &Path) -> Result<Sae> {
    let sae = match layout_of(dir)? {
        Layout::SaeLens => load_saelens(dir)?,
        Layout::Sparsify => load_sparsify(dir)?,
        Layout::OpenAi => {
            if dir.is_dir() {
                load_openai(&pt_files(dir)[0])?
            } else {
                load_openai(dir)?
            }
        }
    };
    sae.validate(&dir.display().to_string())?;
    Ok(sae)
}

fn load_saelens(dir: &Path) -> Result<Sae> {
    let cp = dir.join("cfg.json");
    let cfg = read_json(&cp)?;
    let arch_name = cfg
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("standard");
    let arch = match arch_name {
        "topk" => Architecture::TopK,
        "jumprelu" => Architecture::JumpRelu,
        "standard" => Architecture::Relu,
        other => {
            return Err(bad(
                &cp,
                format!("architecture '{other}' is not one repscope evaluates"),
                "use an SAE of architecture topk, jumprelu or standard",
            ))
        }
    };
    let d = field_usize(&cfg, &cp, "d_in")?;
    let n = field_usize(&cfg, &cp, "d_sae")?;
    let k = if arch == Architecture::TopK {
        field_usize(&cfg, &cp, "k")?
    } else {
        0
    };
    let norm = cfg
        .get("normalize_activations")
        .and_then(Value::as_str)
        .unwrap_or("none");
    let input_norm = match norm {
        "none" => InputNorm::None,
        "layer_norm" => InputNorm::LayerNorm,
        _ => {
            return Err(bad(
                &cp,
                format!("normalize_activations is '{norm}'; repscope reads none, layer_norm, or scaling folded into the weights"),
                "fold the scaling into the weights (SAELens does this when it saves an inference SAE) and set normalize_activations to none",
            ))
        }
    };
    // SAELens' TopK SAEs may keep decoder rows of any norm and rescale at run time: pre·‖W_dec,i‖ before the
    // selection, f/‖W_dec,i‖ before decoding. Folded here into the encoder (row and bias times the norm) and
    // the decoder (unit rows), which gives the same codes and reconstructions.
    let rescale = cfg
        .get("rescale_acts_by_decoder_norm")
        .and_then(Value::as_bool)
        == Some(true);
    let wp = dir.join("sae_weights.safetensors");
    let m = map(&wp)?;
    let st = parse(&wp, &m)?;
    let w_enc = tensor(&st, &wp, "W_enc", &[d, n])?;
    let mut w_enc_t = vec![0.0f32; n * d];
    for j in 0..d {
        for i in 0..n {
            w_enc_t[i * d + j] = w_enc[j * n + i];
        }
    }
    let threshold = if arch == Architecture::JumpRelu {
        Some(tensor(&st, &wp, "threshold", &[n])?)
    } else {
        None
    };
    let mut b_enc = tensor(&st, &wp, "b_enc", &[n])?;
    let mut w_dec = tensor(&st, &wp, "W_dec", &[n, d])?;
    if rescale {
        for i in 0..n {
            let row = &mut w_dec[i * d..(i + 1) * d];
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            let nf = norm as f32;
            w_enc_t[i * d..(i + 1) * d]
                .iter_mut()
                .for_each(|v| *v *= nf);
            b_enc[i] *= nf;
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
            }
        }
    }
    Ok(Sae {
        d,
        n,
        arch,
        k,
        w_enc_t,
        b_enc,
        w_dec,
        b_dec: tensor(&st, &wp, "b_dec", &[d])?,
        threshold,
        apply_b_dec_to_input: cfg
            .get("apply_b_dec_to_input")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        input_norm,
    })
}

/// sparsify: `encoder.weight` [n, d], `encoder.bias` [n], `W_dec` [n, d], `b_dec` [d]; cfg.json has `k`.
/// Its encoder is ReLU then top-k over `(x − b_dec) W_encᵀ + b_enc`, which on positive values selects what
/// top-k then ReLU does.
fn load_sparsify(dir: &Path) -> Result<Sae> {
    let cp = dir.join("cfg.json");
    let cfg = read_json(&cp)?;
    let k = field_usize(&cfg, &cp, "k")?;
    let wp = dir.join("sae.safetensors");
    let m = map(&wp)?;
    let st = parse(&wp, &m)?;
    let enc = st.tensor("encoder.weight").map_err(|_| {
        bad(
            &wp,
            "has no tensor 'encoder.weight'",
            "pass a complete sparsify SAE folder",
        )
    })?;
    let (n, d) = match enc.shape() {
        [n, d] => (*n, *d),
        s => {
            return Err(bad(
                &wp,
                format!("encoder.weight has shape {s:?}"),
                "pass a sparsify SAE folder",
            ))
        }
    };
    Ok(Sae {
        d,
        n,
        arch: Architecture::TopK,
        k,
        w_enc_t: tensor(&st, &wp, "encoder.weight", &[n, d])?,
        b_enc: tensor(&st, &wp, "encoder.bias", &[n])?,
        w_dec: tensor(&st, &wp, "W_dec", &[n, d])?,
        b_dec: tensor(&st, &wp, "b_dec", &[d])?,
        threshold: None,
        apply_b_dec_to_input: true,
        input_norm: InputNorm::None,
    })
}

/// One value of a pickled state dict: a tensor's f32 values and shape, or anything else (kept as candle's
/// pickle object).
enum PtValue {
    Tensor(Vec<usize>, Vec<f32>),
    Other(candle_core::pickle::Object),
}

/// The entries of a PyTorch state dict saved with `torch.save` (a zip holding `data.pkl`).
fn read_pt(path: &Path) -> Result<Vec<(String, PtValue)>> {
    use candle_core::pickle::{Object, PthTensors, Stack};
    let corrupt = |what: String| {
        bad(
            path,
            format!("is not a readable PyTorch state dict ({what})"),
            "pass the .pt file as torch.save wrote it (OpenAI's sparse_autoencoder state dict)",
        )
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(format!("not a zip archive: {e}")))?;
    let pkl = zip
        .file_names()
        .find(|f| f.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| corrupt("no data.pkl inside".into()))?;
    let mut stack = Stack::empty();
    {
        let entry = zip
            .by_name(&pkl)
            .map_err(|e| corrupt(format!("{pkl}: {e}")))?;
        stack
            .read_loop(&mut std::io::BufReader::new(entry))
            .map_err(|e| corrupt(format!("{pkl}: {e}")))?;
    }
    let obj = stack
        .finalize()
        .map_err(|e| corrupt(format!("{pkl}: {e}")))?;
    let Object::Dict(entries) = obj else {
        return Err(corrupt("the pickle is not a dict of tensors".into()));
    };
    let tensors = PthTensors::new(path, None).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for (k, v) in entries {
        let Object::Unicode(name) = k else { continue };
        let value = if tensors.tensor_infos().contains_key(&name) {
            let t = tensors
                .get(&name)
                .map_err(|e| corrupt(format!("tensor {name}: {e}")))?
                .ok_or_else(|| corrupt(format!("tensor {name} is missing")))?;
            let shape = t.dims().to_vec();
            let vals = t
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| corrupt(format!("tensor {name}: {e}")))?;
            PtValue::Tensor(shape, vals)
        } else {
            PtValue::Other(v)
        };
        out.push((name, value));
    }
    Ok(out)
}

/// OpenAI's `sparse_autoencoder.Autoencoder` state dict: `encoder.weight` [n, d], `latent_bias` [n],
/// `pre_bias` [d], `decoder.weight` [d, n] (or, tied, `decoder.linear.weight` [n, d]), and `activation`
/// ("TopK" with `activation_state_dict` {k, postact_fn}, or "ReLU"). As `Autoencoder.from_state_dict` does,
/// a TopK SAE layer-normalises its input (ddof 1, ε = 10⁻⁵ on σ) and undoes it on the reconstruction.
fn load_openai(path: &Path) -> Result<Sae> {
    use candle_core::pickle::Object;
    let mut entries = read_pt(path)?;
    let fix = "pass an OpenAI sparse_autoencoder state dict (encoder.weight, latent_bias, pre_bias, decoder.weight)";
    let (n, d) = match entries.iter().find(|(k, _)| k == "encoder.weight") {
        Some((_, PtValue::Tensor(s, _))) if s.len() == 2 => (s[0], s[1]),
        Some((_, PtValue::Tensor(s, _))) => {
            return Err(bad(
                path,
                format!("encoder.weight has shape {s:?}; it must be [latents, d]"),
                fix,
            ))
        }
        _ => return Err(bad(path, "has no tensor 'encoder.weight'", fix)),
    };
    let mut take = |name: &str| -> Option<PtValue> {
        entries
            .iter()
            .position(|(k, _)| k == name)
            .map(|i| entries.swap_remove(i).1)
    };
    let tensor = |v: Option<PtValue>, name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        match v {
            Some(PtValue::Tensor(s, vals)) if s == shape => Ok(vals),
            Some(PtValue::Tensor(s, _)) => Err(bad(
                path,
                format!("tensor {name} has shape {s:?}, not {shape:?}"),
                fix,
            )),
            _ => Err(bad(path, format!("has no tensor '{name}'"), fix)),
        }
    };
    let w_enc_t = tensor(take("encoder.weight"), "encoder.weight", &[n, d])?;
    let b_enc = tensor(take("latent_bias"), "latent_bias", &[n])?;
    let b_dec = tensor(take("pre_bias"), "pre_bias", &[d])?;
    let w_dec = match take("decoder.weight") {
        Some(v) => {
            let w = tensor(Some(v), "decoder.weight", &[d, n])?;
            let mut t = vec![0.0f32; n * d];
            for j in 0..d {
                for i in 0..n {
                    t[i * d + j] = w[j * n + i];
                }
            }
            t
        }
        None => tensor(
            take("decoder.linear.weight"),
            "decoder.linear.weight",
            &[n, d],
        )?,
    };
    let activation = match take("activation") {
        None => "ReLU".to_string(),
        Some(PtValue::Other(Object::Unicode(s))) => s,
        Some(_) => return Err(bad(path, "'activation' is not a class name", fix)),
    };
    let (arch, k, input_norm) = match activation.as_str() {
        "TopK" => {
            let Some(PtValue::Other(Object::Dict(sd))) = take("activation_state_dict") else {
                return Err(bad(
                    path,
                    "activation is TopK but activation_state_dict is missing",
                    fix,
                ));
            };
            let mut k = None;
            let mut post = "ReLU".to_string();
            for (key, v) in sd {
                match (key, v) {
                    (Object::Unicode(key), Object::Int(v)) if key == "k" && v > 0 => {
                        k = Some(v as usize)
                    }
                    (Object::Unicode(key), Object::Long(v)) if key == "k" && v > 0 => {
                        k = Some(v as usize)
                    }
                    (Object::Unicode(key), Object::Unicode(v)) if key == "postact_fn" => post = v,
                    _ => {}
                }
            }
            let k = k.ok_or_else(|| bad(path, "activation_state_dict has no positive k", fix))?;
            if post != "ReLU" {
                return Err(bad(
                    path,
                    format!("the TopK activation's postact_fn is {post}; repscope reads TopK followed by ReLU"),
                    "use an SAE whose TopK keeps the ReLU (OpenAI's released SAEs do)",
                ));
            }
            (Architecture::TopK, k, InputNorm::LayerNorm)
        }
        "ReLU" => (Architecture::Relu, 0, InputNorm::None),
        other => {
            return Err(bad(
                path,
                format!("activation '{other}' is not one repscope evaluates"),
                "use an SAE whose activation is TopK or ReLU",
            ))
        }
    };
    Ok(Sae {
        d,
        n,
        arch,
        k,
        w_enc_t,
        b_enc,
        w_dec,
        b_dec,
        threshold: None,
        apply_b_dec_to_input: true,
        input_norm,
    })
}
