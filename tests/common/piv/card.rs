//! A virtual YubiKey PIV card that speaks vpcd, so the real PC/SC stack (pcscd, the `yubikey`
//! crate, `yubico-piv-tool`, `ykcs11`) can be tested without hardware.
//!
//! It answers the APDUs listed in docs/virtual-card.md with real cryptography (P-256,
//! RSA-2048, Ed25519, 3DES/AES management keys) and keeps counters a test can read back (how
//! many PIN VERIFYs it received, how many signatures it made). It is test support, not a
//! security boundary: keys live in ordinary memory.
//!
//! Wire format (vpcd): the card is a TCP client of pcscd's vpcd driver; every message is a 2-byte
//! big-endian length and a body. A 1-byte body is a control code (0 power off, 1 power on,
//! 2 reset, 4 "send your ATR"); anything longer is a command APDU, answered with data‖SW1SW2.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use rand_core::{TryRng, UnwrapErr};
use signature::hazmat::PrehashSigner;
use signature::Signer;

/// YubiKey 5 ATR ("YubiKey@" in the historical bytes).
const ATR: [u8; 23] = [
    0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
];
const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
const SELECT_RESPONSE: [u8; 19] = [
    0x61, 0x11, 0x4F, 0x06, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, 0x79, 0x07, 0x4F, 0x05, 0xA0, 0x00,
    0x00, 0x03, 0x08,
];
/// The default management key of every YubiKey (3DES before 5.7, AES-192 from 5.7 on).
pub const DEFAULT_MGM_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
/// The factory PIN of every YubiKey.
pub const DEFAULT_PIN: &str = "123456";
/// The factory PUK of every YubiKey.
pub const DEFAULT_PUK: &str = "12345678";
/// The "printed information" object. Yubico's tools keep a PIN-protected management key in it
/// (`88 { 89 key }`), which is why a YubiKey reads it only with the PIN verified; this card wants
/// the PIN to write it too (the tools always verify it first, to read the object back).
const PRINTED_OBJECT: [u8; 3] = [0x5F, 0xC1, 0x09];
/// PIN and PUK references (P2 of VERIFY, CHANGE REFERENCE, RESET RETRY, GET METADATA).
const REF_PIN: u8 = 0x80;
const REF_PUK: u8 = 0x81;
/// Touch policies as the card reports them in metadata (tag 02, second byte).
const TOUCH_NEVER: u8 = 1;
const TOUCH_ALWAYS: u8 = 2;
const TOUCH_CACHED: u8 = 3;

const SW_OK: u16 = 0x9000;
const SW_SECURITY: u16 = 0x6982;
const SW_BLOCKED: u16 = 0x6983;
const SW_CONDITIONS: u16 = 0x6985;
const SW_WRONG_DATA: u16 = 0x6A80;
const SW_NOT_SUPPORTED_FN: u16 = 0x6A81;
const SW_FILE_NOT_FOUND: u16 = 0x6A82;
const SW_WRONG_P1P2: u16 = 0x6A86;
const SW_REF_NOT_FOUND: u16 = 0x6A88;
const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
const SW_WRONG_LENGTH: u16 = 0x6700;

/// Management-key algorithm (P1 of GENERAL AUTHENTICATE on slot 9B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmAlgorithm {
    /// 3DES (firmware before 5.7).
    TripleDes,
    /// AES-128.
    Aes128,
    /// AES-192 (default from firmware 5.7).
    Aes192,
    /// AES-256.
    Aes256,
}

impl MgmAlgorithm {
    /// The algorithm with this id, as the `yubikey` crate's `MgmAlgorithmId` numbers them.
    fn from_id(id: u8) -> Option<Self> {
        match id {
            0x03 => Some(MgmAlgorithm::TripleDes),
            0x08 => Some(MgmAlgorithm::Aes128),
            0x0A => Some(MgmAlgorithm::Aes192),
            0x0C => Some(MgmAlgorithm::Aes256),
            _ => None,
        }
    }
    fn id(self) -> u8 {
        match self {
            MgmAlgorithm::TripleDes => 0x03,
            MgmAlgorithm::Aes128 => 0x08,
            MgmAlgorithm::Aes192 => 0x0A,
            MgmAlgorithm::Aes256 => 0x0C,
        }
    }
    fn block_len(self) -> usize {
        match self {
            MgmAlgorithm::TripleDes => 8,
            _ => 16,
        }
    }
    fn key_len(self) -> usize {
        match self {
            MgmAlgorithm::Aes128 => 16,
            MgmAlgorithm::TripleDes | MgmAlgorithm::Aes192 => 24,
            MgmAlgorithm::Aes256 => 32,
        }
    }
}

/// The key and certificate the card attests with (slot F9), issued by a test root.
#[derive(Clone)]
pub struct AttestationIdentity {
    /// The device attestation key.
    pub key: p256::ecdsa::SigningKey,
    /// Its certificate (DER), issued by the test root; stored in object 5FFF01.
    pub certificate_der: Vec<u8>,
}

