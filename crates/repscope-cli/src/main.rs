//! `repscope`: the command-line face of the engine. It parses arguments, calls the library and prints.
mod commands;
mod progress;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Measure the geometry of learned representations: intrinsic dimension, neighbours, scale.
#[derive(Parser, Debug)]
#[command(name = "repscope", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// No progress bars or notes on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Write one JSON object to stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Intrinsic dimension: every global estimator, a recommended value and the scale curve.
    Id(commands::id::IdArgs),
    /// Local intrinsic dimension of every row, written to a .npy file.
    Lid(commands::lid::LidArgs),
    /// Exact k-nearest-neighbour graph, written to a .npz (indices, distances).
    Knn(commands::knn::KnnArgs),
    /// Generate data sets with known answers.
    Datasets {
        #[command(subcommand)]
        which: commands::datasets::DatasetsCommand,
    },
    /// Run the intrinsic-dimension suite on the built-in benchmark manifolds and compare with the truth.
    Demo(commands::demo::DemoArgs),
    /// Everything that applies, as report.json and a self-contained report.html.
    Report(commands::report::ReportArgs),
    /// Covariance spectrum: effective rank, RankMe, participation ratio, alpha-ReQ, coding rate, anisotropy.
    Spectrum(commands::spectrum::SpectrumArgs),
    /// Activation statistics: massive activations, outlier and rogue dimensions, sparsity, norms, gamma.
    Activations(commands::activations::ActivationsArgs),
    /// Class geometry: neural collapse (NC1-NC4), CDNV, NCC and leave-one-out kNN accuracy.
    Classes(commands::classes::ClassesArgs),
    /// Similarity of two representations of the same rows: CKA, CCA family, Procrustes, RSA, mutual kNN.
    Compare(commands::compare::CompareArgs),
    /// Every layer of an .npz/.safetensors file: ID and spectrum per layer, CKA and mutual kNN between layers.
    Layers(commands::layers::LayersArgs),
    /// HNSW recall against exact kNN: vendor defaults, insertion orders, query LID, compression.
    SearchStudy(commands::search_study::SearchStudyArgs),
    /// Sparse autoencoders: train (TopK, BatchTopK), evaluate and encode, in SAELens' folder layout.
    Sae {
        #[command(subcommand)]
        which: commands::sae::SaeCommand,
    },
    /// Build an HNSW index file, or query one.
    Index {
        #[command(subcommand)]
        which: commands::index::IndexCommand,
    },
    /// Run a local sentence-transformers model on texts: pooled embeddings, per-layer states, token states.
    #[cfg(feature = "model")]
    Embed(commands::embed::EmbedArgs),
    /// Embed texts with every layer, then the layer study: ID and spectrum per layer, CKA between layers.
    #[cfg(feature = "model")]
    AnalyzeModel(commands::analyze_model::AnalyzeModelArgs),
    /// Print the model folder of a model shipped as a Python package (asks python3, or $PYTHON).
    #[cfg(feature = "model")]
    ModelPath(commands::model_path::ModelPathArgs),
}

/// An error that ends the program with an exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<repscope::Error> for Failure {
    fn from(e: repscope::Error) -> Self {
        Failure::engine(e, &flag)
    }
}

impl Failure {
    /// An engine error, with its parameters named by `name` (the command's flags).
    pub fn engine(e: repscope::Error, name: &dyn Fn(repscope::Param) -> String) -> Failure {
        let code = match e {
            repscope::Error::Numerical { .. } => 1,
            _ => 2,
        };
        Failure {
            code,
            message: e.render(name),
        }
    }
}

/// The flag that sets an engine parameter.
pub fn flag(p: repscope::Param) -> String {
    use repscope::Param;
    match p {
        Param::K => "-k".into(),
        Param::Rows => "-n".into(),
        Param::Metric => "--metric".into(),
        Param::GrideOrders => "the GRIDE orders (n1, n2)".into(),
        Param::Dim => "the target dimension".into(),
        Param::Package => "the package name".into(),
        // Parameters of estimators that the CLI runs at their defaults (the Python classes set them).
        Param::Tau
        | Param::Alpha
        | Param::Beta
        | Param::K2
        | Param::Epsilon
        | Param::MaxDim
        | Param::Ratio
        | Param::Level
        | Param::SampleSizes
        | Param::Gamma
        | Param::Radius
        | Param::Draws
        | Param::Components
        | Param::Zeta
        | Param::SubsampleRange
        | Param::Sigma
        | Param::Patience => format!("the estimator's {}", p.name()),
        Param::Backend => "the forward pass's backend".into(),
        other => format!("--{}", other.name().replace('_', "-")),
    }
}

pub type CliResult = Result<(), Failure>;

/// Fails with exit code 2 and a message.
pub fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

/// Fixes glibc's mmap threshold at its default (128 KiB). Left alone, glibc raises the threshold each time a
/// large buffer is freed, so the later buffers of that size come from arenas that keep their pages after the
/// free: the kNN search's per-block buffers would then add tens of MiB to the peak RSS for nothing. With a
/// fixed threshold every buffer of 128 KiB or more is mapped on its own and returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    // SAFETY: mallopt is called once, before any other thread exists; a failure only leaves the default.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

/// Restores the default action of SIGPIPE, which the Rust runtime ignores: writing to a closed pipe
/// (`repscope spectrum x.npy --json | head -1`) then ends the process quietly, as it ends `cat` or `grep`,
/// instead of a panic on the failed write.
#[cfg(unix)]
fn default_sigpipe() {
    extern "C" {
        fn signal(signum: std::ffi::c_int, handler: usize) -> usize;
    }
    const SIGPIPE: std::ffi::c_int = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: called once at start-up, before any other thread exists; SIG_DFL is always a valid handler.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}

