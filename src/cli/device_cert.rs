//! `gema device cert <id> --csr FILE [--out FILE]`: a technician sends the device's CSR
//! (made on the device; its key never leaves it) to the admin API and gets the certificate
//! and the device CA's chain back, printed or written to a file.

use reqwest::Method;
use serde_json::{Value, json};

use super::args::ApiArgs;
use super::client::{ApiClient, ClientError};
use super::render::Output;

pub async fn run_device_cert(
    api: ApiArgs,
    id: String,
    csr: std::path::PathBuf,
    out: Option<std::path::PathBuf>,
) -> Result<String, ClientError> {
    let pem = std::fs::read_to_string(&csr).map_err(|source| ClientError::Read {
        path: csr.display().to_string(),
        source,
    })?;
    let client = ApiClient::new(&api.api_url, api.token.clone());
    let issued = client
        .call(
            Method::POST,
            &format!("/devices/{id}/certificates"),
            &[],
            Some(json!({ "csr": pem })),
        )
        .await?;
    let text = |key: &str| issued[key].as_str().unwrap_or_default().to_owned();
    // The device installs its certificate followed by the chain.
    let bundle = format!("{}{}", text("certificate_pem"), text("chain_pem"));
    if let Some(out) = &out {
        std::fs::write(out, &bundle).map_err(|source| ClientError::Io {
            path: out.display().to_string(),
            source,
        })?;
    }
    Ok(match Output::from(&api) {
        Output::Json => serde_json::to_string_pretty(&issued).unwrap_or_default(),
        Output::Quiet => text("serial"),
        Output::Human => summary(&issued, out.as_deref(), &bundle),
    })
}

fn summary(issued: &Value, out: Option<&std::path::Path>, bundle: &str) -> String {
    let serial = issued["serial"].as_str().unwrap_or_default();
    let not_after = issued["not_after"].as_str().unwrap_or_default();
    let head = format!("certificate {serial}, valid until {not_after}");
    match out {
        Some(path) => format!(
            "{head}\nwritten with the device CA's chain to {}",
            path.display()
        ),
        None => format!("{head}\n{bundle}"),
    }
}
