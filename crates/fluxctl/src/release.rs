//! `fluxctl release --manifests DIR`: put an image into workloads by
//! editing their manifests in place.

use std::process::ExitCode;

use anyhow::{Context, bail};
use flux_image::ImageRef;
use flux_manifests::Transaction;
use flux_manifests::release::{self, ReleaseSpec, Status, Targets};

use crate::offline::{Manifests, Output, parse_id};
use crate::results;

/// Arguments of `release`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["workload", "all"])))]
pub struct Args {
    #[command(flatten)]
    manifests: Manifests,
    /// A workload to release to (`<namespace>:<kind>/<name>`); may be repeated.
    #[arg(short, long = "workload", value_name = "ID")]
    workload: Vec<String>,
    /// Release to every workload that uses the image's repository.
    #[arg(long)]
    all: bool,
    /// A workload to leave alone; may be repeated.
    #[arg(long, value_name = "ID")]
    exclude: Vec<String>,
    /// The image to release, with its tag or digest.
    #[arg(short = 'i', long, value_name = "IMG:TAG")]
    update_image: String,
    /// Only this container of the named workloads; may be repeated.
    #[arg(short, long, value_name = "NAME")]
    container: Vec<String>,
    /// Show what would change, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Release to locked workloads too.
    #[arg(long)]
    force: bool,
    /// Show skipped workloads too (-vv: ignored ones as well).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

fn spec(args: &Args) -> anyhow::Result<ReleaseSpec> {
    let image = ImageRef::parse(&args.update_image)
        .with_context(|| format!("--update-image {}", args.update_image))?;
    if image.tag().is_none() && image.digest().is_none() {
        bail!("--update-image {}: name a tag or digest", args.update_image);
    }
    let targets = if args.all {
        Targets::All
    } else {
        Targets::Only(
            args.workload
                .iter()
                .map(|w| parse_id(w))
                .collect::<Result<_, _>>()?,
        )
    };
    let excludes = args
        .exclude
        .iter()
        .map(|w| parse_id(w))
        .collect::<Result<_, _>>()?;
    Ok(ReleaseSpec {
        targets,
        excludes,
        image,
        containers: args.container.clone(),
        force: args.force,
    })
}

/// Edits, verifies and writes; exits 1 when a workload failed or a file
/// could not be read, 2 on bad arguments.
pub fn run(args: Args) -> ExitCode {
    let spec = match spec(&args) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            return ExitCode::from(2);
        }
    };
    let (checkout, mut failed) = args.manifests.load();
    let mut transaction = Transaction::new(&checkout);
    let results = release::execute(&mut transaction, &spec);
    failed |= results.iter().any(|r| r.status == Status::Failed);
    if args.dry_run {
        eprintln!("fluxctl: dry run, nothing written");
    } else {
        match transaction.write() {
            Ok(written) => {
                for path in written {
                    eprintln!("fluxctl: wrote {}", path.display());
                }
            }
            Err(error) => {
                eprintln!("fluxctl: writing: {error}");
                failed = true;
            }
        }
    }
    match args.output {
        Output::Json => {
            let json = serde_json::to_string_pretty(&results).expect("results always serialise");
            println!("{json}");
        }
        Output::Text => print!("{}", results::render(&results, args.verbose)),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
