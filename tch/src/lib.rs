//! `ucag._tch`: the UCAG kernels on libtorch tensors (`kernels`), on the tensor's own
//! device, and their pyo3 binding (`python`, behind the default cargo feature `python`).
//! Built only against the torch series tch targets, and imported by `ucag.kernels` only
//! next to that torch. Without the `python` feature the crate is the kernels alone, which
//! `cargo test -p ucag-tch --no-default-features` tests against the ndarray core.

pub mod kernels;

#[cfg(feature = "python")]
mod python;
