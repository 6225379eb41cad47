//! The helpers every query module uses: ids, the time, pages, multi-row placeholders; and the page records
//! themselves ([`PageRequest`], [`Page`], re-exported by `model`).

use time::OffsetDateTime;

use crate::Db;

use serde::Serialize;

/// A new time-ordered id with a type prefix: `dev_01jd…`. Ids sort by creation time, which
/// is what keyset pagination relies on: a plain ULID only orders by millisecond (its tail is
/// random), so ids come from one monotonic generator per process, strictly increasing even
/// within a millisecond. Across nodes sharing PostgreSQL, order holds to the millisecond.
pub(crate) fn new_id(prefix: &str) -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    // The generator fails only if 2^80 ids were made in one millisecond; a poisoned lock
    // only if a thread panicked mid-generate. Either way a fresh ULID is still unique.
    let monotonic = GENERATOR
        .lock()
        .ok()
        .and_then(|mut generator| generator.generate().ok());
    let ulid = match monotonic {
        Some(ulid) => ulid,
        None => ulid::Ulid::new(),
    };
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

/// Now, truncated to microseconds (what PostgreSQL stores), so a value read back equals the
/// value written on both backends.
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// `rows` groups of `width` placeholders: `(?, ?), (?, ?)` on SQLite, `($1, $2), ($3, $4)`
/// on PostgreSQL.
pub(crate) fn placeholders(db: &Db, rows: usize, width: usize) -> String {
    let mut text = String::with_capacity(rows * width * 6);
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for column in 0..width {
            if column > 0 {
                text.push_str(", ");
            }
            n += 1;
            match db {
                Db::Sqlite(_) => text.push('?'),
                Db::Postgres(_) => {
                    text.push('$');
                    text.push_str(&n.to_string());
                }
            }
        }
        text.push(')');
    }
    text
}

/// `?, ?, ?` or `$1, $2, $3`: a list for `IN (…)`.
pub(crate) fn in_list(db: &Db, count: usize) -> String {
    let groups = placeholders(db, count, 1);
    groups.replace(['(', ')'], "")
}

/// Cuts a `limit + 1` result down to a page and its cursor.
pub(crate) fn paginate<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Page<T> {
    let limit = limit as usize;
    let next_after = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|row| id(row).to_string())
    } else {
        None
    };
    Page {
        items: rows,
        next_after,
    }
}

/// The `limit` to bind: one more than requested, to learn whether another page exists.
pub(crate) fn fetch_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, PageRequest::MAX_LIMIT)) + 1
}

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