/// How a card is set up when it starts.
#[derive(Clone)]
pub struct CardConfig {
    /// Serial number (GET SERIAL).
    pub serial: u32,
    /// Firmware version (GET VERSION); 5.7.1 by default.
    pub version: [u8; 3],
    /// Management-key algorithm; AES-192 by default, as on firmware 5.7+.
    pub mgm_algorithm: MgmAlgorithm,
    /// Management key bytes.
    pub mgm_key: Vec<u8>,
    /// The PIN (ASCII).
    pub pin: String,
    /// PIN retry counter (total).
    pub pin_retries: u8,
    /// The PUK (ASCII), which unblocks the PIN (RESET RETRY COUNTER).
    pub puk: String,
    /// PUK retry counter (total).
    pub puk_retries: u8,
    /// Attestation key and certificate; `None` makes ATTEST answer 6D00.
    pub attestation: Option<AttestationIdentity>,
}

impl CardConfig {
    /// A factory-fresh YubiKey 5.7.1 with the given serial.
    pub fn new(serial: u32) -> Self {
        CardConfig {
            serial,
            version: [5, 7, 1],
            mgm_algorithm: MgmAlgorithm::Aes192,
            mgm_key: DEFAULT_MGM_KEY.to_vec(),
            pin: DEFAULT_PIN.to_owned(),
            pin_retries: 3,
            puk: DEFAULT_PUK.to_owned(),
            puk_retries: 3,
            attestation: None,
        }
    }
}

/// What the card has seen, for tests to assert on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardCounters {
    /// VERIFY commands carrying a PIN (each one can spend a try).
    pub pin_verifies: u32,
    /// VERIFY commands without data (status queries, never spend a try).
    pub pin_status_queries: u32,
    /// Signatures made (GENERAL AUTHENTICATE on a key slot that succeeded).
    pub signatures: u32,
    /// SELECT commands.
    pub selects: u32,
    /// Signatures refused because the touch did not come in time (see `set_touch_gives_up_after`).
    pub touch_give_ups: u32,
}

/// A key held in a slot.
enum SlotKey {
    P256(p256::ecdsa::SigningKey),
    Rsa2048(Box<rsa::RsaPrivateKey>),
    Ed25519(ed25519_dalek::SigningKey),
}

struct Slot {
    key: SlotKey,
    pin_policy: u8,
    touch_policy: u8,
    /// 1 generated, 2 imported.
    origin: u8,
}

impl Slot {
    fn algorithm(&self) -> u8 {
        match self.key {
            SlotKey::P256(_) => 0x11,
            SlotKey::Rsa2048(_) => 0x07,
            SlotKey::Ed25519(_) => 0xE0,
        }
    }

    /// The public key as the card encodes it inside 7F49 (and in metadata tag 04).
    fn public_tlvs(&self) -> Vec<u8> {
        match &self.key {
            SlotKey::P256(k) => tlv(0x86, &k.verifying_key().to_sec1_bytes()),
            SlotKey::Ed25519(k) => tlv(0x86, k.verifying_key().as_bytes()),
            SlotKey::Rsa2048(k) => {
                use rsa::traits::PublicKeyParts;
                let n = k.n().to_be_bytes_trimmed_vartime();
                let e = k.e().to_be_bytes_trimmed_vartime();
                let mut out = tlv(0x81, &n);
                out.extend(tlv(0x82, &e));
                out
            }
        }
    }
}

struct CardState {
    /// The configuration the card started with; PIN, PUK and management key change in place.
    config: CardConfig,
    pin_tries_left: u8,
    puk_tries_left: u8,
    pin_verified: bool,
    mgm_authenticated: bool,
    /// Touch policy of the management key (`TOUCH_*`), set by SET MANAGEMENT KEY's P2.
    mgm_touch_policy: u8,
    mgm_witness: Option<Vec<u8>>,
    slots: HashMap<u8, Slot>,
    /// Data objects by tag (5FC105…), holding the value inside the `53` wrapper.
    objects: HashMap<Vec<u8>, Vec<u8>>,
    chain: Vec<u8>,
    pending_out: Vec<u8>,
    counters: CardCounters,
    touch_delay: Duration,
    /// Like a real YubiKey (~15 s): stop waiting for a touch after this long and answer 6982.
    touch_gives_up_after: Option<Duration>,
    /// Fault knob: the next VERIFY with a PIN is processed (and counted), then the link drops
    /// before the answer goes out.
    drop_link_on_next_pin_verify: bool,
}

struct Shared {
    state: Mutex<CardState>,
    stop: AtomicBool,
    connection: Mutex<Option<TcpStream>>,
}

