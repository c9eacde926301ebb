//! `repscope embed` on decoder language models from the command line: the tiny fixture models of
//! tests/fixtures/decoders (written by transformers, see scripts/make_decoder_fixtures.py), the output
//! files, and every bad input of the decoder issue ending in one clear line and exit code 2.
#![cfg(feature = "model")]
mod common;

use std::path::{Path, PathBuf};

use common::{json, repscope, scratch, Run};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/decoders")
        .join(name)
}

/// A copy of a fixture folder made of links to its files, so that one file can be replaced.
fn copy(root: &Path, from: &str, name: &str) -> PathBuf {
    let dst = root.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(from)).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

/// Replaces `from` by `to` in the copy's config.json (which must contain it).
fn edit_config(dir: &Path, from: &str, to: &str) {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{from} not in config.json");
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, text.replace(from, to)).unwrap();
}

fn texts(root: &Path, lines: &[&str]) -> PathBuf {
    let p = root.join("texts.txt");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn embed(model: &Path, input: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    repscope(&args)
}

/// Exit code 2, one error line naming everything in `names`, nothing on stdout.
fn assert_bad(r: &Run, names: &[&str]) {
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("repscope: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    for n in names {
        assert!(r.stderr.contains(n), "expected {n:?} in: {}", r.stderr);
    }
}

#[test]
fn embed_writes_decoder_states_with_token_ids_and_bos_flags() {
    let dir = scratch("dec-embed");
    let input = texts(
        &dir,
        &[
            "Hello world!",
            "The quick brown fox jumps over the lazy dog.",
        ],
    );
    let out = dir.join("o.npz");
    let r = embed(
        &fixture("llama"),
        &input,
        &[
            "--tokens",
            "3",
            "--mlp",
            "1",
            "--layers",
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--quiet",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let m = &v["model"];
    assert_eq!(m["kind"], "decoder");
    assert_eq!(m["model_type"], "llama");
    assert_eq!(m["tokenizer"], "LlamaTokenizer");
    assert_eq!(m["pooling"][0], "lasttoken");
    assert_eq!(m["layers"], 3);
    let keys: Vec<&str> = v["output"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for k in [
        "embedding",
        "layer0",
        "layer3",
        "tokens",
        "mlp",
        "mlp_block",
        "token_ids",
        "token_offsets",
        "token_bos",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    // GPT-2 adds no BOS, so no flags are written.
    let r = embed(
        &fixture("gpt2"),
        &input,
        &[
            "--tokens",
            "1",
            "-o",
            out.to_str().unwrap(),
            "--force",
            "--json",
            "--quiet",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert!(!v["output"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "token_bos"));
    assert_eq!(v["model"]["tokenizer"], "GPT2Tokenizer");
}

#[test]
fn long_texts_stop_unless_truncated_and_bf16_weights_are_noted() {
    let dir = scratch("dec-long");
    let long = "word ".repeat(400);
    let input = texts(&dir, &["short", &long]);
    let r = embed(&fixture("gemma"), &input, &[]);
    assert_bad(
        &r,
        &["input text 2", "context of 128 positions", "--truncate"],
    );
    let r = embed(&fixture("gemma"), &input, &["--truncate", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["truncated"], 1);
    assert!(r.stderr.contains("stored as bf16"), "{}", r.stderr);
    assert_eq!(json(&r)["model"]["weights_dtype"], "bf16");
}

#[test]
fn an_unsupported_decoder_is_named_with_the_supported_list() {
    let dir = scratch("dec-arch");
    let m = copy(&dir, "gpt2", "phi");
    edit_config(&m, "\"model_type\": \"gpt2\"", "\"model_type\": \"phi3\"");
    edit_config(&m, "\"GPT2LMHeadModel\"", "\"Phi3ForCausalLM\"");
    let r = embed(&m, &texts(&dir, &["a"]), &[]);
    assert_bad(
        &r,
        &[
            "config.json",
            "unsupported architecture",
            "phi3",
            "Phi3ForCausalLM",
            "gpt_neox, llama",
        ],
    );
}

#[test]
fn missing_and_misshapen_tensors_are_named_with_both_shapes() {
    let dir = scratch("dec-tensors");
    // One layer more than the weights hold: its first tensor is missing.
    let m = copy(&dir, "gpt2", "deeper");
    edit_config(&m, "\"n_layer\": 3", "\"n_layer\": 4");
    let r = embed(&m, &texts(&dir, &["a"]), &[]);
    assert_bad(
        &r,
        &[
            "model.safetensors",
            "no tensor 'transformer.h.3.ln_1.weight'",
        ],
    );
    // A narrower MLP than the weights.
    let m = copy(&dir, "gpt2", "narrow");
    edit_config(&m, "\"n_inner\": null", "\"n_inner\": 100");
    let r = embed(&m, &texts(&dir, &["a"]), &[]);
    assert_bad(&r, &["h.0.mlp.c_fc.weight", "[32, 128]", "[32, 100]"]);
    // A shard listed in the index but not in the folder.
    let m = copy(&dir, "llama", "shardless");
    std::fs::remove_file(m.join("model-00003-of-00004.safetensors")).unwrap();
    let r = embed(&m, &texts(&dir, &["a"]), &[]);
    assert_bad(
        &r,
        &["model-00003-of-00004.safetensors", "shard", "missing"],
    );
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary_is_named() {
    let dir = scratch("dec-vocab");
    let m = copy(&dir, "qwen2", "small-vocab");
    edit_config(&m, "\"vocab_size\": 512", "\"vocab_size\": 100");
    let r = embed(&m, &texts(&dir, &["a"]), &[]);
    assert_bad(
        &r,
        &[
            "tokenizer.json",
            "tokens but the model's vocabulary holds 100",
        ],
    );
}

#[test]
fn decoder_options_out_of_range_are_named() {
    let dir = scratch("dec-opts");
    let input = texts(&dir, &["a b c"]);
    let r = embed(&fixture("gpt_neox"), &input, &["--mlp", "3"]);
    assert_bad(&r, &["--mlp 3", "blocks 0 to 2"]);
    let r = embed(&fixture("gpt_neox"), &input, &["--pool", "median"]);
    assert_bad(&r, &["--pool median", "mean, last"]);
    let r = embed(&fixture("gpt_neox"), &input, &["--device", "cuda"]);
    assert_bad(&r, &["cuda", "runs on the CPU", "--device cpu"]);
    let empty = texts(&dir, &["", "b"]);
    let r = embed(&fixture("gpt2"), &empty, &[]);
    assert_bad(&r, &["input text 1", "no tokens"]);
}

#[test]
fn packed_windows_are_written_as_shards_that_read_back_as_one_matrix() {
    let dir = scratch("dec-shards");
    let lines: Vec<String> = (0..30)
        .map(|i| format!("Sentence number {i} says something about foxes and dogs."))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = texts(&dir, &refs);
    let out = dir.join("cache");
    let r = embed(
        &fixture("llama"),
        &input,
        &[
            "--context",
            "16",
            "--tokens",
            "2",
            "--mlp",
            "0",
            "--shard-tokens",
            "100",
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--quiet",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let tokens = v["packed"]["tokens"].as_u64().unwrap();
    let windows = v["packed"]["windows"].as_u64().unwrap();
    assert_eq!(windows, tokens.div_ceil(16));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    let shards = index["shards"].as_array().unwrap();
    assert!(shards.len() >= 3, "{index}");
    assert_eq!(index["rows"], windows);
    assert_eq!(index["tokens"], tokens);
    // No temporary folder is left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
    // Every command reads the folder as one matrix of all tokens.
    for key in ["tokens", "mlp"] {
        let r = repscope(&[
            "activations",
            out.to_str().unwrap(),
            "--key",
            key,
            "--json",
            "--quiet",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let a = json(&r);
        assert_eq!(a["input"]["rows"], tokens, "{key}");
        assert_eq!(a["input"]["shards"], shards.len(), "{key}");
    }
    // The same run in one file gives the same token states.
    let one = dir.join("one.safetensors");
    let r = embed(
        &fixture("llama"),
        &input,
        &[
            "--context",
            "16",
            "--tokens",
            "2",
            "-o",
            one.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let whole = std::fs::read(&one).unwrap();
    let whole = safetensors::SafeTensors::deserialize(&whole).unwrap();
    let mut joined = Vec::new();
    for s in shards {
        let bytes = std::fs::read(out.join(s["file"].as_str().unwrap())).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        joined.extend_from_slice(st.tensor("tokens").unwrap().data());
    }
    assert_eq!(joined, whole.tensor("tokens").unwrap().data());
}

#[test]
fn a_failed_sharded_run_leaves_no_folder() {
    let dir = scratch("dec-shards-fail");
    let long = "word ".repeat(400);
    let mut lines = vec!["short text"; 40];
    lines.push(&long);
    let input = texts(&dir, &lines);
    let out = dir.join("cache");
    let r = embed(
        &fixture("gpt2"),
        &input,
        &[
            "--tokens",
            "1",
            "--shard-tokens",
            "20",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_bad(&r, &["input text 41", "--truncate"]);
    assert!(!out.exists());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["texts.txt".to_string()], "{names:?}");
    let r = embed(&fixture("gpt2"), &input, &["--shard-tokens", "20"]);
    assert_bad(&r, &["--shard-tokens", "-o FOLDER"]);
    let nested = dir.join("missing").join("cache");
    let r = embed(
        &fixture("gpt2"),
        &input,
        &["--shard-tokens", "20", "-o", nested.to_str().unwrap()],
    );
    assert_bad(&r, &["does not exist"]);
    assert!(!dir.join("missing").exists());
    let r = embed(&fixture("gpt2"), &input, &["--context", "500"]);
    assert_bad(&r, &["--context", "128"]);
}

#[test]
fn analyze_model_and_report_take_a_decoder_folder() {
    let dir = scratch("dec-analyze");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Line {i}: a fox number {} runs past dog {}.",
                i * 7 % 13,
                i % 5
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = texts(&dir, &refs);
    let r = repscope(&[
        "analyze-model",
        "--model",
        fixture("qwen2").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let m = &v["embedding"]["model"];
    assert_eq!(
        (m["model_type"].as_str(), m["layer_pooling"].as_str()),
        (Some("qwen2"), Some("mean"))
    );
    // Layer 0 to 3 of the model, each studied.
    assert_eq!(v["layers"].as_array().map(Vec::len), Some(4), "{v}");
    let out = dir.join("report");
    let r = repscope(&[
        "report",
        input.to_str().unwrap(),
        "--model",
        fixture("gpt_neox").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    // One input per layer (0 to 3) and the embedding.
    assert_eq!(doc["inputs"].as_array().unwrap().len(), 5);
}

#[test]
fn a_sharded_output_never_replaces_a_folder_holding_its_inputs() {
    let dir = scratch("dec-shards-inputs");
    let out = dir.join("cache");
    std::fs::create_dir_all(&out).unwrap();
    let input = texts(&out, &["short text", "another"]);
    let r = embed(
        &fixture("gpt2"),
        &input,
        &[
            "--shard-tokens",
            "20",
            "-o",
            out.to_str().unwrap(),
            "--force",
        ],
    );
    assert_bad(&r, &["holds the texts", "Choose another folder"]);
    assert!(input.is_file(), "the input was deleted");
    // Nor the model folder.
    let model = copy(&out, "gpt2", "model");
    let elsewhere = texts(&dir, &["short text"]);
    let r = embed(
        &model,
        &elsewhere,
        &[
            "--shard-tokens",
            "20",
            "-o",
            out.to_str().unwrap(),
            "--force",
        ],
    );
    assert_bad(&r, &["holds the model"]);
    assert!(model.join("config.json").exists());
}

#[test]
fn force_replaces_an_earlier_shard_output_and_nothing_else() {
    let dir = scratch("dec-shards-force");
    let input = texts(&dir, &["short text", "another short text", "and a third"]);
    let out = dir.join("cache");
    let run = |extra: &[&str]| {
        let mut args = vec!["--tokens", "1", "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        embed(&fixture("gpt2"), &input, &args)
    };
    let r = run(&["--shard-tokens", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let count = || {
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("shard_")
            })
            .count()
    };
    assert_eq!(count(), 3);
    // Without --force the earlier output stays; with it, it is replaced (no stale shards left).
    let r = run(&["--shard-tokens", "1000"]);
    assert_bad(&r, &["cache"]);
    let r = run(&["--shard-tokens", "1000", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(count(), 1);
    // A folder holding anything else is never replaced.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let r = run(&["--shard-tokens", "1000", "--force"]);
    assert_bad(&r, &["not an earlier shard output"]);
    assert!(out.join("notes.txt").is_file());
}
