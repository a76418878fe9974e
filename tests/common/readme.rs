//! Runs a README walk-through as a reader would: the first `sh` block after a heading, in bash
//! with `-euo pipefail`, from the repository root, with the built `dfns-signer` first on `PATH`,
//! `$WORK` a fresh directory, SoftHSM as the PKCS#11 module and none of this machine's settings.
//! Whatever the block starts in the background is stopped when it ends.

use std::process::Command;

/// What a block printed, and whether it ended well.
pub struct BlockRun {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

/// Runs the first ```` ```sh ```` block after `heading` in README.md. `work` names the temporary
/// directory (`$WORK`, removed afterwards); `adjust` adds what this block needs on top.
pub fn run_block(heading: &str, work: &str, adjust: impl FnOnce(&mut Command)) -> BlockRun {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("the README has no `{heading}`"))..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let block = &section[start..start + section[start..].find("```\n").unwrap()];

    let work = std::env::temp_dir().join(format!("{work}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_dfns-signer"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null' EXIT\n{block}");
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("WORK", &work)
        .env("DFNS_SIGNER_PKCS11_MODULE", super::modules::softhsm());
    adjust(&mut command);
    super::without_local_settings(&mut command, &work.join("xdg"));
    let out = command.output().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    BlockRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}
