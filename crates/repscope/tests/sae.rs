//! Sparse autoencoders against ground truth (a planted dictionary), float64 brute force, SAELens' own files
//! and numbers (tests/fixtures/sae, written by scripts/make_sae_fixtures.py), and bad input.
use std::path::{Path, PathBuf};

use repscope::progress::Silent;
use repscope::sae::eval::{evaluate, EvalConfig};
use repscope::sae::synthetic::{cosines, mcc, mmcs, planted};
use repscope::sae::train::{train, BDecInit, TrainConfig};
use repscope::sae::{io, Architecture, InputNorm, Sae};
use repscope::{Error, Matrix};

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sae"
    ))
}

fn npy(path: &Path) -> Matrix {
    repscope::data::load_matrix(path, None).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repscope-sae-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn values(m: &Matrix) -> Vec<f32> {
    (0..m.rows()).flat_map(|i| m.row(i).to_vec()).collect()
}

/// SAELens' definition in f64: pre = (x − b_dec) W_enc + b_enc; TopK then ReLU, or JumpReLU.
fn brute_codes(sae: &Sae, x: &[f32]) -> Vec<f64> {
    let (d, n) = (sae.d, sae.n);
    let rows = x.len() / d;
    let mut out = vec![0.0f64; rows * n];
    for r in 0..rows {
        // Layer norm (ddof 1, ε on σ) in f64 where the SAE asks for it.
        let row: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
        let row = if sae.input_norm == InputNorm::LayerNorm {
            let mu = row.iter().sum::<f64>() / d as f64;
            let sd = (row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (d - 1) as f64).sqrt();
            row.iter().map(|v| (v - mu) / (sd + 1e-5)).collect()
        } else {
            row
        };
        let pre: Vec<f64> = (0..n)
            .map(|i| {
                sae.b_enc[i] as f64
                    + (0..d)
                        .map(|j| {
                            let c = row[j]
                                - if sae.apply_b_dec_to_input {
                                    sae.b_dec[j] as f64
                                } else {
                                    0.0
                                };
                            c * sae.w_enc_t[i * d + j] as f64
                        })
                        .sum::<f64>()
            })
            .collect();
        match sae.arch {
            Architecture::TopK => {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| pre[b].total_cmp(&pre[a]).then(a.cmp(&b)));
                for &i in &order[..sae.k] {
                    out[r * n + i] = pre[i].max(0.0);
                }
            }
            _ => {
                let th = sae.threshold.clone().unwrap_or(vec![0.0; n]);
                for i in 0..n {
                    if pre[i] > 0.0 && pre[i] > th[i] as f64 {
                        out[r * n + i] = pre[i];
                    }
                }
            }
        }
    }
    out
}

#[test]
fn saelens_folders_load_and_encode_as_saelens_does() {
    let x = npy(&fixtures().join("x.npy"));
    let xv = values(&x);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    for name in [
        "saelens_topk",
        "saelens_jumprelu",
        "saelens_topk_rescaled",
        "saelens_topk_layernorm",
        "openai_topk",
    ] {
        let path = if name.starts_with("openai") {
            fixtures().join(format!("{name}.pt"))
        } else {
            fixtures().join(name)
        };
        let sae = io::load(&path).unwrap();
        assert_eq!(
            sae.input_norm == InputNorm::LayerNorm,
            name.contains("layernorm") || name.starts_with("openai"),
            "{name}"
        );
        assert_eq!((sae.d, sae.n), (16, 48));
        let codes = sae.encode(&xv, x.rows()).to_dense(sae.n);
        let want = values(&npy(&fixtures().join(format!("{name}_codes.npy"))));
        let brute = brute_codes(&sae, &xv);
        for i in 0..codes.len() {
            let tol = 1e-5 * (1.0 + want[i].abs());
            assert!(
                (codes[i] - want[i]).abs() <= tol,
                "{name} code {i}: {} vs SAELens {}",
                codes[i],
                want[i]
            );
            assert!((codes[i] as f64 - brute[i]).abs() <= 1e-5 * (1.0 + brute[i].abs()));
        }
        // Every selected latent is the same: no code is non-zero in one and zero in the other.
        assert!(
            codes
                .iter()
                .zip(&want)
                .all(|(a, b)| (*a > 0.0) == (*b > 0.0)),
            "{name}"
        );
        let mut recon = vec![0.0f32; xv.len()];
        sae.decode(&sae.encode(&xv, x.rows()), &mut recon);
        let want_r = values(&npy(&fixtures().join(format!("{name}_recon.npy"))));
        for (a, b) in recon.iter().zip(&want_r) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{name} recon {a} vs {b}"
            );
        }
        let r = evaluate(&sae, &x, &EvalConfig::default(), &Silent).unwrap();
        let (mse, l0) = (
            expected[name]["mse"].as_f64().unwrap(),
            expected[name]["l0"].as_f64().unwrap(),
        );
        assert!(
            (r.mse - mse).abs() <= 1e-5 * mse,
            "{name} MSE {} vs SAELens {mse}",
            r.mse
        );
        assert!(
            (r.l0 - l0).abs() <= 1e-9,
            "{name} L0 {} vs SAELens {l0}",
            r.l0
        );
    }
}