/// A running virtual card: a thread connected to one vpcd port. Dropping it removes the card.
pub struct VirtualPiv {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl VirtualPiv {
    /// Starts a card that connects to vpcd on `127.0.0.1:port` (retrying until pcscd listens).
    pub fn start(port: u16, config: CardConfig) -> Self {
        let mut objects = HashMap::new();
        if let Some(att) = &config.attestation {
            objects.insert(
                vec![0x5F, 0xFF, 0x01],
                certificate_object(&att.certificate_der),
            );
        }
        let state = CardState {
            pin_tries_left: config.pin_retries,
            puk_tries_left: config.puk_retries,
            config,
            pin_verified: false,
            mgm_authenticated: false,
            mgm_touch_policy: TOUCH_NEVER,
            mgm_witness: None,
            slots: HashMap::new(),
            objects,
            chain: Vec::new(),
            pending_out: Vec::new(),
            counters: CardCounters::default(),
            touch_delay: Duration::ZERO,
            touch_gives_up_after: None,
            drop_link_on_next_pin_verify: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            stop: AtomicBool::new(false),
            connection: Mutex::new(None),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("virtual-piv-{port}"))
            .spawn(move || run(&thread_shared, port))
            .expect("spawn the virtual card thread");
        VirtualPiv {
            shared,
            thread: Some(thread),
            port,
        }
    }

    fn state(&self) -> MutexGuard<'_, CardState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vpcd port this card uses.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The card's serial number.
    pub fn serial(&self) -> u32 {
        self.state().config.serial
    }

    /// What the card has seen so far.
    pub fn counters(&self) -> CardCounters {
        self.state().counters
    }

    /// PIN tries left, read from the card's own counter.
    pub fn pin_tries_left(&self) -> u8 {
        self.state().pin_tries_left
    }

    /// Sets the PIN retry counter (to prepare "one try left" or "blocked" states).
    pub fn set_pin_tries_left(&self, tries: u8) {
        self.state().pin_tries_left = tries;
    }

    /// PUK tries left, read from the card's own counter.
    pub fn puk_tries_left(&self) -> u8 {
        self.state().puk_tries_left
    }

    /// Sets the PUK retry counter (to prepare a blocked PUK).
    pub fn set_puk_tries_left(&self, tries: u8) {
        self.state().puk_tries_left = tries;
    }

    /// The card's current PIN (after any CHANGE REFERENCE or RESET RETRY COUNTER).
    pub fn pin(&self) -> String {
        self.state().config.pin.clone()
    }

    /// The card's current PUK.
    pub fn puk(&self) -> String {
        self.state().config.puk.clone()
    }

    /// The card's current management key (after any SET MANAGEMENT KEY).
    pub fn mgm_key(&self) -> Vec<u8> {
        self.state().config.mgm_key.clone()
    }

    /// The card's current management-key algorithm.
    pub fn mgm_algorithm(&self) -> MgmAlgorithm {
        self.state().config.mgm_algorithm
    }

    /// A data object's value (inside its `53` wrapper) by tag, e.g. `[0x5F, 0xC1, 0x09]`; read
    /// directly, without the PIN the card would ask for.
    pub fn object(&self, tag: &[u8]) -> Option<Vec<u8>> {
        self.state().objects.get(tag).cloned()
    }

    /// How long the simulated person takes to touch the key when a slot's policy asks for it.
    pub fn set_touch_delay(&self, delay: Duration) {
        self.state().touch_delay = delay;
    }

    /// Makes the card stop waiting for a touch after `limit` and refuse the signature with 6982
    /// (security status not satisfied), as a real YubiKey does after about 15 s. `None`: wait
    /// as long as the touch delay says.
    pub fn set_touch_gives_up_after(&self, limit: Option<Duration>) {
        self.state().touch_gives_up_after = limit;
    }

    /// Fault: the next VERIFY that carries a PIN reaches the card (and counts, right or wrong),
    /// then the link drops before the answer comes back, as when the key is pulled mid-command.
    pub fn drop_link_on_next_pin_verify(&self) {
        self.state().drop_link_on_next_pin_verify = true;
    }

    /// Whether a key is present in `slot`.
    pub fn has_key(&self, slot: u8) -> bool {
        self.state().slots.contains_key(&slot)
    }

