//! Keys on PKCS#11 tokens: hardware security modules, network HSMs, smart cards, SoftHSM.
//!
//! A [`Pkcs11Key`] signs with a private key that stays on the token: the message is hashed on
//! the host where the mechanism needs it and the token computes the signature. It is what a
//! custody backend links to sign Dfns challenges with an HSM-held credential key.
//!
//! # Naming a key
//!
//! An RFC 7512 URI ([`open_uri`]) or a [`Pkcs11Config`] built in code ([`Pkcs11Key::open`]):
//!
//! ```text
//! pkcs11:token=custody;object=dfns-signer-1;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN
//! ```
//!
//! | attribute | where | meaning | default |
//! |---|---|---|---|
//! | `token` | path | token label | the only initialised token |
//! | `serial` | path | token serial number | any |
//! | `manufacturer`, `model` | path | the token's manufacturer and model | any |
//! | `slot-id` | path | the slot the token sits in (decimal) | any |
//! | `object` | path | key label (`CKA_LABEL`) | — (`object` or `id` is required) |
//! | `id` | path | key id (`CKA_ID`), percent-encoded bytes | — |
//! | `type` | path | must be `private` if given | `private` |
//! | `module-path` | query | the PKCS#11 library | `$DFNS_SIGNER_PKCS11_MODULE`, else p11-kit's proxy module (the modules the system registered), else an error |
//! | `pin-source` | query | `env:NAME`, `file:PATH` or `prompt` | none (an error if the token needs a login) |
//! | `pool-size` | query | sessions kept for concurrent signing | number of CPU cores (1 when other code initialised the module) |
//! | `pool-wait` | query | seconds a signature waits for a free session before failing | 30 |
//! | `allow-unsafe-key` | query | `true` to accept an extractable, non-sensitive or non-private key | `false` |
//! | `allow-last-pin-try` | query | `true` to log in when the token reports one PIN try left | `false` |
//! | `verify-signatures` | query | `false` to skip checking each signature against the public key | `true` |
//!
//! A PIN is never accepted inside a URI.
//!
//! # Algorithms
//!
//! ECDSA P-256 and secp256k1 (`CKM_ECDSA` over a host-computed SHA-256, the token's raw `r‖s`
//! turned into minimal DER; secp256k1 signatures are normalised to low S: Dfns accepts either
//! S, but many secp256k1 verifiers (Bitcoin-style) take only the low one, and normalising keeps
//! the signature valid at no cost), Ed25519 (`CKM_EDDSA`, pure), RSA PKCS#1 v1.5 with SHA-256
//! (`CKM_SHA256_RSA_PKCS`, the signature left-padded to the modulus length should the module
//! strip leading zeros). Other curves and RSA under 2048 bits are refused at open. A curve is
//! recognised however the module gives `CKA_EC_PARAMS`: the named curve's OID, explicit
//! parameters equal to P-256's or secp256k1's (Yubico's ykcs11 gives those), or a printable
//! curve name. The public key is read from the paired public key object, the private key's own
//! `CKA_EC_POINT`, or the certificate with the same id (PIV modules), in that order.
//!
//! # Keys that want the PIN before every signature
//!
//! A key marked `CKA_ALWAYS_AUTHENTICATE` (a YubiKey's slot 9c through ykcs11, many HSMs'
//! signing keys) is signed with a context-specific login: `C_SignInit`, `C_Login` with
//! `CKU_CONTEXT_SPECIFIC` and the PIN from `pin-source` (read once, held as a secret), then the
//! data in parts (`C_SignUpdate`, `C_SignFinal`; ECDSA through `CKM_ECDSA_SHA256`). Each
//! signature costs one more round trip to the token, and on a smart card a PIN verification;
//! [`Pkcs11Key::pin_per_signature`] says whether a key does. The PIN rules below apply to every
//! one of those logins: one refusal stops the key for good.
//!
//! # Concurrency and recovery
//!
//! One module context per library path for the whole process (initialised with OS locking), one
//! login per token, and a pool of sessions per key: each signature checks a session out, so
//! several threads sign at once. When the token loses our sessions, login or key handle
//! (sessions closed or logged out by someone else, token re-inserted or re-initialised), the key
//! reopens — finds the token again by label/serial, logs in, finds the key again and checks it
//! is still the same key pair — and retries the signature once. A key replaced under the same
//! label is refused ([`BackendError::KeyNotFound`] naming both keys): its signatures would not
//! verify against the credential registered with Dfns. A module finalised by other code in the
//! process (`C_Finalize`) is reported, not healed.
//!
//! Code that makes its own PKCS#11 calls on the same module should take the context from
//! [`shared_context`] rather than initialise the module a second time.
//!
//! # PIN safety
//!
//! A PIN a token refused is never presented to that token again by the process: not by the key
//! that met the refusal (not even on a later reopen), nor by another key opened on the same
//! token with the same PIN, nor by [`generate_key`]; every later call returns the same error
//! without calling `C_Login`. The same holds for a login that ended without an answer (device
//! removed, network HSM dropped): the token may have counted a try. Refusals are remembered per
//! module and token serial as a keyed digest of the PIN, in memory only; a different PIN (the
//! operator fixed it) is tried. The error says how many tries are left when the token tells.
//!
//! When the token reports its last try (`CKF_USER_PIN_FINAL_TRY`), the login is refused with
//! [`BackendError::LastPinTry`] unless `allow-last-pin-try=true`; a low count
//! (`CKF_USER_PIN_COUNT_LOW`) is logged as a warning.
//!
//! # Faulty and stuck tokens
//!
//! Every signature is verified against the public key before it is returned
//! (`verify-signatures`, on by default): a token with a faulty RSA-CRT or ECDSA nonce source must
//! not hand out a bad signature, which could leak its key. A signature waits at most `pool-wait`
//! for a free session, so a token that stopped answering fails the signers queued behind it
//! instead of hanging them (the client adds its own deadline around each signature).
//!
//! # Key protection
//!
//! By default a key the token marks extractable, not sensitive, or usable without a login
//! (`CKA_PRIVATE` false) is refused ([`BackendError::UnsafeKey`]); [`KeyProvenance`] reports
//! whether the token vouches it was generated there and never left. [`generate_key`] creates
//! keys that pass.