#[test]
fn an_openai_sae_saves_in_saelens_layout_and_reads_from_a_folder() {
    let x = npy(&fixtures().join("x.npy"));
    let xv = values(&x);
    let sae = io::load(&fixtures().join("openai_topk.pt")).unwrap();
    assert_eq!((sae.arch, sae.k), (Architecture::TopK, 4));
    // A folder holding the one .pt file reads the same.
    let dir = scratch("openai-folder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixtures().join("openai_topk.pt"), dir.join("12.pt")).unwrap();
    let again = io::load(&dir).unwrap();
    assert_eq!(again.w_dec, sae.w_dec);
    // Saved in SAELens' layout it keeps the layer norm (normalize_activations = layer_norm).
    let out = scratch("openai-saved");
    io::save(&sae, &out, serde_json::Value::Null, &[], false).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["normalize_activations"], "layer_norm");
    let back = io::load(&out).unwrap();
    let (a, b) = (sae.encode(&xv, x.rows()), back.encode(&xv, x.rows()));
    assert_eq!(
        (a.idx.clone(), a.val.clone()),
        (b.idx.clone(), b.val.clone())
    );
    let (mut ra, mut rb) = (vec![0.0f32; xv.len()], vec![0.0f32; xv.len()]);
    sae.decode(&a, &mut ra);
    back.decode(&b, &mut rb);
    assert_eq!(ra, rb);
    // Codes decoded with the rows' norms recomputed give the same reconstruction.
    let mut c = a.clone();
    c.norm = sae.row_norms(&xv);
    let mut rc = vec![0.0f32; xv.len()];
    sae.decode(&c, &mut rc);
    assert_eq!(ra, rc);
    // A TopK without its ReLU is refused by name.
    let e = io::load(&fixtures().join("openai_topk_identity.pt")).unwrap_err();
    assert!(e.to_string().contains("postact_fn is Identity"), "{e}");
    // A file that is not a torch.save zip is named as such.
    std::fs::write(dir.join("12.pt"), b"not a zip").unwrap();
    let e = io::load(&dir.join("12.pt")).unwrap_err();
    assert!(
        e.to_string()
            .contains("is not a readable PyTorch state dict"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_saved_sae_has_saelens_layout_and_loads_back_exactly() {
    let sae = io::load(&fixtures().join("saelens_jumprelu")).unwrap();
    let dir = scratch("save");
    io::save(&sae, &dir, serde_json::json!({"note": "test"}), &[], false).unwrap();
    let back = io::load(&dir).unwrap();
    assert_eq!(back.w_enc_t, sae.w_enc_t);
    assert_eq!(back.w_dec, sae.w_dec);
    assert_eq!(back.b_enc, sae.b_enc);
    assert_eq!(back.b_dec, sae.b_dec);
    assert_eq!(back.threshold, sae.threshold);
    // The same config keys and values as the folder SAELens wrote (metadata is free-form).
    for name in ["saelens_jumprelu", "saelens_topk"] {
        let theirs = io::load(&fixtures().join(name)).unwrap();
        let d2 = scratch(&format!("layout-{name}"));
        io::save(&theirs, &d2, serde_json::json!({}), &[], false).unwrap();
        let read = |p: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(p.join("cfg.json")).unwrap()).unwrap()
        };
        let (a, b) = (read(&fixtures().join(name)), read(&d2));
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&a), keys(&b), "{name}");
        for k in keys(&a) {
            if k != "metadata" {
                assert_eq!(a[&k], b[&k], "{name}: {k}");
            }
        }
        let tensors = |p: &Path| {
            let bytes = std::fs::read(p.join("sae_weights.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut t: Vec<(String, Vec<usize>, String)> = st
                .tensors()
                .into_iter()
                .map(|(n, v)| (n, v.shape().to_vec(), format!("{:?}", v.dtype())))
                .collect();
            t.sort();
            t
        };
        assert_eq!(tensors(&fixtures().join(name)), tensors(&d2), "{name}");
    }
    // An existing folder is replaced only with force.
    match io::save(&sae, &dir, serde_json::json!({}), &[], false) {
        Err(Error::OutputExists { .. }) => {}
        other => panic!("{other:?}"),
    }
    io::save(&sae, &dir, serde_json::json!({}), &[], true).unwrap();
    assert!(std::fs::read_dir(dir.parent().unwrap()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".part-")));
}

