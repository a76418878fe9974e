//! Running a command with input on stdin, as a backend hands a challenge to `sign-challenge`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `command` with `stdin` written to its standard input, and returns what it printed.
pub fn output_with_stdin(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("the command reads its input");
    child
        .wait_with_output()
        .expect("the command's output is read")
}
