//! `fluxctl check-policy <POLICY> [TAG...]`: debug a tag filter before
//! putting it in an annotation.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use flux_image::{Candidate, Policy};
use serde::Serialize;

/// Arguments of `check-policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy: `semver:<range>`, `regexp:<re>`, `glob:<pattern>`, or a bare glob.
    policy: String,
    /// Tags to check; read one per line from standard input when none are given.
    tags: Vec<String>,
    /// Also print, for each rejected tag, why it was rejected.
    #[arg(long)]
    explain: bool,
    /// Output format.
    #[arg(short, long, visible_alias = "output-format", value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Serialize)]
struct Report<'a> {
    policy: String,
    admitted: Vec<&'a str>,
    rejected: Vec<RejectedTag<'a>>,
}

#[derive(Serialize)]
struct RejectedTag<'a> {
    tag: &'a str,
    reason: String,
}

/// Exit 0 when a tag is admitted, 1 when none is, 2 when the policy is invalid.
pub fn run(args: Args) -> ExitCode {
    let policy: Policy = match args.policy.parse() {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("fluxctl: {error}");
            return ExitCode::from(2);
        }
    };
    let tags = if args.tags.is_empty() {
        match read_tags(io::stdin().lock()) {
            Ok(tags) => tags,
            Err(error) => {
                eprintln!("fluxctl: reading tags from standard input: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        args.tags
    };
    let verdict = policy.judge(tags.into_iter().map(Candidate::new));
    let report = Report {
        policy: policy.to_string(),
        admitted: verdict.admitted.iter().map(|c| c.tag.as_str()).collect(),
        rejected: verdict
            .rejected
            .iter()
            .map(|(c, why)| RejectedTag {
                tag: &c.tag,
                reason: why.to_string(),
            })
            .collect(),
    };
    if let Err(error) = print(&report, args.output, args.explain) {
        eprintln!("fluxctl: {error}");
        return ExitCode::from(2);
    }
    if report.admitted.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn read_tags(input: impl BufRead) -> io::Result<Vec<String>> {
    let mut tags = Vec::new();
    for line in input.lines() {
        let line = line?;
        let tag = line.trim();
        if !tag.is_empty() {
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

fn print(report: &Report<'_>, output: Output, explain: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if output == Output::Json {
        serde_json::to_writer_pretty(&mut out, report)?;
        return writeln!(out);
    }
    for tag in &report.admitted {
        writeln!(out, "{tag}")?;
    }
    if explain {
        for rejected in &report.rejected {
            writeln!(out, "{}: {}", rejected.tag, rejected.reason)?;
        }
    }
    Ok(())
}
