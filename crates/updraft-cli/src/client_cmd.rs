//! `updraft client`: to be wired to updraft-client.
use clap::Subcommand;
#[derive(Subcommand)]
pub enum ClientCmd { Check }
pub async fn run(_c: ClientCmd) -> anyhow::Result<i32> { Ok(0) }