mod config;
pub(crate) mod curves;
mod fault;
mod inventory;
pub(crate) mod key;
mod keygen;
mod module;
mod pool;
mod token;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use sha2::Digest;

use self::key::KeyInfo;
use self::module::Module;
use self::pool::{Generational, OwnedSession, Pool, Pooled};
use self::token::{FoundToken, Login};
use super::{Algorithm, BackendError, KeyBackend, PublicKey, SignatureVerifier, UriAttributes};

pub use self::config::{Pkcs11Config, DEFAULT_POOL_WAIT};
pub use self::inventory::{list_tokens, KeyObject, TokenInventory};
pub use self::key::KeyProvenance;
pub use self::keygen::{generate_key, generate_key_for_uri};
pub use self::module::{shared_context, MODULE_ENV};

/// Opens the key a `pkcs11:` URI names (see the [module docs](self) for the attributes).
pub fn open_uri(attrs: &UriAttributes) -> Result<Arc<dyn KeyBackend>, BackendError> {
    Ok(Arc::new(Pkcs11Key::open(&Pkcs11Config::from_uri(attrs)?)?))
}

/// A message signed once at open to check that the public key object read from the token
/// belongs to the private key.
const PAIR_PROBE: &[u8] = b"dfns-signer: check that the public key matches the private key";

/// Where the key is now: which slot, which handle, under which reopen generation.
struct Current {
    generation: u64,
    token: FoundToken,
    key: ObjectHandle,
}

