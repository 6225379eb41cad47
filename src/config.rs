//! The daemon's configuration: one typed tree, read from an optional TOML file and then
//! from `GEMA_<SECTION>__<KEY>` environment variables (`GEMA_HTTP__LISTEN=0.0.0.0:8080`,
//! `GEMA_DATA_DIR=/var/lib/gema`). Every section has documented defaults, so no file is
//! needed; `gema config print-default` prints them as a commented file.
//!
//! Secrets (the database URL may hold a password) never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use gema_gateway::credentials::SecretString;
use serde::Deserialize;

/// The commented default configuration. A test checks that it parses to
/// `Config::default()`, so the two cannot drift apart.
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

/// `GEMA_*` variables that belong to the command line, not to the daemon's configuration
/// (as do `GEMA_TEST_*`, for test harnesses). Every other `GEMA_*` variable must name a
/// configuration key, so a typo such as `GEMA_HTTP_LISTEN` (one underscore) is an error
/// rather than silently ignored.
const CLI_VARIABLES: [&str; 3] = ["token", "api_url", "config"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub mqtt: MqttConfig,
    pub tls: TlsConfig,
    pub log: LogConfig,
    pub payments: PaymentsConfig,
    pub devices: DevicesConfig,
    pub auth: AuthConfig,
    pub node: NodeConfig,
    pub settlement: SettlementConfig,
    pub exports: ExportsConfig,
    pub billing: BillingConfig,
    pub whatsapp: WhatsAppConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./gema-data"),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            mqtt: MqttConfig::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
            payments: PaymentsConfig::default(),
            devices: DevicesConfig::default(),
            auth: AuthConfig::default(),
            node: NodeConfig::default(),
            settlement: SettlementConfig::default(),
            exports: ExportsConfig::default(),
            billing: BillingConfig::default(),
            whatsapp: WhatsAppConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` (if given; it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Keys are lower-cased by figment only after this filter runs.
        let env = Env::prefixed("GEMA_").split("__").filter(|key| {
            let key = key.as_str();
            let for_tests = key.len() >= 5 && key[..5].eq_ignore_ascii_case("test_");
            !for_tests && !CLI_VARIABLES.iter().any(|v| v.eq_ignore_ascii_case(key))
        });
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        let given = [&tls.cert, &tls.key, &tls.ca_cert]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if given != 0 && given != 3 {
            return Err(ConfigError::Invalid(
                "tls.cert, tls.key and tls.ca_cert go together: set all three to use your own \
                 certificates, or none for the generated development CA"
                    .into(),
            ));
        }
        if self.mqtt.device_ca_key.is_some() && self.mqtt.device_ca.is_none() {
            return Err(ConfigError::Invalid(
                "mqtt.device_ca_key needs mqtt.device_ca (the CA certificate it belongs to)".into(),
            ));
        }
        if self.node.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "node.worker_threads must be at most {MAX_WORKER_THREADS} (0: one per core)"
            )));
        }
        if self.mqtt.device_cert_validity_days == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.device_cert_validity_days must be at least 1".into(),
            ));
        }
        if tls.renewal_check_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "tls.renewal_check_interval_secs must be at least 1".into(),
            ));
        }
        for service in &self.mqtt.services {
            gema_broker::Rule::parse_list(&service.rules).map_err(|e| {
                ConfigError::Invalid(format!("mqtt.services {}: {e}", service.name))
            })?;
        }
        if self.mqtt.deny_flood_window_secs == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.deny_flood_window_secs must be at least 1".into(),
            ));
        }
        if let Some(name) = &self.mqtt.plain_anonymous_service
            && !self.mqtt.services.iter().any(|s| &s.name == name)
        {
            return Err(ConfigError::Invalid(format!(
                "mqtt.plain_anonymous_service {name:?} is not one of mqtt.services"
            )));
        }
        self.settlement.check()?;
        self.billing.check()?;
        self.whatsapp.check()?;
        if self.payments.platform_fee_bps > 10_000 {
            return Err(ConfigError::Invalid(
                "payments.platform_fee_bps must be at most 10000 (100%)".into(),
            ));
        }
        if let Some(id) = &self.node.id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ConfigError::Invalid(
                "node.id must be 1 to 64 characters of letters, digits, '-', '_' and '.'".into(),
            ));
        }
        // An empty key would make a provider's signature computable by anyone (Midtrans'
        // is a hash of the body's fields and the key): unset means "refuse that provider".
        for (key, secret) in [
            (
                "payments.midtrans.server_key",
                &self.payments.midtrans.server_key,
            ),
            (
                "payments.xendit.callback_token",
                &self.payments.xendit.callback_token,
            ),
            ("payments.generic.secret", &self.payments.generic.secret),
        ] {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose().trim().is_empty())
            {
                return Err(ConfigError::Invalid(format!(
                    "{key} is empty: set it, or leave it unset to refuse that provider's callbacks"
                )));
            }
        }
        if self.payments.expiry_sweep_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "payments.expiry_sweep_interval_secs must be at least 1".into(),
            ));
        }
        self.devices.validate()?;
        let http = &self.http;
        if http.max_connections == 0
            || http.max_connections_per_source == 0
            || http.header_read_timeout_secs == 0
            || http.body_read_timeout_secs == 0
            || http.idle_timeout_secs == 0
        {
            return Err(ConfigError::Invalid(
                "http.max_connections, max_connections_per_source, header_read_timeout_secs, \
                 body_read_timeout_secs and idle_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The database URL: configured, or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.0.clone(),
            None => format!("sqlite://{}", self.data_dir.join("gema.db").display()),
        }
    }
}

/// A database URL; `Debug` hides the password.
/// Merchant payouts: the defaults of merchants without payout settings of their own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementConfig {
    /// `manual`, `daily` or `weekly`.
    pub schedule: String,
    /// Whole rupiah; merchants owed less are skipped until they are owed more.
    pub minimum_payout: i64,
    /// `HH:MM`, Asia/Jakarta: a scheduled run takes what was paid up to this time.
    pub cutoff_time: String,
    /// ISO weekday of weekly payouts, 1 (Monday) to 7.
    pub weekly_day: u8,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        let d = gema_gateway::settlement::SettlementSettings::default();
        Self {
            schedule: d.schedule.as_str().into(),
            minimum_payout: d.minimum_payout,
            cutoff_time: d.cutoff_time,
            weekly_day: d.weekly_day,
        }
    }
}

impl SettlementConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("settlement.{m}")));
        if gema_store::PayoutSchedule::parse(&self.schedule).is_none() {
            return invalid("schedule is one of manual, daily, weekly");
        }
        if self.minimum_payout < 1 {
            return invalid("minimum_payout must be at least 1 (rupiah)");
        }
        if gema_gateway::settlement::parse_cutoff_time("cutoff_time", &self.cutoff_time).is_err() {
            return invalid("cutoff_time is HH:MM (Asia/Jakarta)");
        }
        if !(1..=7).contains(&self.weekly_day) {
            return invalid("weekly_day is 1 (Monday) to 7 (Sunday)");
        }
        Ok(())
    }

    pub fn settings(&self) -> gema_gateway::settlement::SettlementSettings {
        gema_gateway::settlement::SettlementSettings {
            schedule: gema_store::PayoutSchedule::parse(&self.schedule)
                .unwrap_or(gema_store::PayoutSchedule::Manual),
            minimum_payout: self.minimum_payout,
            cutoff_time: self.cutoff_time.clone(),
            weekly_day: self.weekly_day,
            ..Default::default()
        }
    }
}

/// Subscription billing for merchants' customers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// `HH:MM`, Asia/Jakarta: the daily run makes tomorrow's invoices and isolates overdue
    /// customers (where the merchant asks for it), once per cluster.
    pub generate_time: String,
    /// Isolation webhook deliveries before one is given up and shown as failed.
    pub webhook_attempts: u32,
    /// The largest customer CSV the import takes, in bytes.
    pub import_max_bytes: usize,
    /// The largest logo a merchant may upload, in bytes.
    pub logo_max_bytes: usize,
    /// How long an invoice's QRIS stays payable, in seconds.
    pub qris_ttl_secs: u64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        let d = gema_gateway::billing::BillingSettings::default();
        Self {
            generate_time: format!("{:02}:{:02}", d.generate_time.0, d.generate_time.1),
            webhook_attempts: d.webhook_attempts,
            import_max_bytes: d.import_max_bytes,
            logo_max_bytes: d.logo_max_bytes,
            qris_ttl_secs: d.qris_ttl_secs,
        }
    }
}

impl BillingConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("billing.{m}")));
        if gema_gateway::settlement::parse_cutoff_time("generate_time", &self.generate_time)
            .is_err()
        {
            return invalid("generate_time is HH:MM (Asia/Jakarta)");
        }
        if self.webhook_attempts == 0 {
            return invalid("webhook_attempts must be at least 1");
        }
        if self.import_max_bytes < 1024 || self.logo_max_bytes < 1024 {
            return invalid("import_max_bytes and logo_max_bytes must be at least 1024");
        }
        if self.import_max_bytes > gema_admin_api::BILLING_IMPORT_BODY_LIMIT_BYTES {
            return invalid(&format!(
                "import_max_bytes must be at most {} (the import route's body limit)",
                gema_admin_api::BILLING_IMPORT_BODY_LIMIT_BYTES
            ));
        }
        if !(60..=7 * 24 * 3600).contains(&self.qris_ttl_secs) {
            return invalid("qris_ttl_secs is between 60 and 604800");
        }
        Ok(())
    }

    pub fn settings(&self) -> gema_gateway::billing::BillingSettings {
        let d = gema_gateway::billing::BillingSettings::default();
        gema_gateway::billing::BillingSettings {
            generate_time: gema_gateway::settlement::parse_cutoff_time(
                "generate_time",
                &self.generate_time,
            )
            .unwrap_or(d.generate_time),
            webhook_attempts: self.webhook_attempts,
            import_max_bytes: self.import_max_bytes,
            logo_max_bytes: self.logo_max_bytes,
            qris_ttl_secs: self.qris_ttl_secs,
            ..d
        }
    }
}

/// WhatsApp notifications (`[whatsapp]`): the operator's sender, Meta's webhook secrets,
/// registered templates, pacing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The Cloud API's base URL and version.
    pub api_base_url: String,
    pub api_version: String,
    /// The operator's Cloud API number (both set: on).
    #[serde(deserialize_with = "digits_or_text")]
    pub phone_number_id: Option<String>,
    #[serde(deserialize_with = "secret_digits_or_text")]
    pub access_token: Option<SecretString>,
    /// Or the operator's external gateway instead.
    pub gateway_url: Option<String>,
    pub gateway_headers: std::collections::BTreeMap<String, SecretString>,
    pub gateway_body: Option<String>,
    /// Verifies Meta's webhooks (`X-Hub-Signature-256`); unset: POSTs are refused.
    #[serde(deserialize_with = "secret_digits_or_text")]
    pub app_secret: Option<SecretString>,
    /// Answers Meta's verification GET; unset: refused.
    #[serde(deserialize_with = "secret_digits_or_text")]
    pub verify_token: Option<SecretString>,
    /// Where customers open receipts (`{public_url}/r/<token>`).
    pub public_url: String,
    /// HH:MM, Asia/Jakarta.
    pub reminder_time: String,
    pub summary_time: String,
    /// Cloud API pacing per sender.
    pub rate_per_sec: u32,
    pub burst: u32,
    pub recipient_gap_secs: u64,
    pub daily_recipients: u32,
    pub bulk: BulkConfig,
    /// Bulk spreading of external-gateway senders.
    pub gateway_bulk: BulkConfig,
    pub request_timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub throttle_base_secs: u64,
    pub offline_alert_after_secs: u64,
    pub low_battery_pct: i64,
    pub battery_ok_pct: i64,
    /// Templates registered with Meta, by notification kind.
    pub templates: std::collections::BTreeMap<String, TemplateConfig>,
}

/// A value that is text even when it is all digits: an environment variable such as
/// `GEMA_WHATSAPP__PHONE_NUMBER_ID=1234567890` arrives as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum DigitsOrText {
    Text(String),
    Unsigned(u64),
    Signed(i64),
}

impl DigitsOrText {
    fn into_string(self) -> String {
        match self {
            DigitsOrText::Text(text) => text,
            DigitsOrText::Unsigned(n) => n.to_string(),
            DigitsOrText::Signed(n) => n.to_string(),
        }
    }
}

fn digits_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<DigitsOrText>::deserialize(d)?.map(DigitsOrText::into_string))
}

fn secret_digits_or_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(digits_or_text(d)?.map(SecretString::new))
}

/// The spreading of bulk messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkConfig {
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub batch_size: u32,
    pub batch_pause_secs: u64,
    pub hourly_cap: u32,
    pub daily_cap: u32,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig::from(&gema_gateway::whatsapp::BulkSettings::cloud())
    }
}

impl From<&gema_gateway::whatsapp::BulkSettings> for BulkConfig {
    fn from(b: &gema_gateway::whatsapp::BulkSettings) -> Self {
        BulkConfig {
            delay_min_ms: u64::try_from(b.delay_min.as_millis()).unwrap_or(u64::MAX),
            delay_max_ms: u64::try_from(b.delay_max.as_millis()).unwrap_or(u64::MAX),
            batch_size: b.batch_size,
            batch_pause_secs: b.batch_pause.as_secs(),
            hourly_cap: b.hourly_cap,
            daily_cap: b.daily_cap,
        }
    }
}

impl BulkConfig {
    fn settings(&self) -> gema_gateway::whatsapp::BulkSettings {
        gema_gateway::whatsapp::BulkSettings {
            delay_min: Duration::from_millis(self.delay_min_ms),
            delay_max: Duration::from_millis(self.delay_max_ms),
            batch_size: self.batch_size,
            batch_pause: Duration::from_secs(self.batch_pause_secs),
            hourly_cap: self.hourly_cap,
            daily_cap: self.daily_cap,
        }
    }
}

/// A template registered with Meta for one notification kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub name: String,
    #[serde(default = "default_template_language")]
    pub language: String,
    #[serde(default = "default_template_category")]
    pub category: String,
    /// Which of the kind's values fill the body parameters, in order (default: all of the
    /// kind's placeholders in their documented order).
    #[serde(default)]
    pub params: Option<Vec<String>>,
}

fn default_template_language() -> String {
    "id".into()
}

fn default_template_category() -> String {
    "UTILITY".into()
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        let d = gema_gateway::whatsapp::WhatsAppSettings::default();
        let secs = |d: Duration| d.as_secs();
        WhatsAppConfig {
            api_base_url: d.api_base_url.clone(),
            api_version: d.api_version.clone(),
            phone_number_id: None,
            access_token: None,
            gateway_url: None,
            gateway_headers: std::collections::BTreeMap::new(),
            gateway_body: None,
            app_secret: None,
            verify_token: None,
            public_url: d.public_url.clone(),
            reminder_time: format!("{:02}:{:02}", d.reminder_time.0, d.reminder_time.1),
            summary_time: format!("{:02}:{:02}", d.summary_time.0, d.summary_time.1),
            rate_per_sec: d.pacing.rate_per_sec,
            burst: d.pacing.burst,
            recipient_gap_secs: secs(d.pacing.recipient_gap),
            daily_recipients: d.pacing.daily_recipients,
            bulk: BulkConfig::from(&d.pacing.bulk),
            gateway_bulk: BulkConfig::from(&d.gateway_bulk),
            request_timeout_secs: secs(d.request_timeout),
            max_attempts: d.max_attempts,
            retry_base_secs: secs(d.retry_base),
            throttle_base_secs: secs(d.throttle_base),
            offline_alert_after_secs: secs(d.offline_alert_after),
            low_battery_pct: d.low_battery_pct,
            battery_ok_pct: d.battery_ok_pct,
            templates: std::collections::BTreeMap::new(),
        }
    }
}

impl WhatsAppConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("whatsapp.{m}")));
        for (key, value) in [
            ("reminder_time", &self.reminder_time),
            ("summary_time", &self.summary_time),
        ] {
            if gema_gateway::settlement::parse_cutoff_time("time", value).is_err() {
                return invalid(&format!("{key} is HH:MM (Asia/Jakarta)"));
            }
        }
        if self.phone_number_id.is_some() != self.access_token.is_some() {
            return invalid("phone_number_id and access_token go together");
        }
        if self.phone_number_id.is_some() && self.gateway_url.is_some() {
            return invalid("set either the Cloud API number (phone_number_id) or gateway_url");
        }
        if let Some(url) = &self.gateway_url {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return invalid("gateway_url is an http(s) URL");
            }
            let Some(body) = &self.gateway_body else {
                return invalid("gateway_body is required with gateway_url");
            };
            if let Err(err) =
                gema_gateway::whatsapp::template::gateway_body(body, "6281234567890", "x", "x")
            {
                return invalid(&format!("gateway_body: {err}"));
            }
        }
        if !(1..=1000).contains(&self.rate_per_sec) || self.burst == 0 {
            return invalid("rate_per_sec is 1 to 1000 and burst at least 1");
        }
        if self.daily_recipients == 0 || self.max_attempts == 0 {
            return invalid("daily_recipients and max_attempts must be at least 1");
        }
        if self.request_timeout_secs == 0 || self.request_timeout_secs > 120 {
            return invalid("request_timeout_secs is 1 to 120");
        }
        for bulk in [&self.bulk, &self.gateway_bulk] {
            if bulk.delay_max_ms < bulk.delay_min_ms {
                return invalid("bulk delay_max_ms must be at least delay_min_ms");
            }
        }
        if !(0..=100).contains(&self.low_battery_pct)
            || !(self.low_battery_pct..=100).contains(&self.battery_ok_pct)
        {
            return invalid("low_battery_pct <= battery_ok_pct, both 0 to 100");
        }
        for (kind, template) in &self.templates {
            let Some(k) = gema_gateway::whatsapp::Kind::parse(kind) else {
                return invalid(&format!("templates.{kind} is not a notification kind"));
            };
            if template.name.trim().is_empty() {
                return invalid(&format!("templates.{kind}.name is required"));
            }
            if let Some(params) = &template.params
                && let Some(bad) = params
                    .iter()
                    .find(|p| !k.placeholders().contains(&p.as_str()))
            {
                return invalid(&format!(
                    "templates.{kind}.params: {bad} is not one of {}",
                    k.placeholders().join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn settings(&self) -> gema_gateway::whatsapp::WhatsAppSettings {
        use gema_gateway::whatsapp::{
            CloudNumber, GatewayEndpoint, Kind, PaceLimits, RegisteredTemplate, Route,
            WhatsAppSettings,
        };
        let d = WhatsAppSettings::default();
        let operator = match (&self.phone_number_id, &self.access_token, &self.gateway_url) {
            (Some(id), Some(token), _) => Some(Route::Cloud(CloudNumber {
                phone_number_id: id.clone(),
                access_token: token.expose().to_owned(),
            })),
            (_, _, Some(url)) => Some(Route::Gateway(GatewayEndpoint {
                url: url.clone(),
                headers: self
                    .gateway_headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect(),
                body: self.gateway_body.clone().unwrap_or_default(),
            })),
            _ => None,
        };
        let time = |value: &str, default| {
            gema_gateway::settlement::parse_cutoff_time("time", value).unwrap_or(default)
        };
        WhatsAppSettings {
            operator,
            api_base_url: self.api_base_url.trim_end_matches('/').to_owned(),
            api_version: self.api_version.clone(),
            app_secret: self.app_secret.as_ref().map(|s| s.expose().to_owned()),
            verify_token: self.verify_token.as_ref().map(|s| s.expose().to_owned()),
            templates: self
                .templates
                .iter()
                .filter_map(|(kind, t)| {
                    let kind = Kind::parse(kind)?;
                    Some((
                        kind,
                        RegisteredTemplate {
                            name: t.name.clone(),
                            language: t.language.clone(),
                            category: t.category.clone(),
                            params: t.params.clone().unwrap_or_else(|| {
                                kind.placeholders()
                                    .iter()
                                    .map(|p| (*p).to_owned())
                                    .collect()
                            }),
                        },
                    ))
                })
                .collect(),
            pacing: PaceLimits {
                rate_per_sec: self.rate_per_sec,
                burst: self.burst,
                recipient_gap: Duration::from_secs(self.recipient_gap_secs),
                daily_recipients: self.daily_recipients,
                bulk: self.bulk.settings(),
            },
            gateway_bulk: self.gateway_bulk.settings(),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            claim_timeout: Duration::from_secs(self.request_timeout_secs * 4),
            max_attempts: self.max_attempts,
            retry_base: Duration::from_secs(self.retry_base_secs),
            throttle_base: Duration::from_secs(self.throttle_base_secs),
            public_url: self.public_url.trim_end_matches('/').to_owned(),
            reminder_time: time(&self.reminder_time, d.reminder_time),
            summary_time: time(&self.summary_time, d.summary_time),
            offline_alert_after: Duration::from_secs(self.offline_alert_after_secs),
            low_battery_pct: self.low_battery_pct,
            battery_ok_pct: self.battery_ok_pct,
            ..d
        }
    }
}

/// This daemon as a node of a cluster (several daemons on one PostgreSQL database).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable and unique in the cluster. Unset: `<host name>-<MQTT port>`.
    pub id: Option<String>,
    pub heartbeat_interval_secs: u64,
    /// Threads the daemon's async work runs on; 0: one per core.
    pub worker_threads: usize,
}

/// More runtime threads than this is a typo, not a machine.
pub const MAX_WORKER_THREADS: usize = 1024;

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: None,
            heartbeat_interval_secs: 5,
            worker_threads: 0,
        }
    }
}

/// Export jobs (`POST /api/v1/exports`): where their CSV files go and how long they stay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportsConfig {
    /// Unset: `<data_dir>/exports`. With several nodes, a directory they share.
    pub dir: Option<PathBuf>,
    /// A finished file is deleted (its job marked expired) this many hours after it is done.
    pub retention_hours: u64,
    /// Rows read per page while writing a file.
    pub page_rows: u32,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            retention_hours: 24,
            page_rows: 1000,
        }
    }
}

impl Config {
    /// The export jobs' settings; the directory defaults to `<data_dir>/exports`.
    pub fn export_settings(&self) -> gema_gateway::exports::ExportSettings {
        gema_gateway::exports::ExportSettings {
            dir: self
                .exports
                .dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("exports")),
            retention: Duration::from_secs(self.exports.retention_hours.max(1) * 3600),
            page_rows: self.exports.page_rows.clamp(100, 100_000),
            ..Default::default()
        }
    }

    /// This node's id: configured, or derived from the host name and the MQTT port it
    /// bound, so two nodes on one machine (on different ports) differ and a restart keeps
    /// its id.
    pub fn node_id(&self, mqtt_port: u16) -> String {
        if let Some(id) = &self.node.id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "gema".into());
        format!("{host}-{mqtt_port}")
    }

    pub fn node_settings(&self, mqtt_port: u16) -> gema_gateway::cluster::NodeSettings {
        let heartbeat = Duration::from_secs(self.node.heartbeat_interval_secs.max(1));
        gema_gateway::cluster::NodeSettings {
            id: self.node_id(mqtt_port),
            version: env!("CARGO_PKG_VERSION").into(),
            heartbeat_interval: heartbeat,
            presumed_dead_after: heartbeat * 3,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", gema_store::redact_url(&self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; unset means `<data_dir>/gema.db`.
    pub url: Option<DatabaseUrl>,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            acquire_timeout_secs: 5,
            busy_timeout_ms: 5_000,
        }
    }
}

/// The admin API's listener (also provider callbacks and `/health`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Open HTTP connections at once; past it new ones are closed at once. Lowered at start
    /// when the open-file limit cannot hold it beside the broker's connections.
    pub max_connections: usize,
    /// Open HTTP connections from one source address at once. Behind a reverse proxy every
    /// client shares its address: raise this to `max_connections` there.
    pub max_connections_per_source: usize,
    /// A request's header must arrive within this (from accept, or on a kept-alive
    /// connection from the previous response).
    pub header_read_timeout_secs: u64,
    /// A request's body must arrive within this of its header; otherwise 408.
    pub body_read_timeout_secs: u64,
    /// A connection with no request being handled and no byte moving for this long closes.
    pub idle_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 1024,
            max_connections_per_source: 128,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            idle_timeout_secs: 60,
        }
    }
}

impl HttpConfig {
    /// The admin API listener's limits; `max_connections` as the open-file budget allows.
    pub fn connection_limits(&self, max_connections: usize) -> gema_admin_api::ConnectionLimits {
        gema_admin_api::ConnectionLimits {
            listener: "api",
            max_connections,
            max_connections_per_source: self.max_connections_per_source,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    /// How often the gauges read from the database (outboxes, invoices, payouts, the
    /// WhatsApp queue, nodes) are refreshed.
    pub sample_interval_secs: u64,
    /// How often the fleet's health (devices online, degraded, offline) is refreshed; it
    /// reads every device, so less often.
    pub fleet_sample_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            sample_interval_secs: 15,
            fleet_sample_interval_secs: 60,
        }
    }
}

impl MetricsConfig {
    pub fn sampler_settings(&self) -> gema_gateway::sampler::SamplerSettings {
        gema_gateway::sampler::SamplerSettings {
            interval: Duration::from_secs(self.sample_interval_secs.max(1)),
            fleet_interval: Duration::from_secs(self.fleet_sample_interval_secs.max(1)),
        }
    }
}

/// The device broker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// MQTT over TLS.
    pub listen: SocketAddr,
    /// The host name devices use to reach the broker. It is added to the development
    /// server certificate and printed when a device secret is issued.
    pub public_host: String,
    /// The port devices use, if a proxy or NAT changes it; unset means the listen port.
    pub public_port: Option<u16>,
    /// A TLS handshake not done by then is dropped, so a silent client holds nothing.
    pub handshake_timeout_secs: u64,
    /// TLS handshakes in progress at once; more wait their turn.
    pub max_concurrent_handshakes: usize,
    /// The listen backlog; reconnect storms need a large one.
    pub backlog: u32,
    pub max_connections: usize,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_size: usize,
    /// Presence events the broker buffers towards the gateway. Past it the gateway
    /// resynchronises from the broker's session set (nothing is lost), so this only bounds
    /// memory; tests make it small to force that path.
    pub presence_capacity: usize,
    /// An optional plain-TCP listener for development and conformance tools. Loopback
    /// unless you say otherwise; off when unset.
    pub plain_listen: Option<SocketAddr>,
    /// On the plain listener, clients without credentials act as this service.
    pub plain_anonymous_service: Option<String>,
    /// Service principals (monitors, bridges) with explicit ACL rules.
    pub services: Vec<MqttService>,
    /// What a PUBLISH the ACL refuses leads to: `ignore` (acknowledged and dropped, as
    /// Mosquitto and EMQX do) or `disconnect`. Either way it is dropped and counted.
    pub deny_action: DenyAction,
    /// With `ignore`, a connection sending more refused PUBLISHes than this within
    /// `deny_flood_window_secs` is closed; 0 never closes.
    pub deny_flood_limit: u32,
    pub deny_flood_window_secs: u64,
    /// The device CA's certificate (PEM), whose client certificates authenticate devices
    /// on the TLS port (mTLS, optional: devices with passwords connect on the same port).
    /// With `device_ca_key` too, Gema signs devices' CSRs with it; alone, Gema only
    /// verifies certificates issued elsewhere. Unset (and `device_ca_key` unset): Gema
    /// creates its own device CA in `<data_dir>/certs/device-ca.{pem,key}` on first start.
    pub device_ca: Option<PathBuf>,
    /// The device CA's private key (PEM), to sign devices' certificates with.
    pub device_ca_key: Option<PathBuf>,
    /// How long a device certificate Gema issues is valid, in days.
    pub device_cert_validity_days: u32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            public_host: "localhost".into(),
            public_port: None,
            handshake_timeout_secs: 10,
            max_concurrent_handshakes: 1024,
            backlog: 4096,
            max_connections: 100_000,
            max_packet_size: 64 * 1024,
            presence_capacity: 4096,
            plain_listen: None,
            plain_anonymous_service: None,
            services: Vec::new(),
            deny_action: DenyAction::Ignore,
            deny_flood_limit: 30,
            deny_flood_window_secs: 60,
            device_ca: None,
            device_ca_key: None,
            device_cert_validity_days: 365,
        }
    }
}

/// `[mqtt] deny_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyAction {
    /// Acknowledge per QoS and drop; close only past the flood limit.
    Ignore,
    /// Close the connection at the first refused PUBLISH.
    Disconnect,
}

/// A non-device MQTT client: its user name is `name`, its password `password`, and it may do
/// only what `rules` allow: Mosquitto-style lines such as `"read devices/+/up/#"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttService {
    pub name: String,
    pub password: Option<SecretString>,
    pub rules: Vec<String>,
}

