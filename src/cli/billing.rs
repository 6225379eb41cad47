//! `gema billing import FILE`: the customer CSV import through the admin API, in two
//! visible steps. First the file is checked (a dry run: every row validated by the server,
//! its counts on stderr as soon as they are known); then, unless `--dry-run`, the valid rows
//! are imported in one transaction (the server checks them again inside it) and the counts
//! follow. The rows that were not imported are listed with their line and problems.
//!
//! Why two calls and no per-row progress: the import is one request and one transaction on
//! the server, so there is nothing truthful to count during it; the two steps say where it
//! is, and a file with invalid rows under `--all-or-nothing` stops after the check without
//! asking for an import the server would refuse. Nothing here reads the file's rows: the
//! rules are the server's.

use std::time::Instant;

use serde_json::Value;

use super::args::{ApiArgs, BillingCommand};
use super::client::{ApiClient, ClientError};
use super::render::Output;

const ROUTE: &str = "/billing/customer-imports";
/// Problem rows printed at most (all of them are in `--json`).
const SHOWN_ROWS: usize = 50;

/// Runs `gema billing …`; returns what to print on stdout.
pub async fn run_billing(api: ApiArgs, command: BillingCommand) -> Result<String, ClientError> {
    let BillingCommand::Import {
        file,
        dry_run,
        all_or_nothing,
    } = command;
    let output = Output::from(&api);
    let progress = |line: String| {
        if !matches!(output, Output::Quiet) {
            eprintln!("{line}");
        }
    };
    let csv = std::fs::read(&file).map_err(|source| ClientError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let client = ApiClient::new(&api.api_url, api.token.clone());
    let step = |mode: &'static str| {
        let client = &client;
        let csv = csv.clone();
        let query = [
            ("mode", mode.to_owned()),
            ("all_or_nothing", all_or_nothing.to_string()),
        ];
        async move {
            let started = Instant::now();
            let answer = client.post_csv(ROUTE, &query, csv).await?;
            Ok::<_, ClientError>((answer, started.elapsed().as_millis()))
        }
    };

    progress(format!(
        "checking {} ({} bytes, {} lines)…",
        file.display(),
        csv.len(),
        csv.iter().filter(|b| **b == b'\n').count()
    ));
    let (checked, ms) = step("dry_run").await?;
    progress(format!(
        "checked {} rows in {ms} ms: {} valid, {} invalid",
        checked["rows"], checked["valid"], checked["invalid"]
    ));
    let nothing_to_do = checked["valid"].as_u64() == Some(0)
        || (all_or_nothing && checked["invalid"].as_u64().unwrap_or(0) > 0);
    if dry_run || nothing_to_do {
        if !dry_run {
            progress(if all_or_nothing {
                "nothing imported: --all-or-nothing and some rows are invalid".into()
            } else {
                "nothing imported: no row is valid".into()
            });
        }
        let label = if dry_run { "dry run" } else { "not imported" };
        return Ok(summary(&checked, output, Some(label)));
    }

    progress(format!("importing {} rows…", checked["valid"]));
    let (imported, ms) = step("import").await?;
    progress(format!(
        "imported {} rows in {ms} ms ({} invalid, {} skipped)",
        imported["imported"], imported["invalid"], imported["skipped"]
    ));
    Ok(summary(&imported, output, None))
}

/// The last answer: as JSON, as the import id (`-q`), or as counts and the problem rows.
/// `checked`: the answer is the check's (labelled so), not an import's.
fn summary(report: &Value, output: Output, checked: Option<&str>) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(report).unwrap_or_default(),
        Output::Quiet => report["import_id"].as_str().unwrap_or_default().to_owned(),
        Output::Human => {
            let mut text = if let Some(label) = checked {
                format!(
                    "{label}: {} rows, {} valid, {} invalid",
                    report["rows"], report["valid"], report["invalid"]
                )
            } else {
                format!(
                    "import {}: {} rows, {} imported, {} invalid, {} skipped",
                    report["import_id"].as_str().unwrap_or("-"),
                    report["rows"],
                    report["imported"],
                    report["invalid"],
                    report["skipped"]
                )
            };
            let problem_rows: Vec<&Value> = report["results"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r["problems"].as_array().is_some_and(|p| !p.is_empty()))
                        .collect()
                })
                .unwrap_or_default();
            for row in problem_rows.iter().take(SHOWN_ROWS) {
                let problems: Vec<String> = row["problems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{} ({}): {}",
                            p["code"].as_str().unwrap_or("?"),
                            p["field"].as_str().unwrap_or("?"),
                            p["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                text.push_str(&format!(
                    "\n  line {:>6}  {}",
                    row["line"].as_i64().unwrap_or(0),
                    problems.join("; ")
                ));
            }
            if problem_rows.len() > SHOWN_ROWS {
                text.push_str(&format!(
                    "\n  … and {} more rows (--json lists them all)",
                    problem_rows.len() - SHOWN_ROWS
                ));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_lists_the_rows_with_problems() {
        let report = json!({
            "import_id": "imp_1", "rows": 3, "valid": 2, "invalid": 1, "imported": 2,
            "skipped": 0,
            "results": [{ "line": 4, "status": "invalid", "customer": null, "problems": [
                { "code": "unknown_area", "field": "area", "message": "no merchant" }] }]
        });
        let text = summary(&report, Output::Human, None);
        assert_eq!(
            text,
            "import imp_1: 3 rows, 2 imported, 1 invalid, 0 skipped\n  \
             line      4  unknown_area (area): no merchant"
        );
        assert_eq!(summary(&report, Output::Quiet, None), "imp_1");
        assert!(summary(&report, Output::Human, Some("dry run")).starts_with("dry run: 3 rows"));
    }
}
