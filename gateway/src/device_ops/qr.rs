//! Dynamic QR codes asked for by devices (`up/qr_request` → `down/qr_show`, and
//! `down/qr_clear` once the transaction is paid, expired or failed).
//!
//! The request row is the outbox of both downlinks (`gema_store::QrDownlink`): the pending
//! transaction and the row that owes its `qr_show` are one commit; closing the row owes the
//! `qr_clear`. An owed downlink is sent at once to a device connected here, again every
//! `config_retry_interval` until the device acknowledges it (`ack` with status `processed`,
//! on the downlink's message id `qrs_<transaction>` / `qrc_<transaction>`), again when the
//! device reconnects, and ends `expired` when the QR's own expiry passes (the device drops
//! it by itself then) or `failed` after [`QR_MAX_ATTEMPTS`] sends. A refusal (no row: the
//! device's request made nothing) is answered once; the device asks again if it missed it.

use gema_firmware_protocol::message::{
    Ack, Downlink, DownlinkBody, DynamicQrClear, DynamicQrRequest, DynamicQrShow, Envelope,
    QrClearReason,
};
use gema_firmware_protocol::{Encoding, encode};
use gema_store::{NewQrRequest, QrDownlink, QrRequestRecord};

use super::DeviceOps;
use crate::transport::PublishOutcome;

/// Sends of one QR downlink before it is marked `failed`.
pub const QR_MAX_ATTEMPTS: i64 = 10;

const SHOW_PREFIX: &str = "qrs_";
const CLEAR_PREFIX: &str = "qrc_";

/// Whether an ack is for a QR downlink (so device operations, not delivery, take it).
pub(crate) fn is_qr_ack(ack: &Ack) -> bool {
    ack.acked_msg_id.starts_with(SHOW_PREFIX) || ack.acked_msg_id.starts_with(CLEAR_PREFIX)
}

fn clear_reason(close_reason: Option<&str>) -> QrClearReason {
    match close_reason {
        Some("paid") => QrClearReason::Paid,
        Some("expired") => QrClearReason::Expired,
        _ => QrClearReason::Cancelled,
    }
}

impl DeviceOps {
    pub(super) async fn publish_downlink(
        &self,
        device_id: &str,
        downlink: &Downlink,
    ) -> PublishOutcome {
        let encoding = Encoding::Json;
        let topic = downlink.topic(device_id, encoding);
        self.inner
            .transport
            .publish(
                device_id,
                &topic,
                encode(downlink, encoding),
                self.inner.settings.publish_timeout,
            )
            .await
    }

    fn show_downlink(&self, qr: &QrRequestRecord) -> Downlink {
        Downlink {
            envelope: Envelope::new(
                format!("{SHOW_PREFIX}{}", qr.transaction_id),
                self.inner.clock.now_ms(),
            ),
            body: DownlinkBody::DynamicQrShow(DynamicQrShow {
                transaction_id: qr.transaction_id.clone(),
                request_id: Some(qr.request_id.clone()),
                payload: qr.payload.clone(),
                amount: qr.amount,
                expires_at: qr.expires_at_ms,
            }),
        }
    }

    fn clear_downlink(
        &self,
        transaction_id: Option<&str>,
        request_id: &str,
        reason: QrClearReason,
    ) -> Downlink {
        let msg_id = match transaction_id {
            Some(t) => format!("{CLEAR_PREFIX}{t}"),
            None => format!("{CLEAR_PREFIX}{}", self.inner.clock.now_ms()),
        };
        Downlink {
            envelope: Envelope::new(msg_id, self.inner.clock.now_ms()),
            body: DownlinkBody::DynamicQrClear(DynamicQrClear {
                transaction_id: transaction_id.map(String::from),
                request_id: Some(request_id.to_string()),
                reason,
            }),
        }
    }

    /// Refuses a device's QR request (`qr_clear` with reason `refused`), saying why in the
    /// log.
    async fn refuse_qr(&self, device_id: &str, request_id: &str, why: &str) {
        metrics::counter!("gema_dynamic_qr_requests_total", "result" => "refused").increment(1);
        tracing::warn!(device_id, request_id, why, "dynamic QR request refused");
        let downlink = self.clear_downlink(None, request_id, QrClearReason::Refused);
        self.publish_downlink(device_id, &downlink).await;
    }