    /// Pulls the card out and plugs it back in: the vpcd link drops, PIN and management-key
    /// state are lost, keys and objects stay.
    pub fn replug(&self) {
        if let Some(conn) = self
            .shared
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for VirtualPiv {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.replug();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, port: u16) {
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(30));
            continue;
        };
        // vpcd writes the length and the body separately: without these, Nagle and delayed
        // ACKs stall every APDU by ~50 ms (docs/virtual-card.md, "Traps").
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(clone);
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        serve(shared, stream);
        shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .power_off();
        *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Give pcscd time to notice the removal before the card comes back.
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn quickack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

fn serve(shared: &Shared, mut stream: TcpStream) {
    loop {
        let mut header = [0u8; 2];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        quickack(&stream);
        let len = u16::from_be_bytes(header) as usize;
        let mut msg = vec![0u8; len];
        if stream.read_exact(&mut msg).is_err() {
            return;
        }
        quickack(&stream);
        let reply = if len == 1 {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            match msg[0] {
                0x00 | 0x02 => {
                    state.power_off();
                    continue;
                }
                0x01 => continue,
                0x04 => ATR.to_vec(),
                _ => continue,
            }
        } else {
            // The person's touch happens outside the lock, so tests can read counters meanwhile.
            let (delay, gives_up_after, drop_link) = {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                let drop_link = state.drop_link_on_next_pin_verify && is_pin_verify(&msg);
                if drop_link {
                    state.drop_link_on_next_pin_verify = false;
                }
                (
                    state.touch_delay_for(&msg),
                    state.touch_gives_up_after,
                    drop_link,
                )
            };
            match gives_up_after {
                Some(limit) if delay > limit => {
                    std::thread::sleep(limit);
                    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    state.chain.clear();
                    state.counters.touch_give_ups += 1;
                    with_sw(vec![], SW_SECURITY)
                }
                _ => {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let reply = shared
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .process(&msg);
                    if drop_link {
                        // The card has acted on the VERIFY; the answer never arrives.
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    reply
                }
            }
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// VERIFY (INS 20) of the PIN (P2 80) with data: a try the card counts.
fn is_pin_verify(apdu: &[u8]) -> bool {
    apdu.len() > 5 && apdu[1] == 0x20 && apdu[2] == 0x00 && apdu[3] == 0x80
}

fn with_sw(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

/// BER-TLV with a definite length (short, 81 or 82 form).
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(ber_len(value.len()));
    out.extend_from_slice(value);
    out
}

fn ber_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else if len < 0x100 {
        vec![0x81, len as u8]
    } else {
        vec![0x82, (len >> 8) as u8, len as u8]
    }
}

/// Parses one TLV (one-byte tag); returns (tag, value, rest).
fn parse_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let (len, hdr) = match *data.get(1)? {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (*data.get(2)? as usize, 3),
        0x82 => (((*data.get(2)? as usize) << 8) | *data.get(3)? as usize, 4),
        _ => return None,
    };
    let value = data.get(hdr..hdr + len)?;
    Some((tag, value, &data[hdr + len..]))
}

fn parse_tlvs(mut data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (tag, value, rest) = parse_tlv(data)?;
        out.push((tag, value));
        data = rest;
    }
    Some(out)
}

/// A certificate as PIV stores it: `70 cert 71 00 FE 00`.
fn certificate_object(der: &[u8]) -> Vec<u8> {
    let mut out = tlv(0x70, der);
    out.extend([0x71, 0x01, 0x00, 0xFE, 0x00]);
    out
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    getrandom::SysRng
        .try_fill_bytes(&mut out)
        .expect("system RNG");
    out
}

fn ecb(alg: MgmAlgorithm, key: &[u8], block: &[u8], encrypt: bool) -> Option<Vec<u8>> {
    fn run<C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt>(
        key: &[u8],
        block: &[u8],
        encrypt: bool,
    ) -> Option<Vec<u8>> {
        let cipher = C::new_from_slice(key).ok()?;
        let mut b = cipher::Block::<C>::try_from(block).ok()?;
        if encrypt {
            cipher.encrypt_block(&mut b);
        } else {
            cipher.decrypt_block(&mut b);
        }
        Some(b.to_vec())
    }
    match alg {
        MgmAlgorithm::TripleDes => run::<des::TdesEde3>(key, block, encrypt),
        MgmAlgorithm::Aes128 => run::<aes::Aes128>(key, block, encrypt),
        MgmAlgorithm::Aes192 => run::<aes::Aes192>(key, block, encrypt),
        MgmAlgorithm::Aes256 => run::<aes::Aes256>(key, block, encrypt),
    }
}

fn is_key_slot(slot: u8) -> bool {
    matches!(slot, 0x9A | 0x9C | 0x9D | 0x9E | 0x82..=0x95)
}

/// The PIV default PIN policy of a slot (9C: always; 9E: never; others: once).
fn default_pin_policy(slot: u8) -> u8 {
    match slot {
        0x9C => 3,
        0x9E => 1,
        _ => 2,
    }
}

impl CardState {
    fn power_off(&mut self) {
        self.pin_verified = false;
        self.mgm_authenticated = false;
        self.mgm_witness = None;
        self.chain.clear();
        self.pending_out.clear();
    }

    fn version_at_least(&self, v: [u8; 3]) -> bool {
        self.config.version >= v
    }

    /// How long the simulated person waits before touching, for a sign on a touch slot, or for
    /// the step of a management-key authentication that the card grants, when that key requires
    /// touch.
    fn touch_delay_for(&self, apdu: &[u8]) -> Duration {
        if apdu.len() > 4 && apdu[1] == 0x87 && apdu[0] & 0x10 == 0 {
            if apdu[3] == 0x9B {
                if self.mgm_touch_policy >= TOUCH_ALWAYS && carries_host_challenge(apdu) {
                    return self.touch_delay;
                }
            } else if let Some(slot) = self.slots.get(&apdu[3]) {
                if slot.touch_policy >= TOUCH_ALWAYS {
                    return self.touch_delay;
                }
            }
        }
        Duration::ZERO
    }

    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.len() < 4 {
            return with_sw(vec![], SW_WRONG_LENGTH);
        }
        let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
        let data: &[u8] = if apdu.len() > 5 {
            let lc = apdu[4] as usize;
            match apdu.get(5..5 + lc) {
                Some(d) => d,
                None => return with_sw(vec![], SW_WRONG_LENGTH),
            }
        } else {
            &[]
        };
        if ins == 0xC0 {
            return self.next_chunk();
        }
        self.pending_out.clear();
        if cla & 0x10 != 0 {
            self.chain.extend_from_slice(data);
            return with_sw(vec![], SW_OK);
        }
        let mut full = std::mem::take(&mut self.chain);
        full.extend_from_slice(data);
        match self.dispatch(ins, p1, p2, &full) {
            Ok(out) => self.respond(out),
            Err(sw) => with_sw(vec![], sw),
        }
    }

    fn respond(&mut self, out: Vec<u8>) -> Vec<u8> {
        if out.len() <= 256 {
            return with_sw(out, SW_OK);
        }
        self.pending_out = out[256..].to_vec();
        let first = out[..256].to_vec();
        let sw = 0x6100 | self.pending_out.len().min(0xFF) as u16;
        with_sw(
            first,
            if self.pending_out.len() >= 256 {
                0x6100
            } else {
                sw
            },
        )
    }

    fn next_chunk(&mut self) -> Vec<u8> {
        let n = self.pending_out.len().min(256);
        let chunk: Vec<u8> = self.pending_out.drain(..n).collect();
        let rest = self.pending_out.len();
        let sw = match rest {
            0 => SW_OK,
            r if r >= 256 => 0x6100,
            r => 0x6100 | r as u16,
        };
        with_sw(chunk, sw)
    }

    fn dispatch(&mut self, ins: u8, p1: u8, p2: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        match ins {
            0xA4 => self.select(p1, data),
            0xFD => Ok(self.config.version.to_vec()),
            0xF8 => Ok(self.config.serial.to_be_bytes().to_vec()),
            0x20 => self.verify(p1, p2, data),
            0x24 => self.change_reference(p2, data),
            0x2C => self.reset_retry(p2, data),
            0xFF => self.set_mgm_key(p1, p2, data),
            0x87 => self.general_authenticate(p1, p2, data),
            0x47 => self.generate(p2, data),
            0xF7 => self.metadata(p2),
            0xF9 => self.attest(p1),
            0xCB => self.get_data(data),
            0xDB => self.put_data(data),
            _ => Err(SW_INS_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, p1: u8, aid: &[u8]) -> Result<Vec<u8>, u16> {
        self.counters.selects += 1;
        if p1 != 0x04 || aid.len() < 5 || !PIV_AID.starts_with(aid) {
            return Err(SW_FILE_NOT_FOUND);
        }
        // Selecting the applet drops the PIN and management-key state (the crate relies on it).
        self.pin_verified = false;
        self.mgm_authenticated = false;
        self.mgm_witness = None;
        Ok(SELECT_RESPONSE.to_vec())
    }

    fn verify(&mut self, p1: u8, p2: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        if p2 != 0x80 {
            return Err(SW_REF_NOT_FOUND);
        }
        if p1 == 0xFF {
            self.pin_verified = false;
            return Ok(vec![]);
        }
        if data.is_empty() {
            self.counters.pin_status_queries += 1;
            return if self.pin_verified {
                Ok(vec![])
            } else {
                Err(0x63C0 | self.pin_tries_left as u16)
            };
        }
        self.counters.pin_verifies += 1;
        if self.pin_tries_left == 0 {
            return Err(SW_BLOCKED);
        }
        if data.len() != 8 {
            return Err(SW_WRONG_LENGTH);
        }
        let checked = check_reference(
            &self.config.pin,
            data,
            &mut self.pin_tries_left,
            self.config.pin_retries,
        );
        self.pin_verified = checked.is_ok();
        checked.map(|()| vec![])
    }

    /// CHANGE REFERENCE DATA on the PIN (80) or the PUK (81): current value, then new value,
    /// 8 bytes each, padded with FF. Unlike VERIFY, the current value must come with the command
    /// even when the PIN was verified before.
    fn change_reference(&mut self, p2: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        if p2 != REF_PIN && p2 != REF_PUK {
            return Err(SW_REF_NOT_FOUND);
        }
        if data.len() != 16 {
            return Err(SW_WRONG_LENGTH);
        }
        let (secret, tries_left, total) = if p2 == REF_PIN {
            let total = self.config.pin_retries;
            (&mut self.config.pin, &mut self.pin_tries_left, total)
        } else {
            let total = self.config.puk_retries;
            (&mut self.config.puk, &mut self.puk_tries_left, total)
        };
        if *tries_left == 0 {
            return Err(SW_BLOCKED);
        }
        // A malformed new value is refused before the current one is checked, so it costs no try.
        let new = unpad_reference(&data[8..])?;
        check_reference(secret, &data[..8], tries_left, total)?;
        *secret = new;
        Ok(vec![])
    }

    /// RESET RETRY COUNTER on the PIN (80): the PUK, then the new PIN, 8 bytes each, padded with
    /// FF. A right PUK sets the PIN and gives it all its tries back, blocked or not; a wrong one
    /// spends a PUK try.
    fn reset_retry(&mut self, p2: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        if p2 != REF_PIN {
            return Err(SW_REF_NOT_FOUND);
        }
        if data.len() != 16 {
            return Err(SW_WRONG_LENGTH);
        }
        if self.puk_tries_left == 0 {
            return Err(SW_BLOCKED);
        }
        let new_pin = unpad_reference(&data[8..])?;
        check_reference(
            &self.config.puk,
            &data[..8],
            &mut self.puk_tries_left,
            self.config.puk_retries,
        )?;
        self.config.pin = new_pin;
        self.pin_tries_left = self.config.pin_retries;
        // The old PIN's verification does not carry over to the new one.
        self.pin_verified = false;
        Ok(vec![])
    }

    /// SET MANAGEMENT KEY (Yubico): P1 FF; P2 FF no touch, FE touch, FD touch cached; data
    /// `alg 9B len key`. Needs the current management key authenticated in this session.
    fn set_mgm_key(&mut self, p1: u8, p2: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        let touch_policy = match (p1, p2) {
            (0xFF, 0xFF) => TOUCH_NEVER,
            (0xFF, 0xFE) => TOUCH_ALWAYS,
            (0xFF, 0xFD) => TOUCH_CACHED,
            _ => return Err(SW_WRONG_P1P2),
        };
        if !self.mgm_authenticated {
            return Err(SW_SECURITY);
        }
        let (alg, key) = self.parse_new_mgm_key(data)?;
        self.config.mgm_algorithm = alg;
        self.config.mgm_key = key.to_vec();
        self.mgm_touch_policy = touch_policy;
        Ok(vec![])
    }

    /// Splits SET MANAGEMENT KEY's data into an algorithm this firmware has and a key of its
    /// length.
    fn parse_new_mgm_key<'d>(&self, data: &'d [u8]) -> Result<(MgmAlgorithm, &'d [u8]), u16> {
        let [id, 0x9B, len, key @ ..] = data else {
            return Err(SW_WRONG_DATA);
        };
        let alg = MgmAlgorithm::from_id(*id).ok_or(SW_WRONG_DATA)?;
        if key.len() != usize::from(*len) || key.len() != alg.key_len() {
            return Err(SW_WRONG_DATA);
        }
        // AES management keys came with firmware 5.4; before, 3DES was the only one.
        if alg != MgmAlgorithm::TripleDes && !self.version_at_least([5, 4, 0]) {
            return Err(SW_WRONG_DATA);
        }
        Ok((alg, key))
    }

    fn general_authenticate(&mut self, p1: u8, p2: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        let (tag, inner, _) = parse_tlv(data).ok_or(SW_WRONG_DATA)?;
        if tag != 0x7C {
            return Err(SW_WRONG_DATA);
        }
        let items = parse_tlvs(inner).ok_or(SW_WRONG_DATA)?;
        let get = |t: u8| items.iter().find(|(tag, _)| *tag == t).map(|(_, v)| *v);
        if p2 == 0x9B {
            return self.mgm_authenticate(p1, get(0x80), get(0x81));
        }
        let message = get(0x81).ok_or(SW_WRONG_DATA)?;
        self.sign(p1, p2, message)
    }

    fn mgm_authenticate(
        &mut self,
        alg: u8,
        witness: Option<&[u8]>,
        challenge: Option<&[u8]>,
    ) -> Result<Vec<u8>, u16> {
        let mgm = self.config.mgm_algorithm;
        if alg != mgm.id() {
            return Err(SW_WRONG_P1P2);
        }
        let bl = mgm.block_len();
        let key = self.config.mgm_key.clone();
        match (witness, challenge) {
            (Some([]), None) => {
                let plain = random_bytes(bl);
                let enc = ecb(mgm, &key, &plain, true).ok_or(SW_WRONG_DATA)?;
                self.mgm_witness = Some(plain);
                Ok(tlv(0x7C, &tlv(0x80, &enc)))
            }
            (Some(w), Some(c)) => {
                let expected = self.mgm_witness.take().ok_or(SW_CONDITIONS)?;
                if w != expected.as_slice() || c.len() != bl {
                    self.mgm_authenticated = false;
                    return Err(SW_SECURITY);
                }
                let enc = ecb(mgm, &key, c, true).ok_or(SW_WRONG_DATA)?;
                self.mgm_authenticated = true;
                Ok(tlv(0x7C, &tlv(0x82, &enc)))
            }
            _ => Err(SW_WRONG_DATA),
        }
    }

    fn sign(&mut self, alg: u8, slot_id: u8, message: &[u8]) -> Result<Vec<u8>, u16> {
        let slot = self.slots.get(&slot_id).ok_or(SW_REF_NOT_FOUND)?;
        if slot.algorithm() != alg {
            return Err(SW_WRONG_DATA);
        }
        if slot.pin_policy != 1 && !self.pin_verified {
            return Err(SW_SECURITY);
        }
        let signature = match &slot.key {
            SlotKey::P256(k) => {
                if message.len() > 32 {
                    return Err(SW_WRONG_DATA);
                }
                let mut digest = [0u8; 32];
                digest[32 - message.len()..].copy_from_slice(message);
                let sig: p256::ecdsa::DerSignature =
                    k.sign_prehash(&digest).map_err(|_| SW_WRONG_DATA)?;
                sig.as_bytes().to_vec()
            }
            SlotKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            SlotKey::Rsa2048(k) => {
                use rsa::traits::PublicKeyParts;
                if message.len() != 256 {
                    return Err(SW_WRONG_LENGTH);
                }
                let c = rsa::BoxedUint::from_be_slice(message, k.n().bits_precision())
                    .map_err(|_| SW_WRONG_DATA)?;
                let m = rsa::hazmat::rsa_decrypt_and_check(k.as_ref(), Some(&mut rng()), &c)
                    .map_err(|_| SW_WRONG_DATA)?;
                let bytes = m.to_be_bytes();
                let mut out = vec![0u8; 256];
                out[256 - bytes.len().min(256)..]
                    .copy_from_slice(&bytes[bytes.len().saturating_sub(256)..]);
                out
            }
        };
        if slot.pin_policy == 3 {
            // PIN policy "always": the PIN is good for one signature only.
            self.pin_verified = false;
        }
        self.counters.signatures += 1;
        Ok(tlv(0x7C, &tlv(0x82, &signature)))
    }

    fn generate(&mut self, slot_id: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        if !is_key_slot(slot_id) {
            return Err(SW_WRONG_P1P2);
        }
        if !self.mgm_authenticated {
            return Err(SW_SECURITY);
        }
        let (tag, inner, _) = parse_tlv(data).ok_or(SW_WRONG_DATA)?;
        if tag != 0xAC {
            return Err(SW_WRONG_DATA);
        }
        let items = parse_tlvs(inner).ok_or(SW_WRONG_DATA)?;
        let get = |t: u8| {
            items
                .iter()
                .find(|(tag, _)| *tag == t)
                .and_then(|(_, v)| v.first().copied())
        };
        let alg = get(0x80).ok_or(SW_WRONG_DATA)?;
        let pin_policy = match get(0xAA) {
            None | Some(0) => default_pin_policy(slot_id),
            Some(p @ 1..=3) => p,
            Some(_) => return Err(SW_WRONG_DATA),
        };
        let touch_policy = match get(0xAB) {
            None | Some(0) => 1,
            Some(t @ 1..=3) => t,
            Some(_) => return Err(SW_WRONG_DATA),
        };
        let key = match alg {
            0x11 => SlotKey::P256(
                <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(
                    &mut rng(),
                ),
            ),
            0x07 => SlotKey::Rsa2048(Box::new(
                rsa::RsaPrivateKey::new(&mut rng(), 2048).map_err(|_| SW_WRONG_DATA)?,
            )),
            0xE0 if self.version_at_least([5, 7, 0]) => {
                SlotKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng()))
            }
            _ => return Err(SW_WRONG_DATA),
        };
        let slot = Slot {
            key,
            pin_policy,
            touch_policy,
            origin: 1,
        };
        let out = tlv_7f49(&slot.public_tlvs());
        self.slots.insert(slot_id, slot);
        Ok(out)
    }

