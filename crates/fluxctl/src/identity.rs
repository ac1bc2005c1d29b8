//! `fluxctl identity`: the daemon's public deploy key, to add to the git host.

use std::process::ExitCode;

use anyhow::bail;
use flux_api::ClientError;

use crate::daemon::{self, Connection};

/// Arguments of `identity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the key's fingerprint instead of the key.
    #[arg(short = 'l', long)]
    fingerprint: bool,
}

/// Prints the key (or its fingerprint); exits 1 when the daemon has none.
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    daemon::block_on(async move {
        let client = connection.client()?;
        let identity = match client.identity().await {
            Ok(identity) => identity,
            Err(ClientError::Status {
                status: 404,
                message,
                ..
            }) => bail!("the daemon has no deploy key: {message}"),
            Err(error) => return Err(error.into()),
        };
        if args.fingerprint {
            println!("{}", identity.fingerprint);
        } else {
            println!("{}", identity.public_key);
        }
        Ok(ExitCode::SUCCESS)
    })
}