/// TLS material for the broker. Leave all unset to use the development CA that Gema creates
/// in `<data_dir>/certs/`; set all three to use your own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    /// The development server certificate is re-issued (and served at once) when it has
    /// fewer days left than this. Default 30.
    pub renew_before_days: u32,
    /// How often a running daemon checks its certificates (renews the development one,
    /// updates the days-left metric). Default 3600 s.
    pub renewal_check_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            ca_cert: None,
            renew_before_days: 30,
            renewal_check_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `gema=debug,sqlx=warn`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

/// People: login tokens, lockout and password hashing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long an access token from a login lives.
    pub access_token_ttl_secs: u64,
    /// How long a refresh token lives (each refresh issues a new one).
    pub refresh_token_ttl_secs: u64,
    /// Failed logins of one account within the window that lock it.
    pub lockout_max_failures: u32,
    /// Failed logins from one source address within the window that lock it out.
    pub lockout_max_failures_per_source: u32,
    pub lockout_window_secs: u64,
    /// PBKDF2-HMAC-SHA256 rounds for new password hashes.
    pub password_iterations: u32,
    /// How long an `Idempotency-Key` and its first response are kept.
    pub idempotency_ttl_secs: u64,
    /// How long a retry waits for the first request with its key before answering 409.
    pub idempotency_wait_ms: u64,
    /// Login and refresh requests per minute per source address (0 = no limit).
    pub login_per_minute: u32,
    /// Writes per minute per caller and per source address (0 = no limit).
    pub writes_per_minute: u32,
    /// Payment callbacks per minute per source address (0 = no limit).
    pub callbacks_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let d = gema_gateway::auth::AuthSettings::default();
        Self {
            access_token_ttl_secs: d.access_token_ttl.as_secs(),
            refresh_token_ttl_secs: d.refresh_token_ttl.as_secs(),
            lockout_max_failures: d.lockout_max_failures,
            lockout_max_failures_per_source: d.lockout_max_failures_per_source,
            lockout_window_secs: d.lockout_window.as_secs(),
            password_iterations: d.password_iterations,
            idempotency_ttl_secs: d.idempotency_ttl.as_secs(),
            idempotency_wait_ms: d.idempotency_wait.as_millis() as u64,
            login_per_minute: d.rate_limits.login_per_minute,
            writes_per_minute: d.rate_limits.writes_per_minute,
            callbacks_per_minute: d.rate_limits.callbacks_per_minute,
        }
    }
}

