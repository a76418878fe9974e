//! piv backend (placeholder until its issue lands).
use super::{BackendError, KeyBackend, UriAttributes};
use std::sync::Arc;
/// Opens the key a `piv:` URI names.
pub fn open_uri(attrs: &UriAttributes) -> Result<Arc<dyn KeyBackend>, BackendError> {
    Err(attrs.invalid("not implemented yet"))
}
