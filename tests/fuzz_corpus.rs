//! Replays the saved fuzzing corpora (`fuzz/corpus/<target>/`) through the same entry points the
//! `cargo fuzz` targets call, so every input a fuzzer once found interesting — crashes it found
//! included — stays checked by a plain `cargo test`. A missing or empty corpus directory fails:
//! a lost corpus must not pass silently.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    assert!(
        !inputs.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    inputs.sort();
    inputs
}

fn replay(target: &str, run: fn(&[u8])) {
    let inputs = corpus(target);
    for (path, bytes) in &inputs {
        // Name the input that fails: the panic itself only says what broke.
        let outcome = std::panic::catch_unwind(|| run(bytes));
        if let Err(panic) = outcome {
            eprintln!("{target}: input {} failed", path.display());
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn challenge_json() {
    replay("challenge_json", dfns_signer::fuzzing::challenge_json);
}

#[test]
fn error_body() {
    replay("error_body", dfns_signer::fuzzing::error_body);
}

#[test]
fn der_signature() {
    replay("der_signature", dfns_signer::fuzzing::der_signature);
}

#[test]
fn key_uri() {
    replay("key_uri", dfns_signer::fuzzing::key_uri);
}

#[test]
fn spki_pem() {
    replay("spki_pem", dfns_signer::fuzzing::spki_pem);
}

#[test]
fn simulator_request() {
    replay("simulator_request", dfns_signer::fuzzing::simulator_request);
}