impl AuthConfig {
    pub fn settings(&self) -> gema_gateway::auth::AuthSettings {
        use std::time::Duration;
        gema_gateway::auth::AuthSettings {
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs.max(1)),
            refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl_secs.max(1)),
            lockout_max_failures: self.lockout_max_failures.max(1),
            lockout_max_failures_per_source: self.lockout_max_failures_per_source.max(1),
            lockout_window: Duration::from_secs(self.lockout_window_secs),
            password_iterations: self.password_iterations.max(1),
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_secs),
            idempotency_wait: Duration::from_millis(self.idempotency_wait_ms),
            rate_limits: gema_gateway::auth::ratelimit::RateLimits {
                login_per_minute: self.login_per_minute,
                writes_per_minute: self.writes_per_minute,
                callbacks_per_minute: self.callbacks_per_minute,
            },
        }
    }
}

/// Payment providers and policy. A provider with no secret set is off (its callback route
/// answers 404).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Platform fee in basis points (70 = 0.7%), floored per transaction.
    pub platform_fee_bps: u32,
    /// How long a pending transaction waits for payment unless its creator says otherwise.
    pub pending_ttl_secs: u64,
    /// How long after a payment its announcement may still be spoken.
    pub announcement_ttl_secs: u64,
    /// How often pending transactions past their expiry are expired.
    pub expiry_sweep_interval_secs: u64,
    pub midtrans: MidtransConfig,
    pub xendit: XenditConfig,
    pub generic: GenericCallbackConfig,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            platform_fee_bps: 70,
            pending_ttl_secs: 900,
            announcement_ttl_secs: 300,
            expiry_sweep_interval_secs: 30,
            midtrans: MidtransConfig::default(),
            xendit: XenditConfig::default(),
            generic: GenericCallbackConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MidtransConfig {
    pub server_key: Option<SecretString>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XenditConfig {
    pub callback_token: Option<SecretString>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenericCallbackConfig {
    pub secret: Option<SecretString>,
    /// How far the signed timestamp may be from our clock.
    pub tolerance_secs: u64,
}

impl Default for GenericCallbackConfig {
    fn default() -> Self {
        Self {
            secret: None,
            tolerance_secs: 300,
        }
    }
}

impl PaymentsConfig {
    pub fn settings(&self) -> gema_gateway::payments::PaymentSettings {
        use std::time::Duration;
        gema_gateway::payments::PaymentSettings {
            platform_fee_bps: self.platform_fee_bps,
            default_pending_ttl: Duration::from_secs(self.pending_ttl_secs),
            announcement_ttl: Duration::from_secs(self.announcement_ttl_secs),
            midtrans_server_key: self.midtrans.server_key.clone(),
            xendit_callback_token: self.xendit.callback_token.clone(),
            generic_secret: self.generic.secret.clone(),
            generic_tolerance: Duration::from_secs(self.generic.tolerance_secs),
            expiry_sweep_interval: Duration::from_secs(self.expiry_sweep_interval_secs),
            // Set by the app from the store's backend.
            ..gema_gateway::payments::PaymentSettings::default()
        }
    }
}

/// Device operations: health thresholds, heartbeat history, the message trace, config
/// delivery, malformed-uplink flood limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// A device whose newest heartbeat is this old is degraded.
    pub health_degraded_after_secs: u64,
    /// A device whose newest heartbeat is this old is offline (even if still connected).
    pub health_offline_after_secs: u64,
    /// Battery at or below this percent, not charging, degrades health.
    pub low_battery_pct: u8,
    /// Signal at or below this dBm degrades health.
    pub weak_signal_dbm: i16,
    /// Failed announcements degrade health while their expiry is within this window.
    pub health_failed_delivery_window_secs: u64,
    /// Heartbeats kept per device in the database (the newest).
    pub heartbeat_history: u32,
    /// MQTT messages kept per device in the in-memory message trace.
    pub trace_per_device: usize,
    /// Devices with a message trace at once (the least recently active is dropped first).
    pub trace_max_devices: usize,
    /// How often undelivered desired configs of connected devices are pushed again.
    pub config_retry_interval_secs: u64,
    /// Malformed uplinks per device per minute before it is disconnected (0: never).
    pub malformed_flood_limit: u32,
    /// A command's lifetime when its sender does not give `expires_in_secs`.
    pub command_default_ttl_secs: u64,
    /// The longest `expires_in_secs` a command may ask for.
    pub command_max_ttl_secs: u64,
    /// How long after its expiry a delivered command may still finish before `timed_out`.
    pub command_result_timeout_secs: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            health_degraded_after_secs: 180,
            health_offline_after_secs: 600,
            low_battery_pct: 20,
            weak_signal_dbm: -100,
            health_failed_delivery_window_secs: 86_400,
            heartbeat_history: 100,
            trace_per_device: 50,
            trace_max_devices: 10_000,
            config_retry_interval_secs: 30,
            malformed_flood_limit: 30,
            command_default_ttl_secs: 300,
            command_max_ttl_secs: 86_400,
            command_result_timeout_secs: 300,
        }
    }
}