    fn metadata(&mut self, slot_id: u8) -> Result<Vec<u8>, u16> {
        if !self.version_at_least([5, 3, 0]) {
            return Err(SW_INS_NOT_SUPPORTED);
        }
        match slot_id {
            REF_PIN => Ok(reference_metadata(
                self.config.pin == DEFAULT_PIN,
                self.config.pin_retries,
                self.pin_tries_left,
            )),
            REF_PUK => Ok(reference_metadata(
                self.config.puk == DEFAULT_PUK,
                self.config.puk_retries,
                self.puk_tries_left,
            )),
            0x9B => {
                let mut out = vec![0x01, 0x01, self.config.mgm_algorithm.id()];
                out.extend([0x02, 0x02, 0x00, self.mgm_touch_policy]);
                out.extend([0x05, 0x01, u8::from(self.config.mgm_key == DEFAULT_MGM_KEY)]);
                Ok(out)
            }
            s if is_key_slot(s) => {
                let slot = self.slots.get(&s).ok_or(SW_REF_NOT_FOUND)?;
                let mut out = vec![0x01, 0x01, slot.algorithm()];
                out.extend([0x02, 0x02, slot.pin_policy, slot.touch_policy]);
                out.extend([0x03, 0x01, slot.origin]);
                out.extend(tlv(0x04, &slot.public_tlvs()));
                Ok(out)
            }
            _ => Err(SW_REF_NOT_FOUND),
        }
    }

