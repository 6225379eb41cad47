//! How a message leaves: a trait, so tests can record sends, and the HTTP implementation
//! for Meta's Cloud API and for an external gateway.

use async_trait::async_trait;

use super::wire::{self, Outgoing, SendResult};
use super::{Route, WhatsAppSettings, template};

/// One sender's way out, as the worker resolved it.
#[derive(Debug, Clone)]
pub struct SenderTarget {
    /// `operator` or the merchant id.
    pub sender_id: String,
    pub route: super::Route,
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendAttempt {
    /// Accepted, with WhatsApp's message id (`gw_<outbox id>` through a gateway).
    Accepted { wamid: String },
    /// Refused with an error code (Meta's) and the HTTP status.
    Rejected {
        code: Option<i64>,
        message: String,
        http_status: u16,
    },
    /// Never reached the other side (the connection failed): safe to send again.
    NotSent { error: String },
    /// May have reached it (a time-out, a connection lost mid-request): never re-sent blindly.
    Unknown { error: String },
}

#[async_trait]
pub trait WaTransport: Send + Sync + std::fmt::Debug {
    /// Sends one message. `local_id` is the outbox row's id.
    async fn send(
        &self,
        target: &SenderTarget,
        to: &str,
        message: Outgoing<'_>,
        local_id: &str,
    ) -> SendAttempt;
}

/// Cloud API and external gateways over HTTP (reqwest).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    base_url: String,
    version: String,
}

impl HttpTransport {
    pub fn new(settings: &WhatsAppSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(
                settings
                    .request_timeout
                    .min(std::time::Duration::from_secs(5)),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        HttpTransport {
            http,
            base_url: settings.api_base_url.clone(),
            version: settings.api_version.clone(),
        }
    }
}

fn failed(err: &reqwest::Error) -> SendAttempt {
    // Only a failure to connect proves the request never left.
    let error = format!("{err}");
    if err.is_connect() {
        SendAttempt::NotSent { error }
    } else {
        SendAttempt::Unknown { error }
    }
}

#[async_trait]
impl WaTransport for HttpTransport {
    async fn send(
        &self,
        target: &SenderTarget,
        to: &str,
        message: Outgoing<'_>,
        local_id: &str,
    ) -> SendAttempt {
        match &target.route {
            Route::Cloud(number) => {
                let url =
                    wire::messages_url(&self.base_url, &self.version, &number.phone_number_id);
                let body = wire::message_body(to, &message);
                let response = self
                    .http
                    .post(url)
                    .bearer_auth(&number.access_token)
                    .json(&body)
                    .send()
                    .await;
                let response = match response {
                    Ok(response) => response,
                    Err(err) => return failed(&err),
                };
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) => match wire::parse_send_response(status, &bytes) {
                        SendResult::Accepted { wamid } => SendAttempt::Accepted { wamid },
                        SendResult::Rejected {
                            code,
                            message,
                            http_status,
                        } => SendAttempt::Rejected {
                            code,
                            message,
                            http_status,
                        },
                    },
                    // The answer was lost: Meta may have taken it.
                    Err(err) => SendAttempt::Unknown {
                        error: format!("reading the answer: {err}"),
                    },
                }
            }
            Route::Gateway(endpoint) => {
                let text = match &message {
                    Outgoing::Text { body } => *body,
                    Outgoing::Template { .. } => {
                        return SendAttempt::Rejected {
                            code: None,
                            message: "an external gateway sends text only".into(),
                            http_status: 0,
                        };
                    }
                };
                let body = match template::gateway_body(&endpoint.body, to, text, &target.sender_id)
                {
                    Ok(body) => body,
                    Err(err) => {
                        return SendAttempt::Rejected {
                            code: None,
                            message: format!("the gateway body template: {err}"),
                            http_status: 0,
                        };
                    }
                };
                let mut request = self
                    .http
                    .post(&endpoint.url)
                    .header("content-type", "application/json");
                for (name, value) in &endpoint.headers {
                    request = request.header(name, value);
                }
                let response = match request.body(body).send().await {
                    Ok(response) => response,
                    Err(err) => return failed(&err),
                };
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                if status.is_success() {
                    // Gateways' own ids are not unique across gateways; ours is.
                    SendAttempt::Accepted {
                        wamid: format!("gw_{local_id}"),
                    }
                } else {
                    let text = String::from_utf8_lossy(&bytes);
                    SendAttempt::Rejected {
                        code: (status.as_u16() == 429).then_some(130_429),
                        message: text.chars().take(300).collect(),
                        http_status: status.as_u16(),
                    }
                }
            }
        }
    }
}
