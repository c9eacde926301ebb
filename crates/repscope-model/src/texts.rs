//! Reading the texts to embed: one text per line, or one column of a .tsv / one field of a .jsonl file.
use std::path::Path;

use serde_json::Value;

use repscope::{Param, Text};

use crate::error::{Error, Result};

/// The texts of an input file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Texts {
    pub texts: Vec<String>,
    /// The 1-based line number each text comes from.
    pub lines: Vec<usize>,
    /// Lines left out because they were unreadable (with `skip_invalid`): (1-based line, reason).
    pub skipped: Vec<(usize, String)>,
    /// Blank lines of a .tsv or .jsonl file, which hold no record and are passed over.
    pub blank: usize,
}

/// How the file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One text per line.
    Lines,
    /// Tab-separated fields.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl Layout {
    /// By extension: .tsv, .jsonl / .ndjson, anything else is one text per line.
    pub fn of(path: &Path) -> Layout {
        match path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .as_deref()
        {
            Some("tsv") => Layout::Tsv,
            Some("jsonl") | Some("ndjson") => Layout::Jsonl,
            _ => Layout::Lines,
        }
    }
}

/// Reads the texts of `path`. `column` names the .tsv column (a header name, or a 1-based field number
/// for a file without a header line) or the .jsonl field; both default to `text`. Invalid UTF-8 and
/// unreadable records are errors naming the line, unless `skip_invalid`, which leaves them out and lists
/// them in [`Texts::skipped`].
pub fn read_texts(path: &Path, column: Option<&str>, skip_invalid: bool) -> Result<Texts> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_texts(&bytes, Layout::of(path), path, column, skip_invalid)
}