    fn attest(&mut self, slot_id: u8) -> Result<Vec<u8>, u16> {
        let Some(identity) = self.config.attestation.clone() else {
            return Err(SW_INS_NOT_SUPPORTED);
        };
        let slot = self.slots.get(&slot_id).ok_or(SW_REF_NOT_FOUND)?;
        if slot.origin != 1 {
            // Imported keys cannot be attested: the card cannot vouch for where they came from.
            return Err(SW_WRONG_DATA);
        }
        let spki = match &slot.key {
            SlotKey::P256(k) => spki_of(k.verifying_key()),
            SlotKey::Ed25519(k) => spki_of(&k.verifying_key()),
            SlotKey::Rsa2048(k) => spki_of(&rsa::RsaPublicKey::from(k.as_ref())),
        };
        let info = crate::piv_support::attestation::AttestedKeyInfo {
            serial: self.config.serial,
            version: self.config.version,
            pin_policy: slot.pin_policy,
            touch_policy: slot.touch_policy,
            slot: slot_id,
        };
        crate::piv_support::attestation::issue_attestation(&identity, spki, &info)
            .map_err(|_| SW_NOT_SUPPORTED_FN)
    }

    /// The printed-information object holds the PIN-protected management key: without the PIN
    /// verified in this session the card neither reads nor writes it (see `PRINTED_OBJECT`).
    fn check_object_pin(&self, tag: &[u8]) -> Result<(), u16> {
        if tag == PRINTED_OBJECT && !self.pin_verified {
            return Err(SW_SECURITY);
        }
        Ok(())
    }

