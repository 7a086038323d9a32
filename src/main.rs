//! The `unet` command line: demo, train, predict, eval, weightmap, bench, info. Each command
//! lives in its own file under `cli/`; this file parses, runs and reports an error as one line.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse_args();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// A message on one line: driver and library errors sometimes span several.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
