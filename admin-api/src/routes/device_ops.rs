//! Device operations under `/api/v1/devices/{id}/…`: status and health, heartbeat history,
//! desired/reported config (versioned PATCH, push retry), the MQTT message trace and
//! commands. The JSON shapes are in [`crate::views::device_ops`].

use axum::Json;
use axum::extract::{Path, State};
use gema_gateway::device_ops::{self as ops, ConfigPatch};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::device_ops::{
    CommandView, ConfigView, CreateCommand, DeviceStatusView, HeartbeatView, LimitQuery,
    MessageView, UpdateConfig,
};
use crate::views::{Page, PageParams};

#[utoipa::path(get, path = "/devices/{id}/status", tag = "device operations",
    operation_id = "device_status", params(("id" = String, Path)),
    responses((status = 200, body = DeviceStatusView), (status = 404, body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceStatusView>> {
    let report = state.device_ops.status(&id).await?;
    Ok(Json(DeviceStatusView {
        device_id: id,
        health: (&report.health).into(),
        presence: report.presence.map(Into::into),
        last_heartbeat: report.heartbeat.map(Into::into),
        config: report.config.into(),
    }))
}

#[utoipa::path(get, path = "/devices/{id}/heartbeats", tag = "device operations",
    operation_id = "device_heartbeats", params(("id" = String, Path), LimitQuery),
    responses((status = 200, description = "Newest first", body = Vec<HeartbeatView>),
        (status = 404, body = ErrorBody)))]
pub async fn heartbeats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> ApiResult<Json<Vec<HeartbeatView>>> {
    let list = state
        .device_ops
        .heartbeats(&id, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/devices/{id}/config", tag = "device operations",
    operation_id = "device_config_get", params(("id" = String, Path)),
    responses((status = 200, body = ConfigView), (status = 404, body = ErrorBody)))]
pub async fn config(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ConfigView>> {
    Ok(Json(state.device_ops.config(&id).await?.into()))
}

#[utoipa::path(patch, path = "/devices/{id}/config", tag = "device operations",
    operation_id = "device_config_update", params(("id" = String, Path)),
    request_body = UpdateConfig,
    responses(
        (status = 200, description = "Stored as the next version and pushed to the device \
            (now if connected, else when it connects)", body = ConfigView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`stale_version`: the config changed since you read it",
            body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConfig>,
) -> ApiResult<Json<ConfigView>> {
    let patch = ConfigPatch {
        volume: body.volume,
        language: body.language.map(Into::into),
        heartbeat_interval_s: body.heartbeat_interval_s,
        qr_timeout_s: body.qr_timeout_s,
        quiet_hours: body.quiet_hours.map(|q| {
            q.map(|q| gema_firmware_protocol::QuietHours {
                start_minute: q.start_minute,
                end_minute: q.end_minute,
                utc_offset_minutes: q.utc_offset_minutes,
                volume: q.volume,
            })
        }),
    };
    Ok(Json(
        state
            .device_ops
            .set_config(&id, body.version, patch)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/devices/{id}/config/push", tag = "device operations",
    operation_id = "device_config_push_retry", params(("id" = String, Path)),
    responses(
        (status = 200, description = "Sent again now if the device is connected, else due \
            when it connects", body = ConfigView),
        (status = 404, description = "Unknown device, or no desired config set", body = ErrorBody)))]
pub async fn retry_config_push(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ConfigView>> {
    Ok(Json(state.device_ops.retry_config_push(&id).await?.into()))
}

#[utoipa::path(get, path = "/devices/{id}/messages", tag = "device operations",
    operation_id = "device_messages", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The device's last MQTT messages, both directions, newest \
            first. Kept in memory on this node (lost on restart), the last \
            `devices.trace_per_device` per device.", body = Vec<MessageView>),
        (status = 404, body = ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<MessageView>>> {
    state.registry.device(&id).await?;
    Ok(Json(
        state
            .device_ops
            .messages(&id)
            .into_iter()
            .map(MessageView::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/devices/{id}/commands", tag = "device operations",
    operation_id = "device_command_create", params(("id" = String, Path)),
    request_body = CreateCommand,
    responses(
        (status = 201, description = "Queued (sent at once when the device is connected); an \
            interactive command to an offline device is `failed` at once", body = CommandView),
        (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_command(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateCommand>,
) -> ApiResult<(axum::http::StatusCode, Json<CommandView>)> {
    let command = state
        .device_ops
        .send_command(
            &id,
            ops::CommandInput {
                action: body.action.into(),
                expires_in: body.expires_in_secs.map(std::time::Duration::from_secs),
                interactive: body.interactive,
            },
        )
        .await?;
    Ok((axum::http::StatusCode::CREATED, Json(command.into())))
}

#[utoipa::path(get, path = "/devices/{id}/commands", tag = "device operations",
    operation_id = "device_command_list", params(("id" = String, Path), PageParams),
    responses((status = 200, description = "Oldest first", body = Page<CommandView>),
        (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn list_commands(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<CommandView>>> {
    let commands = state.device_ops.commands(&id, &page.to_request()?).await?;
    Ok(Json(Page::from_store(commands, CommandView::from)))
}

#[utoipa::path(get, path = "/devices/{id}/commands/{command_id}", tag = "device operations",
    operation_id = "device_command_get",
    params(("id" = String, Path), ("command_id" = String, Path)),
    responses((status = 200, body = CommandView), (status = 404, body = ErrorBody)))]
pub async fn get_command(
    State(state): State<AppState>,
    Path((id, command_id)): Path<(String, String)>,
) -> ApiResult<Json<CommandView>> {
    Ok(Json(
        state.device_ops.command(&id, &command_id).await?.into(),
    ))
}
