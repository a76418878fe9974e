//! `audit verify` and `audit show`: check and read the signing service's audit log.
//!
//! Thin over [`dfns_signer::audit`]: the log is JSON lines, each carrying the SHA-256 of the
//! line before, so a line changed, deleted or moved after it was written breaks the chain where
//! it happened. `verify` says where (exit 1) or that the chain holds (exit 0); `show` prints the
//! entries for people or as a JSON array. A file that cannot be read is exit 2.
//!
//! One FILE that is a log's current file (`audit.log`) stands for the whole log: its rotated
//! predecessors (`audit.log.000000000001`…) are read first, in chain order
//! ([`dfns_signer::audit::chain_files`]). Several FILEs are read as given, in that order.
//!
//! The chain shows tampering only against a hash kept elsewhere: someone who can rewrite the
//! whole file can recompute it. Ship the lines off the machine, or keep the `last hash` that
//! `verify` prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use dfns_signer::audit::{self, AuditEntry, AuditError};
use serde_json::json;

use super::failure::{Failure, EXIT_OTHER};
use super::{print_json, Output};

/// Audit log commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check the hash chain of an audit log: exit 0 when it holds, 1 at the first line where
    /// it breaks (changed, deleted or moved lines), 2 when a file cannot be read.
    ///
    /// One FILE that is the current log also reads its rotated predecessors (FILE.000000000001…)
    /// first; several FILEs are checked in the order given.
    ///
    /// Example:
    ///   dfns-signer audit verify /var/log/dfns-signer/audit.log
    #[command(verbatim_doc_comment)]
    Verify(Args),
    /// Print an audit log's entries, one line each (the chain is not checked: see `verify`).
    ///
    /// One FILE that is the current log also reads its rotated predecessors first.
    ///
    /// Example:
    ///   dfns-signer audit show /var/log/dfns-signer/audit.log --output json | jq '.[-1]'
    #[command(verbatim_doc_comment)]
    Show(Args),
}

/// Arguments of `audit verify` and `audit show`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log's files in chain order, or its current file alone (then with its rotated ones).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs an audit command.
pub fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Verify(args) => verify(args),
        Command::Show(args) => show(args),
    }
}

/// The files to read: one current file stands for its whole log.
fn files(given: &[PathBuf]) -> Vec<PathBuf> {
    match given {
        [one] => audit::chain_files(one),
        many => many.to_vec(),
    }
}

fn failure(e: AuditError) -> Failure {
    match e {
        AuditError::Read { .. } => Failure::usage(e.to_string(), e.fix()),
        _ => Failure::new(EXIT_OTHER, e.to_string(), e.fix()),
    }
}

fn verify(args: Args) -> Result<ExitCode, Failure> {
    let report = audit::verify(&files(&args.files)).map_err(failure)?;
    if args.output == Output::Json {
        let broken = report.broken.as_ref().map(|b| {
            json!({
                "file": b.file.display().to_string(),
                "line": b.line,
                "seq": b.seq,
                "reason": b.reason,
            })
        });
        print_json(
            &json!({
                "ok": report.ok(),
                "lines": report.lines,
                "first_seq": report.first,
                "last_seq": report.last,
                "last_hash": report.last_hash,
                "starts_after_archived": report.starts_after_archived,
                "broken": broken,
            }),
            Output::Json,
        );
    }
    if let Some(broken) = &report.broken {
        let before = match report.last {
            Some(last) => format!("lines up to seq {last} check out"),
            None => "no line before it checks out".to_owned(),
        };
        return Err(Failure::new(
            EXIT_OTHER,
            format!(
                "{}:{}: {}",
                broken.file.display(),
                broken.line,
                broken.reason
            ),
            format!(
                "the log was changed or cut short after it was written ({before}): keep the \
                 files as they are for investigation, and compare them with the copy shipped off \
                 this machine"
            ),
        ));
    }
    if args.output == Output::Text {
        match (report.first, report.last) {
            (Some(first), Some(last)) => {
                println!("✓ {} lines, seq {first}–{last}, chain intact", report.lines);
                if report.starts_after_archived {
                    println!(
                        "  starts after archived lines: seq {} and before are not in these files",
                        first - 1
                    );
                }
                if let Some(hash) = &report.last_hash {
                    println!("  last hash {hash} (keep it elsewhere to detect a later rewrite)");
                }
            }
            _ => println!("✓ 0 lines, chain intact (the log is empty)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: Args) -> Result<ExitCode, Failure> {
    let entries = audit::read(&files(&args.files)).map_err(failure)?;
    match args.output {
        Output::Json => print_json(
            &serde_json::to_value(&entries).expect("entries serialize"),
            Output::Json,
        ),
        Output::Text => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for entry in &entries {
                // A closed pipe (`| head`) ends the listing quietly.
                if writeln!(out, "{}", describe(entry)).is_err() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let _ = out.flush();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry as a line for people:
/// `#12 2026-11-29T03:45:00.123Z approved payments POST /wallets (rule 1 POST /wallets) key hsm cred Y2k… upstream 200`.
fn describe(entry: &AuditEntry) -> String {
    let r = &entry.record;
    let body = r
        .body_sha256
        .as_ref()
        .map(|h| format!("{}…", h.get(..12).unwrap_or(h.as_str())));
    let status = r.upstream_status.map(|s| s.to_string());
    let rule = r.rule.as_ref().map(|rule| format!("(rule {rule})"));
    let mut line = format!("#{} {} {}", entry.seq, clean(&entry.time), clean(&r.event));
    for (label, value) in [
        ("", &r.client),
        ("", &r.method),
        ("", &r.path),
        ("decision ", &r.decision),
        ("", &rule),
        ("key ", &r.key),
        ("cred ", &r.credential_id),
        ("challenge ", &r.challenge_identifier),
        ("body sha256:", &body),
        ("upstream ", &status),
        ("— ", &r.detail),
    ] {
        if let Some(value) = value {
            line.push(' ');
            line.push_str(label);
            line.push_str(&clean(value));
        }
    }
    line
}

/// A logged value made safe for a terminal: control characters (a client could have sent an
/// escape sequence in a path) are shown escaped.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("/wallets\u{1b}[2J"), "/wallets\\u{1b}[2J");
        assert_eq!(clean("Y2k…"), "Y2k…");
    }
}
