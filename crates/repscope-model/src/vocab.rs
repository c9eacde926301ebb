//! A tokenizer's vocabulary, to name the token ids written beside token states.
use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// The tokens of a model's tokenizer, by id.
pub struct Vocabulary {
    tokenizer: Tokenizer,
}

impl Vocabulary {
    /// Reads `tokenizer.json` from a model folder, or the tokenizer file itself.
    pub fn load(path: &Path) -> Result<Vocabulary> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            return Err(Error::format(
                &file,
                "no tokenizer file here",
                "pass a model folder that holds tokenizer.json, or the tokenizer.json itself",
            ));
        }
        let tokenizer = Tokenizer::from_file(&file).map_err(|e| {
            Error::format(
                &file,
                format!("is not a tokenizer file this version of tokenizers reads ({e})"),
                "pass the tokenizer.json of the model that wrote the states",
            )
        })?;
        Ok(Vocabulary { tokenizer })
    }

    /// The token with this id, as the vocabulary spells it (None outside the vocabulary).
    pub fn token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// The number of ids, added tokens included.
    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// True for an empty vocabulary.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
