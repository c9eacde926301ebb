//! Class labels: one class id per row and the name of each class.
use std::path::Path;

use crate::error::{Error, Result};

/// Labels read from an array: integers, or strings mapped to ids in sorted order.
#[derive(Clone, Debug)]
pub struct Labels {
    /// Class id of each row, 0..names.len().
    pub ids: Vec<u32>,
    /// The original label of each class id (integers written as text).
    pub names: Vec<String>,
}

impl Labels {
    /// Builds labels from text values; `numeric` sorts class names as numbers.
    pub fn from_strings(raw: Vec<String>, numeric: bool) -> Labels {
        let mut names: Vec<String> = raw.clone();
        if numeric {
            names.sort_by_key(|s| s.parse::<i64>().unwrap_or(i64::MAX));
        } else {
            names.sort();
        }
        names.dedup();
        let ids = raw
            .iter()
            .map(|s| {
                names
                    .binary_search_by(|p| cmp_label(p, s, numeric))
                    .map(|i| i as u32)
                    .unwrap_or(0)
            })
            .collect();
        Labels { ids, names }
    }
    /// Builds labels from integer values: classes in numeric order, named by their values (as
    /// [`Labels::from_strings`] with `numeric` names them), without a string per row.
    pub fn from_integers(values: &[i64]) -> Labels {
        let mut uniq = values.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        let ids = values
            .iter()
            .map(|v| uniq.binary_search(v).map(|i| i as u32).unwrap_or(0))
            .collect();
        Labels {
            ids,
            names: uniq.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// The classes renamed from a list of names: integer labels index it (label 3 takes the fourth
    /// name). Fails, naming `source`, when a label is not an integer, has no name, or two classes would
    /// share a name.
    pub fn with_names(self, names: &[String], source: &str) -> Result<Labels> {
        let mut renamed = Vec::with_capacity(self.names.len());
        for label in &self.names {
            let Ok(i) = label.parse::<i64>() else {
                return Err(Error::data(
                    source,
                    format!(
                        "the labels are strings (such as '{label}'), and names map integer labels"
                    ),
                    "drop the label names: string labels already name their classes",
                ));
            };
            let name = usize::try_from(i).ok().and_then(|i| names.get(i)).ok_or_else(|| {
                Error::data(
                    source,
                    format!(
                        "{} names do not match the labels: label {i} has no name (names cover labels 0 to {})",
                        names.len(),
                        names.len() as i64 - 1
                    ),
                    "give one name per line for every label value, the name of label 0 first",
                )
            })?;
            renamed.push(name.clone());
        }
        let mut sorted = renamed.clone();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::data(
                source,
                format!("two classes would both be named '{}'", w[0]),
                "give each label value its own name",
            ));
        }
        Ok(Labels {
            ids: self.ids,
            names: renamed,
        })
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.names.len()
    }

    /// The labels without the classes no row carries (ids renumbered in the same order), and the names of
    /// the classes dropped.
    pub fn without_empty(self) -> (Labels, Vec<String>) {
        let mut used = vec![false; self.names.len()];
        self.ids.iter().for_each(|&i| used[i as usize] = true);
        if used.iter().all(|&u| u) {
            return (self, Vec::new());
        }
        let mut map = vec![0u32; self.names.len()];
        let (mut names, mut dropped) = (Vec::new(), Vec::new());
        for (k, name) in self.names.into_iter().enumerate() {
            if used[k] {
                map[k] = names.len() as u32;
                names.push(name);
            } else {
                dropped.push(name);
            }
        }
        let ids = self.ids.iter().map(|&i| map[i as usize]).collect();
        (Labels { ids, names }, dropped)
    }
}

fn cmp_label(a: &str, b: &str, numeric: bool) -> std::cmp::Ordering {
    if numeric {
        a.parse::<i64>()
            .unwrap_or(i64::MAX)
            .cmp(&b.parse::<i64>().unwrap_or(i64::MAX))
    } else {
        a.cmp(b)
    }
}

/// Reads class names from a text file, one per line (label 0 first); a final empty line is ignored.
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    crate::data::check_regular(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::data(
            path.display().to_string(),
            format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            "save the names as UTF-8, one per line",
        )
    })?;
    let names: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if names.is_empty() {
        return Err(Error::data(
            path.display().to_string(),
            "holds no names",
            "write one class name per line, the name of label 0 first",
        ));
    }
    Ok(names)
}
