//! The admin-API client: [`ApiClient`] (one JSON call over HTTP, errors as [`ClientError`])
//! and the call table that turns each client subcommand into the request it makes and the
//! [`Shape`] its answer is printed in. `gema sim` and `gema bench` use the client too.

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{DeviceCommand, MerchantCommand, OutletCommand, TerminalCommand};
use super::render::Shape;

/// An error answered by the API, or a failure to reach it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} [{code}, HTTP {status}{}]", request_id.as_deref().map(|id| format!(", request {id}")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("cannot reach the Gema API at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected response from {url}: {reason}")]
    Unexpected { url: String, reason: String },
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("provisioning QR code: {0}")]
    Provisioning(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A small client for the admin API.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The bearer token this client sends.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let query: Vec<(&str, String)> = query
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
            .collect();
        let mut request = self.http.request(method, &url).query(&query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request, &url).await
    }
}

/// Sends `request` and reads its answer: the JSON of a success, or the error envelope as a
/// [`ClientError::Api`].
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<Value, ClientError> {
    let transport = |source| ClientError::Transport {
        url: url.to_owned(),
        source,
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let text = response.text().await.map_err(transport)?;
    let text = text.as_str();
    let value: Value = serde_json::from_str(text).map_err(|_| ClientError::Unexpected {
        url: url.to_owned(),
        reason: format!("HTTP {status}, body is not JSON"),
    })?;
    if status.is_success() {
        return Ok(value);
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    Err(ClientError::Api {
        status: status.as_u16(),
        code: field("code").unwrap_or_else(|| "unknown".into()),
        message: field("message").unwrap_or_else(|| text.to_owned()),
        request_id: field("request_id"),
    })
}

impl ApiClient {
    /// POSTs `csv` as a `text/csv` body (a file upload) and returns the JSON answer.
    pub async fn post_csv(
        &self,
        path: &str,
        query: &[(&str, String)],
        csv: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self
            .http
            .post(&url)
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "text/csv")
            .body(csv);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        send(request, &url).await
    }

    /// Streams a file the API serves (a CSV export) into `target`, written beside it first
    /// and renamed when complete; returns its size.
    pub async fn download(&self, path: &str, target: &std::path::Path) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{}/api/v1{path}", self.base);
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.map_err(transport)?;
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: field("code").unwrap_or_else(|| "unknown".into()),
                message: field("message").unwrap_or(text),
                request_id: field("request_id"),
            });
        }
        let mut part = target.as_os_str().to_owned();
        part.push(".part");
        let part = std::path::PathBuf::from(part);
        let io = |source| ClientError::Io {
            path: part.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            file.write_all(&chunk).await.map_err(io)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&part, target)
            .await
            .map_err(|source| ClientError::Io {
                path: target.display().to_string(),
                source,
            })?;
        Ok(written)
    }
}

/// One admin-API request of a client subcommand, and how its answer is printed.
pub(super) struct ClientCall {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: Vec<(&'static str, Option<String>)>,
    pub(super) body: Option<Value>,
    pub(super) shape: Shape,
}

impl ClientCall {
    fn get(path: String, shape: Shape) -> Self {
        Self {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            shape,
        }
    }

    fn list(path: &str, shape: &'static str, query: Vec<(&'static str, Option<String>)>) -> Self {
        Self {
            query,
            ..Self::get(path.to_string(), Shape::List(shape))
        }
    }

    fn patch(path: String, body: Value, shape: Shape) -> Self {
        Self {
            method: Method::PATCH,
            body: Some(body),
            ..Self::get(path, shape)
        }
    }

    fn post(path: String, body: Option<Value>, shape: Shape) -> Self {
        Self {
            method: Method::POST,
            body,
            ..Self::get(path, shape)
        }
    }
}

fn page_query(limit: Option<u32>, cursor: Option<String>) -> Vec<(&'static str, Option<String>)> {
    vec![("limit", limit.map(|l| l.to_string())), ("cursor", cursor)]
}

pub(super) fn merchant_call(command: MerchantCommand) -> ClientCall {
    let one = Shape::One("merchant");
    match command {
        MerchantCommand::Add { name, email, phone } => ClientCall::post(
            "/merchants".into(),
            Some(json!({ "name": name, "email": email, "phone": phone })),
            one,
        ),
        MerchantCommand::List {
            status,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("status", status));
            ClientCall::list("/merchants", "merchant", query)
        }
        MerchantCommand::Show { id } => ClientCall::get(format!("/merchants/{id}"), one),
        MerchantCommand::Approve { id } => {
            ClientCall::post(format!("/merchants/{id}/approve"), None, one)
        }
        MerchantCommand::Reject { id, reason } => ClientCall::post(
            format!("/merchants/{id}/reject"),
            Some(json!({ "reason": reason })),
            one,
        ),
        MerchantCommand::Suspend { id, reason } => ClientCall::post(
            format!("/merchants/{id}/suspend"),
            Some(json!({ "reason": reason })),
            one,
        ),
    }
}

