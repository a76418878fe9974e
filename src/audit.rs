//! The audit log: what the signing service approved, refused and forwarded, one JSON line per
//! event, each line chained to the one before by SHA-256 (feature `client`).
//!
//! ```text
//! {"seq":41,"time":"2026-11-29T03:45:00.123Z","instance":"signer-a","event":"approved",…,"prev":"9f2c…","hash":"0b7e…"}
//! {"seq":42,"time":"2026-11-29T03:45:00.187Z","instance":"signer-a","event":"completed",…,"prev":"0b7e…","hash":"c41a…"}
//! ```
//!
//! # Why a hash chain
//!
//! Each line's `hash` is the SHA-256 of the line's own text up to its `prev` field, and each
//! line's `prev` is the previous line's `hash` (64 zeros for the first line ever). Since the
//! `hash` field is a function of the rest of its line, `prev` commits to the whole previous line,
//! and through it to every line before. A line changed, deleted, inserted or moved after it was
//! written breaks the chain at that point, and [`verify`] (or `dfns-signer audit verify`) names
//! the file and line: a changed line fails its own hash; a deleted or moved line shows as a `seq`
//! that does not follow and a `prev` that does not match at the line after the gap.
//!
//! # What it does not protect against
//!
//! Someone who can rewrite the whole file can recompute every hash after the lines they changed,
//! and someone who truncates the end of the log leaves a chain that is intact, only shorter. The
//! chain makes tampering evident only to someone holding a hash from *before* it: ship the lines
//! off the machine as they are written (syslog, a log shipper tailing the file, a WORM bucket) or
//! record [`VerifyReport::last_hash`] elsewhere from time to time. Nothing here is signed or
//! encrypted; the file is created `0600` and a file others may read or write is refused.
//!
//! # Writing
//!
//! [`AuditLog::append`] writes one line and `fsync`s it before returning: a caller that must
//! not approve what it cannot record refuses when it returns `Err`. Appends from many threads
//! are serialised by a mutex inside the log, so `seq` goes up by one with no gaps. Opening an
//! existing log continues its chain. When a line would take the current file past
//! [`AuditOptions::rotate_bytes`], the file is renamed to `<path>.<seq of its first line,
//! 12 digits>` (`audit.log.000000000001`) and a new one is started; the chain and `seq` go on
//! across files, and [`chain_files`] lists a log's files in chain order.
//!
//! # What goes in a record
//!
//! Names and digests only: the client's name, the key's name, the credential id, the method and
//! path, the SHA-256 of the body, the challenge identifier, the decision, the rule, the upstream
//! status, a short detail. **Never a token, a PIN, a secret or a request body**: the log is
//! meant to be copied to other machines and read by people who must not get them. [`AuditError`]
//! messages name files and line numbers, never what a line holds.
//!
//! ```
//! use dfns_signer::audit::{chain_files, verify, AuditLog, AuditOptions, AuditRecord};
//!
//! let dir = std::env::temp_dir().join(format!("audit-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("audit.log");
//! # let _ = std::fs::remove_file(&path);
//! let log = AuditLog::open(&path, AuditOptions::new("signer-a"))?;
//! let entry = log.append(
//!     &AuditRecord::new("approved")
//!         .client("payments")
//!         .method("POST")
//!         .path("/wallets")
//!         .body(br#"{"network":"EthereumSepolia"}"#)
//!         .decision("allowed")
//!         .rule("1 POST /wallets"),
//! )?;
//! assert_eq!(entry.seq, 1);
//! let report = verify(&chain_files(&path))?;
//! assert!(report.ok());
//! assert_eq!(report.last_hash.as_deref(), Some(entry.hash.as_str()));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first line ever written to a log: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Default size at which the current file is rotated: 64 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// Digits of the first `seq` in a rotated file's name (`audit.log.000000000001`).
const SEQ_DIGITS: usize = 12;

