//! `boxwright completions bash|zsh|fish`: the shell completion script, from
//! the same clap definitions that parse the arguments (so it never drifts).
//!
//! ```sh
//! boxwright completions bash > ~/.local/share/bash-completion/completions/boxwright
//! boxwright completions zsh > ~/.zfunc/_boxwright      # with fpath+=(~/.zfunc)
//! boxwright completions fish > ~/.config/fish/completions/boxwright.fish
//! ```

use anyhow::Result;
use std::io::Write as _;

use clap::{Args, CommandFactory as _, ValueEnum};

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Write the script to stdout.
pub fn run(args: CompletionsArgs) -> Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = super::Cli::command();
    let mut buf: Vec<u8> = Vec::new();
    clap_complete::generate(shell, &mut cmd, "boxwright", &mut buf);
    let mut out = super::stdout();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}