/// Inputs are memory-mapped; a file truncated by another process while it is read makes the next access to
/// a lost page raise SIGBUS, which would end the process with no word. The handler says what happened and
/// exits with code 2. It only calls `write` and `_exit`, which are async-signal-safe.
#[cfg(target_os = "linux")]
fn report_sigbus() {
    extern "C" {
        fn signal(signum: std::ffi::c_int, handler: usize) -> usize;
        fn write(fd: std::ffi::c_int, buf: *const u8, count: usize) -> isize;
        fn _exit(status: std::ffi::c_int) -> !;
    }
    const SIGBUS: std::ffi::c_int = 7;
    const MESSAGE: &[u8] = b"repscope: error: an input file was truncated or replaced while it was read (its memory map lost pages). Keep inputs unchanged while repscope runs, or copy them first.\n";
    extern "C" fn on_sigbus(_: std::ffi::c_int) {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MESSAGE is a static buffer.
        unsafe {
            write(2, MESSAGE.as_ptr(), MESSAGE.len());
            _exit(2);
        }
    }
    // SAFETY: called once at start-up, before any other thread exists; the handler is a plain function.
    unsafe {
        signal(SIGBUS, on_sigbus as *const () as usize);
    }
}

#[cfg(not(target_os = "linux"))]
fn report_sigbus() {}

/// More worker threads than this many per core only cost time (thousands of threads stall the pool).
const THREADS_PER_CORE: usize = 4;

fn main() -> ExitCode {
    fix_mmap_threshold();
    default_sigpipe();
    report_sigbus();
    let cli = Cli::parse();
    if let Some(t) = cli.global.threads {
        if t == 0 {
            eprintln!("repscope: error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let cap = THREADS_PER_CORE * cores;
        let t = if t > cap {
            if !cli.global.quiet {
                eprintln!(
                    "repscope: note: --threads {t} capped at {cap} ({THREADS_PER_CORE} per core on this machine's {cores} cores)"
                );
            }
            cap
        } else {
            t
        };
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    let result = match &cli.command {
        Command::Id(a) => commands::id::run(a, &cli.global),
        Command::Lid(a) => commands::lid::run(a, &cli.global),
        Command::Knn(a) => commands::knn::run(a, &cli.global),
        Command::Datasets { which } => commands::datasets::run(which, &cli.global),
        Command::Demo(a) => commands::demo::run(a, &cli.global),
        Command::Report(a) => commands::report::run(a, &cli.global),
        Command::Spectrum(a) => commands::spectrum::run(a, &cli.global),
        Command::Activations(a) => commands::activations::run(a, &cli.global),
        Command::Classes(a) => commands::classes::run(a, &cli.global),
        Command::Compare(a) => commands::compare::run(a, &cli.global),
        Command::Layers(a) => commands::layers::run(a, &cli.global),
        Command::SearchStudy(a) => commands::search_study::run(a, &cli.global),
        Command::Index { which } => commands::index::run(which, &cli.global),
        Command::Sae { which } => commands::sae::run(which, &cli.global),
        #[cfg(feature = "model")]
        Command::Embed(a) => commands::embed::run(a, &cli.global),
        #[cfg(feature = "model")]
        Command::AnalyzeModel(a) => commands::analyze_model::run(a, &cli.global),
        #[cfg(feature = "model")]
        Command::ModelPath(a) => commands::model_path::run(a, &cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("repscope: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Checks before any work that an output file can be created and that it is none of the inputs: an output
/// that resolves to an input (the same canonical path, or the same device and inode through a link) would
/// destroy it. An existing output is replaced only with `force`.
pub fn check_output<P: AsRef<std::path::Path>>(
    path: &std::path::Path,
    inputs: &[P],
    force: bool,
) -> CliResult {
    check_writable(path)?;
    for input in inputs.iter().map(AsRef::as_ref) {
        if same_file(path, input) {
            return Err(usage(format!(
                "{}: the output is the input file {}, which would be overwritten. Choose another output path.",
                path.display(),
                input.display()
            )));
        }
    }
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(repscope::Error::OutputExists {
            path: path.to_path_buf(),
            folder: false,
        }
        .into());
    }
    Ok(())
}

/// Bytes of memory this process can still allocate without swapping (Linux's MemAvailable); None where the
/// system does not say.
pub fn available_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fails before any work when `count` items of `per_item` bytes each will not fit in the available memory,
/// saying how many do. `what` names the items and `flag` the option that sets their number.
pub fn check_fits(what: &str, count: usize, per_item: u128, flag: &str) -> CliResult {
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    let need = count as u128 * per_item;
    if need > avail {
        let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
        return Err(usage(format!(
            "{count} {what} need about {:.1} GiB of memory, and {:.1} GiB is available. Choose {flag} {} or fewer.",
            gib(need),
            gib(avail),
            (avail * 8 / 10) / per_item.max(1)
        )));
    }
    Ok(())
}

/// Whether two paths name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(x), Ok(y)) if x == y
    )
}

/// Checks before any work that an output file can be created, so a long run never ends in a lost result.
pub fn check_writable(path: &std::path::Path) -> CliResult {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(usage(format!(
            "{}: the output folder {} does not exist. Create it first or choose another path.",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(usage(format!(
            "{}: is a folder. Give a file name for the output.",
            path.display()
        )));
    }
    let probe = dir.join(format!(".repscope-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(usage(format!(
            "{}: cannot write to {} ({e}). Choose a writable output path.",
            path.display(),
            dir.display()
        ))),
    }
}
