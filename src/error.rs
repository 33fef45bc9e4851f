//! The one error type of the core. Every error names the argument it is about, so the
//! binding can raise a Python exception that tells the user what to fix.

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
    pub fn argument(&self) -> &'static str {
        match self {
            UcagError::Value { argument, .. } | UcagError::Type { argument, .. } => argument,
        }
    }
}

/// Python exceptions for both extension modules: `Value` -> ValueError, `Type` -> TypeError.
#[cfg(feature = "pyo3")]
impl From<UcagError> for pyo3::PyErr {
    fn from(err: UcagError) -> pyo3::PyErr {
        use pyo3::exceptions::{PyTypeError, PyValueError};
        match err {
            UcagError::Value { .. } => PyValueError::new_err(err.to_string()),
            UcagError::Type { .. } => PyTypeError::new_err(err.to_string()),
        }
    }
}