/// How a log is written: the instance name each line carries and when files rotate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditOptions {
    /// Which process wrote the line (several instances may serve behind one load balancer, each
    /// with its own log). Default: the host name, else `dfns-signer`.
    pub instance: String,
    /// The current file is renamed and a new one started when a line would take it past this
    /// many bytes (a file holds at least one line whatever its size). Default 64 MiB.
    pub rotate_bytes: u64,
}

impl AuditOptions {
    /// Options for this instance name, rotating at 64 MiB.
    pub fn new(instance: impl Into<String>) -> Self {
        AuditOptions {
            instance: instance.into(),
            rotate_bytes: DEFAULT_ROTATE_BYTES,
        }
    }

    /// Rotates the current file when a line would take it past `bytes`.
    pub fn rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes;
        self
    }
}

impl Default for AuditOptions {
    /// The host name (or `dfns-signer` when it cannot be read), rotating at 64 MiB.
    fn default() -> Self {
        AuditOptions::new(hostname().unwrap_or_else(|| "dfns-signer".to_owned()))
    }
}

/// This machine's name, from the kernel (Linux) or `/etc/hostname`.
fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
}

/// What happened, as one line of the log says it. Every field but `event` may be absent
/// (`null` in the line).
///
/// Names and digests only: **never put a token, a PIN, a secret or a request body in a
/// record** — the log is meant to leave the machine. [`AuditRecord::body`] keeps the body's
/// SHA-256, which is enough to match a line with a request someone else kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// What happened: `approved`, `refused`, `completed`, `started`…
    pub event: String,
    /// The client (as named in the service's configuration) that asked.
    pub client: Option<String>,
    /// The key (as named in the service's configuration) that signed or would have.
    pub key: Option<String>,
    /// The Dfns credential id.
    pub credential_id: Option<String>,
    /// The HTTP method of the Dfns request.
    pub method: Option<String>,
    /// The Dfns API path.
    pub path: Option<String>,
    /// The SHA-256 of the request body, lowercase hex.
    pub body_sha256: Option<String>,
    /// The user-action challenge's identifier.
    pub challenge_identifier: Option<String>,
    /// The policy's decision: `allowed`, `denied`…
    pub decision: Option<String>,
    /// The rule that decided (e.g. `1 POST /wallets`).
    pub rule: Option<String>,
    /// The HTTP status Dfns answered.
    pub upstream_status: Option<u16>,
    /// A short free text (why a request was refused…); never a secret or a body.
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A record of this event with every other field absent.
    pub fn new(event: &str) -> Self {
        AuditRecord {
            event: event.to_owned(),
            ..AuditRecord::default()
        }
    }

    /// Sets the client's name.
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// Sets the key's name.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the credential id.
    pub fn credential_id(mut self, credential_id: impl Into<String>) -> Self {
        self.credential_id = Some(credential_id.into());
        self
    }

    /// Sets the HTTP method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Sets the API path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets `body_sha256` to the SHA-256 of `body` (the body itself is not kept).
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body_sha256 = Some(sha256_hex(body));
        self
    }

    /// Sets `body_sha256` from a digest already computed (lowercase hex).
    pub fn body_sha256(mut self, hex_digest: impl Into<String>) -> Self {
        self.body_sha256 = Some(hex_digest.into());
        self
    }

    /// Sets the challenge identifier.
    pub fn challenge_identifier(mut self, challenge_identifier: impl Into<String>) -> Self {
        self.challenge_identifier = Some(challenge_identifier.into());
        self
    }

    /// Sets the decision.
    pub fn decision(mut self, decision: impl Into<String>) -> Self {
        self.decision = Some(decision.into());
        self
    }

    /// Sets the rule that decided.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Sets the status Dfns answered.
    pub fn upstream_status(mut self, status: u16) -> Self {
        self.upstream_status = Some(status);
        self
    }

    /// Sets the short detail text.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// One line of the log: the record and what the log added to it. Serialises to the line's
