//! The engine's one error type. Every message names the input, the problem and what to do about it.
//!
//! The engine knows its parameters by its own names ([`Param`]), never by a face's spelling of them: a
//! message that points to a parameter holds a [`Param`] inside its [`Text`], and each face renders it in its
//! own words ([`Error::render`]): the CLI as a flag (`--labels-key`), Python as a keyword argument
//! (`labels_key=`). [`std::fmt::Display`] uses the engine's plain names.
use std::fmt;
use std::path::PathBuf;

/// A parameter of the engine, named by [`Param::name`] as the engine's configuration structs and the
/// Python keyword arguments name it. The CLI maps each to its flag.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    /// Neighbours per point.
    K,
    /// The distance (euclidean or cosine) or, for `compare`, the similarity measures.
    Metric,
    /// Intrinsic-dimension estimators.
    Estimator,
    /// The array to read from a multi-array file.
    Key,
    /// The array to read from a multi-array labels file.
    LabelsKey,
    /// A labels file.
    Labels,
    /// Target dimensions of the search study's projections.
    Dims,
    /// Bits per value of the search study's quantisers.
    Bits,
    /// Anchors of the relative representation.
    Anchors,
    /// The largest n for which n × n matrices are held.
    GramLimit,
    /// The route of linear CKA (feature or Gram).
    CkaRoute,
    /// The route of the CCA family (SVD or covariance).
    CcaRoute,
    /// The RBF kernel's bandwidth factor.
    RbfThreshold,
    /// Rows per batch.
    BatchSize,
    /// The coding rate's distortion ε².
    Eps2,
    /// HNSW's maximum out-degree M.
    M,
    /// HNSW's candidate list size while building.
    EfConstruction,
    /// HNSW's candidate list size while searching.
    EfSearch,
    /// The insertion order of an HNSW build.
    Order,
    /// Repetitions of each insertion order.
    OrderRepeats,
    /// The fraction of largest ratios TwoNN discards.
    DiscardFraction,
    /// GRIDE's neighbour orders n1 < n2.
    GrideOrders,
    /// Points (rows) asked for.
    Rows,
    /// The largest neighbour order of the scale curve.
    RangeMax,
    /// The threshold of SVCCA's kept variance.
    SvccaThreshold,
    /// Layers (arrays) of a multi-array file.
    Keys,
    /// Overwrite existing outputs.
    Force,
    /// Random seed.
    Seed,
    /// The share of rows the search study holds out as queries.
    QueryFraction,
    /// Cut texts longer than the model's context instead of stopping.
    Truncate,
    /// How token states are pooled into one row per text.
    Pool,
    /// The block whose MLP hidden state is written.
    Mlp,
    /// Tokens per packed window.
    Context,
    /// The most tokens a packed run takes.
    MaxTokens,
    /// The dimension of a projection or a generated set.
    Dim,
    /// The magnitude threshold of massive activations.
    MassiveAbs,
    /// The ratio-to-row-median threshold of massive activations.
    MassiveRatio,
    /// The magnitude below which an activation counts as inactive.
    Eps,
    /// The multiple of the median peak-to-median ratio that makes a peak row.
    PeakFactor,
    /// Standard deviations that make an outlier dimension.
    OutlierSigma,
    /// An SAE's number of latents.
    Width,
    /// An SAE's architecture.
    Arch,
    /// The learning rate.
    LearningRate,
    /// Training rows in all.
    Tokens,
    /// The largest global gradient norm.
    Clip,
    /// The AuxK loss coefficient.
    AuxCoef,
    /// The share of steps over which the learning rate decays.
    DecayFraction,
    /// The rate of BatchTopK's threshold average.
    ThresholdRate,
    /// The initial norm of free decoder rows (SAE training with a rescaled decoder).
    DecoderInitNorm,
    /// A range of rows, A:B.
    RowRange,
    /// Rows drawn at random from a source.
    Sample,
    /// A transformer model folder.
    Model,
    /// Where a model runs (cpu or cuda).
    Device,
    /// The column of a text file that holds the texts.
    Column,
    /// Leave out invalid lines of a text file.
    SkipInvalid,
    /// The implementation of a model's forward pass.
    Backend,
    /// The Python package that holds a model.
    Package,
    /// The explained-variance share of a PCA rule.
    Tau,
    /// The threshold of a PCA rule (Fukunaga–Olsen's α, the ratio rule's share, Fan's gap), or the shape
    /// α of a Gamma prior.
    Alpha,
    /// Fan's cumulative share, or the rate β of a Gamma prior.
    Beta,
    /// The second neighbour order of the correlation dimension (k1 < k2).
    K2,
    /// TLE's smallest distance.
    Epsilon,
    /// The largest dimension a likelihood search considers.
    MaxDim,
    /// The ratio r of the binomial estimator's two radii.
    Ratio,
    /// The probability of a credible interval.
    Level,
    /// The sample sizes of a subsampling estimator (the kNN graph length's ps, PH's range).
    SampleSizes,
    /// The power of the edge lengths (kNN graph length γ, PH's α).
    Gamma,
    /// A radius in the data's units (the binomial estimator's r_k).
    Radius,
    /// Samples drawn per size, or the number of sweeps of a sampler.
    Draws,
    /// The number of mixture components (Hidalgo's K).
    Components,
    /// A probability parameter of a model (Hidalgo's ζ).
    Zeta,
    /// The range of subsample sizes (PH's n_range_min and n_range_max).
    SubsampleRange,
    /// The standard deviation of a noise model.
    Sigma,
    /// How many dimensions past the minimum a scan goes on (MiND_KL).
    Patience,
}

