//! What the geometry does to nearest-neighbour search: the versioned HNSW index file ([`index_file`]),
//! smaller representations for search ([`compress`]), and the search study ([`study`]): recall against
//! the exact graph for vendor defaults, insertion orders and query difficulty (LID), next to the data's
//! intrinsic dimension. The HNSW index itself is a plan of the neighbour engine
//! ([`crate::neighbors::hnsw`], re-exported here).
pub mod compress;
pub use crate::neighbors::hnsw;
pub mod index_file;
pub mod kernels;
pub mod study;

pub use compress::{per_query_recall, recall_at_k};
pub use hnsw::{Hnsw, HnswParams};

pub use crate::neighbors::approximate::{approximate_knn, effective_ef, ApproximateInfo};