/// fields, in the line's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// Position in the chain: 1 for the first line ever, then one more per line across files.
    pub seq: u64,
    /// When it was written: RFC 3339, UTC, milliseconds (`2026-11-29T03:45:00.123Z`).
    pub time: String,
    /// The instance that wrote it ([`AuditOptions::instance`]).
    pub instance: String,
    /// What happened.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The previous line's `hash` ([`GENESIS_PREV`] for the first line ever).
    pub prev: String,
    /// SHA-256 (hex) of this line's text up to and including `prev`, closed with `}`.
    pub hash: String,
}

/// The part of a line that is hashed: everything but `hash`.
#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    time: &'a str,
    instance: &'a str,
    #[serde(flatten)]
    record: &'a AuditRecord,
    prev: &'a str,
}

/// Why the audit log could not be opened, written or read. Messages name files and lines,
/// never what a line holds; [`AuditError::fix`] says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file (or its directory) cannot be opened or created.
    #[error("cannot open the audit log {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Group or others may read or write the file.
    #[error("{} may be read or written by other users (mode {mode:04o}); the audit log must be private", .path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is a directory, a device or a pipe.
    #[error("{} is not a regular file", .path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The end (or start) of the current file cannot be continued from: an incomplete last line
    /// (a write cut short) or a line that is not an audit entry.
    #[error("{}: {reason}; the chain cannot be continued from it", .path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Which line and what is wrong with it (never its contents).
        reason: String,
    },
    /// A line could not be written or flushed to disk (it was not logged).
    #[error("cannot write to the audit log {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The full file could not be renamed aside, or the new one not created (nothing was
    /// logged).
    #[error("cannot rotate the audit log {} to {}: {source}", .path.display(), .to.display())]
    Rotate {
        /// The current file.
        path: PathBuf,
        /// The name it was to get.
        to: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// An earlier failure left the log in a state it cannot write from (a partial line that
    /// could not be removed, a rotation cut short); every append fails until it is reopened.
    #[error("the audit log {} stopped after an earlier write failure; nothing more is written to it", .path.display())]
    Stopped {
        /// The file.
        path: PathBuf,
    },
    /// A file given to [`verify`] or [`read`] cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A line given to [`read`] is not an audit entry.
    #[error("{}:{line}: {reason}", .path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number in that file.
        line: usize,
        /// What is wrong with it (never its contents).
        reason: String,
    },
}

impl AuditError {
    /// What to do about it, for the second line of an error report.
    pub fn fix(&self) -> String {
        match self {
            AuditError::Open { path, .. } => format!(
                "check that the directory of {} exists and that this user may create and write \
                 files in it",
                path.display()
            ),
            AuditError::Permissions { path, .. } => format!("chmod 600 {}", path.display()),
            AuditError::NotAFile { .. } => {
                "give the path of a regular file (it is created when missing)".to_owned()
            }
            AuditError::Unusable { path, .. } => format!(
                "run `dfns-signer audit verify {}`; keep a copy of the file, then remove its \
                 incomplete last line (a line cut short was never acknowledged, so nothing it \
                 describes was approved)",
                path.display()
            ),
            AuditError::Write { .. } => "free disk space or fix the disk, then try again; \
                 nothing was approved while the log could not be written"
                .to_owned(),
            AuditError::Rotate { to, .. } => format!(
                "make room for {} (move away what is there, free disk space, let this user write \
                 in the directory), then try again",
                to.display()
            ),
            AuditError::Stopped { .. } => "fix the cause of the first failure (logged before \
                 this one), then restart the service so the log is reopened"
                .to_owned(),
            AuditError::Read { .. } => {
                "check the path, and that this user may read the file".to_owned()
            }
            AuditError::BadLine { path, .. } => format!(
                "run `dfns-signer audit verify {}` to see where the chain breaks",
                path.display()
            ),
        }
    }
}

