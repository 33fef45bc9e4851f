//! ucag core: the geometry, resampling and folding of Unfold and Conquer Attribution
//! Guidance as plain Rust. `grid`, `resample` and `kernels` need neither Python nor
//! libtorch; the `python` feature adds the portable pyo3 binding `ucag._core` (`python`).
//! The libtorch kernels are the separate crate `ucag-tch` (tch/), the module `ucag._tch`.

pub mod error;
pub mod grid;
pub mod kernels;
pub mod resample;

#[cfg(feature = "python")]
mod python;

pub use error::UcagError;
pub use grid::Grid;
pub use kernels::Weighting;
