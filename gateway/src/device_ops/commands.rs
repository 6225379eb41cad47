//! Commands: create, deliver (now, on connect, by the sweep), results from the device,
//! expiry and timeouts. See the module docs of [`super`] for the states.

use std::time::Duration;

use gema_firmware_protocol::message::{
    Command, CommandAction, CommandState, Downlink, DownlinkBody, Envelope,
};
use gema_firmware_protocol::{Encoding, encode};
use gema_store::{CommandRecord, CommandStatus, CommandUpdate, NewCommand, Page, PageRequest};

use super::{CommandInput, DeviceOps, action_name, duration_ms};
use crate::error::{GatewayError, GatewayResult};
use crate::transport::PublishOutcome;

impl DeviceOps {
    // Commands.

    /// Queues a command and, if the device is connected, sends it now. An interactive
    /// command to an offline device is stored as `failed` at once.
    #[tracing::instrument(skip_all, fields(device_id = device_id, command_id = tracing::field::Empty))]
    pub async fn send_command(
        &self,
        device_id: &str,
        input: CommandInput,
    ) -> GatewayResult<CommandRecord> {
        self.inner.store.get_device(device_id).await?;
        input
            .action
            .validate()
            .map_err(|err| GatewayError::invalid(err.field, err.to_string()))?;
        let settings = &self.inner.settings;
        let ttl = input.expires_in.unwrap_or(settings.command_default_ttl);
        if ttl < Duration::from_secs(1) || ttl > settings.command_max_ttl {
            return Err(GatewayError::invalid(
                "expires_in_secs",
                format!(
                    "must be between 1 and {} seconds",
                    settings.command_max_ttl.as_secs()
                ),
            ));
        }
        let now = self.inner.clock.now_ms();
        let expires_at_ms = now + duration_ms(ttl);
        let here = self.inner.transport.is_connected(device_id);
        let elsewhere = !here && self.inner.cluster.held_elsewhere(device_id).await.is_some();
        let offline = !here && !elsewhere;
        let (status, message) = if input.interactive && offline {
            (
                CommandStatus::Failed,
                Some("the device is offline (interactive command)".to_string()),
            )
        } else {
            (CommandStatus::Queued, None)
        };
        let record = self
            .inner
            .store
            .create_command(NewCommand {
                device_id: device_id.to_string(),
                name: action_name(&input.action).to_string(),
                action: serde_json::to_string(&input.action)
                    .map_err(|err| GatewayError::Internal(err.to_string()))?,
                interactive: input.interactive,
                status,
                message,
                expires_at_ms,
                result_deadline_ms: expires_at_ms + duration_ms(settings.command_result_timeout),
                now_ms: now,
            })
            .await?;
        tracing::Span::current().record("command_id", record.id.as_str());
        metrics::counter!("gema_commands_total", "name" => action_name(&input.action)).increment(1);
        if record.status == CommandStatus::Queued && elsewhere {
            self.inner.cluster.wake_elsewhere(device_id);
        } else if record.status == CommandStatus::Queued && here {
            self.deliver_command(&record).await;
            return Ok(self.inner.store.get_command(device_id, &record.id).await?);
        }
        Ok(record)
    }

    #[tracing::instrument(skip_all, fields(device_id = device_id, command_id = command_id))]
    pub async fn command(&self, device_id: &str, command_id: &str) -> GatewayResult<CommandRecord> {
        self.inner.store.get_device(device_id).await?;
        Ok(self.inner.store.get_command(device_id, command_id).await?)
    }

    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn commands(
        &self,
        device_id: &str,
        page: &PageRequest,
    ) -> GatewayResult<Page<CommandRecord>> {
        self.inner.store.get_device(device_id).await?;
        Ok(self.inner.store.list_commands(device_id, page).await?)
    }