/// An append-only, hash-chained JSON-lines file. `append` takes `&self` and may be called from
/// many threads; share the log with an `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    options: AuditOptions,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Bytes in the current file.
    size: u64,
    /// The `seq` of the current file's first line (`None`: the file is empty).
    first_seq: Option<u64>,
    /// The last line written (0 and [`GENESIS_PREV`] for a new log).
    last_seq: u64,
    last_hash: String,
    /// Set when the file may hold a partial line or the log lost track of its file.
    stopped: bool,
}

impl AuditLog {
    /// Opens the log at `path`, creating it (mode `0600`) when missing, and continues its chain
    /// from the last line of the current file or, when that is empty or missing, of the newest
    /// rotated file (`<path>.<12 digits>`).
    ///
    /// Refuses a file others may read or write ([`AuditError::Permissions`]), and a current file
    /// whose first or last line is not a complete audit entry ([`AuditError::Unusable`]). The
    /// chain before the last line is not checked here (that reads every file): run [`verify`].
    pub fn open(path: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let (file, created) = match new_private_file(path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(open_error)?,
                false,
            ),
            Err(e) => return Err(open_error(e)),
        };
        let meta = file.metadata().map_err(open_error)?;
        if !meta.is_file() {
            return Err(AuditError::NotAFile {
                path: path.to_owned(),
            });
        }
        check_private(path, &meta)?;
        if created {
            sync_dir(path).map_err(open_error)?;
        }

        let size = meta.len();
        let (first_seq, last) = if size > 0 {
            let mut reader = File::open(path).map_err(open_error)?;
            let first = first_line(&mut reader).map_err(open_error)?;
            let first = parse_line(&first).map_err(|reason| AuditError::Unusable {
                path: path.to_owned(),
                reason: format!("its first line {reason}"),
            })?;
            (Some(first.seq), Some(last_entry(path, &mut reader)?))
        } else {
            let newest = chain_files(path).into_iter().rev().find(|p| p != path);
            let last = match newest {
                Some(rotated) => {
                    let mut reader = File::open(&rotated).map_err(|source| AuditError::Open {
                        path: rotated.clone(),
                        source,
                    })?;
                    let len = reader
                        .metadata()
                        .map_err(|source| AuditError::Open {
                            path: rotated.clone(),
                            source,
                        })?
                        .len();
                    (len > 0)
                        .then(|| last_entry(&rotated, &mut reader))
                        .transpose()?
                }
                None => None,
            };
            (None, last)
        };
        let (last_seq, last_hash) = last.unwrap_or((0, GENESIS_PREV.to_owned()));
        Ok(AuditLog {
            path: path.to_owned(),
            options,
            state: Mutex::new(State {
                file,
                size,
                first_seq,
                last_seq,
                last_hash,
                stopped: false,
            }),
        })
    }

    /// Writes one line for `record` and flushes it to disk (`fsync`) before returning. On `Err`
    /// nothing was logged: a caller must then refuse what it was about to allow.
    ///
    /// Rotates first when the line would take the current file past
    /// [`AuditOptions::rotate_bytes`].
    pub fn append(&self, record: &AuditRecord) -> Result<AuditEntry, AuditError> {
        // A panic elsewhere while holding the lock cannot leave the state half-updated: it is
        // changed only after a line is on disk.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.stopped {
            return Err(AuditError::Stopped {
                path: self.path.clone(),
            });
        }
        let seq = st.last_seq + 1;
        let time = rfc3339_millis(SystemTime::now());
        let unhashed = serde_json::to_string(&Unhashed {
            seq,
            time: &time,
            instance: &self.options.instance,
            record,
            prev: &st.last_hash,
        })
        .expect("an audit line serializes");
        let hash = sha256_hex(unhashed.as_bytes());
        let line = seal(&unhashed, &hash);
        let len = line.len() as u64;

        if st.size > 0 && st.size.saturating_add(len) > self.options.rotate_bytes {
            self.rotate(&mut st)?;
        }
        if let Err(source) = st
            .file
            .write_all(line.as_bytes())
            .and_then(|()| st.file.sync_data())
        {
            // Take back whatever part of the line reached the file, so the next line starts
            // on a line of its own; if even that fails, stop writing.
            let size = st.size;
            if st.file.set_len(size).is_err() {
                st.stopped = true;
            }
            return Err(AuditError::Write {
                path: self.path.clone(),
                source,
            });
        }
        st.size += len;
        st.first_seq.get_or_insert(seq);
        let prev = std::mem::replace(&mut st.last_hash, hash.clone());
        st.last_seq = seq;
        Ok(AuditEntry {
            seq,
            time,
            instance: self.options.instance.clone(),
            record: record.clone(),
            prev,
            hash,
        })
    }

    /// Renames the current file to `<path>.<first seq>` and starts a new one.
    fn rotate(&self, st: &mut State) -> Result<(), AuditError> {
        let first = st.first_seq.unwrap_or(st.last_seq + 1);
        let to = rotated_path(&self.path, first);
        let rotate_error = |source| AuditError::Rotate {
            path: self.path.clone(),
            to: to.clone(),
            source,
        };
        // `rename` would replace a file already there: never lose one.
        if fs::symlink_metadata(&to).is_ok() {
            return Err(rotate_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something already has that name",
            )));
        }
        fs::rename(&self.path, &to).map_err(rotate_error)?;
        // From here the open file is the rotated one: a failure leaves no file to write to.
        let fresh = sync_dir(&self.path).and_then(|()| {
            let file = new_private_file(&self.path)?;
            sync_dir(&self.path)?;
            Ok(file)
        });
        match fresh {
            Ok(file) => {
                st.file = file;
                st.size = 0;
                st.first_seq = None;
                Ok(())
            }
            Err(source) => {
                st.stopped = true;
                Err(rotate_error(source))
            }
        }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `seq` of the last line written (0 when the log is empty).
    pub fn last_seq(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_seq
    }

    /// The `hash` of the last line written ([`GENESIS_PREV`] when the log is empty): record it
    /// elsewhere to detect a later rewrite.
    pub fn last_hash(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_hash
            .clone()
    }
}

