//! Claims for provisioning by claim: an operator creates one per production batch (its
//! secret shown once), lists them with their uses, revokes one, sees the serials it
//! provisioned, and allows a serial to be provisioned again. The devices' side is MQTT
//! (`gema_gateway::claims`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::{Page, PageParams};

/// A claim to create. Give exactly one of `serial_pattern` and `serials`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClaim {
    /// The batch, as the operator calls it (1-100 characters).
    pub name: String,
    /// A glob over serials: `*` any run of characters, `?` one (`SB24A-*`).
    pub serial_pattern: Option<String>,
    /// Exactly these serials (1-10,000).
    pub serials: Option<Vec<String>>,
    /// How many devices it may provision (1-1,000,000).
    pub max_uses: i64,
    /// When it stops working (RFC 3339; at most five years away).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// A claim (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct Claim {
    pub id: String,
    pub name: String,
    /// The MQTT user name devices connect with: `claim:<id>`.
    pub username: String,
    pub serial_pattern: Option<String>,
    pub serials: Option<Vec<String>>,
    pub max_uses: i64,
    pub uses: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// `active` | `revoked`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<gema_store::Claim> for Claim {
    fn from(c: gema_store::Claim) -> Self {
        let (serial_pattern, serials) = match c.serials {
            gema_store::ClaimSerials::Pattern(p) => (Some(p), None),
            gema_store::ClaimSerials::List(l) => (None, Some(l)),
        };
        Claim {
            username: gema_firmware_protocol::claim::claim_username(&c.id),
            id: c.id,
            name: c.name,
            serial_pattern,
            serials,
            max_uses: c.max_uses,
            uses: c.uses,
            expires_at: c.expires_at,
            status: c.status.as_str().to_owned(),
            created_at: c.created_at,
            revoked_at: c.revoked_at,
        }
    }
}

/// A claim just created, with its secret: shown this once, never again.
#[derive(Serialize, ToSchema)]
pub struct IssuedClaim {
    pub claim: Claim,
    /// The MQTT password of claim sessions.
    pub secret: String,
    /// Where devices connect (MQTT over TLS).
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// PEM of the CA the broker's certificate chains to, for the devices to trust.
    pub ca_certificate_pem: String,
}

/// The claim, never its secret.
impl std::fmt::Debug for IssuedClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedClaim")
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

/// A serial a claim provisioned.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimProvisioning {
    pub serial: String,
    pub claim_id: String,
    pub device_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub provisioned_at: OffsetDateTime,
    /// How many times it was provisioned.
    pub times: i64,
    /// An operator allowed it once more and it has not used that yet.
    pub reprovision_allowed: bool,
}

impl From<gema_store::ClaimProvisioning> for ClaimProvisioning {
    fn from(p: gema_store::ClaimProvisioning) -> Self {
        ClaimProvisioning {
            serial: p.serial,
            claim_id: p.claim_id,
            device_id: p.device_id,
            provisioned_at: p.provisioned_at,
            times: p.times,
            reprovision_allowed: p.reprovision_allowed,
        }
    }
}

#[utoipa::path(post, path = "/claims", tag = "claims", request_body = CreateClaim,
    responses((status = 201, description = "The secret is shown this once", body = IssuedClaim),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateClaim>,
) -> ApiResult<(StatusCode, Json<IssuedClaim>)> {
    let issued = state
        .claims
        .create(gema_gateway::claims::ClaimInput {
            name: body.name,
            serial_pattern: body.serial_pattern,
            serials: body.serials,
            max_uses: body.max_uses,
            expires_at: body.expires_at,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedClaim {
            claim: issued.claim.into(),
            secret: issued.secret.expose().to_owned(),
            mqtt_host: state.provisioning.mqtt_host.clone(),
            mqtt_port: state.provisioning.mqtt_port,
            ca_certificate_pem: state.provisioning.ca_certificate_pem.clone(),
        }),
    ))
}

#[utoipa::path(get, path = "/claims", tag = "claims", params(PageParams),
    responses((status = 200, body = Page<Claim>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Claim>>> {
    let claims = state.claims.list(&page.to_request()?).await?;
    Ok(Json(Page::from_store(claims, Claim::from)))
}

#[utoipa::path(get, path = "/claims/{id}", tag = "claims", params(("id" = String, Path)),
    responses((status = 200, body = Claim), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Claim>> {
    Ok(Json(state.claims.claim(&id).await?.into()))
}

#[utoipa::path(post, path = "/claims/{id}/revoke", tag = "claims", params(("id" = String, Path)),
    responses((status = 200, description = "No device connects with it any more; devices it \
        provisioned keep their own credentials", body = Claim),
        (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Claim>> {
    Ok(Json(state.claims.revoke(&id).await?.into()))
}

#[utoipa::path(get, path = "/claims/{id}/provisionings", tag = "claims",
    params(("id" = String, Path)),
    responses((status = 200, description = "By serial", body = Vec<ClaimProvisioning>),
        (status = 404, body = ErrorBody)))]
pub async fn provisionings(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<ClaimProvisioning>>> {
    Ok(Json(
        state
            .claims
            .provisionings(&id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/claims/provisionings/{serial}/allow-reprovision", tag = "claims",
    params(("serial" = String, Path)),
    responses((status = 200, description = "The serial may be provisioned by claim once more; \
        its device keeps its id and gets a new secret", body = ClaimProvisioning),
        (status = 404, description = "Never provisioned by claim", body = ErrorBody)))]
pub async fn allow_reprovision(
    State(state): State<AppState>,
    Path(serial): Path<String>,
) -> ApiResult<Json<ClaimProvisioning>> {
    Ok(Json(state.claims.allow_reprovision(&serial).await?.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_claims_debug_never_prints_its_secret() {
        let issued = IssuedClaim {
            claim: Claim {
                id: "clm_1".into(),
                name: "batch 7".into(),
                username: "claim:clm_1".into(),
                serial_pattern: None,
                serials: None,
                max_uses: 10,
                uses: 0,
                expires_at: OffsetDateTime::UNIX_EPOCH,
                status: "active".into(),
                created_at: OffsetDateTime::UNIX_EPOCH,
                revoked_at: None,
            },
            secret: "claim-secret-shown-once".into(),
            mqtt_host: "gema.example".into(),
            mqtt_port: 8883,
            ca_certificate_pem: String::new(),
        };
        let shown = format!("{issued:?}");
        assert!(!shown.contains("claim-secret-shown-once"), "{shown}");
        assert!(shown.contains("clm_1"), "{shown}");
    }
}
