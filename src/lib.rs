//! ucag core: the geometry, resampling and folding of Unfold and Conquer Attribution
//! Guidance as plain Rust. `grid`, `resample` and `kernels` need neither Python nor
//! libtorch; the `python` feature adds the portable pyo3 binding `ucag._core` (`python`).
//! The libtorch kernels are the separate crate `ucag-tch` (tch/), the module `ucag._tch`.
//!
//! Bad input never crashes: sizes from user input are computed with checked arithmetic,
//! the buffers they size are allocated fallibly (`alloc`), and both bindings run every
//! entry point through `error::py_guard`, so that even a bug surfaces as a Python
//! exception rather than an abort or a PanicException.

pub mod alloc;
pub mod error;
pub mod grid;
pub mod kernels;
pub mod resample;

#[cfg(feature = "python")]
mod python;

#[cfg(feature = "pyo3")]
pub use error::py_guard;
pub use error::{catch_panic, InternalError, UcagError};
pub use grid::{FoldWindow, Grid};
pub use kernels::Weighting;