impl DevicesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.health_degraded_after_secs == 0
            || self.health_offline_after_secs <= self.health_degraded_after_secs
        {
            return Err(ConfigError::Invalid(
                "devices.health_offline_after_secs must be greater than \
                 devices.health_degraded_after_secs, which must be at least 1"
                    .into(),
            ));
        }
        if self.low_battery_pct > 100 || !(-150..=0).contains(&self.weak_signal_dbm) {
            return Err(ConfigError::Invalid(
                "devices.low_battery_pct must be 0..=100 and devices.weak_signal_dbm -150..=0"
                    .into(),
            ));
        }
        if self.command_default_ttl_secs == 0
            || self.command_default_ttl_secs > self.command_max_ttl_secs
        {
            return Err(ConfigError::Invalid(
                "devices.command_default_ttl_secs must be at least 1 and at most \
                 devices.command_max_ttl_secs"
                    .into(),
            ));
        }
        if self.heartbeat_history == 0
            || self.trace_per_device == 0
            || self.trace_max_devices == 0
            || self.config_retry_interval_secs == 0
        {
            return Err(ConfigError::Invalid(
                "devices.heartbeat_history, trace_per_device, trace_max_devices and \
                 config_retry_interval_secs must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn settings(&self) -> gema_gateway::device_ops::DeviceOpsSettings {
        use std::time::Duration;
        gema_gateway::device_ops::DeviceOpsSettings {
            health: gema_gateway::device_ops::HealthSettings {
                degraded_after: Duration::from_secs(self.health_degraded_after_secs),
                offline_after: Duration::from_secs(self.health_offline_after_secs),
                low_battery_pct: self.low_battery_pct,
                weak_signal_dbm: self.weak_signal_dbm,
                failed_delivery_window: Duration::from_secs(
                    self.health_failed_delivery_window_secs,
                ),
            },
            heartbeat_history: self.heartbeat_history,
            trace_per_device: self.trace_per_device,
            trace_max_devices: self.trace_max_devices,
            config_retry_interval: Duration::from_secs(self.config_retry_interval_secs),
            malformed_flood_limit: self.malformed_flood_limit,
            command_default_ttl: Duration::from_secs(self.command_default_ttl_secs),
            command_max_ttl: Duration::from_secs(self.command_max_ttl_secs),
            command_result_timeout: Duration::from_secs(self.command_result_timeout_secs),
            ..gema_gateway::device_ops::DeviceOpsSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_default_is_the_default() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).expect("default config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn the_database_url_is_never_in_debug_output() {
        let mut config = Config::default();
        config.database.url = Some(DatabaseUrl("postgres://gema:hunter2@db/gema".into()));
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres://gema:***@db/gema"));
    }

    #[test]
    fn provider_secrets_are_never_in_debug_output() {
        let mut config = Config::default();
        config.payments.midtrans.server_key = Some(SecretString::new("SB-Mid-server-xyz".into()));
        config.payments.generic.secret = Some(SecretString::new("hmac-secret".into()));
        let debug = format!("{config:?}");
        assert!(!debug.contains("SB-Mid-server-xyz") && !debug.contains("hmac-secret"));
    }

    #[test]
    fn whatsapp_numbers_and_secrets_may_be_all_digits() {
        let config: Config = Figment::new()
            .merge(Toml::string(
                "[whatsapp]\nphone_number_id = 1234567890\naccess_token = 987\nverify_token = 42",
            ))
            .extract()
            .unwrap();
        assert_eq!(
            config.whatsapp.phone_number_id.as_deref(),
            Some("1234567890")
        );
        assert_eq!(
            config
                .whatsapp
                .access_token
                .as_ref()
                .map(SecretString::expose),
            Some("987")
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("987") && !debug.contains("verify_token: Some(\"42"),
            "{debug}"
        );
    }

    #[test]
    fn an_empty_provider_secret_is_refused() {
        let mut config = Config::default();
        config.payments.midtrans.server_key = Some(SecretString::new(" ".into()));
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("payments.midtrans.server_key is empty"),
            "{err}"
        );
        config.payments.midtrans.server_key = Some(SecretString::new("SB-Mid-server-xyz".into()));
        config.payments.generic.secret = Some(SecretString::new(String::new()));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("payments.generic.secret is empty"), "{err}");
    }

    #[test]
    fn a_worker_thread_count_past_the_cap_is_refused() {
        let mut config = Config::default();
        config.node.worker_threads = 1;
        config.validate().expect("one thread is a valid choice");
        config.node.worker_threads = MAX_WORKER_THREADS + 1;
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("node.worker_threads must be at most 1024"),
            "{err}"
        );
    }

    #[test]
    fn whatsapp_sections_are_checked() {
        let mut config = Config::default();
        config.whatsapp.phone_number_id = Some("1".into());
        assert!(config.validate().is_err(), "a number without its token");
        let mut config = Config::default();
        config.whatsapp.templates.insert(
            "reminder".into(),
            TemplateConfig {
                name: "gema_reminder".into(),
                language: "id".into(),
                category: "UTILITY".into(),
                params: Some(vec!["customer".into(), "nope".into()]),
            },
        );
        assert!(
            config.validate().is_err(),
            "a parameter the kind does not fill"
        );
        let mut config = Config::default();
        config.whatsapp.gateway_url = Some("https://wa.example/send".into());
        config.whatsapp.gateway_body = Some("{not json".into());
        assert!(
            config.validate().is_err(),
            "a gateway body that is not JSON"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[http]\nlisten_addr = \"x\"").is_err());
    }

    #[test]
    fn health_thresholds_must_be_ordered() {
        let mut config = Config::default();
        config.devices.health_offline_after_secs = config.devices.health_degraded_after_secs;
        assert!(config.validate().is_err());
    }

    #[test]
    fn mqtt_service_rules_are_checked_in_order() {
        let parse = |rules: &str| {
            let config: Config = toml::from_str(&format!(
                "[mqtt]\ndeny_action = \"disconnect\"\n[[mqtt.services]]\nname = \"m\"\nrules = {rules}"
            ))
            .expect("parses");
            assert_eq!(config.mqtt.deny_action, DenyAction::Disconnect);
            config.validate()
        };
        assert!(parse(r#"["deny test/nosubscribe", "readwrite #"]"#).is_ok());
        let err = parse(r#"["readwrite #", "deny test/nosubscribe"]"#).unwrap_err();
        assert!(err.to_string().contains("never applied"), "{err}");
        assert!(parse(r#"["allow #"]"#).is_err());
        assert!(toml::from_str::<Config>("[mqtt]\ndeny_action = \"drop\"").is_err());
    }

    #[test]
    fn http_connection_limits_must_be_at_least_one() {
        let mut config = Config::default();
        config.http.max_connections_per_source = 0;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.http.header_read_timeout_secs = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn tls_paths_go_together() {
        let mut config = Config::default();
        config.tls.cert = Some("server.pem".into());
        assert!(config.validate().is_err());
    }
}
