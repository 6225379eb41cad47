//! The glue of provisioning by claim between the broker and the gateway: a claim session's
//! login (`claim:<claim id>` and the claim's secret) is checked by `gateway::claims`, and
//! its requests (on `provisioning/<serial>/up`) are answered by it and published back to
//! that session alone (`provisioning/<serial>/down`).

use std::time::Duration;

use gema_broker::{AuthRefusal, BrokerHandle, DeliveryOutcome, Identity, ProvisioningRequest};
use gema_gateway::claims::{ClaimCheck, Claims};
use tokio::sync::mpsc;

/// How long an answer waits for the device's PUBACK before it is logged as undelivered.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// A claim session's CONNECT: the claim's secret, and a claim that can still provision
/// (active, unexpired, uses left: an exhausted claim is refused here already).
pub async fn authenticate(
    claims: &Claims,
    claim_id: &str,
    password: &str,
) -> Result<Identity, AuthRefusal> {
    let check = claims
        .check_secret(claim_id, password)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "claim authentication could not reach the store");
            AuthRefusal::Unavailable
        })?;
    match check {
        ClaimCheck::Valid => Ok(Identity::Claim(claim_id.to_owned())),
        ClaimCheck::Wrong | ClaimCheck::Unknown => Err(AuthRefusal::BadCredentials),
        ClaimCheck::Revoked | ClaimCheck::Expired | ClaimCheck::Exhausted => {
            tracing::info!(claim_id, ?check, "claim session refused");
            Err(AuthRefusal::NotAuthorized)
        }
    }
}

/// Answers claim sessions' requests as they come, each on a task of its own (a request
/// waits on a slow hash and a transaction; others need not wait behind it).
pub fn answer_requests(
    mut requests: mpsc::Receiver<ProvisioningRequest>,
    claims: Claims,
    broker: BrokerHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let claims = claims.clone();
            let broker = broker.clone();
            tokio::spawn(async move {
                let response = claims
                    .handle_request(&request.claim_id, &request.serial, &request.payload)
                    .await;
                let receipt = match broker
                    .answer_provisioning(&request.serial, response.encode().into())
                {
                    Ok(receipt) => receipt,
                    Err(err) => {
                        tracing::warn!(serial = %request.serial, error = %err, "provisioning answer not published");
                        return;
                    }
                };
                match tokio::time::timeout(ANSWER_WAIT, receipt.outcome()).await {
                    Ok(DeliveryOutcome::Acknowledged | DeliveryOutcome::Sent) => {}
                    Ok(other) => {
                        tracing::info!(serial = %request.serial, outcome = ?other, "provisioning answer not delivered");
                    }
                    Err(_) => {
                        tracing::info!(serial = %request.serial, "provisioning answer not acknowledged in time");
                    }
                }
            });
        }
    })
}
