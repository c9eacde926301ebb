//! Exactness of the decoder forward pass against transformers. The fixtures in tests/fixtures/decoders are
//! tiny models with seeded random weights of every supported family, written with transformers 5.23 by
//! scripts/make_decoder_fixtures.py together with transformers' token ids, every hidden state
//! (output_hidden_states) and the first block's MLP hidden state for a set of texts (accents, CJK, emoji,
//! leading and doubled spaces, a newline and a tab).
use std::path::{Path, PathBuf};

use repscope_model::{DeviceKind, EmbedOptions, Model, PoolingMode};

const FAMILIES: &[&str] = &[
    "gpt2",
    "gpt_neox",
    "gpt_neox_serial",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_multimodal",
];

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/decoders")
        .join(name)
}

struct Reference {
    texts: Vec<String>,
    ids: Vec<u32>,
    offsets: Vec<usize>,
    /// (L + 1) × tokens × hidden.
    hidden: Vec<f32>,
    hidden_shape: Vec<usize>,
    /// tokens × intermediate, block 0.
    mlp: Vec<f32>,
    mlp_width: usize,
}

fn f32s(v: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    assert_eq!(v.dtype(), safetensors::Dtype::F32);
    v.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i64s(v: &safetensors::tensor::TensorView<'_>) -> Vec<i64> {
    assert_eq!(v.dtype(), safetensors::Dtype::I64);
    v.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn reference(name: &str) -> Reference {
    let dir = folder(name);
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let hidden = st.tensor("hidden").unwrap();
    let mlp = st.tensor("mlp").unwrap();
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("texts.json")).unwrap()).unwrap();
    Reference {
        texts,
        ids: i64s(&st.tensor("ids").unwrap())
            .into_iter()
            .map(|x| x as u32)
            .collect(),
        offsets: i64s(&st.tensor("offsets").unwrap())
            .into_iter()
            .map(|x| x as usize)
            .collect(),
        hidden_shape: hidden.shape().to_vec(),
        hidden: f32s(&hidden),
        mlp_width: mlp.shape()[1],
        mlp: f32s(&mlp),
    }
}

