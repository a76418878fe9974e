//! The audit log (`dfns_signer::audit`) and `dfns-signer audit verify/show`: the hash chain over
//! rotated files, reopening, tampering (a deleted, moved or changed line) found at the right
//! file and line, a log that cannot be written refusing the append, concurrent appends, and the
//! commands' exit statuses and output.
//!
//! The write-failure case must hold as root (CI runs the tests as root, and permissions do not
//! stop root): the file the log must rotate to is made a directory, which no user can rename a
//! file over. The append then fails before writing anything, and succeeds again once the way is
//! clear, with the chain unbroken.
#![cfg(feature = "client")]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dfns_signer::audit::{
    chain_files, verify, AuditEntry, AuditError, AuditLog, AuditOptions, AuditRecord, GENESIS_PREV,
};
use sha2::{Digest, Sha256};

/// A fresh, empty directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dfns-audit-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(i: usize) -> AuditRecord {
    AuditRecord::new("approved")
        .client("payments")
        .key("hsm")
        .credential_id("Y2ktMXNhbXBsZQ")
        .method("POST")
        .path("/wallets")
        .body(format!("{{\"network\":\"EthereumSepolia\",\"n\":{i}}}").as_bytes())
        .challenge_identifier(format!("cr-{i}"))
        .decision("allowed")
        .rule("1 POST /wallets")
        .upstream_status(200)
}

fn options(rotate_bytes: u64) -> AuditOptions {
    AuditOptions::new("signer-test").rotate_bytes(rotate_bytes)
}

/// A log of `n` entries at `dir/audit.log`, rotating at `rotate_bytes`.
fn build(dir: &Path, n: usize, rotate_bytes: u64) -> (PathBuf, Vec<AuditEntry>) {
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path, options(rotate_bytes)).unwrap();
    let entries = (0..n).map(|i| log.append(&record(i)).unwrap()).collect();
    (path, entries)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// The name a log's current file gets when rotated: `<path>.<seq of its first line>`.