    /// `up/qr_request`: makes a dynamic QR for the amount at the device's terminal (a
    /// pending transaction with the device's QR timeout, and the request row that owes its
    /// `qr_show`, in one commit) and sends it. A repeated request id gets the same QR (or,
    /// once closed, its `qr_clear`) again, never a second transaction.
    pub(super) async fn qr_request(
        &self,
        device_id: &str,
        request: DynamicQrRequest,
        now: i64,
    ) -> Result<(), gema_store::StoreError> {
        let store = &self.inner.store;
        if let Some(existing) = store.qr_request(device_id, &request.request_id).await? {
            self.answer_again(&existing).await;
            return Ok(());
        }
        let Some(payments) = self.inner.payments.as_ref() else {
            self.refuse_qr(
                device_id,
                &request.request_id,
                "dynamic QR is not available",
            )
            .await;
            return Ok(());
        };
        let device = store.get_device(device_id).await?;
        let Some(terminal_id) = device.terminal_id else {
            self.refuse_qr(
                device_id,
                &request.request_id,
                "the device is not bound to a terminal",
            )
            .await;
            return Ok(());
        };
        let ttl = match self.config(device_id).await {
            Ok(config) => config.desired.qr_timeout_s,
            Err(_) => self.inner.settings.default_config.qr_timeout_s,
        };
        let (transaction, payload) = match payments
            .prepare_dynamic_qr(&terminal_id, request.amount, Some(u64::from(ttl)))
            .await
        {
            Ok(made) => made,
            Err(err) => {
                self.refuse_qr(device_id, &request.request_id, &err.to_string())
                    .await;
                return Ok(());
            }
        };
        let (qr, created) = store
            .create_qr_request(
                transaction,
                NewQrRequest {
                    device_id: device_id.to_string(),
                    request_id: request.request_id.clone(),
                    payload,
                    created_at_ms: now,
                },
            )
            .await?;
        if created {
            metrics::counter!("gema_dynamic_qr_requests_total", "result" => "shown").increment(1);
            tracing::info!(device_id, transaction_id = %qr.transaction_id, amount = qr.amount, "dynamic QR made");
            self.send_owed(&qr).await;
        } else {
            self.answer_again(&qr).await;
        }
        Ok(())
    }

    /// A request the device made before: its QR again while it is shown (owed or not: the
    /// device asks because it has none), its `qr_clear` once closed.
    async fn answer_again(&self, qr: &QrRequestRecord) {
        let downlink = if qr.status == "shown" {
            self.show_downlink(qr)
        } else {
            self.clear_downlink(
                Some(&qr.transaction_id),
                &qr.request_id,
                clear_reason(qr.close_reason.as_deref()),
            )
        };
        let outcome = self.publish_downlink(&qr.device_id, &downlink).await;
        tracing::info!(device_id = %qr.device_id, transaction_id = %qr.transaction_id, ?outcome, "dynamic QR request repeated; answered again");
    }

