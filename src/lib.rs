//! ucag core: the geometry, resampling and folding of Unfold and Conquer Attribution
//! Guidance as plain Rust. `grid`, `resample` and `kernels` need neither Python nor
//! libtorch; the `python` feature adds the tch kernels (`torch_kernels`) and the pyo3
//! binding (`python`).

pub mod error;
pub mod grid;
pub mod kernels;
pub mod resample;

#[cfg(feature = "python")]
pub mod torch_kernels;

#[cfg(feature = "python")]
mod python;

pub use error::UcagError;
pub use grid::Grid;
pub use kernels::Weighting;