fn small_cfg(width: usize, k: usize) -> TrainConfig {
    TrainConfig {
        width,
        k,
        batch: 512,
        seed: 3,
        ..TrainConfig::default()
    }
}

/// Trains on 32 orthonormal features in 64 dimensions, each firing with p = 0.08 (2.6 per row on average),
/// with `cfg` over width 64, k = 6; asserts MCC ≥ 0.99 and FVU < 0.05 on the training rows; returns the
/// data, the trained SAE and its FVU there.
fn recovers_the_orthogonal_dictionary(
    cfg: TrainConfig,
) -> (Matrix, repscope::sae::train::Trained, f64) {
    let (d, nf) = (64, 32);
    let p = planted(60_000, d, nf, 0.08, 0.0, 1);
    let m = Matrix::from_vec(p.rows, d, p.x.clone(), "planted").unwrap();
    let cfg = TrainConfig {
        tokens: Some(600_000),
        lr: Some(4e-3),
        ..cfg
    };
    let t = train(&m, &cfg, &Silent).unwrap();
    let cos = cosines(&p.features, &t.sae.w_dec, d);
    let (c, s) = (mcc(&cos, nf, 64), mmcs(&cos, nf, 64));
    eprintln!("orthogonal dictionary: MCC {c:.5}, MMCS {s:.5}");
    assert!(c >= 0.99, "MCC {c}, MMCS {s}");
    let r = evaluate(&t.sae, &m, &EvalConfig::default(), &Silent).unwrap();
    assert!(r.fvu < 0.05, "FVU {}", r.fvu);
    assert!(r.l0 <= 6.0);
    (m, t, r.fvu)
}

#[test]
fn an_orthogonal_dictionary_is_recovered() {
    recovers_the_orthogonal_dictionary(small_cfg(64, 6));
}

#[test]
fn a_rescaled_decoder_recovers_the_dictionary_and_exports_unit_rows() {
    // SAELens' parametrisation (free decoder rows started at norm 0.1, latents ranked by pre-activation ×
    // row norm): the same planted dictionary is recovered, and the exported SAE has unit rows with the
    // norms in the encoder, so it reconstructs as well as training did. The inputs are not scaled, so that
    // the exported rows are unit rows (an input scale s divides them by s).
    let (m, t, fvu) = recovers_the_orthogonal_dictionary(TrainConfig {
        rescaled_decoder: Some(0.1),
        normalize: false,
        ..small_cfg(64, 6)
    });
    for row in t.sae.w_dec.chunks(64) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    assert!(
        (fvu - t.summary.final_fvu).abs() < 0.02,
        "{fvu} {}",
        t.summary.final_fvu
    );
    // Only TopK trains with it, and its start norm must be positive.
    for bad in [
        TrainConfig {
            rescaled_decoder: Some(0.0),
            ..small_cfg(64, 6)
        },
        TrainConfig {
            rescaled_decoder: Some(0.1),
            arch: Architecture::BatchTopK,
            ..small_cfg(64, 6)
        },
    ] {
        assert!(train(&m, &bad, &Silent).is_err());
    }
}

