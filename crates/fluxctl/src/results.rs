//! The result table of jobs that change manifests: `WORKLOAD STATUS UPDATES`.

use flux_manifests::release::{Status, WorkloadResult};

use crate::table;

/// Renders results as the original does: success and failed always, skipped
/// from verbosity 1, ignored from verbosity 2. The first update (or the
/// reason) goes on the workload's row, further ones on rows of their own.
pub fn render(results: &[WorkloadResult], verbosity: u8) -> String {
    let mut rows = vec![["WORKLOAD", "STATUS", "UPDATES"].map(String::from).to_vec()];
    for result in results {
        let shown = match result.status {
            Status::Success | Status::Failed => true,
            Status::Skipped => verbosity >= 1,
            Status::Ignored => verbosity >= 2,
        };
        if !shown {
            continue;
        }
        let mut lines: Vec<String> = result
            .updates
            .iter()
            .map(|u| {
                let target = u.target.tag().or(u.target.digest()).unwrap_or("latest");
                format!("{}: {} -> {}", u.container, u.current, target)
            })
            .collect();
        lines.extend(result.reason.clone());
        let mut lines = lines.into_iter();
        let first = lines.next().unwrap_or_default();
        rows.push(vec![
            result.id.to_string(),
            result.status.to_string(),
            first,
        ]);
        rows.extend(lines.map(|line| vec![String::new(), String::new(), line]));
    }
    table::render(&rows)
}
