//! The three parsers: zero-copy where promised, and property-based fuzzing on random and mutated bytes.
//! Run longer with `PROPTEST_CASES=20000 cargo test --release -p repscope --test parsers`.
use std::path::PathBuf;

use proptest::prelude::*;
use repscope::data::{load_matrix, npy, npz};

fn scratch(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repscope-parsers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample() -> (Vec<f32>, usize, usize) {
    let v: Vec<f32> = (0..60).map(|i| (i as f32 * 0.37).sin()).collect();
    (v, 12, 5)
}

fn valid_npy() -> Vec<u8> {
    let (v, r, c) = sample();
    npy::encode(&[r, c], &v)
}

fn valid_npz(dir: &std::path::Path) -> Vec<u8> {
    let (v, r, c) = sample();
    let p = dir.join("valid.npz");
    npz::write(
        &p,
        &[
            ("x", npz::NpzArray::F32(&[r, c], &v)),
            ("y", npz::NpzArray::F32(&[r, c], &v)),
        ],
    )
    .unwrap();
    std::fs::read(&p).unwrap()
}

fn valid_safetensors() -> Vec<u8> {
    let (v, r, c) = sample();
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let t = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![r, c], &raw[..])
        .unwrap();
    safetensors::serialize([("x", t)], None).unwrap()
}

#[test]
fn f32_inputs_are_memory_mapped_and_others_converted() {
    let d = scratch("mapped");
    let (v, r, c) = sample();
    let p = d.join("a.npy");
    npy::write(&p, &[r, c], &v).unwrap();
    let m = load_matrix(&p, None).unwrap();
    assert!(m.is_mapped());
    assert_eq!(m.as_slice(), &v[..]);
    let p = d.join("b.npz");
    std::fs::write(&p, valid_npz(&d)).unwrap();
    let m = load_matrix(&p, Some("y")).unwrap();
    assert!(m.is_mapped(), "a stored npz member is mapped in place");
    assert_eq!(m.as_slice(), &v[..]);
    let p = d.join("c.safetensors");
    std::fs::write(&p, valid_safetensors()).unwrap();
    let m = load_matrix(&p, None).unwrap();
    assert_eq!(m.as_slice(), &v[..]);
    let v64: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let p = d.join("d.npy");
    npy::write(&p, &[r, c], &v64).unwrap();
    let m = load_matrix(&p, None).unwrap();
    assert!(!m.is_mapped());
    assert_eq!(m.as_slice(), &v[..]);
}

fn load_bytes(dir: &std::path::Path, ext: &str, bytes: &[u8], key: Option<&str>) {
    let p = dir.join(format!("fuzz.{ext}"));
    std::fs::write(&p, bytes).unwrap();
    // Any outcome but a panic is acceptable; errors must name the file.
    if let Err(e) = load_matrix(&p, key) {
        let msg = e.to_string();
        assert!(msg.contains("fuzz"), "error does not name the file: {msg}");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), ext in 0usize..3) {
        let d = scratch("random");
        let ext = ["npy", "npz", "safetensors"][ext];
        load_bytes(&d, ext, &bytes, None);
    }

    #[test]
    fn mutated_npy_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let d = scratch("npy");
        let mut b = valid_npy();
        let i = pos.index(b.len());
        b[i] = byte;
        b.truncate(cut.index(b.len() + 1).max(1));
        load_bytes(&d, "npy", &b, None);
    }

    #[test]
    fn mutated_npy_header_text_never_panics(text in "[ -~]{0,120}") {
        let d = scratch("header");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(text.len() as u16).to_le_bytes());
        b.extend_from_slice(text.as_bytes());
        b.extend_from_slice(&[0u8; 64]);
        load_bytes(&d, "npy", &b, None);
    }

    #[test]
    fn mutated_npz_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let d = scratch("npz");
        let mut b = valid_npz(&d);
        let i = pos.index(b.len());
        b[i] = byte;
        b.truncate(cut.index(b.len() + 1).max(1));
        load_bytes(&d, "npz", &b, Some("x"));
    }

    #[test]
    fn mutated_safetensors_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let d = scratch("st");
        let mut b = valid_safetensors();
        let i = pos.index(b.len());
        b[i] = byte;
        b.truncate(cut.index(b.len() + 1).max(1));
        load_bytes(&d, "safetensors", &b, None);
    }
}
