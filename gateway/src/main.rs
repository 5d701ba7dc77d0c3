//! The `stadttor` binary: the command line in [`cli`], on top of the
//! `stadttor_gateway` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