impl Param {
    /// The engine's name: the field of the configuration struct and the Python keyword argument.
    pub fn name(self) -> &'static str {
        match self {
            Param::K => "k",
            Param::Metric => "metric",
            Param::Estimator => "estimator",
            Param::Key => "key",
            Param::LabelsKey => "labels_key",
            Param::Labels => "labels",
            Param::Dims => "dims",
            Param::Bits => "bits",
            Param::Anchors => "anchors",
            Param::GramLimit => "gram_limit",
            Param::CkaRoute => "cka_route",
            Param::CcaRoute => "cca_route",
            Param::RbfThreshold => "rbf_threshold",
            Param::BatchSize => "batch_size",
            Param::Eps2 => "eps2",
            Param::M => "m",
            Param::EfConstruction => "ef_construction",
            Param::EfSearch => "ef_search",
            Param::Order => "order",
            Param::OrderRepeats => "order_repeats",
            Param::DiscardFraction => "discard_fraction",
            Param::GrideOrders => "n1, n2",
            Param::Rows => "n",
            Param::RangeMax => "range_max",
            Param::SvccaThreshold => "svcca_threshold",
            Param::Keys => "keys",
            Param::Force => "force",
            Param::Seed => "seed",
            Param::Dim => "dim",
            Param::MassiveAbs => "massive_abs",
            Param::MassiveRatio => "massive_ratio",
            Param::Eps => "eps",
            Param::PeakFactor => "peak_factor",
            Param::OutlierSigma => "outlier_sigma",
            Param::Width => "width",
            Param::Arch => "arch",
            Param::LearningRate => "lr",
            Param::Tokens => "tokens",
            Param::Clip => "clip",
            Param::AuxCoef => "aux_coef",
            Param::DecayFraction => "decay_fraction",
            Param::ThresholdRate => "threshold_rate",
            Param::DecoderInitNorm => "decoder_init_norm",
            Param::RowRange => "rows",
            Param::Sample => "sample",
            Param::Model => "model",
            Param::Device => "device",
            Param::Column => "column",
            Param::SkipInvalid => "skip_invalid",
            Param::Backend => "backend",
            Param::Package => "package",
            Param::Tau => "tau",
            Param::Alpha => "alpha",
            Param::Beta => "beta",
            Param::K2 => "k2",
            Param::Epsilon => "epsilon",
            Param::MaxDim => "D",
            Param::Ratio => "r",
            Param::Level => "level",
            Param::SampleSizes => "ps",
            Param::Gamma => "gamma",
            Param::Radius => "rk",
            Param::Draws => "draws",
            Param::Components => "K",
            Param::Zeta => "zeta",
            Param::SubsampleRange => "n_range",
            Param::Sigma => "sigma",
            Param::Patience => "patience",
            Param::QueryFraction => "query_fraction",
            Param::Truncate => "truncate",
            Param::Pool => "pool",
            Param::Mlp => "mlp",
            Param::Context => "context",
            Param::MaxTokens => "max_tokens",
        }
    }
}

/// One piece of a message: words, or a parameter the face names in its own way.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Words(String),
    Param(Param),
}

/// A sentence that may name parameters. Build it from a string, then chain [`Text::param`] and
/// [`Text::then`]: `Text::from("choose one with ").param(Param::Key).then(": a, b")`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Text(Vec<Piece>);

