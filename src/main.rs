//! `dfns-signer`: sign Dfns user actions from the command line.
//!
//! A thin layer: parse arguments, call the library, print. Exit status: 0 success, 1 anything
//! else, 2 usage or configuration, 3 policy approval pending, 4 device or PIN, 5 Dfns API
//! refused; errors are two lines on stderr, what went wrong and what to do
//! (`src/cli/failure.rs`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