    fn object_tag(data: &[u8]) -> Result<Vec<u8>, u16> {
        let (tag, value, _) = parse_tlv(data).ok_or(SW_WRONG_DATA)?;
        if tag != 0x5C {
            return Err(SW_WRONG_DATA);
        }
        Ok(value.to_vec())
    }

    fn get_data(&mut self, data: &[u8]) -> Result<Vec<u8>, u16> {
        let tag = Self::object_tag(data)?;
        self.check_object_pin(&tag)?;
        let value = self.objects.get(&tag).ok_or(SW_FILE_NOT_FOUND)?;
        Ok(tlv(0x53, value))
    }

    fn put_data(&mut self, data: &[u8]) -> Result<Vec<u8>, u16> {
        if !self.mgm_authenticated {
            return Err(SW_SECURITY);
        }
        let (tag, tag_value, rest) = parse_tlv(data).ok_or(SW_WRONG_DATA)?;
        if tag != 0x5C {
            return Err(SW_WRONG_DATA);
        }
        let (inner_tag, value, _) = parse_tlv(rest).ok_or(SW_WRONG_DATA)?;
        if inner_tag != 0x53 {
            return Err(SW_WRONG_DATA);
        }
        self.check_object_pin(tag_value)?;
        if value.is_empty() {
            self.objects.remove(tag_value);
        } else {
            self.objects.insert(tag_value.to_vec(), value.to_vec());
        }
        Ok(vec![])
    }
}

fn tlv_7f49(inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0x7F, 0x49];
    out.extend(ber_len(inner.len()));
    out.extend_from_slice(inner);
    out
}

