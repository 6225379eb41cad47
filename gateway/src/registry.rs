//! The registry: merchants → outlets → terminals → devices, and device credentials.
//!
//! Every operation validates its input (naming the field at fault), then hands one atomic
//! change to the store. Secrets are generated here, returned once in an
//! [`IssuedCredential`], and only their hash is stored.

use std::sync::Arc;

use gema_store::{
    Device, DeviceBinding, DeviceFilter, DevicePatch, Merchant, MerchantFilter, MerchantPatch,
    MerchantStatus, NewDevice, NewMerchant, NewOutlet, NewTerminal, Outlet, OutletFilter,
    OutletPatch, Page, PageRequest, Store, Terminal, TerminalFilter, TerminalPatch,
};

use crate::credentials::{self, SecretString, SecretVerifier, Verified};
use crate::error::{GatewayError, GatewayResult};
use crate::revocations::RevocationList;
use crate::transport::DeviceTransport;
use crate::validate;

const NAME_MAX: usize = 100;
const REASON_MAX: usize = 500;

/// A device secret, shown to the caller exactly once.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    /// The MQTT username (and client id): the device id.
    pub username: String,
    pub secret: SecretString,
}

/// A new device as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInput {
    pub serial: String,
    pub model: String,
    pub firmware_version: Option<String>,
}

/// The result of checking a device's MQTT password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCheck {
    Valid,
    /// Wrong secret.
    Wrong,
    /// No such device.
    UnknownDevice,
    /// The credential was revoked.
    Revoked,
    /// The device is disabled.
    Disabled,
}

/// The registry service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// Where live sessions are ended when a credential stops being valid; `None` when no
    /// device can be connected (the CLI's offline commands, tests of the registry alone).
    transport: Option<Arc<dyn DeviceTransport>>,
    /// Checks MQTT passwords: bounded slow hashes, recent successes remembered.
    verifier: Arc<SecretVerifier>,
    /// Where a revoked device's certificates go at once (the broker's authenticator reads
    /// the same list).
    revocations: RevocationList,
}

