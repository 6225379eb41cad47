//! The notifications Gema queues by itself: bill reminders, isolation notices, payment
//! receipts, payout notices, device alerts and daily summaries. Each becomes a [`Notice`]
//! queued through [`WhatsApp::queue`] with a `dedupe_key`, so a trigger that repeats (a
//! sweep run again on another node, a retried request, repeated heartbeats) never queues a
//! second message:
//!
//! - `reminder:<customer_id>:<due_date>`: one reminder per customer and due date, however
//!   many of their invoices fall due that day (they are listed in one message);
//! - `isolation:<customer_event_id>`: each move into `isolated` once;
//! - `receipt:<invoice_id>`: one receipt per invoice, ever: an invoice marked unpaid by
//!   mistake and paid again does not send a second one (the receipt page the first one
//!   links to always shows the invoice as it is);
//! - `payout:<batch_id>`;
//! - `device_offline:<incident_id>`, `device_online:<incident_id>`, `battery_low:<id>`,
//!   `battery_ok:<id>`: once per incident (an incident opens once until it closes);
//! - `summary:<merchant_id>:<date>`.
//!
//! Reminders and summaries are for today only: a day missed while every node was down is
//! not caught up (a reminder after the due date would be wrong, a summary of another day
//! late). Queuing happens after the business change committed: a notice that fails to
//! queue is logged, never undoes the payment or the isolation. Nothing here sends; the
//! worker does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use gema_store::billing::{Customer, Invoice, InvoiceFilter, InvoiceStatus, ReminderInvoice};
use gema_store::{AlertableDevice, PageRequest, SettlementBatch, WaMerchantSettings};
use time::{Date, OffsetDateTime};

use super::{Kind, Notice, WhatsApp};
use crate::clock::from_unix_ms;
use crate::error::{GatewayError, GatewayResult};
use crate::jakarta::{JAKARTA, date_label, iso_date, jakarta_time, period_label, rupiah};
use crate::validate;

/// How often the node holding the `whatsapp-notices` lease looks for reminders, device
/// alerts and summaries that are due.
pub const NOTICE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Who queued a notice of its own accord.
const SYSTEM: &str = "system";
/// The incident kinds (the store's `wa_device_incidents.kind`).
const OFFLINE: &str = "offline";
const BATTERY: &str = "battery";
/// The most unpaid invoices an isolation notice lists.
const ISOLATION_INVOICES: u32 = 24;

/// Which merchants had today's summary queued by this node, so the takings are not
/// summed again every sweep until midnight (another node or a restart relies on the
/// dedupe key instead).
#[derive(Debug, Default)]
pub(super) struct SummaryMemo {
    done: std::sync::Mutex<(Option<Date>, HashSet<String>)>,
}

/// What the alert sweep knows of a device besides its row: its open incidents, and the
/// sweep's instant.
#[derive(Debug, Clone, Copy)]
struct DeviceState {
    offline_open: bool,
    battery_open: bool,
    now_ms: i64,
    /// Jakarta minute of the day.
    minute: i64,
    offline_after: i64,
}

/// What a merchant's notices are signed with and paid to.
#[derive(Debug, Clone)]
struct Business {
    name: String,
    bank_details: String,
}

/// `2 jam 5 menit`, `1 hari 3 jam`, `45 menit`; under a minute `kurang dari 1 menit`.
pub fn duration_label(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    if minutes == 0 {
        return "kurang dari 1 menit".into();
    }
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(days, "hari"), (hours, "jam"), (minutes, "menit")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    parts.join(" ")
}

