//! Helpers shared by the CLI integration tests: a scratch folder, running the binary, writing inputs.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh scratch folder for one test, under the build folder's scratch space (never the system /tmp).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repscope-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Output of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn repscope(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_repscope"))
        .args(args)
        .output()
        .expect("run repscope");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `.npy` bytes with an arbitrary descr, order and shape around raw data.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let fo = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fo}, 'shape': {shape_s}, }}");
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Deterministic data: n points on a noisy 3-dimensional linear subspace of R^d.
pub fn subspace_data(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let basis: Vec<f64> = (0..3 * d).map(|_| next()).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let z = [next(), next(), next()];
        for j in 0..d {
            out.push(
                (z[0] * basis[j] + z[1] * basis[d + j] + z[2] * basis[2 * d + j] + 1e-3 * next())
                    as f32,
            );
        }
    }
    out
}

pub fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) {
    std::fs::write(
        path,
        npy_bytes("<f4", false, &[rows, cols], &f32_bytes(data)),
    )
    .unwrap();
}

/// A zip (.npz) with the given members, stored or deflated.
pub fn write_npz(path: &Path, members: &[(&str, Vec<u8>)], compressed: bool) {
    use std::io::Write;
    let f = std::fs::File::create(path).unwrap();
    let mut w = zip::ZipWriter::new(f);
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        w.start_file(format!("{name}.npy"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
}

/// Parses stdout as one JSON object.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", run.stdout))
}