    /// Sends the downlink `qr` owes, if any, to its device if connected here, and counts
    /// the attempt; past [`QR_MAX_ATTEMPTS`] the downlink is marked `failed` instead.
    async fn send_owed(&self, qr: &QrRequestRecord) {
        let Some(kind) = qr.owed() else {
            return;
        };
        if !self.inner.transport.is_connected(&qr.device_id) {
            return; // replayed when it connects (here or on the node that holds it)
        }
        let store = &self.inner.store;
        let label = match kind {
            QrDownlink::Show => "qr_show",
            QrDownlink::Clear => "qr_clear",
        };
        if qr.attempts >= QR_MAX_ATTEMPTS {
            match store
                .finish_qr_downlink(&qr.device_id, &qr.transaction_id, kind, "failed")
                .await
            {
                Ok(true) => {
                    metrics::counter!("gema_qr_downlinks_total", "kind" => label, "outcome" => "failed").increment(1);
                    tracing::warn!(device_id = %qr.device_id, transaction_id = %qr.transaction_id, downlink = label, attempts = qr.attempts, "QR downlink never acknowledged; given up");
                }
                Ok(false) => {}
                Err(err) => tracing::error!(error = %err, "marking a QR downlink failed"),
            }
            return;
        }
        let downlink = match kind {
            QrDownlink::Show => self.show_downlink(qr),
            QrDownlink::Clear => self.clear_downlink(
                Some(&qr.transaction_id),
                &qr.request_id,
                clear_reason(qr.close_reason.as_deref()),
            ),
        };
        let outcome = self.publish_downlink(&qr.device_id, &downlink).await;
        tracing::info!(device_id = %qr.device_id, transaction_id = %qr.transaction_id, downlink = label, attempt = qr.attempts + 1, ?outcome, "QR downlink sent");
        let next = self.inner.clock.now_ms()
            + i64::try_from(self.inner.settings.config_retry_interval.as_millis())
                .unwrap_or(i64::MAX / 4);
        if let Err(err) = store
            .qr_downlink_sent(&qr.device_id, &qr.request_id, kind, next)
            .await
        {
            tracing::error!(error = %err, "recording a QR downlink attempt failed");
        }
    }

    /// Sends the QR downlinks that are due: of `device_id` (it just connected) whatever
    /// their next attempt, or of every device connected here whose next attempt is due.
    pub(super) async fn deliver_due_qrs(&self, device_id: Option<&str>) {
        let due = match self
            .inner
            .store
            .due_qr_downlinks(device_id, self.inner.clock.now_ms(), 1000)
            .await
        {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "reading due QR downlinks failed");
                return;
            }
        };
        for qr in due {
            self.send_owed(&qr).await;
        }
    }

    /// A device acknowledged a QR downlink: that downlink is delivered.
    pub(super) async fn qr_ack(
        &self,
        device_id: &str,
        ack: &Ack,
    ) -> Result<(), gema_store::StoreError> {
        let (kind, transaction_id, label) =
            if let Some(t) = ack.acked_msg_id.strip_prefix(SHOW_PREFIX) {
                (QrDownlink::Show, t, "qr_show")
            } else if let Some(t) = ack.acked_msg_id.strip_prefix(CLEAR_PREFIX) {
                (QrDownlink::Clear, t, "qr_clear")
            } else {
                return Ok(());
            };
        if self
            .inner
            .store
            .finish_qr_downlink(device_id, transaction_id, kind, "delivered")
            .await?
        {
            metrics::counter!("gema_qr_downlinks_total", "kind" => label, "outcome" => "delivered")
                .increment(1);
            tracing::info!(
                device_id,
                transaction_id,
                downlink = label,
                "QR downlink acknowledged"
            );
        }
        Ok(())
    }

    /// Closes QRs whose transaction is paid, expired or failed (their `qr_clear` becomes
    /// owed and is sent to the devices connected here; the others get it when they
    /// connect), and ends the owed downlinks of QRs past their own expiry.
    pub(super) async fn close_finished_qrs(&self) {
        let now = self.inner.clock.now_ms();
        match self.inner.store.expire_qr_downlinks(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(requests = n, "QR downlinks expired with their QR"),
            Err(err) => tracing::error!(error = %err, "expiring QR downlinks failed"),
        }
        let due = match self.inner.store.qr_requests_to_close(200).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "reading QRs to close failed");
                return;
            }
        };
        for (qr, status) in due {
            let label = match status.as_str() {
                "paid" | "refunded" => "paid",
                "expired" => "expired",
                _ => "cancelled",
            };
            match self
                .inner
                .store
                .close_qr_request(&qr.device_id, &qr.request_id, label, now)
                .await
            {
                Ok(true) => {
                    tracing::info!(device_id = %qr.device_id, transaction_id = %qr.transaction_id, reason = label, "dynamic QR closed");
                    self.deliver_due_qrs(Some(&qr.device_id)).await;
                }
                Ok(false) => {}
                Err(err) => tracing::error!(error = %err, "closing a dynamic QR failed"),
            }
        }
    }
}