/// Creates `path` with mode `0600` (`AlreadyExists` when something is there).
fn new_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), AuditError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(AuditError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// Makes a rename or a creation in `path`'s directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// `<path>.<seq, 12 digits>`.
fn rotated_path(path: &Path, first_seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{first_seq:0width$}", width = SEQ_DIGITS));
    PathBuf::from(name)
}

/// The files of the log whose current file is `path`, in chain order: the rotated files
/// (`<path>.<12 digits>`) by their first `seq`, then `path` itself (when it exists, or when
/// there is nothing else, so that reading it reports it missing).
pub fn chain_files(path: &Path) -> Vec<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut rotated: Vec<(u64, PathBuf)> = match (path.file_name(), fs::read_dir(dir)) {
        (Some(base), Ok(entries)) => {
            let prefix = format!("{}.", base.to_string_lossy());
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name();
                    let digits = name.to_str()?.strip_prefix(&prefix)?;
                    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    Some((digits.parse().ok()?, dir.join(&name)))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if files.is_empty() || fs::symlink_metadata(path).is_ok() {
        files.push(path.to_owned());
    }
    files
}

/// The first line of a file (without its newline).
fn first_line(reader: &mut File) -> io::Result<Vec<u8>> {
    reader.seek(SeekFrom::Start(0))?;
    let mut line = Vec::new();
    BufReader::new(&*reader).read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// The `seq` and `hash` of a non-empty file's last line, which must be complete and parse.
fn last_entry(path: &Path, reader: &mut File) -> Result<(u64, String), AuditError> {
    let unusable = |reason: &str| AuditError::Unusable {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let line = last_line(reader).map_err(|source| AuditError::Open {
        path: path.to_owned(),
        source,
    })?;
    let Some(line) = line else {
        return Err(unusable(
            "its last line is incomplete (no newline at its end: a write was cut short)",
        ));
    };
    let parsed = parse_line(&line).map_err(|reason| AuditError::Unusable {
        path: path.to_owned(),
        reason: format!("its last line {reason}"),
    })?;
    Ok((parsed.seq, parsed.hash))
}

/// The last line of a non-empty file, read backwards from its end; `None` when the file does not
/// end with a newline.
fn last_line(reader: &mut File) -> io::Result<Option<Vec<u8>>> {
    const CHUNK: u64 = 8 * 1024;
    let len = reader.seek(SeekFrom::End(0))?;
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        // Looking for the newline before the last line (the file's last byte is its end).
        if let Some(i) = tail[..tail.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            tail.drain(..=i);
            break;
        }
        if start == 0 {
            break;
        }
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        reader.seek(SeekFrom::Start(from))?;
        reader.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
    }
    if tail.pop() != Some(b'\n') {
        return Ok(None);
    }
    Ok(Some(tail))
}

/// A line's text with `,"hash":"…"}` in place of its closing brace.
fn seal(unhashed: &str, hash: &str) -> String {
    let open = unhashed
        .strip_suffix('}')
        .expect("a JSON object ends with }");
    format!("{open},\"hash\":\"{hash}\"}}\n")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parses a line (without its newline). The `Err` is a phrase to follow "the line" or "its last
/// line", naming fields but never quoting values.
fn parse_line(bytes: &[u8]) -> Result<AuditEntry, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    let object: Map<String, Value> =
        serde_json::from_str(text).map_err(|_| "is not a JSON object".to_owned())?;
    let seq = object
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|&seq| seq > 0)
        .ok_or("has no `seq` (a positive integer)")?;
    let digest = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .filter(|h| is_digest(h))
            .map(str::to_owned)
            .ok_or_else(|| format!("has no `{name}` (64 lowercase hex digits)"))
    };
    let prev = digest("prev")?;
    let hash = digest("hash")?;
    let string = |name: &str| -> Result<String, String> {
        object
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("has no `{name}` (a string)"))
    };
    let optional = |name: &str| -> Result<Option<String>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("has a `{name}` that is neither a string nor null")),
        }
    };
    let upstream_status = match object.get("upstream_status") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or("has an `upstream_status` that is not an HTTP status")?,
        ),
    };
    let record = AuditRecord {
        event: string("event")?,
        client: optional("client")?,
        key: optional("key")?,
        credential_id: optional("credential_id")?,
        method: optional("method")?,
        path: optional("path")?,
        body_sha256: optional("body_sha256")?,
        challenge_identifier: optional("challenge_identifier")?,
        decision: optional("decision")?,
        rule: optional("rule")?,
        upstream_status,
        detail: optional("detail")?,
    };
    Ok(AuditEntry {
        seq,
        time: string("time")?,
        instance: string("instance")?,
        record,
        prev,
        hash,
    })
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a line's text hashes to its `hash`: the text must end with `,"hash":"<hash>"}`, and
/// the SHA-256 of what comes before, closed with `}`, must be `hash`.
fn hash_holds(text: &[u8], hash: &str) -> bool {
    let suffix = format!(",\"hash\":\"{hash}\"}}");
    let Some(body) = text.strip_suffix(suffix.as_bytes()) else {
        return false;
    };
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    hex::encode(hasher.finalize()) == hash
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Lines checked and found in order (up to the break, when there is one).
    pub lines: u64,
    /// The first line's `seq`.
    pub first: Option<u64>,
    /// The last good line's `seq`.
    pub last: Option<u64>,
    /// The last good line's `hash`: keep it elsewhere to detect a later rewrite of the log.
    pub last_hash: Option<String>,
    /// Where the chain first breaks (`None`: intact).
    pub broken: Option<Break>,
    /// The first line is not the first ever (its `prev` is not [`GENESIS_PREV`]): older files
    /// were archived or removed; what came before them cannot be checked from these files.
    pub starts_after_archived: bool,
}

