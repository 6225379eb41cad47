//! `gema export <kind>`: queue an export job through the admin API, and with `--wait` (or
//! `--output`) follow it with a progress bar on stderr and download the CSV when it is
//! done. Nothing here reads the database: it is a client like the other client commands.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{ApiArgs, ExportArgs};
use super::client::{ApiClient, ClientError};
use super::render::{Output, Shape, render};

/// Runs `gema export`; returns what to print on stdout.
pub async fn run_export(api: ApiArgs, args: ExportArgs) -> Result<String, ClientError> {
    let client = ApiClient::new(&api.api_url, api.token.clone());
    let body = json!({
        "kind": args.kind.replace('-', "_"),
        "merchant_id": args.merchant,
        "from": args.from,
        "to": args.to,
        "status": args.status,
        "entry_type": args.entry_type,
        "adjustment_type": args.adjustment_type,
        "run_id": args.run,
        "outcome": args.outcome,
        "period_from": args.period_from,
        "period_to": args.period_to,
    });
    let job = client
        .call(Method::POST, "/exports", &[], Some(strip_nulls(body)))
        .await?;
    let output = Output::from(&api);
    if !args.wait && args.output.is_none() {
        return Ok(render(&job, Shape::One("export"), output));
    }
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    let job = follow(&client, &id, !matches!(output, Output::Quiet)).await?;
    if job["status"] != "done" {
        return Err(ClientError::Unexpected {
            url: format!("/exports/{id}"),
            reason: format!(
                "the export {}: {}",
                job["status"].as_str().unwrap_or("?"),
                job["error"].as_str().unwrap_or("no reason given")
            ),
        });
    }
    let extension = if job["kind"] == "billing_invoices_xlsx" {
        "xlsx"
    } else {
        "csv"
    };
    let target = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{id}.{extension}")));
    let bytes = client
        .download(&format!("/exports/{id}/download"), &target)
        .await?;
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&job).unwrap_or_default(),
        Output::Quiet => target.display().to_string(),
        Output::Human => format!(
            "export {id}: {} rows, {bytes} bytes written to {}",
            job["rows_done"],
            target.display()
        ),
    })
}

/// The body without the filters not given.
fn strip_nulls(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    body
}

/// Polls the job until it is no longer queued or running, drawing its progress.
async fn follow(client: &ApiClient, id: &str, draw: bool) -> Result<Value, ClientError> {
    let path = format!("/exports/{id}");
    let mut stderr = std::io::stderr();
    loop {
        let job = client.call(Method::GET, &path, &[], None).await?;
        let status = job["status"].as_str().unwrap_or_default();
        if draw {
            let _ = write!(stderr, "\r{}", progress_line(&job));
            let _ = stderr.flush();
        }
        if status != "queued" && status != "running" {
            if draw {
                let _ = writeln!(stderr);
            }
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `[#########...........]  45% 450000/1000000 rows  running`
fn progress_line(job: &Value) -> String {
    const WIDTH: i64 = 30;
    let done = job["rows_done"].as_i64().unwrap_or(0);
    let total = job["rows_total"].as_i64();
    let status = job["status"].as_str().unwrap_or("?");
    let filled = match total {
        Some(t) if t > 0 => (done.min(t) * WIDTH) / t,
        Some(_) if status == "done" => WIDTH,
        _ => 0,
    };
    let percent = match total {
        Some(t) if t > 0 => format!("{:3}%", done.min(t) * 100 / t),
        _ if status == "done" => "100%".into(),
        _ => "  ?%".into(),
    };
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let total = total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    format!("[{bar}] {percent} {done}/{total} rows  {status:<8}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_rows_done() {
        let line =
            progress_line(&json!({ "rows_done": 50, "rows_total": 100, "status": "running" }));
        assert!(
            line.starts_with(&format!(
                "[{}{}]  50% 50/100 rows",
                "#".repeat(15),
                ".".repeat(15)
            )),
            "{line}"
        );
        let line =
            progress_line(&json!({ "rows_done": 0, "rows_total": null, "status": "queued" }));
        assert!(line.contains("  ?% 0/? rows  queued"), "{line}");
        let line = progress_line(&json!({ "rows_done": 0, "rows_total": 0, "status": "done" }));
        assert!(
            line.starts_with(&format!("[{}] 100%", "#".repeat(30))),
            "{line}"
        );
    }

    #[test]
    fn filters_not_given_are_left_out() {
        assert_eq!(
            strip_nulls(json!({ "kind": "transactions", "from": null })),
            json!({ "kind": "transactions" })
        );
    }
}
