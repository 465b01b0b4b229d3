//! The reconcile loop.

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {}

pub fn run_blocking(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
