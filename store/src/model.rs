//! The records every part of the store shares: pages, the backend, migration status; and,
//! re-exported from their entity modules (`merchant`, `outlet`, `terminal`, `device`,
//! `admin_token`), the registry's records: merchants → outlets → terminals → devices, plus
//! admin tokens.

use serde::Serialize;

pub use crate::admin_token::AdminToken;
pub use crate::device::{
    CredentialState, CredentialStatus, Device, DeviceBinding, DeviceFilter, DevicePatch,
    DeviceStatus, NewDevice,
};
pub use crate::merchant::{Merchant, MerchantFilter, MerchantPatch, MerchantStatus, NewMerchant};
pub use crate::outlet::{NewOutlet, Outlet, OutletFilter, OutletPatch};
pub use crate::terminal::{NewTerminal, Terminal, TerminalFilter, TerminalPatch};

/// Keyset pagination: items after `after` (an id), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }
}

/// One page of a list. `next_after` is the cursor for the next page, `None` on the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

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
