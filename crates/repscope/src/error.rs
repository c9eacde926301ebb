//! The engine's one error type. Every message names the input, the problem and what to do about it.
use std::path::PathBuf;

/// Errors the engine reports. Anything a user controls ends here, never in a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {source}. Check that the path exists and is readable.")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's format is unknown or its contents do not parse.
    #[error("{}: {problem}. {}", path.display(), cap(fix))]
    Format {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    /// The data parsed but is not usable for the requested computation.
    #[error("{input}: {problem}. {}", cap(fix))]
    InvalidData {
        input: String,
        problem: String,
        fix: String,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {problem}. {}", cap(fix))]
    InvalidParameter {
        name: String,
        problem: String,
        fix: String,
    },
    /// A numerical routine failed (for example an eigensolver did not converge).
    #[error("numerical failure in {what}: {problem}")]
    Numerical { what: String, problem: String },
}

/// The fix sentence, capitalised.
fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
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
    pub(crate) fn data(
        input: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::InvalidData {
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
        Error::InvalidParameter {
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
