//! repscope: the geometry of learned representations.
//!
//! The engine loads a representation once into a [`data::Matrix`], validates it into a [`data::Dataset`]
//! (finite values, duplicate rows grouped), builds one exact neighbour graph ([`neighbors::KnnGraph`]) and one
//! covariance spectrum, and every measure reads those. It never prints; faces (the CLI, Python) do.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod activations;
pub mod amx;
pub mod classes;
pub mod data;
pub mod datasets;
pub mod decomposition;
pub mod documents;
pub mod error;
pub mod fmt;
pub mod html;
pub mod intrinsic;
pub mod linalg;
pub mod moments;
pub mod neighbors;
pub mod partial;
pub mod progress;
pub mod report;
pub mod rng;
pub mod sae;
pub mod search;
pub mod similarity;
pub mod spectrum;

pub use data::{Dataset, Matrix};
pub use error::{Error, Param, Result, Text};
pub use neighbors::{KnnGraph, Metric};

/// The version of this crate, written into every output.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
