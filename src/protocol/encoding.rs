//! Base64url without padding, the encoding of every binary field on the Dfns wire.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Encodes bytes as base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The credential id this crate gives a key when none is chosen: base64url (no padding) of the
/// first 16 bytes of SHA-256 over the key's SPKI DER. Any unique base64url string is a valid
/// Dfns credential id; this one is stable, so the same key always gets the same id.
pub fn default_credential_id(key: &crate::backend::PublicKey) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.spki_der());
    b64url(&digest[..16])
}

/// Decodes base64url without padding (padding and the standard alphabet are refused: Dfns never
/// sends them, and accepting them would let two spellings of one value through).
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, crate::error::ProtocolError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| crate::error::ProtocolError::Malformed {
            what: "base64url value",
            reason: "not unpadded base64url (A-Z a-z 0-9 - _)".to_owned(),
        })
}
