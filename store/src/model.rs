//! The records every part of the store shares: the backend, migration status; pages
//! (re-exported from `sql`, next to the helpers that cut them); and, re-exported from their
//! entity modules (`merchant`, `outlet`, `terminal`, `device`, `admin_token`), the
//! registry's records: merchants → outlets → terminals → devices, plus
//! admin tokens.

use serde::Serialize;

pub use crate::admin_token::AdminToken;
pub use crate::device::{
    AuthMethod, CredentialState, CredentialStatus, Device, DeviceBinding, DeviceFilter,
    DevicePatch, DeviceStatus, NewDevice,
};
pub use crate::merchant::{Merchant, MerchantFilter, MerchantPatch, MerchantStatus, NewMerchant};
pub use crate::outlet::{NewOutlet, Outlet, OutletFilter, OutletPatch};
pub use crate::sql::{Page, PageRequest};
pub use crate::terminal::{NewTerminal, Terminal, TerminalFilter, TerminalPatch};

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Migrations compiled into this binary versus those applied to the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    pub applied: Vec<i64>,
    pub pending: Vec<i64>,
}