/// Periods with their amounts when there are several (`Januari 2027 (Rp 100.000),
/// Februari 2027 (Rp 50.000)`), the one period's name otherwise.
fn periods_label<'a>(invoices: impl Iterator<Item = (&'a str, i64)>) -> String {
    let invoices: Vec<(&str, i64)> = invoices.collect();
    match invoices.as_slice() {
        [(period, _)] => period_label(period),
        many => many
            .iter()
            .map(|(period, amount)| format!("{} ({})", period_label(period), rupiah(*amount)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The distinct values, in order, joined by commas.
fn distinct_joined<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(", ")
}

impl WhatsApp {
    fn jakarta_now(&self) -> OffsetDateTime {
        self.clock.now_utc().to_offset(JAKARTA)
    }

    /// Whether Jakarta's wall clock is at or past `(hour, minute)` today.
    fn past(&self, (hour, minute): (u8, u8)) -> GatewayResult<bool> {
        let at = time::Time::from_hms(hour, minute, 0)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok(self.jakarta_now().time() >= at)
    }

    /// The merchant's billing business name (its registry name when it set none) and bank
    /// details (`-` when none).
    async fn business(&self, merchant_id: &str) -> GatewayResult<Business> {
        let settings = self.store.billing_settings(merchant_id).await?;
        let name = match settings.business_name.filter(|n| !n.trim().is_empty()) {
            Some(name) => name,
            None => self.store.get_merchant(merchant_id).await?.name,
        };
        Ok(Business {
            name,
            bank_details: settings
                .bank_details
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "-".into()),
        })
    }

    /// Where a merchant's own notices go: its WhatsApp contact, else its registered phone
    /// when that is a WhatsApp number; `None`: nowhere.
    async fn merchant_contact(
        &self,
        merchant_id: &str,
        settings: Option<&WaMerchantSettings>,
    ) -> GatewayResult<Option<String>> {
        let settings = match settings {
            Some(settings) => Some(settings.clone()),
            None => self.store.wa_merchant_settings(merchant_id).await?,
        };
        if let Some(phone) = settings.and_then(|s| s.contact_phone) {
            return Ok(Some(phone));
        }
        let merchant = self.store.get_merchant(merchant_id).await?;
        Ok(merchant
            .phone
            .and_then(|p| validate::wa_phone("phone", &p).ok()))
    }

    /// A customer's number as a recipient; `None` (logged) when it is not a WhatsApp
    /// number.
    fn customer_number(customer_id: &str, phone: &str) -> Option<String> {
        let number = validate::wa_phone("phone", phone).ok();
        if number.is_none() {
            tracing::warn!(
                customer_id,
                "customer's phone is not a WhatsApp number: no notice"
            );
        }
        number
    }

    /// The scheduled notices (one node at a time, every [`NOTICE_SWEEP_INTERVAL`]): today's
    /// bill reminders, device alerts, today's daily summaries. One failing does not stop
    /// the others.
    pub async fn notice_sweep(&self) -> GatewayResult<()> {
        if !self.configured().await? {
            return Ok(());
        }
        let reminders = self.queue_reminders().await;
        let alerts = self.queue_device_alerts().await;
        let summaries = self.queue_daily_summaries().await;
        reminders?;
        alerts?;
        summaries?;
        Ok(())
    }

    /// Once Jakarta's `reminder_time` passed: one reminder per customer (not stopped) with
    /// invoices unpaid and due tomorrow, listing them and their sum; the invoices whose
    /// reminder was queued are stamped `reminder_queued_at`. Returns how many were queued.
    #[tracing::instrument(skip_all)]
    pub async fn queue_reminders(&self) -> GatewayResult<usize> {
        if !self.past(self.settings.reminder_time)? {
            return Ok(0);
        }
        let Some(due) = self.jakarta_now().date().next_day() else {
            return Ok(0);
        };
        let due_iso = iso_date(due);
        let rows = self.store.reminder_invoices(&due_iso).await?;
        let mut by_customer: BTreeMap<&str, Vec<&ReminderInvoice>> = BTreeMap::new();
        for row in &rows {
            by_customer.entry(&row.customer_id).or_default().push(row);
        }
        let mut businesses: HashMap<String, Business> = HashMap::new();
        let mut notices = Vec::with_capacity(by_customer.len());
        let mut invoices_of: HashMap<String, Vec<String>> = HashMap::new();
        for (customer_id, invoices) in by_customer {
            let first = invoices[0];
            let Some(recipient) = Self::customer_number(customer_id, &first.phone) else {
                continue;
            };
            let business = match businesses.get(&first.merchant_id) {
                Some(business) => business.clone(),
                None => {
                    let business = self.business(&first.merchant_id).await?;
                    businesses.insert(first.merchant_id.clone(), business.clone());
                    business
                }
            };
            let total: i64 = invoices.iter().map(|i| i.total_amount).sum();
            let key = format!("reminder:{customer_id}:{due_iso}");
            invoices_of.insert(
                key.clone(),
                invoices.iter().map(|i| i.invoice_id.clone()).collect(),
            );
            notices.push(Notice {
                merchant_id: Some(first.merchant_id.clone()),
                recipient,
                kind: Kind::Reminder,
                values: BTreeMap::from([
                    ("customer", first.customer_name.clone()),
                    ("business", business.name),
                    (
                        "package",
                        distinct_joined(invoices.iter().map(|i| i.package_name.as_str())),
                    ),
                    (
                        "period",
                        periods_label(invoices.iter().map(|i| (i.period.as_str(), i.total_amount))),
                    ),
                    ("amount", rupiah(total)),
                    ("due_date", date_label(due)),
                    ("bank_details", business.bank_details),
                    ("payment_link", self.payment_links(&invoices)),
                ]),
                dedupe_key: Some(key),
                not_before_ms: None,
                created_by: SYSTEM.into(),
            });
        }
        if notices.is_empty() {
            return Ok(0);
        }
        let queued = self.queue(notices).await?;
        let stamped: Vec<String> = queued
            .iter()
            .filter_map(|m| m.dedupe_key.as_ref())
            .filter_map(|key| invoices_of.get(key))
            .flatten()
            .cloned()
            .collect();
        self.store
            .mark_reminders_queued(&stamped, self.clock.now_utc())
            .await?;
        if !queued.is_empty() {
            tracing::info!(queued = queued.len(), due_date = %due_iso, "bill reminders queued");
        }
        Ok(queued.len())
    }

    /// The reminder's QRIS line: each invoice's pay page (`/p/{token}`, its QRIS while
    /// unpaid, its receipt once paid), labelled by period when the reminder merges several;
    /// empty when the merchant has no terminal with a static QRIS.
    fn payment_links(&self, invoices: &[&ReminderInvoice]) -> String {
        let base = self.settings.public_url.trim_end_matches('/');
        let payable: Vec<&&ReminderInvoice> =
            invoices.iter().filter(|i| i.payable_by_qris).collect();
        match payable.as_slice() {
            [] => String::new(),
            [one] => format!("Bayar dengan QRIS: {base}/p/{}", one.receipt_token),
            several => several
                .iter()
                .map(|i| {
                    format!(
                        "Bayar {} dengan QRIS: {base}/p/{}",
                        period_label(&i.period),
                        i.receipt_token
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The isolation notice of `customer`, who has just moved into `isolated` with the
    /// history row `event_id`: their unpaid invoices and what they owe. A customer isolated
    /// with nothing unpaid gets none (the text says it is for an unpaid bill).
    #[tracing::instrument(skip_all, fields(customer_id = %customer.id))]
    pub async fn notify_isolation(
        &self,
        customer: &Customer,
        event_id: &str,
    ) -> GatewayResult<usize> {
        let Some(recipient) = Self::customer_number(&customer.id, &customer.phone) else {
            return Ok(0);
        };
        let mut unpaid: Vec<Invoice> = self
            .store
            .list_invoices(
                &InvoiceFilter {
                    customer_id: Some(customer.id.clone()),
                    status: Some(InvoiceStatus::Unpaid),
                    ..Default::default()
                },
                &PageRequest::first(ISOLATION_INVOICES),
            )
            .await?
            .items;
        if unpaid.is_empty() {
            tracing::info!("isolated with nothing unpaid: no isolation notice");
            return Ok(0);
        }
        unpaid.sort_by(|a, b| a.period.cmp(&b.period));
        let business = self.business(&customer.merchant_id).await?;
        let total: i64 = unpaid.iter().map(|i| i.total_amount).sum();
        let queued = self
            .queue(vec![Notice {
                merchant_id: Some(customer.merchant_id.clone()),
                recipient,
                kind: Kind::Isolation,
                values: BTreeMap::from([
                    ("customer", customer.name.clone()),
                    ("business", business.name),
                    (
                        "package",
                        distinct_joined(unpaid.iter().map(|i| i.package_name.as_str())),
                    ),
                    ("amount", rupiah(total)),
                    (
                        "period",
                        periods_label(unpaid.iter().map(|i| (i.period.as_str(), i.total_amount))),
                    ),
                ]),
                dedupe_key: Some(format!("isolation:{event_id}")),
                not_before_ms: None,
                created_by: SYSTEM.into(),
            }])
            .await?;
        Ok(queued.len())
    }

    /// The receipt of a paid invoice, linking its public receipt page. Once per invoice
    /// (see the module docs); sent even to a number that opted out.
    #[tracing::instrument(skip_all, fields(invoice_id = %invoice.id))]
    pub async fn notify_receipt(&self, invoice: &Invoice) -> GatewayResult<usize> {
        if invoice.status != InvoiceStatus::Paid {
            return Ok(0);
        }
        let customer = self.store.get_customer(&invoice.customer_id).await?;
        let Some(recipient) = Self::customer_number(&customer.id, &customer.phone) else {
            return Ok(0);
        };
        let business = self.business(&invoice.merchant_id).await?;
        let paid_at = invoice.paid_at.unwrap_or_else(|| self.clock.now_utc());
        let queued = self
            .queue(vec![Notice {
                merchant_id: Some(invoice.merchant_id.clone()),
                recipient,
                kind: Kind::Receipt,
                values: BTreeMap::from([
                    ("customer", customer.name),
                    ("business", business.name),
                    ("period", period_label(&invoice.period)),
                    ("amount", rupiah(invoice.total_amount)),
                    ("paid_at", jakarta_time(paid_at)),
                    (
                        "receipt_url",
                        format!(
                            "{}/r/{}",
                            self.settings.public_url.trim_end_matches('/'),
                            invoice.receipt_token
                        ),
                    ),
                ]),
                dedupe_key: Some(format!("receipt:{}", invoice.id)),
                not_before_ms: None,
                created_by: SYSTEM.into(),
            }])
            .await?;
        Ok(queued.len())
    }

    /// The payout notice of a batch marked paid, to the merchant's contact.
    #[tracing::instrument(skip_all, fields(batch_id = %batch.id))]
    pub async fn notify_payout(&self, batch: &SettlementBatch) -> GatewayResult<usize> {
        if batch.status != gema_store::BatchStatus::Paid {
            return Ok(0);
        }
        let Some(recipient) = self.merchant_contact(&batch.merchant_id, None).await? else {
            tracing::info!("merchant has no WhatsApp contact: no payout notice");
            return Ok(0);
        };
        let merchant = self.store.get_merchant(&batch.merchant_id).await?;
        let queued = self
            .queue(vec![Notice {
                merchant_id: Some(batch.merchant_id.clone()),
                recipient,
                kind: Kind::Payout,
                values: BTreeMap::from([
                    ("merchant", merchant.name),
                    ("batch", batch.id.clone()),
                    (
                        "amount",
                        rupiah(batch.paid_amount.unwrap_or_else(|| batch.net_amount())),
                    ),
                    (
                        "period",
                        format!("s.d. {}", jakarta_time(from_unix_ms(batch.cutoff_ms))),
                    ),
                    (
                        "paid_at",
                        jakarta_time(batch.paid_at.unwrap_or_else(|| self.clock.now_utc())),
                    ),
                    (
                        "reference",
                        batch.payout_reference.clone().unwrap_or_else(|| "-".into()),
                    ),
                ]),
                dedupe_key: Some(format!("payout:{}", batch.id)),
                not_before_ms: None,
                created_by: SYSTEM.into(),
            }])
            .await?;
        Ok(queued.len())
    }

    /// Device alerts for merchants that want them: a device disconnected longer than
    /// `offline_alert_after` while the merchant is open opens an `offline` incident (one
    /// alert), its reconnection closes it (one "back online" with the downtime); a battery
    /// below `low_battery_pct` and not charging opens a `battery` incident, at or above
    /// `battery_ok_pct` (or charging) closes it. Returns how many were queued.
    #[tracing::instrument(skip_all)]
    pub async fn queue_device_alerts(&self) -> GatewayResult<usize> {
        let devices = self.store.alertable_devices().await?;
        if devices.is_empty() {
            return Ok(0);
        }
        let now_ms = self.clock.now_ms();
        let local = self.jakarta_now();
        let minute = i64::from(local.hour()) * 60 + i64::from(local.minute());
        let offline_after =
            i64::try_from(self.settings.offline_alert_after.as_millis()).unwrap_or(i64::MAX);
        // Incidents open and close rarely: the sweep writes only when one does.
        let open: HashSet<(String, String)> = self
            .store
            .open_wa_incidents()
            .await?
            .into_iter()
            .map(|i| (i.device_id, i.kind))
            .collect();
        let mut contacts: HashMap<String, Option<String>> = HashMap::new();
        let mut notices = Vec::new();
        for device in &devices {
            let is_open = |kind: &str| open.contains(&(device.device_id.clone(), kind.to_owned()));
            let state = DeviceState {
                offline_open: is_open(OFFLINE),
                battery_open: is_open(BATTERY),
                now_ms,
                minute,
                offline_after,
            };
            let alerts = self.device_alerts(device, &state).await?;
            if alerts.is_empty() {
                continue;
            }
            let contact = match contacts.get(&device.merchant_id) {
                Some(contact) => contact.clone(),
                None => {
                    let contact = self.merchant_contact(&device.merchant_id, None).await?;
                    contacts.insert(device.merchant_id.clone(), contact.clone());
                    contact
                }
            };
            let Some(contact) = contact else {
                tracing::info!(merchant_id = %device.merchant_id, "no WhatsApp contact: device alert dropped");
                continue;
            };
            for (kind, key, extra) in alerts {
                let mut values = BTreeMap::from([
                    ("merchant", device.merchant_name.clone()),
                    ("device", device.serial.clone()),
                ]);
                values.insert(extra.0, extra.1);
                notices.push(Notice {
                    merchant_id: Some(device.merchant_id.clone()),
                    recipient: contact.clone(),
                    kind,
                    values,
                    dedupe_key: Some(key),
                    not_before_ms: None,
                    created_by: SYSTEM.into(),
                });
            }
        }
        if notices.is_empty() {
            return Ok(0);
        }
        Ok(self.queue(notices).await?.len())
    }

    /// Opens and closes one device's incidents; the alerts they call for, each with its
    /// dedupe key and the kind's own value.
    async fn device_alerts(
        &self,
        device: &AlertableDevice,
        state: &DeviceState,
    ) -> GatewayResult<Vec<(Kind, String, (&'static str, String))>> {
        let DeviceState {
            offline_open,
            battery_open,
            now_ms,
            minute,
            offline_after,
        } = *state;
        let mut alerts = Vec::new();
        match (device.connected, device.presence_changed_ms) {
            (Some(false), Some(since))
                if !offline_open && now_ms.saturating_sub(since) > offline_after =>
            {
                let hours = self.opening_hours(&device.merchant_id).await?;
                if hours.contains(&minute)
                    && let Some(incident) = self
                        .store
                        .open_wa_incident(&device.device_id, OFFLINE, since)
                        .await?
                {
                    alerts.push((
                        Kind::DeviceOffline,
                        format!("device_offline:{incident}"),
                        ("since", jakarta_time(from_unix_ms(since))),
                    ));
                }
            }
            (Some(true), changed) if offline_open => {
                let back = changed.unwrap_or(now_ms);
                if let Some(incident) = self
                    .store
                    .close_wa_incident(&device.device_id, OFFLINE, back)
                    .await?
                {
                    alerts.push((
                        Kind::DeviceOnline,
                        format!("device_online:{}", incident.id),
                        (
                            "downtime",
                            duration_label(back.saturating_sub(incident.opened_ms)),
                        ),
                    ));
                }
            }
            _ => {}
        }
        if let Some(pct) = device.battery_pct {
            let charging = device.charging.unwrap_or(false);
            if pct < self.settings.low_battery_pct && !charging {
                if !battery_open
                    && let Some(incident) = self
                        .store
                        .open_wa_incident(&device.device_id, BATTERY, now_ms)
                        .await?
                {
                    alerts.push((
                        Kind::BatteryLow,
                        format!("battery_low:{incident}"),
                        ("battery", format!("{pct}%")),
                    ));
                }
            } else if battery_open
                && (pct >= self.settings.battery_ok_pct || charging)
                && let Some(incident) = self
                    .store
                    .close_wa_incident(&device.device_id, BATTERY, now_ms)
                    .await?
            {
                let battery = if pct < self.settings.battery_ok_pct {
                    format!("diisi daya ({pct}%)")
                } else {
                    format!("{pct}%")
                };
                alerts.push((
                    Kind::BatteryOk,
                    format!("battery_ok:{}", incident.id),
                    ("battery", battery),
                ));
            }
        }
        Ok(alerts)
    }

    /// The merchant's opening hours as Jakarta minutes of the day (08:00–21:00 when it set
    /// none).
    async fn opening_hours(&self, merchant_id: &str) -> GatewayResult<std::ops::Range<i64>> {
        Ok(match self.store.wa_merchant_settings(merchant_id).await? {
            Some(s) => s.open_minute..s.close_minute,
            None => 8 * 60..21 * 60,
        })
    }

    /// Once Jakarta's `summary_time` passed: today's paid payments (count and total) to
    /// each merchant that wants the summary, zero included. Returns how many were queued.
    #[tracing::instrument(skip_all)]
    pub async fn queue_daily_summaries(&self) -> GatewayResult<usize> {
        if !self.past(self.settings.summary_time)? {
            return Ok(0);
        }
        let today = self.jakarta_now().date();
        let done: HashSet<String> = {
            let memo = self
                .summaries
                .done
                .lock()
                .map_err(|_| GatewayError::Internal("summary memo poisoned".into()))?;
            if memo.0 == Some(today) {
                memo.1.clone()
            } else {
                HashSet::new()
            }
        };
        let merchants: Vec<WaMerchantSettings> = self
            .store
            .wa_summary_merchants()
            .await?
            .into_iter()
            .filter(|m| !done.contains(&m.merchant_id))
            .collect();
        if merchants.is_empty() {
            return Ok(0);
        }
        let start = today.midnight().assume_offset(JAKARTA);
        let takings: HashMap<String, (String, i64, i64)> = self
            .store
            .takings_between(start, start + time::Duration::days(1))
            .await?
            .into_iter()
            .map(|t| (t.merchant_id, (t.merchant_name, t.count, t.total)))
            .collect();
        let mut notices = Vec::with_capacity(merchants.len());
        for settings in &merchants {
            let merchant_id = &settings.merchant_id;
            let Some(recipient) = self.merchant_contact(merchant_id, Some(settings)).await? else {
                continue;
            };
            let (name, count, total) = match takings.get(merchant_id) {
                Some(found) => found.clone(),
                None => (self.store.get_merchant(merchant_id).await?.name, 0, 0),
            };
            notices.push(Notice {
                merchant_id: Some(merchant_id.clone()),
                recipient,
                kind: Kind::DailySummary,
                values: BTreeMap::from([
                    ("merchant", name),
                    ("date", date_label(today)),
                    ("count", count.to_string()),
                    ("total", rupiah(total)),
                ]),
                dedupe_key: Some(format!("summary:{merchant_id}:{}", iso_date(today))),
                not_before_ms: None,
                created_by: SYSTEM.into(),
            });
        }
        let queued = if notices.is_empty() {
            0
        } else {
            self.queue(notices).await?.len()
        };
        let mut memo = self
            .summaries
            .done
            .lock()
            .map_err(|_| GatewayError::Internal("summary memo poisoned".into()))?;
        if memo.0 != Some(today) {
            *memo = (Some(today), HashSet::new());
        }
        memo.1.extend(merchants.into_iter().map(|m| m.merchant_id));
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downtimes_read_as_days_hours_and_minutes() {
        assert_eq!(duration_label(0), "kurang dari 1 menit");
        assert_eq!(duration_label(59_999), "kurang dari 1 menit");
        assert_eq!(duration_label(45 * 60_000), "45 menit");
        assert_eq!(duration_label((2 * 60 + 5) * 60_000), "2 jam 5 menit");
        assert_eq!(duration_label(2 * 3_600_000), "2 jam");
        assert_eq!(
            duration_label((27 * 60 + 1) * 60_000),
            "1 hari 3 jam 1 menit"
        );
        assert_eq!(duration_label(-5), "kurang dari 1 menit");
    }

    #[test]
    fn several_periods_are_listed_with_their_amounts() {
        assert_eq!(
            periods_label([("2027-01", 100_000)].into_iter()),
            "Januari 2027"
        );
        assert_eq!(
            periods_label([("2027-01", 100_000), ("2027-02", 50_000)].into_iter()),
            "Januari 2027 (Rp 100.000), Februari 2027 (Rp 50.000)"
        );
        assert_eq!(distinct_joined(["A", "B", "A"].into_iter()), "A, B");
    }
}
