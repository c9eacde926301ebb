//! Bad input: every case is a clear one-line error naming the file and the fix, exit code 2, never a panic.
mod common;
use common::*;

fn expect_error(args: &[&str], needles: &[&str]) {
    let r = repscope(args);
    assert_eq!(
        r.code, 2,
        "args {args:?}: exit {} stderr {}",
        r.code, r.stderr
    );
    assert!(
        !r.stderr.contains("panicked"),
        "panic for {args:?}: {}",
        r.stderr
    );
    assert!(
        r.stdout.is_empty(),
        "stdout should be empty on error: {}",
        r.stdout
    );
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "args {args:?}: stderr lacks {n:?}:\n{}",
            r.stderr
        );
    }
}

#[test]
fn missing_file_and_unknown_extension() {
    let d = scratch("missing");
    let p = d.join("nope.npy");
    expect_error(&["id", p.to_str().unwrap()], &["nope.npy", "exists"]);
    let csv = d.join("x.csv");
    std::fs::write(&csv, "1,2\n3,4\n").unwrap();
    expect_error(
        &["id", csv.to_str().unwrap()],
        &[
            "x.csv",
            "unknown extension '.csv'",
            ".npy, .npz or .safetensors",
        ],
    );
}

#[test]
fn truncated_and_corrupt_files() {
    let d = scratch("corrupt");
    // Header promises 100 × 4 floats, only 10 bytes follow.
    let mut b = npy_bytes("<f4", false, &[100, 4], &[0u8; 10]);
    let p = d.join("trunc.npy");
    std::fs::write(&p, &b).unwrap();
    expect_error(&["id", p.to_str().unwrap()], &["trunc.npy", "truncated"]);
    // Header cut in the middle.
    b.truncate(20);
    let p = d.join("header.npy");
    std::fs::write(&p, &b).unwrap();
    expect_error(
        &["id", p.to_str().unwrap()],
        &["header.npy", "write it again"],
    );
    // Not an npy at all.
    let p = d.join("garbage.npy");
    std::fs::write(&p, b"hello world, definitely not numpy").unwrap();
    expect_error(&["id", p.to_str().unwrap()], &["garbage.npy", "magic"]);
    // Corrupt zip.
    let p = d.join("bad.npz");
    std::fs::write(&p, b"PK\x03\x04 this is not a complete archive").unwrap();
    expect_error(&["id", p.to_str().unwrap()], &["bad.npz", "npz"]);
    // Truncated npz: a valid archive cut short.
    let good = d.join("good.npz");
    let data = subspace_data(50, 4, 1);
    write_npz(
        &good,
        &[("x", npy_bytes("<f4", false, &[50, 4], &f32_bytes(&data)))],
        false,
    );
    let bytes = std::fs::read(&good).unwrap();
    let p = d.join("cut.npz");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(&["id", p.to_str().unwrap()], &["cut.npz"]);
    // Corrupt safetensors: a header length far beyond the file.
    let p = d.join("bad.safetensors");
    let mut st = (1u64 << 40).to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    std::fs::write(&p, st).unwrap();
    expect_error(
        &["id", p.to_str().unwrap()],
        &["bad.safetensors", "safetensors"],
    );
    // Truncated safetensors: a valid file cut short.
    let raw = f32_bytes(&data);
    let t = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![50, 4], &raw[..])
        .unwrap();
    let full = safetensors::serialize([("x", t)], None).unwrap();
    let p = d.join("cut.safetensors");
    std::fs::write(&p, &full[..full.len() - 17]).unwrap();
    expect_error(&["id", p.to_str().unwrap()], &["cut.safetensors"]);
}

#[test]
fn wrong_dtypes_and_shapes() {
    let d = scratch("dtype");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "int.npy",
            npy_bytes("<i4", false, &[10, 3], &[0u8; 120]),
            "integer",
        ),
        (
            "complex.npy",
            npy_bytes("<c8", false, &[10, 3], &[0u8; 240]),
            "complex",
        ),
        (
            "object.npy",
            npy_bytes("|O", false, &[10, 3], &[0u8; 240]),
            "object",
        ),
        (
            "strings.npy",
            npy_bytes("<U4", false, &[10, 3], &[0u8; 480]),
            "not numeric",
        ),
        (
            "one_d.npy",
            npy_bytes("<f4", false, &[30], &[0u8; 120]),
            "1-D",
        ),
        (
            "three_d.npy",
            npy_bytes("<f4", false, &[2, 5, 3], &[0u8; 120]),
            "3-D",
        ),
        ("empty.npy", npy_bytes("<f4", false, &[0, 3], &[]), "empty"),
    ];
    for (name, bytes, needle) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        expect_error(&["id", p.to_str().unwrap()], &[name, needle]);
    }
}

