//! Software keys (stub).
use super::*;
/// A software key.
#[derive(Debug)]
pub struct SoftwareKey;
impl SoftwareKey {
    /// Reads a PEM file.
    pub fn from_pem_file(_p: &std::path::Path) -> Result<Self, BackendError> { todo!() }
}
impl KeyBackend for SoftwareKey {
    fn public_key(&self) -> &PublicKey { todo!() }
    fn sign(&self, _m: &[u8]) -> Result<Vec<u8>, BackendError> { todo!() }
    fn describe(&self) -> String { todo!() }
}
