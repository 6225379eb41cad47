//! WhatsApp Business Cloud API: the pure parts. [`wire`] builds send requests and reads
//! Meta's answers, [`webhook`] verifies and decodes status and inbound-message webhooks,
//! [`template`] fills in operators' message texts. No I/O here: no tokio, no HTTP client.

pub mod template;
pub mod webhook;
pub mod wire;