#[test]
fn non_finite_values_name_row_and_column() {
    let d = scratch("nan");
    for (name, bad) in [
        ("nan.npy", f32::NAN),
        ("inf.npy", f32::INFINITY),
        ("ninf.npy", f32::NEG_INFINITY),
    ] {
        let mut v = subspace_data(40, 4, 2);
        v[5 * 4 + 2] = bad;
        let p = d.join(name);
        write_npy_f32(&p, 40, 4, &v);
        expect_error(&["id", p.to_str().unwrap()], &[name, "row 5, column 2"]);
        expect_error(
            &[
                "knn",
                p.to_str().unwrap(),
                "-o",
                d.join("o.npz").to_str().unwrap(),
            ],
            &["row 5, column 2"],
        );
    }
}

#[test]
fn too_few_distinct_rows_for_k_and_identical_rows() {
    let d = scratch("few");
    // 12 rows but only 6 distinct.
    let base = subspace_data(6, 3, 3);
    let mut v = base.clone();
    v.extend_from_slice(&base);
    let p = d.join("few.npy");
    write_npy_f32(&p, 12, 3, &v);
    let out = d.join("k.npz");
    expect_error(
        &[
            "knn",
            p.to_str().unwrap(),
            "-k",
            "6",
            "-o",
            out.to_str().unwrap(),
        ],
        &["few.npy", "6 distinct rows", "k ≤ 5"],
    );
    expect_error(&["id", p.to_str().unwrap()], &["few.npy", "distinct rows"]);
    expect_error(
        &[
            "lid",
            p.to_str().unwrap(),
            "-o",
            d.join("l.npy").to_str().unwrap(),
        ],
        &["distinct rows"],
    );
    let same = d.join("same.npy");
    write_npy_f32(&same, 10, 3, &[1.5f32; 30]);
    expect_error(&["id", same.to_str().unwrap()], &["same.npy", "identical"]);
}

#[test]
fn bad_parameters_and_outputs() {
    let d = scratch("params");
    let p = d.join("x.npy");
    write_npy_f32(&p, 200, 5, &subspace_data(200, 5, 4));
    let x = p.to_str().unwrap();
    expect_error(
        &["id", x, "--estimator", "hessian_eigenmaps"],
        &["unknown estimator 'hessian_eigenmaps'", "twonn"],
    );
    expect_error(&["id", x, "--metric", "manhattan"], &["unknown metric"]);
    expect_error(&["id", x, "--key", "a"], &["--key", ".npy"]);
    expect_error(
        &["lid", x, "-o", "/nonexistent-dir/lid.npy"],
        &["does not exist"],
    );
    expect_error(&["lid", x, "-o", "/proc/lid.npy"], &["cannot write"]);
    expect_error(
        &["knn", x, "-o", d.join("out.txt").to_str().unwrap()],
        &[".npz"],
    );
    expect_error(
        &["knn", x, "-k", "0", "-o", d.join("o.npz").to_str().unwrap()],
        &["k"],
    );
    // Nothing is left behind by a refused run.
    assert!(!d.join("o.npz").exists());
}

#[test]
fn npz_keys_must_be_chosen() {
    let d = scratch("keys");
    let a = npy_bytes("<f4", false, &[50, 4], &f32_bytes(&subspace_data(50, 4, 5)));
    let b = npy_bytes("<f4", false, &[50, 4], &f32_bytes(&subspace_data(50, 4, 6)));
    let p = d.join("two.npz");
    write_npz(&p, &[("alpha", a), ("beta", b)], false);
    expect_error(
        &["id", p.to_str().unwrap()],
        &["two.npz", "2 arrays", "--key", "alpha, beta"],
    );
    expect_error(
        &["id", p.to_str().unwrap(), "--key", "gamma"],
        &["no array named 'gamma'", "alpha, beta"],
    );
}

