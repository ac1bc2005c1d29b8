//! The result table of jobs that change manifests: `WORKLOAD STATUS UPDATES`.

use flux_manifests::release::{Status, WorkloadResult};

use crate::table;

/// One workload's row(s) in the result table, whichever mode produced it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload id.
    pub id: String,
    /// `success`, `failed`, `skipped` or `ignored`.
    pub status: String,
    /// The verbosity from which the row is shown.
    pub level: u8,
    /// Updates (`container: current -> tag`), then the reason.
    pub lines: Vec<String>,
}

/// Renders offline results.
pub fn render(results: &[WorkloadResult], verbosity: u8) -> String {
    let rows: Vec<Row> = results
        .iter()
        .map(|result| Row {
            id: result.id.to_string(),
            status: result.status.to_string(),
            level: match result.status {
                Status::Success | Status::Failed => 0,
                Status::Skipped => 1,
                Status::Ignored => 2,
            },
            lines: result
                .updates
                .iter()
                .map(|u| {
                    let target = u.target.tag().or(u.target.digest()).unwrap_or("latest");
                    format!("{}: {} -> {}", u.container, u.current, target)
                })
                .chain(result.reason.clone())
                .collect(),
        })
        .collect();
    render_rows(&rows, verbosity)
}

/// Renders as the original does: success and failed always, skipped from
/// verbosity 1, ignored from verbosity 2. The first update (or the reason)
/// goes on the workload's row, further ones on rows of their own.
pub fn render_rows(results: &[Row], verbosity: u8) -> String {
    let mut rows = vec![["WORKLOAD", "STATUS", "UPDATES"].map(String::from).to_vec()];
    for result in results.iter().filter(|r| r.level <= verbosity) {
        let mut lines = result.lines.iter().cloned();
        let first = lines.next().unwrap_or_default();
        rows.push(vec![result.id.clone(), result.status.clone(), first]);
        rows.extend(lines.map(|line| vec![String::new(), String::new(), line]));
    }
    table::render(&rows)
}