impl VerifyReport {
    /// Whether the chain holds.
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Where and why a chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Break {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number in that file.
    pub line: usize,
    /// The line's `seq`, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong, in a sentence (never the line's contents).
    pub reason: String,
}

/// Checks the chain across `files`, given in chain order (see [`chain_files`]): each line
/// parses, its `hash` matches its text, its `prev` is the previous line's `hash` and its `seq`
/// the previous one plus one. Reports the first break only: a changed line at that line, a
/// deleted line at the line after the gap, lines swapped at the first one moved.
///
/// The first line may continue a chain whose start is in files not given (then
/// [`VerifyReport::starts_after_archived`]). `Err` only when a file cannot be read; a broken
/// chain is `Ok` with [`VerifyReport::broken`] set.
pub fn verify(files: &[PathBuf]) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport {
        lines: 0,
        first: None,
        last: None,
        last_hash: None,
        broken: None,
        starts_after_archived: false,
    };
    for file in files {
        let read_error = |source| AuditError::Read {
            path: file.clone(),
            source,
        };
        let mut reader = BufReader::new(File::open(file).map_err(read_error)?);
        let mut raw = Vec::new();
        let mut number = 0;
        loop {
            raw.clear();
            if reader.read_until(b'\n', &mut raw).map_err(read_error)? == 0 {
                break;
            }
            number += 1;
            let (seq, reason) = check_line(&raw, &mut report);
            if let Some(reason) = reason {
                report.broken = Some(Break {
                    file: file.clone(),
                    line: number,
                    seq,
                    reason,
                });
                return Ok(report);
            }
        }
    }
    Ok(report)
}