pub(super) fn outlet_call(command: OutletCommand) -> ClientCall {
    match command {
        OutletCommand::Add {
            merchant,
            name,
            address,
            city,
        } => ClientCall::post(
            "/outlets".into(),
            Some(
                json!({ "merchant_id": merchant, "name": name, "address": address, "city": city }),
            ),
            Shape::One("outlet"),
        ),
        OutletCommand::List {
            merchant,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("merchant_id", merchant));
            ClientCall::list("/outlets", "outlet", query)
        }
        OutletCommand::Show { id } => {
            ClientCall::get(format!("/outlets/{id}"), Shape::One("outlet"))
        }
    }
}

pub(super) fn terminal_call(command: TerminalCommand) -> ClientCall {
    match command {
        TerminalCommand::Add {
            outlet,
            label,
            name,
            static_qris,
        } => ClientCall::post(
            "/terminals".into(),
            Some(json!({
                "outlet_id": outlet, "label": label, "name": name, "static_qris": static_qris,
            })),
            Shape::One("terminal"),
        ),
        TerminalCommand::DynamicQr {
            id,
            amount,
            expires_in_secs,
        } => ClientCall::post(
            format!("/terminals/{id}/dynamic-qr"),
            Some(json!({ "amount": amount, "expires_in_secs": expires_in_secs })),
            Shape::DynamicQr,
        ),
        TerminalCommand::List {
            outlet,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("outlet_id", outlet));
            ClientCall::list("/terminals", "terminal", query)
        }
        TerminalCommand::Show { id } => {
            ClientCall::get(format!("/terminals/{id}"), Shape::One("terminal"))
        }
    }
}

pub(super) fn device_call(command: DeviceCommand) -> ClientCall {
    let one = Shape::One("device");
    match command {
        DeviceCommand::Add {
            serial,
            model,
            firmware,
            qr: _,
        } => ClientCall::post(
            "/devices".into(),
            Some(json!({ "serial": serial, "model": model, "firmware_version": firmware })),
            Shape::Issued,
        ),
        DeviceCommand::List {
            terminal,
            status,
            health,
            limit,
            cursor,
        } => {
            let mut query = page_query(limit, cursor);
            query.push(("terminal_id", terminal));
            query.push(("status", status));
            query.push(("health", health));
            ClientCall::list("/devices", "device", query)
        }
        DeviceCommand::Status { id } => {
            ClientCall::get(format!("/devices/{id}/status"), Shape::Status)
        }
        DeviceCommand::Config { id } => {
            ClientCall::get(format!("/devices/{id}/config"), Shape::Config)
        }
        DeviceCommand::SetConfig {
            id,
            version,
            volume,
            language,
            heartbeat_interval,
            qr_timeout,
        } => {
            let mut body = json!({ "version": version });
            for (key, value) in [
                ("volume", volume.map(Value::from)),
                ("language", language.map(Value::from)),
                ("heartbeat_interval_s", heartbeat_interval.map(Value::from)),
                ("qr_timeout_s", qr_timeout.map(Value::from)),
            ] {
                if let Some(value) = value {
                    body[key] = value;
                }
            }
            ClientCall::patch(format!("/devices/{id}/config"), body, Shape::Config)
        }
        DeviceCommand::Command {
            id,
            name,
            args,
            expires_in,
            interactive,
        } => {
            // Unparseable --args is sent as a string: the API names the field at fault.
            let args = args.map(|a| serde_json::from_str::<Value>(&a).unwrap_or(Value::String(a)));
            let mut action = json!({ "name": name });
            if let Some(args) = args {
                action["args"] = args;
            }
            ClientCall::post(
                format!("/devices/{id}/commands"),
                Some(json!({ "action": action, "expires_in_secs": expires_in,
                    "interactive": interactive })),
                Shape::One("command"),
            )
        }
        DeviceCommand::Commands {
            id,
            command_id: Some(command_id),
            ..
        } => ClientCall::get(
            format!("/devices/{id}/commands/{command_id}"),
            Shape::One("command"),
        ),
        DeviceCommand::Commands {
            id,
            command_id: None,
            limit,
            cursor,
        } => ClientCall {
            path: format!("/devices/{id}/commands"),
            ..ClientCall::list("", "command", page_query(limit, cursor))
        },
        DeviceCommand::Messages { id } => {
            ClientCall::get(format!("/devices/{id}/messages"), Shape::Messages)
        }
        DeviceCommand::Show { id } => ClientCall::get(format!("/devices/{id}"), one),
        DeviceCommand::Bind { id, terminal } => ClientCall::post(
            format!("/devices/{id}/bind"),
            Some(json!({ "terminal_id": terminal })),
            one,
        ),
        DeviceCommand::Unbind { id, kick } => ClientCall::post(
            format!(
                "/devices/{id}/unbind{}",
                if kick { "?kick=true" } else { "" }
            ),
            None,
            one,
        ),
        DeviceCommand::Bindings { id } => {
            ClientCall::get(format!("/devices/{id}/bindings"), Shape::Bindings)
        }
        DeviceCommand::Rotate { id, qr: _ } => ClientCall::post(
            format!("/devices/{id}/credentials/rotate"),
            None,
            Shape::Issued,
        ),
        DeviceCommand::Revoke { id } => {
            ClientCall::post(format!("/devices/{id}/credentials/revoke"), None, one)
        }
        // Reads a file and may write one: `device_cert::run_device_cert`.
        DeviceCommand::Cert { .. } => unreachable!("run by device_cert::run_device_cert"),
    }
}
