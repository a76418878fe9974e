//! Client secrets: random, shown once by `serve add-client`, stored only as a SHA-256 hash in
//! the configuration, compared in constant time.
//!
//! A plain SHA-256 (not a password hash such as argon2) because the secrets are 256 random
//! bits, not something a person chose: nothing is gained by slowing a guess that cannot succeed,
//! and the service checks a secret on every request.

use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::protocol::b64url;

/// The prefix of every client secret, so a leaked one is recognised (secret scanners, logs).
pub const SECRET_PREFIX: &str = "dss_";

/// A new client secret and the hash the configuration stores.
pub struct NewClientSecret {
    /// The secret: `dss_` and 43 base64url characters (32 random bytes). Shown once.
    pub secret: SecretString,
    /// Its SHA-256, lowercase hex: the configuration's `secret_sha256`.
    pub sha256_hex: String,
}

impl std::fmt::Debug for NewClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewClientSecret")
            .field("secret", &"[REDACTED]")
            .field("sha256_hex", &self.sha256_hex)
            .finish()
    }
}

/// Makes a new client secret from the system's random source.
pub fn new_client_secret() -> NewClientSecret {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .expect("the system random source failed");
    let secret = SecretString::from(format!("{SECRET_PREFIX}{}", b64url(bytes.as_ref())));
    let sha256_hex = hex::encode(secret_hash(secret.expose_secret()));
    NewClientSecret { secret, sha256_hex }
}

/// The SHA-256 of a presented secret.
pub(crate) fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The index of the entry whose hash is the presented secret's. Every entry is compared, in
/// constant time each, so the time taken says nothing of which one matched or how closely.
pub(crate) fn find_by_secret<'a>(
    hashes: impl Iterator<Item = &'a [u8; 32]>,
    presented: &str,
) -> Option<usize> {
    let presented = secret_hash(presented);
    let mut found = None;
    for (i, hash) in hashes.enumerate() {
        if bool::from(hash.ct_eq(&presented)) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_is_random_prefixed_and_its_hash_matches_it_only() {
        let a = new_client_secret();
        let b = new_client_secret();
        assert!(a.secret.expose_secret().starts_with("dss_"));
        assert_eq!(a.secret.expose_secret().len(), 4 + 43);
        assert_ne!(a.secret.expose_secret(), b.secret.expose_secret());
        assert_eq!(a.sha256_hex.len(), 64);
        let hashes: Vec<[u8; 32]> = [&b, &a]
            .iter()
            .map(|s| hex::decode(&s.sha256_hex).unwrap().try_into().unwrap())
            .collect();
        assert_eq!(
            find_by_secret(hashes.iter(), a.secret.expose_secret()),
            Some(1)
        );
        assert_eq!(
            find_by_secret(hashes.iter(), b.secret.expose_secret()),
            Some(0)
        );
        assert_eq!(find_by_secret(hashes.iter(), "dss_wrong"), None);
        assert!(!format!("{a:?}").contains(a.secret.expose_secret()));
    }

    #[test]
    fn the_hash_is_plain_sha256_of_the_secret_text() {
        // sha256("abc"), from FIPS 180-2: what `printf abc | sha256sum` prints.
        assert_eq!(
            hex::encode(secret_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