#[test]
fn training_is_identical_for_any_thread_count() {
    let p = planted(6000, 24, 40, 0.05, 0.01, 2);
    let m = Matrix::from_vec(p.rows, 24, p.x, "x").unwrap();
    for arch in [Architecture::TopK, Architecture::BatchTopK] {
        let cfg = TrainConfig {
            arch,
            tokens: Some(12_000),
            dead_tokens: 1000,
            ..small_cfg(96, 4)
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| train(&m, &cfg, &Silent).unwrap().sae)
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.w_enc_t, b.w_enc_t, "{arch:?}");
        assert_eq!(a.w_dec, b.w_dec);
        assert_eq!(a.b_enc, b.b_enc);
        assert_eq!(a.b_dec, b.b_dec);
        assert_eq!(a.threshold, b.threshold);
    }
}

#[test]
fn topk_codes_are_the_k_largest_and_batchtopk_keeps_k_per_row_on_average() {
    let p = planted(4000, 20, 30, 0.1, 0.02, 5);
    let m = Matrix::from_vec(p.rows, 20, p.x.clone(), "x").unwrap();
    let t = train(
        &m,
        &TrainConfig {
            tokens: Some(8000),
            ..small_cfg(50, 5)
        },
        &Silent,
    )
    .unwrap();
    let codes = t.sae.encode(&p.x[..200 * 20], 200);
    let brute = brute_codes(&t.sae, &p.x[..200 * 20]);
    for r in 0..200 {
        assert!(codes.off[r + 1] - codes.off[r] <= 5);
        for (i, v) in codes.row(r) {
            assert!((v as f64 - brute[r * 50 + i]).abs() <= 1e-4 * (1.0 + v.abs() as f64));
        }
        let nz = (0..50).filter(|&i| brute[r * 50 + i] > 0.0).count();
        assert_eq!(nz, codes.off[r + 1] - codes.off[r]);
    }
    let b = train(
        &m,
        &TrainConfig {
            arch: Architecture::BatchTopK,
            tokens: Some(8000),
            ..small_cfg(50, 5)
        },
        &Silent,
    )
    .unwrap();
    // Every step kept exactly k·B latents.
    assert!(
        b.summary.log.iter().all(|s| (s.l0 - 5.0).abs() < 1e-12),
        "{:?}",
        b.summary.log
    );
    assert_eq!(b.sae.arch, Architecture::JumpRelu);
    let th = b.sae.threshold.as_ref().unwrap();
    assert!(th.iter().all(|&v| v > 0.0 && v == th[0]));
    assert_eq!(b.summary.threshold.unwrap() as f32, th[0]);
}

#[test]
fn the_input_scale_is_folded_into_the_weights() {
    // Inputs times 1024 (a power of two) train the same SAE in the scaled units, bit for bit.
    let p = planted(3000, 16, 20, 0.1, 0.01, 8);
    let big: Vec<f32> = p.x.iter().map(|v| v * 1024.0).collect();
    let m1 = Matrix::from_vec(p.rows, 16, p.x.clone(), "x").unwrap();
    let m2 = Matrix::from_vec(p.rows, 16, big.clone(), "y").unwrap();
    let cfg = TrainConfig {
        tokens: Some(6000),
        ..small_cfg(40, 4)
    };
    let a = train(&m1, &cfg, &Silent).unwrap().sae;
    let b = train(&m2, &cfg, &Silent).unwrap().sae;
    let ca = a.encode(&p.x, p.rows);
    let cb = b.encode(&big, p.rows);
    assert_eq!(ca.idx, cb.idx);
    assert_eq!(ca.val, cb.val);
    for (x, y) in a.w_dec.iter().zip(&b.w_dec) {
        assert_eq!(*x * 1024.0, *y);
    }
    // And the folded SAE reconstructs raw inputs: FVU on them is what training reached.
    let r = evaluate(&a, &m1, &EvalConfig::default(), &Silent).unwrap();
    assert!(r.fvu < 0.5, "FVU {}", r.fvu);
}