/// Checks one line (with its newline) against the chain so far and adds it to the report;
/// returns its `seq` (when it parses) and why it breaks the chain (`None`: it does not).
fn check_line(raw: &[u8], report: &mut VerifyReport) -> (Option<u64>, Option<String>) {
    let Some(text) = raw.strip_suffix(b"\n") else {
        return (
            None,
            Some(
                "the last line is incomplete (no newline at its end): a write was cut short".into(),
            ),
        );
    };
    if text.is_empty() {
        return (
            None,
            Some("empty line: lines were removed or joined".into()),
        );
    }
    let parsed = match parse_line(text) {
        Ok(parsed) => parsed,
        Err(why) => return (None, Some(format!("the line {why}"))),
    };
    let seq = Some(parsed.seq);
    if !hash_holds(text, &parsed.hash) {
        return (
            seq,
            Some(
                "the line's hash does not match its text: the line was changed after it was \
                 written"
                    .into(),
            ),
        );
    }
    let reason = match (report.last, report.last_hash.as_deref()) {
        (None, _) | (_, None) => {
            if parsed.prev == GENESIS_PREV && parsed.seq != 1 {
                Some(format!(
                    "seq {} has the prev of the first line ever (all zeros): the chain was \
                     restarted",
                    parsed.seq
                ))
            } else if parsed.prev != GENESIS_PREV && parsed.seq == 1 {
                Some("seq 1 does not have the prev of the first line ever (all zeros)".into())
            } else {
                report.starts_after_archived = parsed.prev != GENESIS_PREV;
                None
            }
        }
        (Some(last), Some(last_hash)) => {
            let prev_ok = parsed.prev == last_hash;
            let expected = last + 1;
            if parsed.seq == expected && prev_ok {
                None
            } else if parsed.seq > expected {
                Some(format!(
                    "seq {} follows seq {last}: {} missing before this one (deleted, or moved \
                     further down)",
                    parsed.seq,
                    match parsed.seq - expected {
                        1 => "a line".to_owned(),
                        n => format!("{n} lines"),
                    }
                ))
            } else if parsed.seq < expected {
                Some(format!(
                    "seq {} follows seq {last}: lines out of order or repeated",
                    parsed.seq
                ))
            } else {
                Some(format!(
                    "prev does not match the hash of the line before (seq {last}): a line before \
                     this one was replaced, or the chain was spliced"
                ))
            }
        }
    };
    if reason.is_some() {
        return (seq, reason);
    }
    report.lines += 1;
    report.first.get_or_insert(parsed.seq);
    report.last = Some(parsed.seq);
    report.last_hash = Some(parsed.hash);
    (seq, None)
}