/// A private key on a PKCS#11 token, ready to sign from several threads.
pub struct Pkcs11Key {
    module: Arc<Module>,
    config: Pkcs11Config,
    login: Login,
    public_key: PublicKey,
    /// `public_key` parsed once: every signature is checked with it (`verify-signatures`).
    verifier: SignatureVerifier,
    /// RSA: the modulus length in bytes, which every signature has (zero for other keys).
    rsa_len: usize,
    provenance: KeyProvenance,
    /// `CKA_ALWAYS_AUTHENTICATE`: a context-specific login before every signature.
    pin_per_signature: bool,
    key_name: String,
    current: RwLock<Current>,
    /// Mirrors `current.generation`, read lock-free on every signature.
    generation: AtomicU64,
    /// Serialises reopens, so that threads failing together reopen once.
    reopening: Mutex<()>,
    reopens: AtomicU64,
    /// Sessions older than this generation were closed by the module (see [`pool`]).
    sessions_valid_from: Arc<AtomicU64>,
    pool: Pool,
}

/// The first steps of every use of a config: load the module, find the token, read the PIN
/// (from its source, once).
fn connect(
    config: &Pkcs11Config,
) -> Result<
    (
        Arc<module::Module>,
        token::FoundToken,
        Option<secrecy::SecretString>,
    ),
    BackendError,
> {
    let path = module::resolve_path(config.module_path.as_deref()).map_err(|reason| {
        BackendError::Device {
            device: "PKCS#11".into(),
            operation: "choosing the module".into(),
            reason,
            source: None,
        }
    })?;
    let module = module::load(&path)?;
    let token = token::find(&module, &config.token)?;
    let pin = config
        .pin
        .as_ref()
        .map(|src| src.read(&format!("User PIN for {}", token.name())))
        .transpose()?;
    Ok((module, token, pin))
}

/// How one signature in a session failed: the token refused the operation, or the
/// context-specific login before it failed (already mapped, refusal recorded).
enum SignFailure {
    Token(cryptoki::error::Error),
    Login(BackendError),
}

/// How one signing attempt failed.
enum Attempt {
    /// The session, login or handle went away; a reopen may cure it.
    Lost {
        generation: u64,
        reason: String,
        /// The module may have closed the sessions of `generation` (see [`fault::sessions_dead`]):
        /// they must be forgotten, not closed.
        sessions_dead: bool,
    },
    /// Anything else: reported as is.
    Failed(BackendError),
}

impl Pkcs11Key {
    /// Loads the module, finds the token and the key, logs in, reads the public key and checks it
    /// against the private key with one test signature.
    pub fn open(config: &Pkcs11Config) -> Result<Self, BackendError> {
        if config.key.label.is_none() && config.key.id.is_none() {
            return Err(BackendError::KeyLoad {
                what: "PKCS#11 key".into(),
                reason: "no key named: give a key label and/or id".into(),
            });
        }
        let (module, token, pin) = connect(config)?;
        let token_name = token.name();
        let login = Login::new(pin, config.allow_last_pin_try);
        let sessions_valid_from = Arc::new(AtomicU64::new(0));
        let (session, handle, info) = find_key(
            &module,
            &token,
            &login,
            &config.key,
            0,
            &sessions_valid_from,
        )?;
        check_protection(&info, &token_name, config.allow_unsafe_key)?;
        check_signable_in_parts(&module, &token, &info)?;
        let rsa_len = rsa_signature_len(&info.public_key)?;
        let key_name = format!(
            "PKCS#11 key {} on {token_name} via {}",
            info.name(),
            module.path().display()
        );

        let pool = Pool::new(if module.concurrent_calls_allowed() {
            config.pool_size()
        } else {
            1
        });
        let key = Pkcs11Key {
            module,
            config: config.clone(),
            login,
            verifier: info.public_key.verifier()?,
            public_key: info.public_key.clone(),
            rsa_len,
            provenance: info.provenance,
            pin_per_signature: info.pin_per_signature,
            key_name,
            current: RwLock::new(Current {
                generation: 0,
                token,
                key: handle,
            }),
            generation: AtomicU64::new(0),
            reopening: Mutex::new(()),
            reopens: AtomicU64::new(0),
            sessions_valid_from,
            pool,
        };
        // The open session stays in the pool: closing a token's last session logs it out.
        key.pool.put(Pooled {
            session,
            key: handle,
        });
        let probe = key.sign_unchecked(PAIR_PROBE)?;
        key.public_key.verify(PAIR_PROBE, &probe).map_err(|_| BackendError::KeyLoad {
            what: key.key_name.clone(),
            reason: "the public key object with this id does not belong to the private key (a test \
                     signature does not verify); fix the token's objects so that each pair shares one CKA_ID"
                .into(),
        })?;
        Ok(key)
    }

