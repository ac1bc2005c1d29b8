//! `fluxctl list-images --explain -w ID`: per container, why automation
//! did or did not move it, as the daemon decides it (its registry cache,
//! the workload's policies, git's history of rollbacks and reverts).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use flux_api::Explanation;

use crate::daemon::Connection;
use crate::offline::Output;

/// Asks the daemon why automation did or did not move each container of
/// `workload`, and prints it.
pub async fn run(
    workload: String,
    output: Output,
    connection: &Connection,
) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let explained = client.explain(&workload).await?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&explained).context("rendering JSON")?
        ),
        Output::Text => print!("{}", render(&explained)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Each container with its image, the tag automation moves it to next (if
/// any), then one reason a line.
pub fn render(explained: &[Explanation]) -> String {
    let mut out = String::new();
    for container in explained {
        let _ = writeln!(out, "{}: {}", container.container, container.image);
        if let Some(next) = &container.next {
            let _ = writeln!(out, "  automation moves it to {next} next");
        }
        for reason in &container.reasons {
            let _ = writeln!(out, "  {}", reason.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_api::{Reason, ReasonKind};

    #[test]
    fn each_container_is_followed_by_its_reasons() {
        let explained = [Explanation {
            workload: "sock-shop:deployment/front-end".into(),
            container: "front-end".into(),
            image: "registry.test/front-end:0.3.13".into(),
            next: None,
            reasons: vec![Reason {
                kind: ReasonKind::Held,
                tag: Some("0.3.13".into()),
                message: "held at 0.3.13 by a3f9c1e, a rollback from 0.3.14".into(),
            }],
        }];
        assert_eq!(
            render(&explained),
            "front-end: registry.test/front-end:0.3.13\n  held at 0.3.13 by a3f9c1e, a rollback from 0.3.14\n"
        );
    }
}
