//! `gema claim create|list|revoke|provisionings|allow-reprovision`: an operator's claims for
//! provisioning by claim, through the admin API. `create` prints the claim's credential once,
//! as `ID:SECRET` (with `--quiet`, only that line), for the batch's factory image.

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{ApiArgs, ClaimCommand};
use super::client::{ApiClient, ClientError};
use super::render::Output;

pub async fn run_claim(api: ApiArgs, command: ClaimCommand) -> Result<String, ClientError> {
    let client = ApiClient::new(&api.api_url, api.token.clone());
    let output = Output::from(&api);
    let (method, path, body) = match command {
        ClaimCommand::Create {
            name,
            serial_pattern,
            serials,
            max_uses,
            expires_in_days,
        } => {
            let expires_at = time::OffsetDateTime::now_utc()
                + time::Duration::days(expires_in_days.clamp(0, 5 * 366));
            let expires_at = expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let body = json!({
                "name": name,
                "serial_pattern": serial_pattern,
                "serials": serials,
                "max_uses": max_uses,
                "expires_at": expires_at,
            });
            let issued = client
                .call(Method::POST, "/claims", &[], Some(body))
                .await?;
            let credential = format!(
                "{}:{}",
                issued["claim"]["id"].as_str().unwrap_or_default(),
                issued["secret"].as_str().unwrap_or_default()
            );
            return Ok(match output {
                Output::Json => serde_json::to_string_pretty(&issued).unwrap_or_default(),
                Output::Quiet => credential,
                Output::Human => created(&issued, &credential),
            });
        }
        ClaimCommand::List => (Method::GET, "/claims".to_owned(), None),
        ClaimCommand::Revoke { id } => (Method::POST, format!("/claims/{id}/revoke"), None),
        ClaimCommand::Provisionings { id } => {
            (Method::GET, format!("/claims/{id}/provisionings"), None)
        }
        ClaimCommand::AllowReprovision { serial } => (
            Method::POST,
            format!("/claims/provisionings/{serial}/allow-reprovision"),
            None,
        ),
    };
    let value = client.call(method, &path, &[], body).await?;
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&value).unwrap_or_default(),
        Output::Quiet => ids(&value),
        Output::Human => human(&value),
    })
}

fn created(issued: &Value, credential: &str) -> String {
    let claim = &issued["claim"];
    format!(
        "claim {} \"{}\": up to {} devices, serials {}, until {}\n\
         MQTT: {}:{} over TLS, user name {}, client id = the device's serial\n\
         credential (shown once, keep it in the factory image): {credential}",
        claim["id"].as_str().unwrap_or_default(),
        claim["name"].as_str().unwrap_or_default(),
        claim["max_uses"],
        serials(claim),
        claim["expires_at"].as_str().unwrap_or_default(),
        issued["mqtt_host"].as_str().unwrap_or_default(),
        issued["mqtt_port"],
        claim["username"].as_str().unwrap_or_default(),
    )
}

fn serials(claim: &Value) -> String {
    match claim["serial_pattern"].as_str() {
        Some(pattern) => pattern.to_owned(),
        None => format!("{} listed", claim["serials"].as_array().map_or(0, Vec::len)),
    }
}

fn claim_line(c: &Value) -> String {
    format!(
        "{}  {:<8} {:>6}/{:<6} {:<20} until {}  {}",
        c["id"].as_str().unwrap_or_default(),
        c["status"].as_str().unwrap_or_default(),
        c["uses"],
        c["max_uses"],
        serials(c),
        c["expires_at"].as_str().unwrap_or_default(),
        c["name"].as_str().unwrap_or_default(),
    )
}

fn provisioning_line(p: &Value) -> String {
    format!(
        "{}  {}  provisioned {}x, last {}{}",
        p["serial"].as_str().unwrap_or_default(),
        p["device_id"].as_str().unwrap_or_default(),
        p["times"],
        p["provisioned_at"].as_str().unwrap_or_default(),
        if p["reprovision_allowed"] == true {
            "  (may be provisioned again)"
        } else {
            ""
        },
    )
}

fn human(value: &Value) -> String {
    if let Some(items) = value["items"].as_array() {
        return items.iter().map(claim_line).collect::<Vec<_>>().join("\n");
    }
    if let Some(rows) = value.as_array() {
        return rows
            .iter()
            .map(provisioning_line)
            .collect::<Vec<_>>()
            .join("\n");
    }
    if value.get("serial").is_some() {
        return provisioning_line(value);
    }
    claim_line(value)
}

fn ids(value: &Value) -> String {
    let id = |v: &Value| {
        v["id"]
            .as_str()
            .or_else(|| v["serial"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(items) = value["items"].as_array() {
        return items.iter().map(id).collect::<Vec<_>>().join("\n");
    }
    if let Some(rows) = value.as_array() {
        return rows.iter().map(id).collect::<Vec<_>>().join("\n");
    }
    id(value)
}
