//! A person at a terminal, for the tests of prompts: runs a command on a pseudo-terminal
//! (through `terminal.py`, Python's `pty`) and types answers as the prompts appear.

use std::io::Write;
use std::process::{Command, Stdio};

/// One exchange: wait for `expect` on the screen, then type `send` and Enter.
pub struct Typed<'a> {
    pub expect: &'a str,
    pub send: &'a str,
    /// The program must have turned echo off before this is typed (a PIN, a PUK).
    pub secret: bool,
}

/// What happened at the terminal.
#[derive(Debug)]
pub struct Session {
    /// Exit status, `None` when the program had to be killed.
    pub status: Option<i32>,
    /// Everything the terminal showed (prompts, echoed input, output, errors).
    pub transcript: String,
    /// Why the session did not follow the script, if it did not.
    pub failed: Option<String>,
}

/// Runs `argv` at a terminal with `env` added, typing `steps`; gives up after `timeout_s`.
pub fn at_terminal(
    argv: &[&str],
    env: &[(&str, &str)],
    steps: &[Typed],
    timeout_s: u64,
) -> Session {
    let spec = serde_json::json!({
        "argv": argv,
        "env": env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        "timeout": timeout_s,
        "steps": steps.iter().map(|s| serde_json::json!({
            "expect": s.expect, "send": s.send, "secret": s.secret,
        })).collect::<Vec<_>>(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/terminal.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the terminal driver");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the terminal driver failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("driver output is JSON");
    Session {
        status: v["status"].as_i64().map(|s| s as i32),
        transcript: v["transcript"].as_str().unwrap_or_default().to_owned(),
        failed: v["failed"].as_str().map(str::to_owned),
    }
}
