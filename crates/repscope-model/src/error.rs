//! The model crate's error type. Every message names the input, the problem and what to do about it.
use std::path::PathBuf;

/// Errors of the model crate. Anything a user controls (the folder, the texts, the device) ends here, never
/// in a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{}: {source}. Check that the path exists and is readable.", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the model folder, or an input file, is missing, malformed or not supported.
    #[error("{}: {problem}. {}", path.display(), cap(fix))]
    Format {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    /// The texts are unusable (none at all, invalid UTF-8, a missing column).
    #[error("{input}: {problem}. {}", cap(fix))]
    Input {
        input: String,
        problem: String,
        fix: String,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {problem}. {}", cap(fix))]
    Parameter {
        name: String,
        problem: String,
        fix: String,
    },
    /// The requested device is not available.
    #[error("device {device}: {problem}. {}", cap(fix))]
    Device {
        device: String,
        problem: String,
        fix: String,
    },
    /// A tensor operation failed inside the forward pass (a bug, not bad input).
    #[error("internal error in the model forward pass: {0}")]
    Internal(String),
}

impl Error {
    /// True when the error comes from the user's input (the CLI exits with code 2), false for internal failures.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }

    pub(crate) fn format(
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        fix: impl Into<String>,
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
        fix: impl Into<String>,
    ) -> Self {
        Error::Input {
            input: input.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn param(
        name: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Parameter {
            name: name.into(),
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