    /// How the token protects this key and where it came from.
    pub fn provenance(&self) -> KeyProvenance {
        self.provenance
    }

    /// How many times this key called `C_Login` (a PIN the token refused is not presented again
    /// by any key of the process). For monitoring and tests.
    ///
    /// A test hook, hidden from the documentation: not part of the stable API.
    #[doc(hidden)]
    pub fn login_attempts(&self) -> u64 {
        self.login.attempts()
    }

    /// How many times this key reopened its token after losing sessions, login or handles.
    ///
    /// A test hook, hidden from the documentation: not part of the stable API.
    #[doc(hidden)]
    pub fn reopen_count(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Sessions this key holds open now.
    ///
    /// A test hook, hidden from the documentation: not part of the stable API.
    #[doc(hidden)]
    pub fn open_sessions(&self) -> usize {
        self.pool.open_sessions()
    }

    /// The config this key was opened with.
    pub fn config(&self) -> &Pkcs11Config {
        &self.config
    }

    /// The mechanism, and whether it takes the message's SHA-256 (hashed on the host) rather
    /// than the message.
    ///
    /// A key that wants the PIN before every signature is signed in parts (`C_SignInit`, the
    /// context-specific login, `C_SignUpdate`, `C_SignFinal`: `cryptoki` has no single-part
    /// `C_Sign` after an init), so its ECDSA uses `CKM_ECDSA_SHA256`, which tokens that offer
    /// it take in parts, where plain `CKM_ECDSA` is single-part only (checked at open:
    /// `check_signable_in_parts`).
    fn mechanism(&self) -> (Mechanism<'static>, bool) {
        match self.public_key.algorithm() {
            Algorithm::EcdsaP256 | Algorithm::EcdsaSecp256k1 if self.pin_per_signature => {
                (Mechanism::EcdsaSha256, false)
            }
            Algorithm::EcdsaP256 | Algorithm::EcdsaSecp256k1 => (Mechanism::Ecdsa, true),
            Algorithm::Ed25519 => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                false,
            ),
            Algorithm::RsaPkcs1Sha256 => (Mechanism::Sha256RsaPkcs, false),
        }
    }

    /// Whether the token asks for the PIN again before every signature with this key
    /// (`CKA_ALWAYS_AUTHENTICATE`, e.g. a YubiKey's slot 9c through ykcs11). Each signature then
    /// costs one more round trip to the token (a context-specific `C_Login`) and, on a smart
    /// card, a PIN verification; a PIN the token refuses there stops the key for good.
    pub fn pin_per_signature(&self) -> bool {
        self.pin_per_signature
    }

    /// One signature in `session`: `C_Sign`, or for a key that wants the PIN every time,
    /// `C_SignInit`, the context-specific login, then the data in parts.
    fn sign_in(
        &self,
        session: &cryptoki::session::Session,
        key: ObjectHandle,
        mechanism: &Mechanism<'_>,
        input: &[u8],
    ) -> Result<Vec<u8>, SignFailure> {
        if !self.pin_per_signature {
            return session
                .sign(mechanism, key, input)
                .map_err(SignFailure::Token);
        }
        session
            .sign_init(mechanism, key)
            .map_err(SignFailure::Token)?;
        let token = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .token
            .clone();
        self.login
            .context_specific(&self.module, session, &token)
            .map_err(SignFailure::Login)?;
        session.sign_update(input).map_err(SignFailure::Token)?;
        session.sign_final().map_err(SignFailure::Token)
    }

