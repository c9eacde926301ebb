//! Progress reporting without printing: the engine calls these hooks, a face decides how to show them.

/// Receives progress from long computations. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// A new stage with `total` units of work (0 when unknown).
    fn stage(&self, _name: &str, _total: u64) {}
    /// `n` more units of the current stage are done.
    fn advance(&self, _n: u64) {}
    /// A short status of the current stage (for example a loss), shown beside its progress.
    fn status(&self, _line: &str) {}
    /// The current stage is done.
    fn finish_stage(&self) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}