/// [`read_texts`] on bytes already read.
pub fn parse_texts(
    bytes: &[u8],
    layout: Layout,
    path: &Path,
    column: Option<&str>,
    skip_invalid: bool,
) -> Result<Texts> {
    if layout == Layout::Lines {
        if let Some(c) = column {
            return Err(Error::param(
                Param::Column,
                format!(
                    "'{c}' was given but {} is read as one text per line",
                    path.display()
                ),
                Text::from("name the file .tsv or .jsonl to pick a column, or leave ")
                    .param(Param::Column)
                    .then(" out"),
            ));
        }
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut raw: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if raw.last().is_some_and(|l| l.is_empty()) {
        raw.pop();
    }
    let mut out = Texts::default();
    let invalid = |out: &mut Texts, line: usize, why: String| -> Result<()> {
        if skip_invalid {
            out.skipped.push((line, why));
            Ok(())
        } else {
            Err(Error::input(
                format!("{}: line {line}", path.display()),
                why,
                Text::from("fix the line, or pass ")
                    .param(Param::SkipInvalid)
                    .then(" to leave such lines out"),
            ))
        }
    };
    // The field to take from a .tsv: index, and whether line 1 is a header.
    let mut tsv_field: Option<usize> = None;
    let mut first = 0usize;
    if layout == Layout::Tsv {
        let want = column.unwrap_or("text");
        if let Ok(k) = want.parse::<usize>() {
            if k == 0 {
                return Err(Error::param(
                    Param::Column,
                    "field numbers start at 1",
                    Text::from("use ")
                        .param(Param::Column)
                        .then(" 1 for the first field"),
                ));
            }
            tsv_field = Some(k - 1);
        } else {
            let header = raw.first().ok_or_else(|| {
                Error::input(
                    path.display().to_string(),
                    "the file is empty",
                    "give a .tsv file with a header line and one text per row",
                )
            })?;
            let header = std::str::from_utf8(header).map_err(|_| {
                Error::input(
                    format!("{}: line 1", path.display()),
                    "the header line is not valid UTF-8",
                    "save the file as UTF-8",
                )
            })?;
            let names: Vec<&str> = header.trim_end_matches('\r').split('\t').collect();
            let k = names.iter().position(|n| n.trim() == want).ok_or_else(|| {
                let shown: Vec<String> = names
                    .iter()
                    .take(6)
                    .map(|n| format!("'{}'", n.chars().take(30).collect::<String>()))
                    .collect();
                Error::input(
                    path.display().to_string(),
                    format!(
                        "no column named '{want}' in the header line ({})",
                        shown.join(", ")
                    ),
                    Text::from("name the column with ")
                        .param(Param::Column)
                        .then(" NAME, or give ")
                        .param(Param::Column)
                        .then(" N for the N-th field of a file without a header line"),
                )
            })?;
            tsv_field = Some(k);
            first = 1;
        }
    }
    let key = column.unwrap_or("text");
    for (i, line) in raw.iter().enumerate().skip(first) {
        let no = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let s = match std::str::from_utf8(line) {
            Ok(s) => s,
            Err(e) => {
                invalid(
                    &mut out,
                    no,
                    format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                )?;
                continue;
            }
        };
        let text = match layout {
            Layout::Lines => s.to_string(),
            Layout::Tsv => {
                if s.trim().is_empty() {
                    out.blank += 1;
                    continue;
                }
                let k = tsv_field.unwrap_or(0);
                match s.split('\t').nth(k) {
                    Some(f) => f.to_string(),
                    None => {
                        invalid(
                            &mut out,
                            no,
                            format!(
                                "has {} tab-separated field(s), so no field {}",
                                s.split('\t').count(),
                                k + 1
                            ),
                        )?;
                        continue;
                    }
                }
            }
            Layout::Jsonl => {
                if s.trim().is_empty() {
                    out.blank += 1;
                    continue;
                }
                match serde_json::from_str::<Value>(s) {
                    Ok(v) => match v.get(key) {
                        Some(Value::String(t)) => t.clone(),
                        Some(other) => {
                            invalid(
                                &mut out,
                                no,
                                format!("field '{key}' is not a string but {}", kind(other)),
                            )?;
                            continue;
                        }
                        None => {
                            invalid(&mut out, no, format!("the record has no field '{key}'"))?;
                            continue;
                        }
                    },
                    Err(e) => {
                        invalid(&mut out, no, format!("is not valid JSON ({e})"))?;
                        continue;
                    }
                }
            }
        };
        out.texts.push(text);
        out.lines.push(no);
    }
    if out.texts.iter().all(|t| t.trim().is_empty()) {
        let problem = if !out.texts.is_empty() {
            "holds only blank lines, no texts".to_string()
        } else if out.skipped.is_empty() {
            "holds no texts".to_string()
        } else {
            format!(
                "holds no readable texts ({} line(s) skipped)",
                out.skipped.len()
            )
        };
        return Err(Error::input(
            path.display().to_string(),
            problem,
            "give a file with one text per line (or a .tsv/.jsonl with a text column)",
        ));
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(name)
    }

    #[test]
    fn lines_keep_blank_texts_and_drop_the_final_newline() {
        let t = parse_texts(b"a\r\n\nb\n", Layout::Lines, &p("x.txt"), None, false).unwrap();
        assert_eq!(t.texts, vec!["a", "", "b"]);
        assert_eq!(t.lines, vec![1, 2, 3]);
    }

    #[test]
    fn invalid_utf8_names_the_line_or_is_skipped() {
        let data = b"ok\nbad \xff\xfe here\nfine\n";
        let e = parse_texts(data, Layout::Lines, &p("x.txt"), None, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("UTF-8") && msg.contains("`skip_invalid`"),
            "{msg}"
        );
        let t = parse_texts(data, Layout::Lines, &p("x.txt"), None, true).unwrap();
        assert_eq!(t.texts, vec!["ok", "fine"]);
        assert_eq!(t.lines, vec![1, 3]);
        assert_eq!(t.skipped.len(), 1);
        assert_eq!(t.skipped[0].0, 2);
    }

    #[test]
    fn tsv_by_header_name_or_field_number() {
        let data = b"label\ttext\nx\thello\ny\tworld\n";
        let t = parse_texts(data, Layout::Tsv, &p("x.tsv"), None, false).unwrap();
        assert_eq!(t.texts, vec!["hello", "world"]);
        assert_eq!(t.lines, vec![2, 3]);
        let t = parse_texts(b"x\thello\n", Layout::Tsv, &p("x.tsv"), Some("2"), false).unwrap();
        assert_eq!(t.texts, vec!["hello"]);
        let e = parse_texts(b"x\thello\n", Layout::Tsv, &p("x.tsv"), None, false).unwrap_err();
        assert!(e.to_string().contains("no column named 'text'"), "{e}");
    }

    #[test]
    fn jsonl_field() {
        let data = b"{\"text\": \"a\", \"id\": 1}\n\n{\"body\": \"b\", \"text\": \"c\"}\n";
        let t = parse_texts(data, Layout::Jsonl, &p("x.jsonl"), None, false).unwrap();
        assert_eq!(t.texts, vec!["a", "c"]);
        assert_eq!(t.blank, 1);
        let e = parse_texts(data, Layout::Jsonl, &p("x.jsonl"), Some("body"), false).unwrap_err();
        assert!(
            e.to_string().contains("line 1") && e.to_string().contains("no field 'body'"),
            "{e}"
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        let e = parse_texts(b"", Layout::Lines, &p("x.txt"), None, false).unwrap_err();
        assert!(e.to_string().contains("holds no texts"), "{e}");
    }
}