    /// Opens a new pooled session under the current generation.
    fn open_session(&self) -> Result<Pooled, Attempt> {
        let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
        match self.module.ctx().open_ro_session_no_drop(cur.token.slot) {
            Ok(session) => Ok(Pooled {
                session: OwnedSession::new(
                    session,
                    cur.token.slot,
                    cur.generation,
                    &self.sessions_valid_from,
                ),
                key: cur.key,
            }),
            Err(e) if fault::is_reopenable(&e) => Err(Attempt::Lost {
                generation: cur.generation,
                reason: fault::describe(&e),
                sessions_dead: fault::sessions_dead(&e),
            }),
            Err(e) => Err(Attempt::Failed(fault::device(
                &self.key_name,
                "opening a session",
                e,
            ))),
        }
    }

    fn sign_once(&self, mechanism: &Mechanism<'_>, input: &[u8]) -> Result<Vec<u8>, Attempt> {
        let generation = self.generation.load(Ordering::Acquire);
        let lease = self.pool.checkout(
            generation,
            self.config.pool_wait,
            || self.open_session(),
            || {
                Attempt::Failed(BackendError::Device {
                    device: self.key_name.clone(),
                    operation: "waiting for a free session".into(),
                    reason: format!(
                        "all {} sessions stayed busy for {} s: the token may be stuck (a network \
                         HSM that stopped answering?); check it, or raise `pool-size`/`pool-wait`",
                        self.pool.capacity(),
                        self.config.pool_wait.as_secs()
                    ),
                    source: None,
                })
            },
        )?;
        let p = lease.get();
        match self.sign_in(p.session.get(), p.key, mechanism, input) {
            Ok(sig) => Ok(sig),
            Err(SignFailure::Login(e)) => {
                // The sign operation is still active in that session: close it.
                lease.discard();
                Err(Attempt::Failed(e))
            }
            Err(SignFailure::Token(e)) => {
                let generation = p.generation();
                let sessions_dead = fault::sessions_dead(&e);
                if sessions_dead {
                    // The module may have closed it and given its number to another session:
                    // closing it could close someone else's (see `pool`).
                    lease.forget();
                } else {
                    // The module answered, so the session is alive (a failed C_Sign ends the
                    // operation). Forgetting it would leak one session per call until the token
                    // runs out (CKR_SESSION_COUNT), for every user of it: close it, or keep it
                    // if it is the last one (closing that would log the token out).
                    lease.discard_unless_last();
                }
                if fault::is_reopenable(&e) {
                    Err(Attempt::Lost {
                        generation,
                        reason: fault::describe(&e),
                        sessions_dead,
                    })
                } else {
                    Err(Attempt::Failed(fault::device(&self.key_name, "signing", e)))
                }
            }
        }
    }

