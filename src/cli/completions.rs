//! `completions bash|zsh|fish`: a shell completion script on stdout, generated from the same
//! argument definitions the binary parses with (clap_complete).

use std::process::ExitCode;

use clap::CommandFactory;

use super::failure::Failure;
use super::Cli;

/// Arguments of `completions`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Prints the completion script.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "dfns-signer",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
