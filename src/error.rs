//! The one error type of the core. Every error names the argument it is about, so the
//! binding can raise a Python exception that tells the user what to fix. Panics (bugs in
//! ucag, never bad input) are caught at the binding boundary by `catch_panic` and become
//! an `InternalError`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UcagError {
    /// A value is out of range or inconsistent with another argument (Python `ValueError`).
    #[error("{argument}: {message}")]
    Value {
        argument: &'static str,
        message: String,
    },
    /// A value has the wrong type or dtype (Python `TypeError`).
    #[error("{argument}: {message}")]
    Type {
        argument: &'static str,
        message: String,
    },
    /// A buffer the argument's size asks for cannot be allocated on this machine (Python
    /// `MemoryError`); see `crate::alloc`.
    #[error("{argument}: {message}")]
    Memory {
        argument: &'static str,
        message: String,
    },
}

impl UcagError {
    pub fn value(argument: &'static str, message: impl Into<String>) -> Self {
        UcagError::Value {
            argument,
            message: message.into(),
        }
    }
    pub fn type_error(argument: &'static str, message: impl Into<String>) -> Self {
        UcagError::Type {
            argument,
            message: message.into(),
        }
    }
    pub fn memory(argument: &'static str, message: impl Into<String>) -> Self {
        UcagError::Memory {
            argument,
            message: message.into(),
        }
    }
    pub fn argument(&self) -> &'static str {
        match self {
            UcagError::Value { argument, .. }
            | UcagError::Type { argument, .. }
            | UcagError::Memory { argument, .. } => argument,
        }
    }
}

/// A panic caught at the binding boundary: a bug in ucag, whatever the input was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("ucag internal error: {0} (please report)")]
pub struct InternalError(pub String);

/// Runs `body`, turning a panic inside it (or inside the rayon tasks it waits for, which
/// rayon re-raises here) into an `InternalError` carrying the panic message. The default
/// panic hook still prints the message and location to stderr, for the report.
pub fn catch_panic<T>(body: impl FnOnce() -> T) -> Result<T, InternalError> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| InternalError(panic_message(&*payload)))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Python exceptions for both extension modules: `Value` -> ValueError, `Type` ->
/// TypeError, `Memory` -> MemoryError.
#[cfg(feature = "pyo3")]
impl From<UcagError> for pyo3::PyErr {
    fn from(err: UcagError) -> pyo3::PyErr {
        use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
        match err {
            UcagError::Value { .. } => PyValueError::new_err(err.to_string()),
            UcagError::Type { .. } => PyTypeError::new_err(err.to_string()),
            UcagError::Memory { .. } => PyMemoryError::new_err(err.to_string()),
        }
    }
}

/// An internal error is a RuntimeError: an `Exception`, which `except Exception` catches
/// (pyo3's own PanicException is a BaseException).
#[cfg(feature = "pyo3")]
impl From<InternalError> for pyo3::PyErr {
    fn from(err: InternalError) -> pyo3::PyErr {
        pyo3::exceptions::PyRuntimeError::new_err(err.to_string())
    }
}

/// The body of every `#[pyfunction]` and `#[pymethods]` entry point of both extension
/// modules runs inside this: no panic crosses into Python as pyo3's PanicException; it
/// becomes RuntimeError("ucag internal error: ... (please report)").
#[cfg(feature = "pyo3")]
pub fn py_guard<T>(body: impl FnOnce() -> pyo3::PyResult<T>) -> pyo3::PyResult<T> {
    catch_panic(body).unwrap_or_else(|err| Err(err.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let err = catch_panic(|| -> i32 { panic!("index {} out of range", 7) }).unwrap_err();
        assert_eq!(err, InternalError("index 7 out of range".into()));
        assert_eq!(
            err.to_string(),
            "ucag internal error: index 7 out of range (please report)"
        );
        let err = catch_panic(|| -> () { std::panic::panic_any(42u8) }).unwrap_err();
        assert_eq!(err.0, "a panic without a message");
        assert_eq!(catch_panic(|| 5), Ok(5));
    }

    #[test]
    fn a_panic_in_a_rayon_task_is_caught_too() {
        use rayon::prelude::*;
        let err = catch_panic(|| {
            (0..64).into_par_iter().for_each(|i| {
                if i == 37 {
                    panic!("task {i} failed");
                }
            })
        })
        .unwrap_err();
        assert_eq!(err.0, "task 37 failed");
    }

    #[test]
    fn errors_name_their_argument() {
        let err = UcagError::memory("images", "cannot allocate");
        assert_eq!(err.argument(), "images");
        assert_eq!(err.to_string(), "images: cannot allocate");
    }
}