    /// Finds the token, logs in and finds the key again, unless another thread already did
    /// since `seen` failed. Sessions of generation `seen` and older are closed as they come back
    /// to the pool, or forgotten if `sessions_dead` (the module closed them already).
    fn reopen(&self, seen: u64, sessions_dead: bool) -> Result<(), BackendError> {
        if sessions_dead {
            self.forget_sessions_up_to(seen);
        }
        let _one_at_a_time = self.reopening.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let generation = seen + 1;
        let token = token::find(&self.module, &self.config.token)?;
        let name = token.name();
        let (session, handle, info) = find_key(
            &self.module,
            &token,
            &self.login,
            &self.config.key,
            generation,
            &self.sessions_valid_from,
        )?;
        if info.public_key != self.public_key {
            // Same label or id, another key (the token was re-initialised or the key replaced).
            // Signing with it would give signatures the registered credential cannot verify.
            return Err(BackendError::KeyNotFound {
                wanted: format!(
                    "{} with the public key it had when opened ({})",
                    self.config.key.wanted(),
                    self.public_key.fingerprint()
                ),
                device: name,
                found: vec![format!(
                    "{} with another public key ({}): the key was replaced; open it anew \
                     and register its public key with Dfns",
                    info.name(),
                    info.public_key.fingerprint()
                )],
            });
        }
        check_protection(&info, &name, self.config.allow_unsafe_key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Current {
            generation,
            token,
            key: handle,
        };
        self.generation.store(generation, Ordering::Release);
        self.pool.put(Pooled {
            session,
            key: handle,
        });
        self.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Marks sessions of `generation` and older as dead: whether or not a reopen succeeds, they
    /// must never be closed (their handle numbers may be someone else's by now). Only for errors
    /// that say the module closed them ([`fault::sessions_dead`]); after a logout or a lost key
    /// handle they are alive and closing them is what keeps them from leaking.
    fn forget_sessions_up_to(&self, generation: u64) {
        self.sessions_valid_from
            .fetch_max(generation + 1, Ordering::AcqRel);
    }
}

/// Opens a session on `token` under `generation`, logs in, finds the private key `wanted` and
/// reads it: the common steps of opening and reopening a key.
fn find_key(
    module: &Module,
    token: &FoundToken,
    login: &Login,
    wanted: &key::KeySelector,
    generation: u64,
    valid_from: &Arc<AtomicU64>,
) -> Result<(OwnedSession, ObjectHandle, KeyInfo), BackendError> {
    let name = token.name();
    let session = module
        .ctx()
        .open_ro_session_no_drop(token.slot)
        .map_err(|e| fault::device(&name, "opening a session", e))?;
    // Wrapped at once, so that every early return below closes it.
    let session = OwnedSession::new(session, token.slot, generation, valid_from);
    login.ensure(module, session.get(), token)?;
    let handle = key::find_private(session.get(), wanted, &name)?;
    let info = key::read(session.get(), handle, &name)?;
    Ok((session, handle, info))
}

/// The length every signature of an RSA key has, in bytes (its modulus length); zero for other
/// keys.
fn rsa_signature_len(public_key: &PublicKey) -> Result<usize, BackendError> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    if public_key.algorithm() != Algorithm::RsaPkcs1Sha256 {
        return Ok(0);
    }
    rsa::RsaPublicKey::from_public_key_der(public_key.spki_der())
        .map(|k| k.size())
        .map_err(|e| BackendError::Crypto(format!("reading the RSA public key: {e}")))
}

/// Turns the token's raw signature into Dfns' wire encoding; `rsa_len` is the RSA modulus
/// length in bytes.
pub(crate) fn encode(
    alg: Algorithm,
    rsa_len: usize,
    raw: Vec<u8>,
) -> Result<Vec<u8>, BackendError> {
    let bad = |what: &str| {
        BackendError::Crypto(format!("the token returned a malformed {what} signature"))
    };
    match alg {
        Algorithm::EcdsaP256 => {
            let sig = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| bad("P-256"))?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        Algorithm::EcdsaSecp256k1 => {
            // Tokens return either S. Dfns accepts both; low S is what many secp256k1
            // verifiers insist on, and normalising keeps the signature valid.
            let sig = k256::ecdsa::Signature::from_slice(&raw)
                .map_err(|_| bad("secp256k1"))?
                .normalize_s();
            Ok(sig.to_der().as_bytes().to_vec())
        }
        Algorithm::Ed25519 if raw.len() == 64 => Ok(raw),
        Algorithm::Ed25519 => Err(bad("Ed25519")),
        // PKCS#1 fixes the signature's length to the modulus'; a module that returns the
        // integer without its leading zero bytes (1 signature in 256) would be refused by
        // verifiers that check the length (OpenSSL: WRONG_SIGNATURE_LENGTH).
        Algorithm::RsaPkcs1Sha256 if raw.len() < rsa_len => {
            let mut padded = vec![0u8; rsa_len - raw.len()];
            padded.extend_from_slice(&raw);
            Ok(padded)
        }
        Algorithm::RsaPkcs1Sha256 if raw.len() == rsa_len => Ok(raw),
        Algorithm::RsaPkcs1Sha256 => Err(bad("RSA (longer than the modulus)")),
    }
}

/// A key that wants the PIN before every signature is signed in parts (see
/// `Pkcs11Key::mechanism`): an ECDSA key then needs `CKM_ECDSA_SHA256`, which some tokens
/// (SoftHSM 2.6) do not offer. Said at open, rather than as an odd error at the first signature.
fn check_signable_in_parts(
    module: &Module,
    token: &FoundToken,
    info: &KeyInfo,
) -> Result<(), BackendError> {
    let ecdsa = matches!(
        info.public_key.algorithm(),
        Algorithm::EcdsaP256 | Algorithm::EcdsaSecp256k1
    );
    if !info.pin_per_signature || !ecdsa {
        return Ok(());
    }
    let mechanisms = module
        .ctx()
        .get_mechanism_list(token.slot)
        .map_err(|e| fault::device(&token.name(), "listing mechanisms", e))?;
    if mechanisms.contains(&cryptoki::mechanism::MechanismType::ECDSA_SHA256) {
        return Ok(());
    }
    Err(BackendError::UnsupportedKey(format!(
        "key {} on {} asks for the PIN before every signature (CKA_ALWAYS_AUTHENTICATE), which \
         needs CKM_ECDSA_SHA256, and this token does not offer it; use a key without that policy",
        info.name(),
        token.name()
    )))
}

fn check_protection(info: &KeyInfo, token: &str, allow: bool) -> Result<(), BackendError> {
    let p = &info.provenance;
    if p.is_protected() {
        return Ok(());
    }
    let mut why = Vec::new();
    if !p.private {
        why.push("CKA_PRIVATE is false (anyone who can open a session on the token signs with it, without a login)");
    }
    if p.extractable {
        why.push("CKA_EXTRACTABLE is true (it can be exported)");
    }
    if !p.sensitive {
        why.push("CKA_SENSITIVE is false (its value can be read)");
    }
    let key = format!("{} on {token}", info.name());
    if allow {
        tracing::warn!(
            key = %key,
            "SIGNING WITH AN UNPROTECTED KEY: {}; it is not bound to the hardware (allowed by allow-unsafe-key)",
            why.join(", ")
        );
        return Ok(());
    }
    Err(BackendError::UnsafeKey {
        key,
        reason: format!(
            "{}; generate the key on the token (sensitive, not extractable), or accept the risk with \
             `allow-unsafe-key=true` in the URI (Pkcs11Config::allow_unsafe_key)",
            why.join(", ")
        ),
    })
}

impl KeyBackend for Pkcs11Key {
    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let signature = self.sign_unchecked(message)?;
        if self.config.verify_signatures && self.verifier.verify(message, &signature).is_err() {
            // A token with a faulty RSA-CRT or a bad ECDSA nonce source: such a signature can
            // leak the private key, and would be refused by Dfns anyway. It never leaves.
            tracing::error!(key = %self.key_name, "the token returned a signature that does not verify; discarded");
            return Err(BackendError::Crypto(format!(
                "{} returned a signature that does not verify against its public key; it was \
                 discarded. The token may be faulty: check it before signing again",
                self.key_name
            )));
        }
        Ok(signature)
    }