impl Registry {
    /// A registry that reaches no device: rotating, revoking, disabling or unbinding with a
    /// kick ends no live session (for the CLI's offline commands and tests).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            transport: None,
            verifier: Arc::default(),
            revocations: RevocationList::default(),
        }
    }

    /// A registry that ends live device sessions through `transport` when a credential is
    /// rotated or revoked, a device is disabled, or unbound with a kick (the daemon's, built
    /// by [`crate::Gateway::build`]).
    pub fn connected(store: Arc<dyn Store>, transport: Arc<dyn DeviceTransport>) -> Self {
        Self {
            store,
            transport: Some(transport),
            verifier: Arc::default(),
            revocations: RevocationList::default(),
        }
    }

    /// This registry puts a revoked device's certificates on `revocations`.
    pub fn with_revocations(mut self, revocations: RevocationList) -> Self {
        self.revocations = revocations;
        self
    }

    fn kick(&self, device_id: &str, why: &str) {
        if let Some(transport) = &self.transport
            && transport.disconnect(device_id)
        {
            tracing::info!(device_id, why, "live device session ended");
        }
    }

    // ---- merchants ------------------------------------------------------------------

    #[tracing::instrument(skip_all)]
    pub async fn create_merchant(&self, input: NewMerchant) -> GatewayResult<Merchant> {
        let merchant = NewMerchant {
            name: validate::text("name", &input.name, NAME_MAX)?,
            email: validate::email(input.email.as_deref())?,
            phone: validate::phone(input.phone.as_deref())?,
        };
        let merchant = self.store.create_merchant(merchant).await?;
        tracing::info!(merchant_id = %merchant.id, "merchant created");
        Ok(merchant)
    }

    #[tracing::instrument(skip_all, fields(merchant_id = id))]
    pub async fn merchant(&self, id: &str) -> GatewayResult<Merchant> {
        Ok(self.store.get_merchant(id).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn merchants(
        &self,
        filter: &MerchantFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Merchant>> {
        Ok(self.store.list_merchants(filter, page).await?)
    }

    #[tracing::instrument(skip_all, fields(merchant_id = id))]
    pub async fn update_merchant(&self, id: &str, patch: MerchantPatch) -> GatewayResult<Merchant> {
        let patch = MerchantPatch {
            name: patch
                .name
                .map(|n| validate::text("name", &n, NAME_MAX))
                .transpose()?,
            email: patch
                .email
                .map(|e| validate::email(e.as_deref()))
                .transpose()?,
            phone: patch
                .phone
                .map(|p| validate::phone(p.as_deref()))
                .transpose()?,
        };
        Ok(self.store.update_merchant(id, patch).await?)
    }

    /// pending | suspended → approved.
    #[tracing::instrument(skip_all, fields(merchant_id = id))]
    pub async fn approve_merchant(&self, id: &str) -> GatewayResult<Merchant> {
        self.transition(
            id,
            &[MerchantStatus::Pending, MerchantStatus::Suspended],
            MerchantStatus::Approved,
            None,
        )
        .await
    }

    /// pending → rejected, with a reason the merchant can be told.
    #[tracing::instrument(skip_all, fields(merchant_id = id))]
    pub async fn reject_merchant(&self, id: &str, reason: &str) -> GatewayResult<Merchant> {
        let reason = validate::text("reason", reason, REASON_MAX)?;
        self.transition(
            id,
            &[MerchantStatus::Pending],
            MerchantStatus::Rejected,
            Some(reason),
        )
        .await
    }

    /// approved → suspended, with a reason.
    #[tracing::instrument(skip_all, fields(merchant_id = id))]
    pub async fn suspend_merchant(&self, id: &str, reason: &str) -> GatewayResult<Merchant> {
        let reason = validate::text("reason", reason, REASON_MAX)?;
        self.transition(
            id,
            &[MerchantStatus::Approved],
            MerchantStatus::Suspended,
            Some(reason),
        )
        .await
    }

    async fn transition(
        &self,
        id: &str,
        from: &[MerchantStatus],
        to: MerchantStatus,
        reason: Option<String>,
    ) -> GatewayResult<Merchant> {
        let merchant = self.store.transition_merchant(id, from, to, reason).await?;
        tracing::info!(merchant_id = %id, status = to.as_str(), "merchant status changed");
        Ok(merchant)
    }

    // ---- outlets --------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(merchant_id = %input.merchant_id))]
    pub async fn create_outlet(&self, input: NewOutlet) -> GatewayResult<Outlet> {
        let outlet = NewOutlet {
            merchant_id: input.merchant_id,
            name: validate::text("name", &input.name, NAME_MAX)?,
            address: validate::optional_text("address", input.address.as_deref(), 300)?,
            city: validate::optional_text("city", input.city.as_deref(), NAME_MAX)?,
        };
        Ok(self.store.create_outlet(outlet).await?)
    }

    #[tracing::instrument(skip_all, fields(outlet_id = id))]
    pub async fn outlet(&self, id: &str) -> GatewayResult<Outlet> {
        Ok(self.store.get_outlet(id).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn outlets(
        &self,
        filter: &OutletFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Outlet>> {
        Ok(self.store.list_outlets(filter, page).await?)
    }

    #[tracing::instrument(skip_all, fields(outlet_id = id))]
    pub async fn update_outlet(&self, id: &str, patch: OutletPatch) -> GatewayResult<Outlet> {
        let patch = OutletPatch {
            name: patch
                .name
                .map(|n| validate::text("name", &n, NAME_MAX))
                .transpose()?,
            address: patch
                .address
                .map(|a| validate::optional_text("address", a.as_deref(), 300))
                .transpose()?,
            city: patch
                .city
                .map(|c| validate::optional_text("city", c.as_deref(), NAME_MAX))
                .transpose()?,
        };
        Ok(self.store.update_outlet(id, patch).await?)
    }

    // ---- terminals ------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(outlet_id = %input.outlet_id))]
    pub async fn create_terminal(&self, input: NewTerminal) -> GatewayResult<Terminal> {
        let terminal = NewTerminal {
            outlet_id: input.outlet_id,
            label: validate::terminal_label(&input.label)?,
            name: validate::optional_text("name", input.name.as_deref(), NAME_MAX)?,
            payment_ref: input
                .payment_ref
                .map(|r| validate::code("payment_ref", &r, 64))
                .transpose()?,
            static_qris: input
                .static_qris
                .map(|q| validate::static_qris(&q))
                .transpose()?,
        };
        Ok(self.store.create_terminal(terminal).await?)
    }

    #[tracing::instrument(skip_all, fields(terminal_id = id))]
    pub async fn terminal(&self, id: &str) -> GatewayResult<Terminal> {
        Ok(self.store.get_terminal(id).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn terminals(
        &self,
        filter: &TerminalFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Terminal>> {
        Ok(self.store.list_terminals(filter, page).await?)
    }

    #[tracing::instrument(skip_all, fields(terminal_id = id))]
    pub async fn update_terminal(&self, id: &str, patch: TerminalPatch) -> GatewayResult<Terminal> {
        let patch = TerminalPatch {
            label: patch
                .label
                .map(|l| validate::terminal_label(&l))
                .transpose()?,
            name: patch
                .name
                .map(|n| validate::optional_text("name", n.as_deref(), NAME_MAX))
                .transpose()?,
            payment_ref: patch
                .payment_ref
                .map(|r| r.map(|r| validate::code("payment_ref", &r, 64)).transpose())
                .transpose()?,
            static_qris: patch
                .static_qris
                .map(|q| q.map(|q| validate::static_qris(&q)).transpose())
                .transpose()?,
        };
        Ok(self.store.update_terminal(id, patch).await?)
    }

    // ---- devices --------------------------------------------------------------------

    /// Registers a device and issues its first secret.
    #[tracing::instrument(skip_all, fields(serial = %input.serial))]
    pub async fn create_device(
        &self,
        input: DeviceInput,
    ) -> GatewayResult<(Device, IssuedCredential)> {
        let serial = validate::code("serial", &input.serial, 64)?;
        let model = validate::text("model", &input.model, 64)?;
        let firmware_version =
            validate::optional_text("firmware_version", input.firmware_version.as_deref(), 32)?;
        let secret = credentials::generate_device_secret();
        let device = self
            .store
            .create_device(NewDevice {
                serial,
                model,
                firmware_version,
                secret_hash: credentials::hash_device_secret(&secret),
            })
            .await?;
        tracing::info!(device_id = %device.id, serial = %device.serial, "device registered");
        let issued = IssuedCredential {
            username: device.id.clone(),
            secret,
        };
        Ok((device, issued))
    }

    #[tracing::instrument(skip_all, fields(device_id = id))]
    pub async fn device(&self, id: &str) -> GatewayResult<Device> {
        Ok(self.store.get_device(id).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn devices(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Device>> {
        Ok(self.store.list_devices(filter, page).await?)
    }

    #[tracing::instrument(skip_all, fields(device_id = id))]
    pub async fn update_device(&self, id: &str, patch: DevicePatch) -> GatewayResult<Device> {
        let patch = DevicePatch {
            model: patch
                .model
                .map(|m| validate::text("model", &m, 64))
                .transpose()?,
            firmware_version: patch
                .firmware_version
                .map(|f| validate::optional_text("firmware_version", f.as_deref(), 32))
                .transpose()?,
            status: patch.status,
        };
        let device = self.store.update_device(id, patch).await?;
        if device.status == gema_store::DeviceStatus::Disabled {
            self.kick(id, "device disabled");
        }
        Ok(device)
    }

    #[tracing::instrument(skip_all, fields(device_id = device_id, terminal_id = terminal_id))]
    pub async fn bind_device(&self, device_id: &str, terminal_id: &str) -> GatewayResult<Device> {
        if terminal_id.trim().is_empty() {
            return Err(GatewayError::invalid("terminal_id", "must not be empty"));
        }
        let device = self.store.bind_device(device_id, terminal_id).await?;
        tracing::info!(device_id, terminal_id, "device bound");
        Ok(device)
    }

    /// Unbinds; with `kick`, also ends the device's live session (it reconnects and finds
    /// itself unbound).
    #[tracing::instrument(skip_all, fields(device_id = device_id, kick = kick))]
    pub async fn unbind_device(&self, device_id: &str, kick: bool) -> GatewayResult<Device> {
        let device = self.store.unbind_device(device_id).await?;
        tracing::info!(device_id, kick, "device unbound");
        if kick {
            self.kick(device_id, "unbound with kick");
        }
        Ok(device)
    }

    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn device_bindings(&self, device_id: &str) -> GatewayResult<Vec<DeviceBinding>> {
        Ok(self.store.device_bindings(device_id).await?)
    }

    /// Issues a new secret; the old one stops working at once.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn rotate_device_secret(
        &self,
        device_id: &str,
    ) -> GatewayResult<(Device, IssuedCredential)> {
        let secret = credentials::generate_device_secret();
        let device = self
            .store
            .set_device_secret_hash(device_id, &credentials::hash_device_secret(&secret))
            .await?;
        tracing::info!(device_id, "device secret rotated");
        self.kick(device_id, "secret rotated");
        Ok((
            device,
            IssuedCredential {
                username: device_id.to_string(),
                secret,
            },
        ))
    }

    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn revoke_device_secret(&self, device_id: &str) -> GatewayResult<Device> {
        // The store revokes the device's certificates in the same transaction.
        let device = self.store.revoke_device_secret(device_id).await?;
        tracing::info!(device_id, "device secret revoked");
        let certificates = self.store.device_certificates(device_id).await?;
        self.revocations.insert(
            certificates
                .into_iter()
                .filter(|c| c.status != gema_store::CertificateStatus::Active)
                .map(|c| c.fingerprint),
        );
        self.kick(device_id, "secret revoked");
        Ok(device)
    }

    /// Whether `secret` is the device's current secret. Unknown devices, revoked
    /// credentials and disabled devices all answer `false`.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn verify_device_secret(&self, device_id: &str, secret: &str) -> GatewayResult<bool> {
        Ok(self.check_device_secret(device_id, secret).await? == SecretCheck::Valid)
    }

    /// Checks an MQTT password. The slow hash runs on the blocking pool, one per core at a
    /// time, never on the async threads; a secret verified before against the same stored
    /// hash is recognised without it ([`SecretVerifier`]). An unknown device costs the same
    /// hash as a wrong secret, so timing does not tell which device ids exist.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn check_device_secret(
        &self,
        device_id: &str,
        secret: &str,
    ) -> GatewayResult<SecretCheck> {
        let device = match self.store.get_device(device_id).await {
            Ok(device) => Some(device),
            Err(gema_store::StoreError::NotFound { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        let stored = match &device {
            Some(_) => self.store.device_secret_hash(device_id).await?,
            None => None,
        };
        let verified = self
            .verifier
            .verify(device_id, secret, stored.as_deref(), || {
                DUMMY_HASH.with(Clone::clone)
            })
            .await
            .map_err(|e| GatewayError::Internal(format!("secret check task: {e}")))?;
        let how = match verified {
            Verified::Remembered(_) => "remembered",
            Verified::Hashed(_) => "hashed",
        };
        metrics::counter!("gema_device_secret_checks_total", "how" => how).increment(1);
        let matches = verified.matches();
        Ok(match (device, stored) {
            (None, _) => SecretCheck::UnknownDevice,
            (Some(_), None) => SecretCheck::Revoked,
            (Some(d), Some(_)) if d.status != gema_store::DeviceStatus::Active => {
                SecretCheck::Disabled
            }
            (Some(d), Some(_)) if matches => {
                if d.last_auth != Some(gema_store::AuthMethod::Password) {
                    self.store
                        .set_device_last_auth(device_id, gema_store::AuthMethod::Password)
                        .await?;
                }
                SecretCheck::Valid
            }
            (Some(_), Some(_)) => SecretCheck::Wrong,
        })
    }

    /// Whether a device may connect with a client certificate naming it: it exists, is
    /// active, and its credential is not revoked.
    #[tracing::instrument(skip_all, fields(device_id = device_id))]
    pub async fn device_may_connect(&self, device_id: &str) -> GatewayResult<SecretCheck> {
        let device = match self.store.get_device(device_id).await {
            Ok(device) => device,
            Err(gema_store::StoreError::NotFound { .. }) => return Ok(SecretCheck::UnknownDevice),
            Err(other) => return Err(other.into()),
        };
        Ok(if device.status != gema_store::DeviceStatus::Active {
            SecretCheck::Disabled
        } else if device.credential.status == gema_store::CredentialStatus::Revoked {
            SecretCheck::Revoked
        } else {
            SecretCheck::Valid
        })
    }

    // ---- admin tokens ---------------------------------------------------------------

    /// On a fresh install (no active admin token), creates the bootstrap token and returns
    /// it, to be shown once. Otherwise `None`.
    #[tracing::instrument(skip_all)]
    pub async fn ensure_bootstrap_token(&self) -> GatewayResult<Option<SecretString>> {
        if self.store.count_active_admin_tokens().await? > 0 {
            return Ok(None);
        }
        self.issue_bootstrap_token().await.map(Some)
    }

    /// Revokes the bootstrap token (if any) and issues a new one, for an operator who lost it.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_bootstrap_token(&self) -> GatewayResult<SecretString> {
        self.store.revoke_admin_tokens_named(BOOTSTRAP).await?;
        self.issue_bootstrap_token().await
    }

    async fn issue_bootstrap_token(&self) -> GatewayResult<SecretString> {
        let token = credentials::generate_admin_token();
        self.store
            .create_admin_token(BOOTSTRAP, &credentials::hash_admin_token(token.expose()))
            .await?;
        tracing::info!("bootstrap admin token issued");
        Ok(token)
    }
}

const BOOTSTRAP: &str = "bootstrap";

thread_local! {
    /// A hash no secret matches, verified against when the device is unknown.
    static DUMMY_HASH: String = credentials::hash_device_secret(&credentials::generate_device_secret());
}