/// Reads every line of `files` as entries, in order, for display. Does **not** check the chain
/// (see [`verify`]); a line that is not an audit entry is an [`AuditError::BadLine`].
pub fn read(files: &[PathBuf]) -> Result<Vec<AuditEntry>, AuditError> {
    let mut entries = Vec::new();
    for file in files {
        let read_error = |source| AuditError::Read {
            path: file.clone(),
            source,
        };
        let reader = BufReader::new(File::open(file).map_err(read_error)?);
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(read_error)?;
            let parsed = parse_line(&line).map_err(|why| AuditError::BadLine {
                path: file.clone(),
                line: i + 1,
                reason: format!("the line {why}"),
            })?;
            entries.push(parsed);
        }
    }
    Ok(entries)
}

/// RFC 3339 in UTC with milliseconds: `2026-11-29T03:45:00.123Z` (times before 1970 are
/// written as 1970-01-01T00:00:00.000Z).
fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339_millis(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn times_are_rfc3339_utc_with_millis() {
        // Values from `date -u -d @SECS`.
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.001Z");
        assert_eq!(at(1_709_210_096, 789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(1_764_387_900, 123), "2025-11-29T03:45:00.123Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut previous = civil_from_days(0);
        assert_eq!(previous, (1970, 1, 1));
        for days in 1..200_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1);
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} → {y}-{m}-{d}"
            );
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_days = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            assert!(d <= month_days, "{y}-{m}-{d}");
            previous = (y, m, d);
        }
    }

    #[test]
    fn a_line_is_its_fields_in_order_and_hashes_to_itself() {
        let record = AuditRecord::new("approved")
            .client("payments")
            .upstream_status(200)
            .body(b"{}");
        let unhashed = serde_json::to_string(&Unhashed {
            seq: 1,
            time: "2026-11-29T03:45:00.123Z",
            instance: "a",
            record: &record,
            prev: GENESIS_PREV,
        })
        .unwrap();
        let hash = sha256_hex(unhashed.as_bytes());
        let line = seal(&unhashed, &hash);
        let expected = format!(
            "{{\"seq\":1,\"time\":\"2026-11-29T03:45:00.123Z\",\"instance\":\"a\",\"event\":\"approved\",\
             \"client\":\"payments\",\"key\":null,\"credential_id\":null,\"method\":null,\"path\":null,\
             \"body_sha256\":\"{}\",\"challenge_identifier\":null,\"decision\":null,\"rule\":null,\
             \"upstream_status\":200,\"detail\":null,\"prev\":\"{GENESIS_PREV}\",\"hash\":\"{hash}\"}}\n",
            sha256_hex(b"{}")
        );
        assert_eq!(line, expected);
        let text = line.trim_end().as_bytes();
        assert!(hash_holds(text, &hash));
        let parsed = parse_line(text).unwrap();
        assert_eq!(parsed.record, record);
        assert_eq!(parsed.prev, GENESIS_PREV);
        // The entry serialises to the line's own text.
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line.trim_end());
    }

    #[test]
    fn the_last_line_is_found_across_chunks() {
        let dir = std::env::temp_dir().join(format!("dfns-audit-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tail");
        let long = "x".repeat(20_000);
        fs::write(&path, format!("a\n{long}\n")).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(
            last_line(&mut file).unwrap(),
            Some(long.clone().into_bytes())
        );
        fs::write(&path, format!("{long}\n")).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(last_line(&mut file).unwrap(), Some(long.into_bytes()));
        fs::write(&path, "a\nb").unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(last_line(&mut file).unwrap(), None);
        fs::write(&path, "a\n\n").unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(last_line(&mut file).unwrap(), Some(Vec::new()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