    fn describe(&self) -> String {
        self.key_name.clone()
    }

    fn session_pool(&self) -> Option<crate::backend::SessionPool> {
        Some(crate::backend::SessionPool::new(
            self.pool.open_sessions(),
            self.pool.capacity(),
            self.pool.waits(),
        ))
    }

    /// The token is found again from the module's slot list, and a new read-only session
    /// without login finds the key's public key object and reads the same public key. A token
    /// whose public key shows only through the private key or a certificate (some PIV modules)
    /// counts as ready once the token is found.
    fn check_ready(&self) -> Result<(), BackendError> {
        let token = token::find(&self.module, &self.config.token)?;
        let name = token.name();
        let session = self
            .module
            .ctx()
            .open_ro_session(token.slot)
            .map_err(|e| fault::device(&name, "opening a session", e))?;
        match key::public_key_object(
            &session,
            &self.config.key,
            self.public_key.algorithm(),
            &name,
        )? {
            Some(found) if found != self.public_key => Err(BackendError::KeyLoad {
                what: self.key_name.clone(),
                reason: "the token's public key object for this key is no longer the key this \
                         process opened (the key was replaced): restart to use the new key, and \
                         register it first"
                    .into(),
            }),
            _ => Ok(()),
        }
    }
}

impl Pkcs11Key {
    /// Signs without checking the signature (see `verify-signatures`): one try, then a reopen
    /// and one more try when the token lost our state.
    fn sign_unchecked(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let digest;
        let (mechanism, prehashed) = self.mechanism();
        // CKM_ECDSA signs a digest: hashing on the host works with every module. CKM_EDDSA is
        // pure; CKM_SHA256_RSA_PKCS and CKM_ECDSA_SHA256 hash on the token.
        let input: &[u8] = if prehashed {
            digest = sha2::Sha256::digest(message);
            &digest
        } else {
            message
        };
        let (seen, reason, sessions_dead) = match self.sign_once(&mechanism, input) {
            Ok(raw) => return encode(self.public_key.algorithm(), self.rsa_len, raw),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Lost {
                generation,
                reason,
                sessions_dead,
            }) => (generation, reason, sessions_dead),
        };
        tracing::info!(key = %self.key_name, %reason, "token state lost; reopening and retrying once");
        self.reopen(seen, sessions_dead)?;
        match self.sign_once(&mechanism, input) {
            Ok(raw) => encode(self.public_key.algorithm(), self.rsa_len, raw),
            Err(Attempt::Failed(e)) => Err(e),
            Err(Attempt::Lost {
                reason,
                generation,
                sessions_dead,
            }) => {
                if sessions_dead {
                    self.forget_sessions_up_to(generation);
                }
                Err(BackendError::Device {
                    device: self.key_name.clone(),
                    operation: "signing".into(),
                    reason: format!(
                        "{reason}, again after reopening the token; not retrying further"
                    ),
                    source: None,
                })
            }
        }
    }
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("key", &self.key_name)
            .field("algorithm", &self.public_key.algorithm())
            .field("login", &self.login)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_signatures_are_padded_to_the_modulus_length() {
        let alg = Algorithm::RsaPkcs1Sha256;
        // A module that stripped the leading zero byte of a 256-byte signature.
        let stripped: Vec<u8> = (1..=255u8).collect();
        let sig = encode(alg, 256, stripped.clone()).unwrap();
        assert_eq!(sig.len(), 256);
        assert_eq!(sig[0], 0);
        assert_eq!(&sig[1..], &stripped[..]);
        let full = vec![0x5a; 256];
        assert_eq!(encode(alg, 256, full.clone()).unwrap(), full);
        assert!(matches!(
            encode(alg, 256, vec![1; 257]),
            Err(BackendError::Crypto(_))
        ));
    }

    #[test]
    fn ed25519_signatures_must_be_64_bytes() {
        assert!(encode(Algorithm::Ed25519, 0, vec![1; 63]).is_err());
        assert_eq!(
            encode(Algorithm::Ed25519, 0, vec![1; 64]).unwrap().len(),
            64
        );
    }
}
