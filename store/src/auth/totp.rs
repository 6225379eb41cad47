//! TOTP second factor: the secret, the last step used (no replays), recovery-code hashes;
//! and their queries.

use crate::Db;
use crate::db::{query, query_as};
use crate::{StoreError, StoreResult};

/// A user's second factor.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpState {
    /// Base32.
    pub secret: String,
    /// `None` while set up but not confirmed.
    pub enabled_ms: Option<i64>,
    pub last_step: Option<i64>,
}

/// Never the secret: whoever has it can make the user's codes.
impl std::fmt::Debug for TotpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpState")
            .field("secret", &"<secret>")
            .field("enabled_ms", &self.enabled_ms)
            .field("last_step", &self.last_step)
            .finish()
    }
}

pub(crate) async fn totp_state(db: &Db, user_id: &str) -> StoreResult<Option<TotpState>> {
    let row: Option<(Option<String>, Option<i64>, Option<i64>)> =
        query_as("SELECT totp_secret, totp_enabled_ms, totp_last_step FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(db.read())
            .await?;
    Ok(match row {
        Some((Some(secret), enabled_ms, last_step)) => Some(TotpState {
            secret,
            enabled_ms,
            last_step,
        }),
        _ => None,
    })
}

pub(crate) async fn set_totp_secret(db: &Db, user_id: &str, secret: &str) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    let row: Option<(Option<i64>,)> = query_as(
        [
            "SELECT totp_enabled_ms FROM users WHERE id = $1 ",
            db.row_lock(),
        ]
        .concat(),
    )
    .bind(user_id)
    .fetch_optional(&mut tx)
    .await?;
    match row {
        None => return Err(StoreError::not_found("user", user_id)),
        Some((Some(_),)) => {
            return Err(StoreError::conflict(
                "totp_enabled",
                None,
                "TOTP is already on; turn it off first",
            ));
        }
        Some((None,)) => {}
    }
    query("UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE id = $2")
        .bind(secret)
        .bind(user_id)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn enable_totp(
    db: &Db,
    user_id: &str,
    step: i64,
    recovery_hashes: &[String],
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    let done = query(
        "UPDATE users SET totp_enabled_ms = $1, totp_last_step = $2 \
         WHERE id = $3 AND totp_secret IS NOT NULL AND totp_enabled_ms IS NULL",
    )
    .bind(now_ms)
    .bind(step)
    .bind(user_id)
    .execute(&mut tx)
    .await?;
    if done != 1 {
        return Err(StoreError::conflict(
            "totp_not_pending",
            None,
            "no TOTP setup is waiting for confirmation",
        ));
    }
    query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut tx)
        .await?;
    for hash in recovery_hashes {
        query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(hash)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn use_totp_step(db: &Db, user_id: &str, step: i64) -> StoreResult<bool> {
    let mut tx = db.begin_write().await?;
    let done = query(
        "UPDATE users SET totp_last_step = $1 WHERE id = $2 \
         AND (totp_last_step IS NULL OR totp_last_step < $1)",
    )
    .bind(step)
    .bind(user_id)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(done == 1)
}

pub(crate) async fn use_recovery_code(
    db: &Db,
    user_id: &str,
    code_hash: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = db.begin_write().await?;
    let done = query(
        "UPDATE recovery_codes SET used_ms = $1 \
         WHERE user_id = $2 AND code_hash = $3 AND used_ms IS NULL",
    )
    .bind(now_ms)
    .bind(user_id)
    .bind(code_hash)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(done == 1)
}

pub(crate) async fn disable_totp(db: &Db, user_id: &str) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    query(
        "UPDATE users SET totp_secret = NULL, totp_enabled_ms = NULL, \
         totp_last_step = NULL WHERE id = $1",
    )
    .bind(user_id)
    .execute(&mut tx)
    .await?;
    query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_totp_states_debug_never_shows_the_secret() {
        let state = TotpState {
            secret: "JBSWY3DPEHPK3PXP".into(),
            enabled_ms: Some(1),
            last_step: None,
        };
        let shown = format!("{state:?}");
        assert!(!shown.contains("JBSWY3DPEHPK3PXP"), "{shown}");
        assert!(shown.contains("enabled_ms: Some(1)"), "{shown}");
    }
}
