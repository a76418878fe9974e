//! pkcs11 backend (placeholder until its issue lands).
use super::{BackendError, KeyBackend, UriAttributes};
use std::sync::Arc;
/// Opens the key a `pkcs11:` URI names.
pub fn open_uri(attrs: &UriAttributes) -> Result<Arc<dyn KeyBackend>, BackendError> {
    Err(attrs.invalid("not implemented yet"))
}
