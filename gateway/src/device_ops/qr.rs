//! Dynamic QR codes asked for by devices (`up/qr_request` → `down/qr_show`, and
//! `down/qr_clear` once the transaction is paid, expired or failed).

use gema_firmware_protocol::message::{
    Downlink, DownlinkBody, DynamicQrClear, DynamicQrRequest, DynamicQrShow, Envelope,
    QrClearReason,
};
use gema_firmware_protocol::{Encoding, encode};
use gema_store::QrRequestRecord;

use super::DeviceOps;
use crate::transport::PublishOutcome;

impl DeviceOps {
    // Dynamic QR asked for by the device.

    async fn publish_downlink(&self, device_id: &str, downlink: &Downlink) -> PublishOutcome {
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

    async fn show_qr(&self, qr: &QrRequestRecord) {
        let downlink = Downlink {
            envelope: Envelope::new(
                format!("qrs_{}", qr.transaction_id),
                self.inner.clock.now_ms(),
            ),
            body: DownlinkBody::DynamicQrShow(DynamicQrShow {
                transaction_id: qr.transaction_id.clone(),
                request_id: Some(qr.request_id.clone()),
                payload: qr.payload.clone(),
                amount: qr.amount,
                expires_at: qr.expires_at_ms,
            }),
        };
        let outcome = self.publish_downlink(&qr.device_id, &downlink).await;
        tracing::info!(device_id = %qr.device_id, transaction_id = %qr.transaction_id, ?outcome, "dynamic QR sent to the device");
    }

    async fn clear_qr(
        &self,
        device_id: &str,
        transaction_id: Option<&str>,
        request_id: &str,
        reason: QrClearReason,
    ) -> PublishOutcome {
        let msg_id = match transaction_id {
            Some(t) => format!("qrc_{t}"),
            None => format!("qrc_{}", self.inner.clock.now_ms()),
        };
        let downlink = Downlink {
            envelope: Envelope::new(msg_id, self.inner.clock.now_ms()),
            body: DownlinkBody::DynamicQrClear(DynamicQrClear {
                transaction_id: transaction_id.map(String::from),
                request_id: Some(request_id.to_string()),
                reason,
            }),
        };
        self.publish_downlink(device_id, &downlink).await
    }

    /// Refuses a device's QR request (`qr_clear` with reason `refused`), saying why in the
    /// log.
    async fn refuse_qr(&self, device_id: &str, request_id: &str, why: &str) {
        metrics::counter!("gema_dynamic_qr_requests_total", "result" => "refused").increment(1);
        tracing::warn!(device_id, request_id, why, "dynamic QR request refused");
        self.clear_qr(device_id, None, request_id, QrClearReason::Refused)
            .await;
    }

    /// `up/qr_request`: makes a dynamic QR for the amount at the device's terminal (a
    /// pending transaction with the device's QR timeout) and sends it on `down/qr_show`.
    /// A repeated request id gets the same QR again.
    pub(super) async fn qr_request(
        &self,
        device_id: &str,
        request: DynamicQrRequest,
        now: i64,
    ) -> Result<(), gema_store::StoreError> {
        let store = &self.inner.store;
        if let Some(existing) = store.qr_request(device_id, &request.request_id).await? {
            if existing.status == "shown" {
                self.show_qr(&existing).await;
            } else {
                let reason = match existing.close_reason.as_deref() {
                    Some("paid") => QrClearReason::Paid,
                    Some("expired") => QrClearReason::Expired,
                    _ => QrClearReason::Cancelled,
                };
                self.clear_qr(
                    device_id,
                    Some(&existing.transaction_id),
                    &existing.request_id,
                    reason,
                )
                .await;
            }
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
            .dynamic_qr(&terminal_id, request.amount, Some(u64::from(ttl)))
            .await
        {
            Ok(made) => made,
            Err(err) => {
                self.refuse_qr(device_id, &request.request_id, &err.to_string())
                    .await;
                return Ok(());
            }
        };
        let (qr, _) = store
            .record_qr_request(QrRequestRecord {
                device_id: device_id.to_string(),
                request_id: request.request_id.clone(),
                transaction_id: transaction.id.clone(),
                amount: transaction.amount,
                payload,
                expires_at_ms: transaction.expires_at_ms,
                status: "shown".into(),
                close_reason: None,
                created_at_ms: now,
                closed_at_ms: None,
            })
            .await?;
        metrics::counter!("gema_dynamic_qr_requests_total", "result" => "shown").increment(1);
        self.show_qr(&qr).await;
        Ok(())
    }

    /// Tells devices to stop showing QRs whose transaction is paid, expired or failed. One
    /// attempt each: a device that is offline has dropped the QR by its own `expires_at`,
    /// or by the `announce` that a payment brings.
    pub(super) async fn close_finished_qrs(&self) {
        let due = match self.inner.store.qr_requests_to_close(200).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "reading QRs to close failed");
                return;
            }
        };
        for (qr, status) in due {
            let (reason, label) = match status.as_str() {
                "paid" | "refunded" => (QrClearReason::Paid, "paid"),
                "expired" => (QrClearReason::Expired, "expired"),
                _ => (QrClearReason::Cancelled, "cancelled"),
            };
            let outcome = self
                .clear_qr(
                    &qr.device_id,
                    Some(&qr.transaction_id),
                    &qr.request_id,
                    reason,
                )
                .await;
            tracing::info!(device_id = %qr.device_id, transaction_id = %qr.transaction_id, reason = label, ?outcome, "dynamic QR cleared");
            if let Err(err) = self
                .inner
                .store
                .close_qr_request(
                    &qr.device_id,
                    &qr.request_id,
                    label,
                    self.inner.clock.now_ms(),
                )
                .await
            {
                tracing::error!(error = %err, "closing a dynamic QR failed");
            }
        }
    }
}
