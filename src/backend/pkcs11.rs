//! pkcs11 backend (placeholder until its issue lands).
use std::sync::Arc;
use super::{BackendError, KeyBackend, UriAttributes};
/// Opens the key a `pkcs11:` URI names.
pub fn open_uri(attrs: &UriAttributes) -> Result<Arc<dyn KeyBackend>, BackendError> {
    Err(attrs.invalid("not implemented yet"))
}
