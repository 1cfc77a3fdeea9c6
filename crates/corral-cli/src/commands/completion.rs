//! `corral completion`: shell completion scripts.

use crate::error::Result;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  corral completion bash > /etc/bash_completion.d/corral\n  \
    corral completion zsh > \"${fpath[1]}/_corral\"\n  corral completion fish > ~/.config/fish/completions/corral.fish"
)]
pub struct Args {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args, command: fn() -> clap::Command) -> Result<()> {
    let mut cmd = command();
    clap_complete::generate(args.shell, &mut cmd, "corral", &mut std::io::stdout());
    Ok(())
}