impl Text {
    /// Appends a parameter.
    pub fn param(mut self, p: Param) -> Text {
        self.0.push(Piece::Param(p));
        self
    }
    /// Appends words.
    pub fn then(mut self, s: impl Into<String>) -> Text {
        self.0.push(Piece::Words(s.into()));
        self
    }
    /// The parameters the sentence names.
    pub fn params(&self) -> impl Iterator<Item = Param> + '_ {
        self.0.iter().filter_map(|p| match p {
            Piece::Param(p) => Some(*p),
            Piece::Words(_) => None,
        })
    }
    /// The sentence, with each parameter named by `name`.
    pub fn render(&self, name: &dyn Fn(Param) -> String) -> String {
        let mut s = String::new();
        for p in &self.0 {
            match p {
                Piece::Words(w) => s.push_str(w),
                Piece::Param(p) => s.push_str(&name(*p)),
            }
        }
        s
    }
    /// The sentence, capitalised, with each parameter named by `name`.
    fn sentence(&self, name: &dyn Fn(Param) -> String) -> String {
        cap(&self.render(name))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(vec![Piece::Words(s.to_string())])
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(vec![Piece::Words(s)])
    }
}

/// Whether a failed file operation was reading an input or writing an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Errors the engine reports. Anything a user controls ends here, never in a panic.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}", self.render(&plain))]
    Io {
        path: PathBuf,
        access: Access,
        #[source]
        source: std::io::Error,
    },
    /// The file's format is unknown or its contents do not parse.
    #[error("{}", self.render(&plain))]
    Format {
        path: PathBuf,
        problem: String,
        fix: Text,
    },
    /// The data parsed but is not usable for the requested computation.
    #[error("{}", self.render(&plain))]
    InvalidData {
        input: String,
        problem: String,
        fix: Text,
    },
    /// A value that is not finite, or (for f64 input) beyond the range of f32, at a row and column (0-based).
    #[error("{}", self.render(&plain))]
    NonFinite {
        input: String,
        row: usize,
        col: usize,
        value: f64,
    },
    /// A parameter is out of its valid range. `value` is the value given where one was; `allowed` the
    /// valid range or choices where they are known.
    #[error("{}", self.render(&plain))]
    InvalidParameter {
        param: Param,
        value: Option<String>,
        allowed: Option<String>,
        problem: String,
        fix: Text,
    },
    /// An output exists and overwriting it was not asked for.
    #[error("{}", self.render(&plain))]
    OutputExists { path: PathBuf, folder: bool },
    /// A numerical routine failed (for example an eigensolver did not converge).
    #[error("numerical failure in {what}: {problem}")]
    Numerical { what: String, problem: String },
}

/// The engine's own naming of parameters, used by `Display`.
fn plain(p: Param) -> String {
    format!("`{}`", p.name())
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
        fix: impl Into<Text>,
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
        fix: impl Into<Text>,
    ) -> Self {
        Error::InvalidData {
            input: input.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
    pub(crate) fn param(param: Param, problem: impl Into<String>, fix: impl Into<Text>) -> Self {
        Error::InvalidParameter {
            param,
            value: None,
            allowed: None,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
    /// A parameter outside its range: the value given and the range allowed, both as the user reads them.
    pub(crate) fn range(
        param: Param,
        value: impl fmt::Display,
        allowed: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        let allowed = allowed.into();
        Error::InvalidParameter {
            param,
            value: Some(value.to_string()),
            fix: Text::from(format!("choose {allowed}")),
            allowed: Some(allowed),
            problem: problem.into(),
        }
    }
    /// Reading `path` failed.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            access: Access::Read,
            source,
        }
    }
    /// Writing `path` failed.
    pub fn io_write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            access: Access::Write,
            source,
        }
    }

    /// The parameter an invalid-parameter error is about.
    pub fn param_name(&self) -> Option<Param> {
        match self {
            Error::InvalidParameter { param, .. } => Some(*param),
            _ => None,
        }
    }

    /// The message, with each parameter named by `name`: the CLI passes its flags, Python its keyword
    /// arguments.
    pub fn render(&self, name: &dyn Fn(Param) -> String) -> String {
        match self {
            Error::Io {
                path,
                access,
                source,
            } => io_message(path, *access, source),
            Error::Format { path, problem, fix } => {
                format!("{}: {problem}. {}", path.display(), fix.sentence(name))
            }
            Error::InvalidData {
                input,
                problem,
                fix,
            } => format!("{input}: {problem}. {}", fix.sentence(name)),
            Error::NonFinite {
                input,
                row,
                col,
                value,
            } => {
                if value.is_finite() {
                    format!(
                        "{input}: the f64 value {value:e} at row {row}, column {col} (0-based) overflows f32, whose largest value is 3.4e38. Rescale the data (distances and dimensions are scale-free), e.g. x / np.abs(x).max()"
                    )
                } else {
                    format!(
                        "{input}: non-finite value {value} at row {row}, column {col} (0-based). Remove or impute rows with NaN/Inf before measuring (e.g. x[np.isfinite(x).all(1)])"
                    )
                }
            }
            Error::InvalidParameter {
                param,
                problem,
                fix,
                ..
            } => format!(
                "invalid {}: {problem}. {}",
                name(*param),
                fix.sentence(name)
            ),
            Error::OutputExists { path, folder } => {
                let fix = Text::from("pass ")
                    .param(Param::Force)
                    .then(" to overwrite it, or choose another path");
                if *folder {
                    format!(
                        "{}: the output folder is not empty. {}",
                        path.display(),
                        fix.sentence(name)
                    )
                } else {
                    format!(
                        "{}: the output exists. {}",
                        path.display(),
                        fix.sentence(name)
                    )
                }
            }
            Error::Numerical { what, problem } => {
                format!("numerical failure in {what}: {problem}")
            }
        }
    }
}