    /// Expires what is due, sends queued commands to connected devices, and tells devices
    /// to clear dynamic QRs whose transaction was paid or expired. The daemon does this
    /// every `command_sweep_interval` in two parts: [`DeviceOps::close_due`] on the one node
    /// holding the cluster's command-sweep lease, the sends on every node for the devices
    /// it holds. Tests call it after moving their clock.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_commands(&self) {
        self.close_due().await;
        self.deliver_due_commands(None).await;
        self.deliver_due_qrs(None).await;
    }

    /// The part of the command sweep that must run once per cluster: closes commands past
    /// their deadlines and clears dynamic QRs whose transaction was paid or expired.
    #[tracing::instrument(skip_all)]
    pub async fn close_due(&self) {
        self.close_finished_qrs().await;
        match self
            .inner
            .store
            .expire_commands(self.inner.clock.now_ms())
            .await
        {
            Ok(changed) => {
                for c in changed {
                    metrics::counter!("gema_command_results_total", "status" => c.status.as_str())
                        .increment(1);
                    tracing::info!(command_id = %c.id, device_id = %c.device_id, status = c.status.as_str(), "command closed");
                }
            }
            Err(err) => tracing::error!(error = %err, "expiring commands failed"),
        }
    }

    /// Delivers the due commands (of one device, or all) whose device this node holds.
    /// Every page is read: most due commands may be of devices offline or on other nodes,
    /// and reading only the oldest page would leave a connected device's retry behind them
    /// until it expired.
    pub(super) async fn deliver_due_commands(&self, device_id: Option<&str>) {
        const PAGE: u32 = 200;
        let now_ms = self.inner.clock.now_ms();
        let mut after: Option<String> = None;
        loop {
            let page = match self
                .inner
                .store
                .due_commands(device_id, now_ms, after.as_deref(), PAGE)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(error = %err, "reading due commands failed");
                    return;
                }
            };
            for command in &page {
                if self.inner.transport.is_connected(&command.device_id) {
                    self.deliver_command(command).await;
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => return,
            }
        }
    }

    /// Publishes a queued command; `sent` once MQTT acknowledges it. Offline: it waits (an
    /// interactive one fails). At least once: a retry re-sends the same `command_id`, on
    /// which the device deduplicates. A command already delivered but without a final
    /// result is re-sent on the device's connect (its answer may have been lost); that
    /// re-send changes nothing here, the device's repeated answer does.
    async fn deliver_command(&self, record: &CommandRecord) {
        let Ok(action) = serde_json::from_str::<CommandAction>(&record.action) else {
            tracing::error!(command_id = %record.id, "stored command action is unreadable");
            return;
        };
        let now = self.inner.clock.now_ms();
        let downlink = Downlink {
            envelope: Envelope::new(record.id.clone(), now),
            body: DownlinkBody::Command(Command {
                command_id: record.id.clone(),
                expires_at: record.expires_at_ms,
                action,
            }),
        };
        if downlink.is_expired(now) {
            return; // the sweep closes it
        }
        let encoding = Encoding::Json;
        let topic = downlink.topic(&record.device_id, encoding);
        let outcome = self
            .inner
            .transport
            .publish(
                &record.device_id,
                &topic,
                encode(&downlink, encoding),
                self.inner.settings.publish_timeout,
            )
            .await;
        let (to, message) = match outcome {
            PublishOutcome::Acknowledged => (CommandStatus::Sent, None),
            PublishOutcome::Offline if record.interactive => (
                CommandStatus::Failed,
                Some("the device went offline (interactive command)".to_string()),
            ),
            PublishOutcome::Offline => return,
            PublishOutcome::NotSubscribed => (
                CommandStatus::Queued,
                Some("the device is not subscribed to its downlink topics".to_string()),
            ),
            PublishOutcome::Failed(reason) => (CommandStatus::Queued, Some(reason)),
        };
        let update = CommandUpdate {
            from: vec![CommandStatus::Queued],
            to,
            result: None,
            message,
            at_ms: now,
            attempt: true,
        };
        if let Err(err) = self.inner.store.update_command(&record.id, update).await {
            tracing::error!(command_id = %record.id, error = %err, "recording a command delivery failed");
        }
    }

    /// A device's `command_result`: moves its own command forward (never backward, never
    /// another device's).
    pub(super) async fn command_result(
        &self,
        device_id: &str,
        result: gema_firmware_protocol::CommandResult,
        now: i64,
    ) -> Result<(), gema_store::StoreError> {
        use CommandStatus as S;
        if let Err(err) = self
            .inner
            .store
            .get_command(device_id, &result.command_id)
            .await
        {
            tracing::warn!(device_id, command_id = %result.command_id, error = %err, "result for an unknown command");
            return Ok(());
        }
        let (from, to) = match result.state {
            CommandState::Acknowledged => (vec![S::Queued, S::Sent], S::Acknowledged),
            CommandState::Succeeded => (vec![S::Queued, S::Sent, S::Acknowledged], S::Succeeded),
            CommandState::Failed => (vec![S::Queued, S::Sent, S::Acknowledged], S::Failed),
            CommandState::Expired => (vec![S::Queued, S::Sent, S::Acknowledged], S::Expired),
        };
        let payload = (!result.result.is_empty())
            .then(|| serde_json::to_string(&result.result).unwrap_or_default());
        let (record, changed) = self
            .inner
            .store
            .update_command(
                &result.command_id,
                CommandUpdate {
                    from,
                    to,
                    result: payload,
                    message: result.message,
                    at_ms: now,
                    attempt: false,
                },
            )
            .await?;
        if changed && to.is_final() {
            metrics::counter!("gema_command_results_total", "status" => to.as_str()).increment(1);
        }
        tracing::info!(device_id, command_id = %record.id, status = record.status.as_str(), changed, "command result");
        Ok(())
    }
}
