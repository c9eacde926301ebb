//! The model crate's error type. Every message names the input, the problem and what to do about it.
use std::path::PathBuf;

use repscope::{Param, Text};

/// Errors of the model crate. Anything a user controls (the folder, the texts, the device) ends here, never
/// in a panic. Sentences that point to a parameter hold a [`Param`] inside their [`Text`]; each face renders
/// it in its own words ([`Error::render`]), and `Display` names the engine's parameter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{}", self.render(&plain))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the model folder, or an input file, is missing, malformed or not supported.
    #[error("{}", self.render(&plain))]
    Format {
        path: PathBuf,
        problem: String,
        fix: Text,
    },
    /// The texts are unusable (none at all, invalid UTF-8, a missing column).
    #[error("{}", self.render(&plain))]
    Input {
        input: String,
        problem: String,
        fix: Text,
    },
    /// A parameter is out of its valid range.
    #[error("{}", self.render(&plain))]
    Parameter {
        param: Param,
        problem: String,
        fix: Text,
    },
    /// The requested device is not available.
    #[error("{}", self.render(&plain))]
    Device {
        device: String,
        problem: String,
        fix: Text,
    },
    /// A tensor operation failed inside the forward pass (a bug, not bad input).
    #[error("internal error in the model forward pass: {0}")]
    Internal(String),
}

/// The engine's own naming of parameters, used by `Display`.
fn plain(p: Param) -> String {
    format!("`{}`", p.name())
}

impl Error {
    /// True when the error comes from the user's input (the CLI exits with code 2), false for internal failures.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }

    /// The message, with each parameter named by `name` (the CLI passes its flags).
    pub fn render(&self, name: &dyn Fn(Param) -> String) -> String {
        let fix = |t: &Text| cap(&t.render(name));
        match self {
            Error::Io { path, source } => format!(
                "{}: {source}. Check that the path exists and is readable.",
                path.display()
            ),
            Error::Format {
                path,
                problem,
                fix: f,
            } => {
                format!("{}: {problem}. {}", path.display(), fix(f))
            }
            Error::Input {
                input,
                problem,
                fix: f,
            } => format!("{input}: {problem}. {}", fix(f)),
            Error::Parameter {
                param,
                problem,
                fix: f,
            } => format!("invalid {}: {problem}. {}", name(*param), fix(f)),
            Error::Device {
                device,
                problem,
                fix: f,
            } => format!("device {device}: {problem}. {}", fix(f)),
            Error::Internal(m) => format!("internal error in the model forward pass: {m}"),
        }
    }

    pub(crate) fn format(
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        fix: impl Into<Text>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn input(
        input: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<Text>,
    ) -> Self {
        Error::Input {
            input: input.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn param(param: Param, problem: impl Into<String>, fix: impl Into<Text>) -> Self {
        Error::Parameter {
            param,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

/// The fix sentence, capitalised.
fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    #[test]
    fn messages_name_parameters_in_the_faces_words_not_flags() {
        let e = crate::DeviceKind::parse("tpu").unwrap_err();
        let plain = e.to_string();
        assert!(
            plain.contains("`device`") && !plain.contains("--"),
            "{plain}"
        );
        let cli = e.render(&|p| format!("--{}", p.name().replace('_', "-")));
        assert_eq!(
            cli,
            "invalid --device: 'tpu' is not a device. Use --device cpu or --device cuda"
        );
    }
}