#[test]
fn cosine_on_a_zero_row() {
    let d = scratch("zero");
    let mut v = subspace_data(30, 3, 7);
    v[9..12].copy_from_slice(&[0.0, 0.0, 0.0]);
    let p = d.join("z.npy");
    write_npy_f32(&p, 30, 3, &v);
    expect_error(
        &[
            "knn",
            p.to_str().unwrap(),
            "--metric",
            "cosine",
            "-o",
            d.join("o.npz").to_str().unwrap(),
        ],
        &["row 3", "zeros"],
    );
}

/// An output that resolves to an input (by name, by another spelling, or through a link) is refused, and
/// the input is left exactly as it was.
#[test]
fn an_output_that_is_an_input_is_refused() {
    let d = scratch("same-file");
    let (n, dim) = (200, 5);
    let x = d.join("x.npy");
    write_npy_f32(&x, n, dim, &subspace_data(n, dim, 3));
    let before = std::fs::read(&x).unwrap();
    let xs = x.to_str().unwrap();
    let dotted = format!("{}/./x.npy", d.display());
    let link = d.join("link.npy");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&x, &link).unwrap();
    for out in [xs, dotted.as_str(), link.to_str().unwrap()] {
        expect_error(
            &["lid", xs, "-o", out],
            &["is the input file", "another output path"],
        );
    }
    // knn writes .npz: an .npz input written over by its own graph.
    let zin = d.join("in.npz");
    let r = repscope(&["knn", xs, "-k", "3", "-o", zin.to_str().unwrap(), "--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let zbefore = std::fs::read(&zin).unwrap();
    expect_error(
        &[
            "knn",
            zin.to_str().unwrap(),
            "--key",
            "distances",
            "-o",
            zin.to_str().unwrap(),
        ],
        &["is the input file"],
    );
    assert_eq!(std::fs::read(&zin).unwrap(), zbefore);
    expect_error(&["index", "build", xs, "-o", xs], &["is the input file"]);
    let idx = d.join("x.hnsw");
    let r = repscope(&["index", "build", xs, "-o", idx.to_str().unwrap(), "--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect_error(
        &[
            "index",
            "query",
            idx.to_str().unwrap(),
            "--queries",
            zin.to_str().unwrap(),
            "--queries-key",
            "distances",
            "-o",
            zin.to_str().unwrap(),
        ],
        &["is the input file"],
    );
    assert_eq!(std::fs::read(&x).unwrap(), before, "the input is unchanged");
    assert_eq!(std::fs::read(&zin).unwrap(), zbefore);
}

/// Writing to a closed pipe ends the process quietly (no panic, no backtrace), as Unix tools do.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    let d = scratch("pipe");
    let (n, dim) = (400, 64);
    let x = d.join("wide.npy");
    write_npy_f32(&x, n, dim, &subspace_data(n, dim, 5));
    let mut child = Command::new(env!("CARGO_BIN_EXE_repscope"))
        .args(["spectrum", x.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the output is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.code() != Some(101), "{:?} {err}", out.status);
}

/// An absurd thread count is capped with a note instead of stalling the pool.
#[test]
fn thread_count_is_capped() {
    let d = scratch("threads");
    let x = d.join("x.npy");
    write_npy_f32(&x, 300, 4, &subspace_data(300, 4, 2));
    let t0 = std::time::Instant::now();
    let r = repscope(&["spectrum", x.to_str().unwrap(), "--threads", "5000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("capped at"), "{}", r.stderr);
    assert!(t0.elapsed().as_secs() < 60);
}

/// A finite f64 value beyond the f32 range is named as such (not as "non-finite inf"), with its row.
#[test]
fn f64_beyond_f32_range_is_named() {
    let d = scratch("f64-big");
    let mut v: Vec<f64> = (0..60).map(|i| (i as f64 * 0.37).sin()).collect();
    v[7 * 3 + 1] = 1e200;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let p = d.join("big.npy");
    std::fs::write(&p, npy_bytes("<f8", false, &[20, 3], &bytes)).unwrap();
    expect_error(
        &["id", p.to_str().unwrap()],
        &["overflows f32", "row 7, column 1", "Rescale"],
    );
}