/// GET METADATA for the PIN or the PUK: algorithm FF, default-value flag, (total, left) tries.
fn reference_metadata(is_default: bool, total: u8, left: u8) -> Vec<u8> {
    let mut out = vec![0x01, 0x01, 0xFF];
    out.extend([0x05, 0x01, u8::from(is_default)]);
    out.extend([0x06, 0x02, total, left]);
    out
}

/// Checks a PIN or PUK sent with a command (8 bytes, padded) against the card's: a match gives
/// back all `total` tries, a miss spends one and answers `63Cx`, or `6983` once none is left.
fn check_reference(secret: &str, given: &[u8], tries_left: &mut u8, total: u8) -> Result<(), u16> {
    if *tries_left == 0 {
        return Err(SW_BLOCKED);
    }
    if given == padded_pin(secret) {
        *tries_left = total;
        return Ok(());
    }
    *tries_left -= 1;
    Err(match *tries_left {
        0 => SW_BLOCKED,
        n => 0x63C0 | u16::from(n),
    })
}

/// A new PIN or PUK as sent (8 bytes, padded with FF): 6 to 8 bytes, nothing after the padding.
fn unpad_reference(padded: &[u8]) -> Result<String, u16> {
    let len = padded
        .iter()
        .position(|b| *b == 0xFF)
        .unwrap_or(padded.len());
    if !(6..=8).contains(&len) || padded[len..].iter().any(|b| *b != 0xFF) {
        return Err(SW_WRONG_DATA);
    }
    String::from_utf8(padded[..len].to_vec()).map_err(|_| SW_WRONG_DATA)
}

/// Whether a management-key GENERAL AUTHENTICATE carries the host's challenge (tag 81): the
/// step where the card grants the authentication, and so waits for a touch when it needs one.
fn carries_host_challenge(apdu: &[u8]) -> bool {
    let Some(data) = apdu.get(5..) else {
        return false;
    };
    let Some((0x7C, inner, _)) = parse_tlv(data) else {
        return false;
    };
    parse_tlvs(inner).is_some_and(|items| items.iter().any(|(tag, _)| *tag == 0x81))
}

fn padded_pin(pin: &str) -> [u8; 8] {
    let mut out = [0xFF; 8];
    for (o, b) in out.iter_mut().zip(pin.bytes()) {
        *o = b;
    }
    out
}

fn spki_of<K: spki::EncodePublicKey>(key: &K) -> Vec<u8> {
    key.to_public_key_der()
        .expect("encode SPKI")
        .as_bytes()
        .to_vec()
}