fn rotated_name(path: &Path) -> PathBuf {
    let first: serde_json::Value = serde_json::from_str(&lines(path)[0]).unwrap();
    PathBuf::from(format!(
        "{}.{:012}",
        path.display(),
        first["seq"].as_u64().unwrap()
    ))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The hash a line should carry, computed here from the format's definition.
fn hash_of(line: &str) -> String {
    let cut = line.rfind(",\"hash\":").unwrap();
    sha256_hex(format!("{}}}", &line[..cut]).as_bytes())
}

/// The library (test names carry `audit` so `cargo test --lib audit --test audit` runs them).
mod audit_log {
    use super::*;

    #[test]
    fn a_thousand_appends_rotate_into_a_chain_that_verifies() {
        let dir = test_dir("thousand");
        let (path, entries) = build(&dir, 1000, 16 * 1024);

        let mut prev = GENESIS_PREV.to_owned();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.seq, i as u64 + 1);
            assert_eq!(entry.prev, prev);
            assert_eq!(entry.instance, "signer-test");
            prev = entry.hash.clone();
        }

        let files = chain_files(&path);
        assert!(files.len() > 5, "{files:?}");
        assert_eq!(files.last().unwrap(), &path);
        // Each rotated file is named after its first line's seq and stays under the limit.
        let mut next_seq = 1;
        for file in &files {
            let file_lines = lines(file);
            let first: serde_json::Value = serde_json::from_str(&file_lines[0]).unwrap();
            assert_eq!(first["seq"], next_seq);
            if file != &path {
                let name = file.file_name().unwrap().to_str().unwrap();
                assert_eq!(name, format!("audit.log.{next_seq:012}"));
                assert!(fs::metadata(file).unwrap().len() <= 16 * 1024);
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    fs::metadata(file).unwrap().permissions().mode() & 0o777,
                    0o600
                );
            }
            next_seq += file_lines.len() as u64;
        }
        assert_eq!(next_seq, 1001);

        let report = verify(&files).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.lines, 1000);
        assert_eq!((report.first, report.last), (Some(1), Some(1000)));
        assert_eq!(
            report.last_hash.as_deref(),
            Some(entries[999].hash.as_str())
        );
        assert!(!report.starts_after_archived);

        // The line format: the fields in order, the time in RFC 3339 UTC with milliseconds, the
        // hash of the text up to `prev`, `prev` the previous line's hash.
        let first_lines = lines(&files[0]);
        let line: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&first_lines[0]).unwrap();
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "seq",
                "time",
                "instance",
                "event",
                "client",
                "key",
                "credential_id",
                "method",
                "path",
                "body_sha256",
                "challenge_identifier",
                "decision",
                "rule",
                "upstream_status",
                "detail",
                "prev",
                "hash"
            ]
        );
        assert_eq!(line["detail"], serde_json::Value::Null);
        assert_eq!(line["prev"], GENESIS_PREV);
        assert_eq!(line["upstream_status"], 200);
        assert_eq!(
            line["body_sha256"],
            sha256_hex(br#"{"network":"EthereumSepolia","n":0}"#)
        );
        let time = line["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-11-29T03:45:00.123Z".len(), "{time}");
        assert!(time.ends_with('Z') && &time[10..11] == "T" && &time[19..20] == ".");
        assert_eq!(line["hash"], hash_of(&first_lines[0]));
        assert_eq!(line["hash"], entries[0].hash);
        let second: serde_json::Value = serde_json::from_str(&first_lines[1]).unwrap();
        assert_eq!(second["prev"], line["hash"]);

        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = test_dir("reopen");
        let (path, entries) = build(&dir, 120, 4 * 1024);
        let last = entries.last().unwrap();

        let log = AuditLog::open(&path, options(4 * 1024)).unwrap();
        assert_eq!(log.last_seq(), 120);
        assert_eq!(log.last_hash(), last.hash);
        let next = log.append(&AuditRecord::new("started")).unwrap();
        assert_eq!(next.seq, 121);
        assert_eq!(next.prev, last.hash);
        drop(log);

        // The current file gone (moved aside by hand after a rotation): the newest rotated file
        // carries the chain.
        fs::rename(&path, rotated_name(&path)).unwrap();
        let log = AuditLog::open(&path, options(4 * 1024)).unwrap();
        let after = log.append(&AuditRecord::new("started")).unwrap();
        assert_eq!(after.seq, 122);
        assert_eq!(after.prev, next.hash);
        // And an empty current file likewise.
        drop(log);
        fs::rename(&path, rotated_name(&path)).unwrap();
        let log = AuditLog::open(&path, options(4 * 1024)).unwrap();
        drop(log);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        let log = AuditLog::open(&path, options(4 * 1024)).unwrap();
        assert_eq!(log.append(&AuditRecord::new("started")).unwrap().seq, 123);

        let report = verify(&chain_files(&path)).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.lines, 123);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_deleted_line_is_found_at_the_line_after_the_gap() {
        let dir = test_dir("delete");
        let (path, _) = build(&dir, 1000, 16 * 1024);
        let files = chain_files(&path);
        let target = &files[1];
        let mut target_lines = lines(target);
        let deleted: serde_json::Value = serde_json::from_str(&target_lines[3]).unwrap();
        let deleted_seq = deleted["seq"].as_u64().unwrap();
        target_lines.remove(3);
        write_lines(target, &target_lines);

        let report = verify(&files).unwrap();
        let broken = report.broken.as_ref().expect("the gap is found");
        assert_eq!(&broken.file, target);
        assert_eq!(broken.line, 4);
        assert_eq!(broken.seq, Some(deleted_seq + 1));
        assert!(
            broken.reason.contains(&format!(
                "seq {} follows seq {}",
                deleted_seq + 1,
                deleted_seq - 1
            )) && broken.reason.contains("missing"),
            "{}",
            broken.reason
        );
        assert_eq!(report.lines, deleted_seq - 1);
        assert_eq!(report.last, Some(deleted_seq - 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn swapped_lines_are_found_at_the_first_one_moved() {
        let dir = test_dir("swap");
        let (path, _) = build(&dir, 1000, 16 * 1024);
        let files = chain_files(&path);
        let target = &files[2];
        let mut target_lines = lines(target);
        let moved_up: serde_json::Value = serde_json::from_str(&target_lines[5]).unwrap();
        target_lines.swap(4, 5);
        write_lines(target, &target_lines);

        let report = verify(&files).unwrap();
        let broken = report.broken.as_ref().expect("the swap is found");
        assert_eq!(&broken.file, target);
        assert_eq!(broken.line, 5);
        assert_eq!(broken.seq, moved_up["seq"].as_u64());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_edited_line_is_found_at_that_line_and_a_rehashed_one_at_the_next() {
        let dir = test_dir("edit");
        let (path, entries) = build(&dir, 300, 16 * 1024);
        let files = chain_files(&path);
        let target = &files[1];
        let original = lines(target);

        let mut edited = original.clone();
        assert!(edited[6].contains(r#""decision":"allowed""#));
        edited[6] = edited[6].replace(r#""decision":"allowed""#, r#""decision":"denied""#);
        write_lines(target, &edited);
        let report = verify(&files).unwrap();
        let broken = report.broken.as_ref().expect("the edit is found");
        assert_eq!((&broken.file, broken.line), (target, 7));
        assert!(
            broken.reason.contains("hash does not match"),
            "{}",
            broken.reason
        );
        // The report names the place, never what the line says.
        assert!(!broken.reason.contains("denied") && !broken.reason.contains("allowed"));

        // The same edit with the line's own hash recomputed: the next line's prev gives it away.
        let cut = edited[6].rfind(",\"hash\":").unwrap();
        edited[6] = format!(
            "{},\"hash\":\"{}\"}}",
            &edited[6][..cut],
            hash_of(&edited[6])
        );
        write_lines(target, &edited);
        let report = verify(&files).unwrap();
        let broken = report.broken.as_ref().expect("the rehashed edit is found");
        assert_eq!((&broken.file, broken.line), (target, 8));
        assert!(
            broken.reason.contains("prev does not match"),
            "{}",
            broken.reason
        );

        // Back as it was: intact again.
        write_lines(target, &original);
        let report = verify(&files).unwrap();
        assert!(report.ok());
        assert_eq!(report.lines, entries.len() as u64);

        // Verifying from the second file on: the chain starts after archived files.
        let report = verify(&files[1..]).unwrap();
        assert!(report.ok() && report.starts_after_archived, "{report:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_incomplete_last_line_is_reported_and_not_continued() {
        let dir = test_dir("torn");
        let (path, _) = build(&dir, 5, 1 << 20);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() - 10]).unwrap();

        let report = verify(&chain_files(&path)).unwrap();
        let broken = report.broken.unwrap();
        assert_eq!((broken.line, report.lines), (5, 4));
        assert!(broken.reason.contains("incomplete"), "{}", broken.reason);

        let err = AuditLog::open(&path, options(1 << 20)).unwrap_err();
        assert!(matches!(err, AuditError::Unusable { .. }), "{err}");
        assert!(err.to_string().contains("incomplete"), "{err}");
        assert!(!err.fix().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_append_that_cannot_be_written_fails_and_logs_nothing() {
        let dir = test_dir("unwritable");
        let path = dir.join("audit.log");
        // Every line after the first rotates the file first.
        let log = AuditLog::open(&path, options(1)).unwrap();
        let first = log.append(&record(0)).unwrap();

        // The name the file must rotate to is a directory (with something in it): not even root can
        // rename a file over it, so the rotation, and with it the append, fails.
        let blocker = dir.join("audit.log.000000000001");
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), "x").unwrap();
        let err = log.append(&record(1)).unwrap_err();
        assert!(matches!(err, AuditError::Rotate { .. }), "{err}");
        assert!(err.to_string().contains("audit.log.000000000001"), "{err}");
        assert!(!err.fix().is_empty());
        assert_eq!(log.last_seq(), 1);
        assert_eq!(lines(&path).len(), 1);

        // Once the way is clear the next append takes the seq the failed one did not use.
        fs::remove_dir_all(&blocker).unwrap();
        let second = log.append(&record(1)).unwrap();
        assert_eq!((second.seq, second.prev.as_str()), (2, first.hash.as_str()));
        let report = verify(&chain_files(&path)).unwrap();
        assert!(report.ok() && report.lines == 2, "{report:?}");

        // The log's directory gone: the next rotation has nowhere to go.
        let moved = dir.with_extension("moved");
        let _ = fs::remove_dir_all(&moved);
        fs::rename(&dir, &moved).unwrap();
        assert!(log.append(&record(2)).is_err());
        drop(log);
        fs::remove_dir_all(&moved).unwrap();
    }

    #[test]
    fn unsafe_or_impossible_files_are_refused_at_open() {
        let dir = test_dir("refused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join("shared.log");
            fs::write(&path, "").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let err = AuditLog::open(&path, options(1 << 20)).unwrap_err();
            assert!(
                matches!(err, AuditError::Permissions { mode: 0o644, .. }),
                "{err}"
            );
            assert_eq!(err.fix(), format!("chmod 600 {}", path.display()));
        }
        // A directory where the file should be, and a file where its directory should be.
        assert!(AuditLog::open(&dir, options(1 << 20)).is_err());
        let file = dir.join("plain");
        fs::write(&file, "").unwrap();
        let err = AuditLog::open(&file.join("audit.log"), options(1 << 20)).unwrap_err();
        assert!(matches!(err, AuditError::Open { .. }), "{err}");
        // Not an audit log.
        let other = dir.join("other.log");
        fs::write(&other, "hello\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&other, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = AuditLog::open(&other, options(1 << 20)).unwrap_err();
        assert!(matches!(err, AuditError::Unusable { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_appends_keep_one_gapless_chain() {
        let dir = test_dir("threads");
        let path = dir.join("audit.log");
        let log = Arc::new(AuditLog::open(&path, options(16 * 1024)).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    (0..150)
                        .map(|i| log.append(&record(t * 1000 + i)).unwrap().seq)
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for thread in threads {
            let mine = thread.join().unwrap();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "each thread's seqs rise"
            );
            seqs.extend(mine);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=1200).collect::<Vec<u64>>());
        let report = verify(&chain_files(&path)).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.lines, report.last), (1200, Some(1200)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_files_are_an_error_not_a_report() {
        let dir = test_dir("missing");
        let err = verify(&[dir.join("nothing.log")]).unwrap_err();
        assert!(matches!(err, AuditError::Read { .. }), "{err}");
        // An empty log is an intact one.
        fs::write(dir.join("empty.log"), "").unwrap();
        let report = verify(&[dir.join("empty.log")]).unwrap();
        assert!(report.ok() && report.lines == 0 && report.first.is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(feature = "cli")]
mod audit_cli {
    use super::*;
    use std::process::{Command, Output};

    fn run(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dfns-signer"))
            .args(args)
            .env_remove("DFNS_SIGNER_LOG")
            .output()
            .unwrap()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn verify_exits_0_when_intact_and_1_at_the_break() {
        let dir = test_dir("cli-verify");
        let (path, entries) = build(&dir, 300, 16 * 1024);
        let current = path.to_str().unwrap();

        // The current file alone stands for the whole log, rotated files included.
        let out = run(&["audit", "verify", current]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with("✓ 300 lines, seq 1–300, chain intact\n"),
            "{stdout}"
        );
        assert!(stdout.contains(&entries[299].hash), "{stdout}");

        let out = run(&["audit", "verify", current, "--output", "json"]);
        assert_eq!(out.status.code(), Some(0));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["ok"], true);
        assert_eq!(json["lines"], 300);
        assert_eq!(json["first_seq"], 1);
        assert_eq!(json["last_seq"], 300);
        assert_eq!(json["broken"], serde_json::Value::Null);

        // Several files: checked as given, in that order.
        let files = chain_files(&path);
        let mut args = vec!["audit", "verify"];
        args.extend(files[1..].iter().map(|f| f.to_str().unwrap()));
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("starts after archived lines"));

        // A changed line: exit 1, two lines on stderr naming the file and line.
        let target = &files[1];
        let mut target_lines = lines(target);
        target_lines[2] = target_lines[2].replace("\"allowed\"", "\"denied\"");
        write_lines(target, &target_lines);
        let out = run(&["audit", "verify", current]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        let stderr_lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(stderr_lines.len(), 2, "{stderr}");
        assert!(
            stderr_lines[0].starts_with(&format!("error: {}:3: ", target.display())),
            "{stderr}"
        );
        assert!(stderr_lines[1].starts_with("  what to do: "), "{stderr}");
        assert!(out.stdout.is_empty());

        let out = run(&["audit", "verify", current, "--output", "json"]);
        assert_eq!(out.status.code(), Some(1));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["broken"]["file"], target.to_str().unwrap());
        assert_eq!(json["broken"]["line"], 3);
        let seq = json["broken"]["seq"].as_u64().unwrap();
        assert_eq!(json["lines"], seq - 1);
        assert_eq!(json["last_seq"], seq - 1);
        assert!(json["broken"]["reason"].as_str().unwrap().contains("hash"));

        // An unreadable file: exit 2.
        let missing = dir.join("missing.log");
        let out = run(&["audit", "verify", missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).starts_with("error: cannot read "));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn show_prints_one_line_per_entry_or_a_json_array() {
        let dir = test_dir("cli-show");
        let (path, entries) = build(&dir, 40, 4 * 1024);
        let log = AuditLog::open(&path, options(4 * 1024)).unwrap();
        log.append(
            &AuditRecord::new("refused")
                .client("ops")
                .method("DELETE")
                .path("/wallets/wa-1\u{1b}[2J")
                .decision("denied")
                .detail("no rule allows DELETE"),
        )
        .unwrap();
        drop(log);
        let current = path.to_str().unwrap();

        let out = run(&["audit", "show", current]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let shown: Vec<&str> = stdout.lines().collect();
        assert_eq!(shown.len(), 41);
        let first = format!(
            "#1 {} approved payments POST /wallets decision allowed (rule 1 POST /wallets) key hsm \
             cred Y2ktMXNhbXBsZQ challenge cr-0 body sha256:{}… upstream 200",
            entries[0].time,
            &entries[0].record.body_sha256.as_ref().unwrap()[..12]
        );
        assert_eq!(shown[0], first);
        // Control characters a client sent are escaped, not sent to the terminal.
        assert!(
            shown[40].starts_with("#41 ")
                && shown[40].contains(
                    "refused ops DELETE /wallets/wa-1\\u{1b}[2J decision denied — no rule allows DELETE"
                ),
            "{}",
            shown[40]
        );
        assert!(!stdout.contains('\u{1b}'));

        let out = run(&["audit", "show", current, "--output", "json"]);
        assert_eq!(out.status.code(), Some(0));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let array = json.as_array().unwrap();
        assert_eq!(array.len(), 41);
        assert_eq!(array[0]["seq"], 1);
        assert_eq!(array[0]["hash"], entries[0].hash);
        assert_eq!(array[0]["rule"], "1 POST /wallets");
        assert_eq!(array[40]["event"], "refused");
        assert_eq!(array[40]["upstream_status"], serde_json::Value::Null);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(feature = "simulator")]
#[path = "common/sim.rs"]
mod sim;

/// A custody backend that links the client writes the same log: `DfnsClientBuilder::audit_log`.
#[cfg(feature = "simulator")]
mod audit_in_the_client {
    use super::*;
    use dfns_signer::{ClientError, Error};

    use super::sim;

    #[tokio::test]
    async fn each_approval_is_logged_before_it_leaves_and_one_that_cannot_be_is_not_given() {
        let dir = test_dir("client");
        let path = dir.join("audit.log");
        // Every line after the first rotates the file first.
        let log = Arc::new(AuditLog::open(&path, options(1)).unwrap());
        let (sim, root) = sim::start().await;
        let client = sim::client_like(&sim, &root)
            .audit_log(log.clone())
            .build()
            .unwrap();
        let body = serde_json::json!({"network": "Bitcoin"});
        client.create_wallet(&body).await.unwrap().done().unwrap();
        let entries = dfns_signer::audit::read(&chain_files(&path)).unwrap();
        let events: Vec<&str> = entries.iter().map(|e| e.record.event.as_str()).collect();
        assert_eq!(events, ["approved", "completed"]);
        let approved = &entries[0].record;
        assert_eq!(approved.method.as_deref(), Some("POST"));
        assert_eq!(approved.path.as_deref(), Some("/wallets"));
        assert_eq!(
            approved.credential_id.as_deref(),
            Some(root.signer().unwrap().credential_id())
        );
        assert!(approved.challenge_identifier.is_some());
        assert_eq!(
            approved.body_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(body.to_string().as_bytes())).as_str())
        );
        assert_eq!(entries[1].record.upstream_status, Some(200));

        // The next rotation's name is taken by a directory: the approval cannot be written,
        // so the signature never reaches /auth/action and nothing is created.
        let blocker = dir.join(format!("audit.log.{:012}", entries[1].seq));
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), "x").unwrap();
        let before = sim.stats();
        let err = client.create_wallet(&body).await.unwrap_err();
        assert!(
            matches!(err, Error::Client(ClientError::AuditRefused { .. })),
            "{err}"
        );
        let after = sim.stats();
        assert_eq!(after.user_actions_issued, before.user_actions_issued);
        assert_eq!(after.side_effects, before.side_effects);
        fs::remove_dir_all(&blocker).unwrap();
        client.create_wallet(&body).await.unwrap().done().unwrap();
        assert!(verify(&chain_files(&path)).unwrap().ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
