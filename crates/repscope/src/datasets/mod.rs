//! Generators of data with known answers.
pub mod manifolds;
