//! The device registry: register a device (issuing its MQTT secret), list and read devices
//! with their health summary, bind to and unbind from a terminal, binding history, rotate
//! and revoke the secret; sign the device's CSR with the device CA, list and revoke its
//! certificates.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_firmware_protocol::topic;
use gema_gateway::IssuedCredential;
use gema_gateway::registry::DeviceInput;
use gema_store::{DeviceFilter, DevicePatch};

use crate::authz::MerchantScope;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::device_ops::HealthQuery;
use crate::views::registry::{
    BindDevice, CreateDevice, Device, DeviceBinding, DeviceCertificate, DeviceCredentials,
    DeviceQuery, IssuedCertificate, IssuedDevice, SignCertificate, UnbindQuery, UpdateDevice,
};
use crate::views::{Page, PageParams};

fn issued(state: &AppState, device: gema_store::Device, issued: IssuedCredential) -> IssuedDevice {
    let p = &state.provisioning;
    IssuedDevice {
        credentials: DeviceCredentials {
            mqtt_host: p.mqtt_host.clone(),
            mqtt_port: p.mqtt_port,
            tls: true,
            client_id: issued.username.clone(),
            secret: issued.secret.expose().to_owned(),
            ca_certificate_path: p.ca_certificate_path.clone(),
            ca_certificate_pem: p.ca_certificate_pem.clone(),
            topic_prefix: topic::device_prefix(&device.id),
            subscribe_filter: format!("{}#", topic::downlink_prefix(&device.id)),
            publish_prefix: topic::uplink_prefix(&device.id),
            username: issued.username,
        },
        device: device.into(),
    }
}