/// What went wrong with a file, in words that diagnose it: the kind of file that is there when it is not
/// a regular file, a full disk, a link loop, a missing file or a permission.
fn io_message(path: &std::path::Path, access: Access, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let p = path.display();
    let meta = std::fs::metadata(path);
    if access == Access::Read {
        if let Ok(m) = &meta {
            if m.is_dir() {
                return format!("{p}: is a folder, not a file. Give the path of a file");
            }
            if !m.is_file() {
                return format!(
                    "{p}: is not a regular file (a pipe, socket or device). Save the data to a file first"
                );
            }
        }
    }
    let os = e.raw_os_error();
    const ELOOP: i32 = 40;
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    if os == Some(ELOOP) {
        return format!("{p}: the path is a loop of symbolic links. Point it at a real file");
    }
    if os == Some(ENOSPC) || os == Some(EDQUOT) || e.kind() == ErrorKind::StorageFull {
        return format!("{p}: the disk is full. Free space or write to another folder");
    }
    match (e.kind(), access) {
        (ErrorKind::NotFound, Access::Read) => {
            if std::fs::symlink_metadata(path).is_ok() {
                format!("{p}: a symbolic link whose target does not exist. Check the link")
            } else {
                format!("{p}: no such file. Check that the path exists")
            }
        }
        (ErrorKind::NotFound, Access::Write) => {
            format!("{p}: the folder does not exist. Create it first or choose another path")
        }
        (ErrorKind::PermissionDenied, Access::Read) => {
            format!("{p}: permission denied. Make the file readable")
        }
        (ErrorKind::PermissionDenied, Access::Write) => {
            format!("{p}: permission denied. Choose a writable output path")
        }
        (_, Access::Read) => format!(
            "{p}: cannot read the file ({}). Check that the path exists and is readable",
            plain_io(e)
        ),
        (_, Access::Write) => format!(
            "{p}: cannot write the file ({}). Check the disk and choose a writable path",
            plain_io(e)
        ),
    }
}

/// The operating system's words for an error, without Rust's wrapping.
fn plain_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_name_parameters_their_own_way() {
        let e = Error::format(
            "x.npz",
            "the file holds 2 arrays",
            Text::from("choose one with ")
                .param(Param::Key)
                .then(": a, b"),
        );
        assert_eq!(
            e.to_string(),
            "x.npz: the file holds 2 arrays. Choose one with `key`: a, b"
        );
        let cli = e.render(&|p| format!("--{}", p.name().replace('_', "-")));
        assert_eq!(
            cli,
            "x.npz: the file holds 2 arrays. Choose one with --key: a, b"
        );
        let r = Error::range(Param::K, 0, "1 ≤ k ≤ 5", "k = 0 asks for no neighbours");
        assert_eq!(
            r.render(&|p| format!("{}=", p.name())),
            "invalid k=: k = 0 asks for no neighbours. Choose 1 ≤ k ≤ 5"
        );
        assert!(matches!(
            r,
            Error::InvalidParameter { value: Some(ref v), allowed: Some(_), .. } if v == "0"
        ));
    }

    #[test]
    fn io_errors_diagnose_the_file() {
        let d = std::env::temp_dir().join(format!("repscope-io-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let e = Error::io(&d, std::io::Error::from_raw_os_error(19));
        assert!(e.to_string().contains("is a folder"), "{e}");
        let missing = d.join("missing.npy");
        let e = Error::io(&missing, std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.to_string().contains("no such file"), "{e}");
        let full = Error::io_write(d.join("o.npy"), std::io::Error::from_raw_os_error(28));
        assert!(full.to_string().contains("the disk is full"), "{full}");
        assert!(!full.to_string().contains("os error"), "{full}");
        #[cfg(unix)]
        {
            let a = d.join("loop_a");
            let b = d.join("loop_b");
            let _ = std::fs::remove_file(&a);
            let _ = std::fs::remove_file(&b);
            std::os::unix::fs::symlink(&b, &a).unwrap();
            std::os::unix::fs::symlink(&a, &b).unwrap();
            let err = std::fs::File::open(&a).unwrap_err();
            let e = Error::io(&a, err);
            assert!(e.to_string().contains("loop of symbolic links"), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