#[test]
fn fvu_anchors_and_block_size_independence() {
    let p = planted(1000, 8, 8, 0.3, 0.05, 9);
    let m = Matrix::from_vec(p.rows, 8, p.x.clone(), "x").unwrap();
    let d = 8;
    let mean: Vec<f32> = (0..d)
        .map(|j| ((0..p.rows).map(|r| p.x[r * d + j] as f64).sum::<f64>() / p.rows as f64) as f32)
        .collect();
    // Predicting the mean: W_dec = 0, b_dec = mean.
    let mean_sae = Sae {
        d,
        n: 4,
        arch: Architecture::Relu,
        k: 0,
        w_enc_t: vec![0.0; 4 * d],
        b_enc: vec![0.0; 4],
        w_dec: vec![0.0; 4 * d],
        b_dec: mean,
        threshold: None,
        apply_b_dec_to_input: false,
        input_norm: InputNorm::None,
    };
    let r = evaluate(&mean_sae, &m, &EvalConfig::default(), &Silent).unwrap();
    assert!((r.fvu - 1.0).abs() < 1e-6, "FVU {}", r.fvu);
    assert_eq!(r.dead_latents, 4);
    // ±e_j latents: a perfect reconstruction.
    let mut w = vec![0.0f32; 2 * d * d];
    for j in 0..d {
        w[j * d + j] = 1.0;
        w[(d + j) * d + j] = -1.0;
    }
    let perfect = Sae {
        d,
        n: 2 * d,
        arch: Architecture::Relu,
        k: 0,
        w_enc_t: w.clone(),
        b_enc: vec![0.0; 2 * d],
        w_dec: w,
        b_dec: vec![0.0; d],
        threshold: None,
        apply_b_dec_to_input: false,
        input_norm: InputNorm::None,
    };
    let a = evaluate(
        &perfect,
        &m,
        &EvalConfig {
            batch: 7,
            ..Default::default()
        },
        &Silent,
    )
    .unwrap();
    let b = evaluate(&perfect, &m, &EvalConfig::default(), &Silent).unwrap();
    assert!(
        a.fvu < 1e-12
            && (a.cosine - 1.0).abs() < 1e-9
            && (a.relative_reconstruction_bias - 1.0).abs() < 1e-9
    );
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let x = npy(&fixtures().join("x.npy"));
    for (width, k) in [(0, 1), (10, 0), (10, 11)] {
        let e = train(&x, &small_cfg(width, k), &Silent).err().unwrap();
        assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    }
    // NaN: the row is named.
    let mut v = values(&x);
    v[9 * 16 + 3] = f32::NAN;
    let bad = Matrix::from_vec(64, 16, v, "acts.npy").unwrap();
    let e = train(&bad, &small_cfg(32, 4), &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("acts.npy") && e.contains("row 9"), "{e}");
    let sae = io::load(&fixtures().join("saelens_topk")).unwrap();
    let e = evaluate(&sae, &bad, &EvalConfig::default(), &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("row 9"), "{e}");
    // d mismatch.
    let narrow = Matrix::from_vec(4, 8, vec![1.0; 32], "narrow.npy").unwrap();
    let e = evaluate(&sae, &narrow, &EvalConfig::default(), &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("d = 8") && e.contains("d_in = 16"), "{e}");
    // Broken folders.
    let src = fixtures().join("saelens_topk");
    let case = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let d = scratch(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["cfg.json", "sae_weights.safetensors"] {
            std::fs::copy(src.join(f), d.join(f)).unwrap();
        }
        edit(&d);
        io::load(&d)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = case("trunc-cfg", &|d| {
        std::fs::write(d.join("cfg.json"), "{\"d_in\": 16,").unwrap()
    });
    assert!(
        e.contains("cfg.json") && e.contains("not valid JSON"),
        "{e}"
    );
    let e = case("arch", &|d| {
        let c = std::fs::read_to_string(d.join("cfg.json"))
            .unwrap()
            .replace("\"topk\"", "\"gated\"");
        std::fs::write(d.join("cfg.json"), c).unwrap()
    });
    assert!(e.contains("architecture 'gated'"), "{e}");
    let e = case("no-k", &|d| {
        let c = std::fs::read_to_string(d.join("cfg.json"))
            .unwrap()
            .replace("\"k\": 4,", "");
        std::fs::write(d.join("cfg.json"), c).unwrap()
    });
    assert!(e.contains("'k'"), "{e}");
    let e = case("shape", &|d| {
        let c = std::fs::read_to_string(d.join("cfg.json"))
            .unwrap()
            .replace("\"d_sae\": 48", "\"d_sae\": 47");
        std::fs::write(d.join("cfg.json"), c).unwrap()
    });
    assert!(e.contains("shape") && e.contains("W_enc"), "{e}");
    let e = case("trunc-weights", &|d| {
        let b = std::fs::read(d.join("sae_weights.safetensors")).unwrap();
        std::fs::write(d.join("sae_weights.safetensors"), &b[..b.len() / 2]).unwrap()
    });
    assert!(e.contains("sae_weights.safetensors"), "{e}");
    let e = case("missing", &|d| {
        std::fs::remove_file(d.join("sae_weights.safetensors")).unwrap()
    });
    assert!(e.contains("neither"), "{e}");
    let _ = BDecInit::Mean;
}

#[test]
fn a_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    use repscope::sae::train::{Checkpoints, Outcome, Trainer};
    let p = planted(5000, 16, 24, 0.1, 0.01, 11);
    let m = Matrix::from_vec(p.rows, 16, p.x, "x").unwrap();
    for arch in [Architecture::TopK, Architecture::BatchTopK] {
        let cfg = TrainConfig {
            arch,
            tokens: Some(20 * 512),
            dead_tokens: 1024,
            shuffle_rows: Some(1500),
            ..small_cfg(40, 3)
        };
        let full = train(&m, &cfg, &Silent).unwrap();
        let ck = scratch(&format!("ck-{arch:?}"));
        let stop = Checkpoints {
            dir: Some(ck.clone()),
            every: Some(3),
            stop_after: Some(7),
        };
        match Trainer::new(&m, &cfg)
            .unwrap()
            .run_with(&Silent, &stop)
            .unwrap()
        {
            Outcome::Stopped { step, steps } => assert_eq!((step, steps), (7, 20)),
            Outcome::Done(_) => panic!("the run should have stopped"),
        }
        // Two more stops, then to the end.
        for at in [14, 20] {
            let t = Trainer::resume(&m, &cfg, &ck).unwrap();
            match t.run_with(&Silent, &stop).unwrap() {
                Outcome::Stopped { step, .. } => assert_eq!(step, at),
                Outcome::Done(done) => {
                    assert_eq!(at, 20);
                    assert_eq!(done.sae.w_enc_t, full.sae.w_enc_t, "{arch:?}");
                    assert_eq!(done.sae.w_dec, full.sae.w_dec);
                    assert_eq!(done.sae.b_enc, full.sae.b_enc);
                    assert_eq!(done.sae.b_dec, full.sae.b_dec);
                    assert_eq!(done.sae.threshold, full.sae.threshold);
                    assert_eq!(done.summary.final_fvu, full.summary.final_fvu);
                    assert_eq!(
                        serde_json::to_string(&done.summary.log).unwrap(),
                        serde_json::to_string(&full.summary.log).unwrap()
                    );
                }
            }
        }
        // Another seed is another run: its checkpoint is refused.
        let other = TrainConfig {
            seed: 99,
            ..cfg.clone()
        };
        let e = Trainer::resume(&m, &other, &ck).err().unwrap().to_string();
        assert!(e.contains("other settings"), "{e}");
    }
}