#[utoipa::path(post, path = "/devices", tag = "devices", request_body = CreateDevice,
    responses(
        (status = 201, description = "Registered; the response carries the secret, shown only here",
            body = IssuedDevice),
        (status = 400, body = ErrorBody),
        (status = 409, description = "Serial already registered", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateDevice>,
) -> ApiResult<(StatusCode, Json<IssuedDevice>)> {
    let (device, credential) = state
        .registry
        .create_device(DeviceInput {
            serial: body.serial,
            model: body.model,
            firmware_version: body.firmware_version,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(issued(&state, device, credential)),
    ))
}

#[utoipa::path(get, path = "/devices", tag = "devices",
    params(PageParams, DeviceQuery, HealthQuery),
    responses((status = 200, description = "Each device with its `health_summary`",
        body = Page<Device>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<DeviceQuery>,
    ApiQuery(health): ApiQuery<HealthQuery>,
    scope: MerchantScope,
) -> ApiResult<Json<Page<Device>>> {
    let filter = DeviceFilter {
        terminal_id: query.terminal_id,
        status: query.status.map(Into::into),
        merchant_id: scope.apply(None)?,
    };
    let devices = state
        .device_ops
        .devices_with_health(&filter, &page.to_request()?, health.health.map(Into::into))
        .await?;
    Ok(Json(Page::from_store(devices, |(device, health)| Device {
        health_summary: Some((&health).into()),
        ..device.into()
    })))
}

#[utoipa::path(get, path = "/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, description = "The device with its `health_summary`", body = Device),
        (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Device>> {
    let device = state.registry.device(&id).await?;
    let mut health = state
        .device_ops
        .health_of(std::slice::from_ref(&device.id))
        .await?;
    Ok(Json(Device {
        health_summary: health.remove(&device.id).as_ref().map(Into::into),
        ..device.into()
    }))
}

#[utoipa::path(patch, path = "/devices/{id}", tag = "devices", params(("id" = String, Path)),
    request_body = UpdateDevice,
    responses((status = 200, body = Device), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateDevice>,
) -> ApiResult<Json<Device>> {
    let patch = DevicePatch {
        model: body.model,
        firmware_version: body.firmware_version,
        status: body.status.map(Into::into),
    };
    Ok(Json(state.registry.update_device(&id, patch).await?.into()))
}

#[utoipa::path(post, path = "/devices/{id}/bind", tag = "devices", params(("id" = String, Path)),
    request_body = BindDevice,
    responses(
        (status = 200, description = "Bound (binding again to the same terminal changes nothing)",
            body = Device),
        (status = 404, description = "Unknown device or terminal", body = ErrorBody),
        (status = 409, description = "Device or terminal already bound, merchant not approved, device disabled",
            body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn bind(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BindDevice>,
) -> ApiResult<Json<Device>> {
    Ok(Json(
        state
            .registry
            .bind_device(&id, &body.terminal_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/devices/{id}/unbind", tag = "devices",
    params(("id" = String, Path), UnbindQuery),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody),
        (status = 409, description = "Not bound", body = ErrorBody)))]
pub async fn unbind(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<UnbindQuery>,
) -> ApiResult<Json<Device>> {
    Ok(Json(
        state
            .registry
            .unbind_device(&id, query.kick.unwrap_or(false))
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/devices/{id}/bindings", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, description = "Binding history, oldest first", body = Vec<DeviceBinding>),
        (status = 404, body = ErrorBody)))]
pub async fn bindings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    scope: MerchantScope,
) -> ApiResult<Json<Vec<DeviceBinding>>> {
    let mut history = state.registry.device_bindings(&id).await?;
    // A merchant user sees the device's time at its own terminals, not its earlier owners'.
    if let Some(mine) = &scope.0 {
        let mut own = Vec::with_capacity(history.len());
        for binding in history {
            if crate::authz::owner_of_terminal(&state, &binding.terminal_id)
                .await?
                .as_deref()
                == Some(mine.as_str())
            {
                own.push(binding);
            }
        }
        history = own;
    }
    Ok(Json(history.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/devices/{id}/credentials/rotate", tag = "devices",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "A new secret, shown only here; the old one no longer works",
            body = IssuedDevice),
        (status = 404, body = ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<IssuedDevice>> {
    let (device, credential) = state.registry.rotate_device_secret(&id).await?;
    Ok(Json(issued(&state, device, credential)))
}

#[utoipa::path(post, path = "/devices/{id}/credentials/revoke", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 200, description = "Revoked; rotate issues a new secret", body = Device),
        (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Device>> {
    Ok(Json(state.registry.revoke_device_secret(&id).await?.into()))
}

#[utoipa::path(post, path = "/devices/{id}/certificates", tag = "devices",
    params(("id" = String, Path)), request_body = SignCertificate,
    responses(
        (status = 201, description = "Signed by the device CA; the key stays on the device",
            body = IssuedCertificate),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No device CA key, or the device is disabled or revoked",
            body = ErrorBody),
        (status = 422, description = "A CSR that is malformed, not self-signed, with a key other \
            than ECDSA P-256 or Ed25519, or naming another device (field `csr`)", body = ErrorBody)))]
pub async fn sign_certificate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SignCertificate>,
) -> ApiResult<(StatusCode, Json<IssuedCertificate>)> {
    let issued = state
        .certificates
        .issue(&id, &body.csr, gema_gateway::certificates::IssuedVia::Api)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedCertificate {
            certificate_pem: issued.certificate_pem,
            chain_pem: issued.chain_pem,
            serial: issued.record.serial,
            not_after: issued.record.not_after,
        }),
    ))
}

#[utoipa::path(get, path = "/devices/{id}/certificates", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 200, description = "Oldest first", body = Vec<DeviceCertificate>),
        (status = 404, body = ErrorBody)))]
pub async fn certificates(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<DeviceCertificate>>> {
    Ok(Json(
        state
            .certificates
            .list(&id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/devices/{id}/certificates/{serial}/revoke", tag = "devices",
    params(("id" = String, Path), ("serial" = String, Path)),
    responses(
        (status = 200, description = "Revoked: the live session ends and CONNECT with it is refused",
            body = DeviceCertificate),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_certificate(
    State(state): State<AppState>,
    Path((id, serial)): Path<(String, String)>,
) -> ApiResult<Json<DeviceCertificate>> {
    Ok(Json(state.certificates.revoke(&id, &serial).await?.into()))
}