fn load(name: &str) -> Model {
    Model::load(&folder(name), DeviceKind::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn tokenisation_matches_transformers_special_tokens_included() {
    for name in FAMILIES {
        let r = reference(name);
        let m = load(name);
        let toks = m.tokenize(&r.texts).unwrap();
        for (i, t) in toks.iter().enumerate() {
            assert_eq!(
                t.ids,
                &r.ids[r.offsets[i]..r.offsets[i + 1]],
                "{name}: text {i} {:?}",
                r.texts[i]
            );
        }
    }
}

#[test]
fn every_hidden_state_matches_transformers() {
    for name in FAMILIES {
        let r = reference(name);
        let m = load(name);
        let (layers, tokens, h) = (r.hidden_shape[0], r.hidden_shape[1], r.hidden_shape[2]);
        assert_eq!(layers, m.num_layers() + 1, "{name}");
        let mut worst = 0f32;
        for l in 0..layers {
            let opts = EmbedOptions {
                batch_size: 4,
                token_layer: Some(l),
                mlp_layer: (l == 0).then_some(0),
                ..Default::default()
            };
            let out = m.embed(&r.texts, &opts, &|_| {}).unwrap();
            let t = out.tokens.as_ref().unwrap();
            assert_eq!(t.ids, r.ids, "{name}");
            assert_eq!(t.states.len(), tokens * h);
            let want = &r.hidden[l * tokens * h..(l + 1) * tokens * h];
            for (j, (a, b)) in t.states.iter().zip(want).enumerate() {
                let d = (a - b).abs();
                worst = worst.max(d);
                assert!(
                    d <= 1e-4,
                    "{name}: layer {l}, token {}, dim {}: {a} vs {b}",
                    j / h,
                    j % h
                );
            }
            if l == 0 {
                let mlp = out.mlp.as_ref().unwrap();
                assert_eq!((mlp.layer, mlp.states.len()), (0, tokens * r.mlp_width));
                for (a, b) in mlp.states.iter().zip(&r.mlp) {
                    assert!((a - b).abs() <= 1e-4, "{name}: MLP {a} vs {b}");
                }
            }
        }
        eprintln!("{name}: worst |difference| over every layer {worst:.2e}");
    }
}

#[test]
fn pooled_rows_are_the_last_token_or_the_mean_and_batches_do_not_matter() {
    let r = reference("llama");
    let m = load("llama");
    let (tokens, h) = (r.hidden_shape[1], r.hidden_shape[2]);
    let nl = m.num_layers();
    let last = &r.hidden[nl * tokens * h..];
    let one = EmbedOptions {
        batch_size: 1,
        layers: true,
        token_layer: Some(nl),
        ..Default::default()
    };
    let a = m.embed(&r.texts, &one, &|_| {}).unwrap();
    let b = m
        .embed(
            &r.texts,
            &EmbedOptions {
                batch_size: 5,
                ..one.clone()
            },
            &|_| {},
        )
        .unwrap();
    assert_eq!(a.embedding, b.embedding, "batching changed the result");
    assert_eq!(a.layer_pooling, PoolingMode::Mean);
    for i in 0..r.texts.len() {
        let (s, end) = (r.offsets[i], r.offsets[i + 1]);
        let want = &last[(end - 1) * h..end * h];
        for (x, y) in a.embedding[i * h..(i + 1) * h].iter().zip(want) {
            assert!((x - y).abs() <= 1e-4);
        }
        for c in 0..h {
            let mean: f64 =
                (s..end).map(|j| last[j * h + c] as f64).sum::<f64>() / (end - s) as f64;
            assert!((a.layers[nl][i * h + c] as f64 - mean).abs() <= 1e-4);
        }
    }
    // The BOS flag marks the first row of every text (Llama's tokenizer adds <s>).
    let t = a.tokens.as_ref().unwrap();
    for i in 0..r.texts.len() {
        for j in r.offsets[i]..r.offsets[i + 1] {
            assert_eq!(t.bos[j], j == r.offsets[i], "text {i} row {j}");
        }
    }
    let mean = m
        .embed(
            &r.texts,
            &EmbedOptions {
                pool: Some(PoolingMode::Mean),
                ..Default::default()
            },
            &|_| {},
        )
        .unwrap();
    for i in 0..r.texts.len() {
        let (s, e) = (r.offsets[i], r.offsets[i + 1]);
        for c in 0..h {
            let want: f64 = (s..e).map(|j| last[j * h + c] as f64).sum::<f64>() / (e - s) as f64;
            assert!((mean.embedding[i * h + c] as f64 - want).abs() <= 1e-4);
        }
    }
}

#[test]
fn long_texts_stop_the_run_unless_truncated_and_the_prefix_keeps_its_states() {
    let m = load("gpt2");
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let texts = vec![long.clone(), "a".to_string()];
    let err = m
        .embed(&texts, &EmbedOptions::default(), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input text 1")
            && err.contains("context of 128 positions")
            && err.contains("`truncate`"),
        "{err}"
    );
    let opts = EmbedOptions {
        truncate: true,
        token_layer: Some(2),
        ..Default::default()
    };
    let out = m.embed(&texts, &opts, &|_| {}).unwrap();
    assert_eq!(out.truncated, vec![true, false]);
    assert_eq!(out.n_tokens[0], 128);
    // Causal: the states of the cut text are those of its first 128 tokens run alone.
    let ids = m.tokenize(&[long]).unwrap().remove(0).ids;
    let prefix = repscope_model::Tokenized {
        ids: ids[..128].to_vec(),
        truncated: false,
    };
    let alone = m
        .embed_tokenized(
            &[prefix],
            &EmbedOptions {
                token_layer: Some(2),
                ..Default::default()
            },
            &|_| {},
        )
        .unwrap();
    let t = out.tokens.as_ref().unwrap();
    assert_eq!(
        &t.states[..128 * out.hidden],
        &alone.tokens.as_ref().unwrap().states[..]
    );

    let err = m
        .embed(&["".to_string()], &EmbedOptions::default(), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no tokens"), "{err}");
}

#[test]
fn packing_joins_texts_with_bos_into_windows_that_each_start_with_bos() {
    let m = load("llama");
    let r = reference("llama");
    let bos = r.ids[0];
    let context = 16;
    let (windows, origin) = m.pack(&r.texts, context, None).unwrap();
    // The stream without window BOS tokens is the texts' tokens (transformers' ids minus their BOS),
    // joined by BOS, with a separator dropped where a window starts.
    let mut want = Vec::new();
    for i in 0..r.texts.len() {
        want.push((r.ids[r.offsets[i] + 1..r.offsets[i + 1]].to_vec(), i as u32));
    }
    let mut stream = Vec::new();
    let mut texts_of = Vec::new();
    let mut at = 0;
    for w in &windows {
        assert!(w.ids.len() <= context && w.ids.len() >= 2);
        assert_eq!(w.ids[0], bos);
        assert_eq!(origin[at], u32::MAX);
        stream.extend_from_slice(&w.ids[1..]);
        texts_of.extend_from_slice(&origin[at + 1..at + w.ids.len()]);
        at += w.ids.len();
    }
    assert_eq!(at, origin.len());
    assert!(windows[..windows.len() - 1]
        .iter()
        .all(|w| w.ids.len() == context));
    let content: Vec<u32> = stream
        .iter()
        .zip(&texts_of)
        .filter(|(_, &t)| t != u32::MAX)
        .map(|(&id, _)| id)
        .collect();
    let joined: Vec<u32> = want
        .iter()
        .flat_map(|(ids, _)| ids.iter().copied())
        .collect();
    assert_eq!(content, joined);
    for (id, &t) in stream.iter().zip(&texts_of) {
        if t == u32::MAX {
            assert_eq!(*id, bos);
        }
    }
    // The cap counts every token of every window, BOS included.
    let (capped, o) = m.pack(&r.texts, context, Some(40)).unwrap();
    assert_eq!(capped.iter().map(|w| w.ids.len()).sum::<usize>(), 40);
    assert_eq!(o.len(), 40);
    let out = m
        .embed_packed(
            &r.texts,
            context,
            Some(40),
            &EmbedOptions {
                token_layer: Some(1),
                ..Default::default()
            },
            &|_| {},
        )
        .unwrap();
    assert_eq!(out.n, capped.len());
    assert_eq!(out.token_text.as_deref(), Some(&o[..]));
    assert_eq!(out.tokens.as_ref().unwrap().ids.len(), 40);
    // Out of range.
    let e = m.pack(&r.texts, 129, None).unwrap_err().to_string();
    assert!(e.contains("`context`") && e.contains("128"), "{e}");
    let e = m.pack(&r.texts, 16, Some(0)).unwrap_err().to_string();
    assert!(e.contains("`max_tokens`"), "{e}");
}

#[test]
fn tokenizer_config_settings_are_followed_as_transformers_follows_them() {
    // tokenizer_variants.json: transformers' ids under Llama's legacy and add_prefix_space settings, and for
    // a LlamaTokenizer class over a byte-level tokenizer.json (which transformers reads as it is).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/decoders");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tokenizer_variants.json")).unwrap(),
    )
    .unwrap();
    let texts: Vec<String> = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let variants = v["variants"].as_object().unwrap();
    assert_eq!(variants.len(), 3);
    for (name, var) in variants {
        let dir =
            std::env::temp_dir().join(format!("repscope-tokvariant-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let model = root.join(var["model"].as_str().unwrap());
        let tok_from = root.join(var["tokenizer_json"].as_str().unwrap());
        for e in std::fs::read_dir(&model).unwrap() {
            let e = e.unwrap();
            let f = e.file_name().to_string_lossy().into_owned();
            if f.ends_with(".safetensors") || f.ends_with(".index.json") || f == "config.json" {
                std::os::unix::fs::symlink(e.path(), dir.join(&f)).unwrap();
            }
        }
        std::fs::copy(tok_from.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        let mut cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tok_from.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        cfg["tokenizer_class"] = "LlamaTokenizer".into();
        for (k, val) in var["settings"].as_object().unwrap() {
            cfg[k] = val.clone();
        }
        std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let m = Model::load(&dir, DeviceKind::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = m.tokenize(&texts).unwrap();
        for (i, (t, want)) in got.iter().zip(var["ids"].as_array().unwrap()).enumerate() {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(t.ids, want, "{name}: text {i} {:?}", texts[i]);
        }
        let expect_class = if var["class"] == "TokenizersBackend" {
            "tokenizer.json"
        } else {
            "LlamaTokenizer"
        };
        assert_eq!(m.tokenizer_class(), expect_class, "{name}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
