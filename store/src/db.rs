//! The store's one runtime seam between its two backends: the backend-neutral half.
//!
//! The query code (the entity modules) is plain Rust, written once, over [`crate::Db`]: a
//! value that is either the SQLite store or the PostgreSQL store. A statement is a [`Query`]
//! (its SQL text and its parameters as [`Param`]s), run on an [`Exec`] (a pool, a write
//! connection or a transaction of either backend) with one `match` per method. Rows decode
//! with `#[derive(sqlx::FromRow)]` on both backends ([`Row`]).
//!
//! `Db` and its transaction and connection handles (`Tx`, `Conn`) wrap the backends'
//! stores, so they are defined at the crate root: this module imports neither backend, and
//! the backends (and the payment code they call) use it without importing anything that
//! imports them back.
//!
//! Why an enum and not code generic over `sqlx::Database`: generic sqlx code needs
//! higher-ranked bounds on every function (`for<'c> &'c mut DB::Connection: Executor<'c>`,
//! `for<'q> T: Encode<'q, DB>` per bound type) that spread to every caller, and the
//! compiler's messages about them are long; an enum costs one branch per statement and
//! keeps every function an ordinary one a reader (and rust-analyzer) can follow.
//!
//! What really differs between the backends stays in their modules: connection setup, the
//! write turn and `BEGIN IMMEDIATE` (`sqlite.rs`), the payment batch's I/O
//! (`sqlite_payments.rs` and `postgres.rs`), and the row-lock suffix (`Db::row_lock`).

use std::borrow::Cow;

use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Arguments, FromRow};

/// Where a statement runs.
pub(crate) enum Exec<'c> {
    SqlitePool(&'c SqlitePool),
    Sqlite(&'c mut SqliteConnection),
    PgPool(&'c PgPool),
    Pg(&'c mut PgConnection),
}

/// A reborrow, so a function handed an `Exec` can run several statements on it.
impl<'c, 'x: 'c> From<&'c mut Exec<'x>> for Exec<'c> {
    fn from(exec: &'c mut Exec<'x>) -> Self {
        match exec {
            Exec::SqlitePool(pool) => Exec::SqlitePool(pool),
            Exec::Sqlite(conn) => Exec::Sqlite(conn),
            Exec::PgPool(pool) => Exec::PgPool(pool),
            Exec::Pg(conn) => Exec::Pg(conn),
        }
    }
}

impl<'c> From<&'c mut PgConnection> for Exec<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        Exec::Pg(conn)
    }
}

/// A row type both backends decode (`#[derive(sqlx::FromRow)]`, or a tuple).
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// A statement and its parameters, bound in order (`$1`, `$2`, … on both backends).
#[derive(Debug)]
pub(crate) struct Query<'q> {
    sql: Cow<'q, str>,
    params: Vec<Param<'q>>,
}

/// A statement whose rows decode as `T`.
#[derive(Debug)]
pub(crate) struct QueryAs<'q, T> {
    query: Query<'q>,
    _row: std::marker::PhantomData<fn() -> T>,
}

/// A statement that returns no rows (or whose rows are not read).
pub(crate) fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query {
        sql: sql.into(),
        params: Vec::new(),
    }
}

/// A statement whose rows decode as `T`.
pub(crate) fn query_as<'q, T: Row>(sql: impl Into<Cow<'q, str>>) -> QueryAs<'q, T> {
    QueryAs {
        query: query(sql),
        _row: std::marker::PhantomData,
    }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, value: impl Into<Param<'q>>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Binds each parameter in order.
    pub fn bind_all(mut self, values: impl IntoIterator<Item = Param<'q>>) -> Self {
        self.params.extend(values);
        self
    }

    /// Runs the statement; returns how many rows it changed.
    pub async fn execute<'c>(self, on: impl Into<Exec<'c>>) -> Result<u64, sqlx::Error> {
        Ok(match on.into() {
            Exec::SqlitePool(pool) => {
                let done = sqlx::query_with(&self.sql, sqlite_args(&self.params)?)
                    .execute(pool)
                    .await?;
                done.rows_affected()
            }
            Exec::Sqlite(conn) => {
                let done = sqlx::query_with(&self.sql, sqlite_args(&self.params)?)
                    .execute(conn)
                    .await?;
                done.rows_affected()
            }
            Exec::PgPool(pool) => {
                let done = sqlx::query_with(&self.sql, pg_args(&self.params)?)
                    .execute(pool)
                    .await?;
                done.rows_affected()
            }
            Exec::Pg(conn) => {
                let done = sqlx::query_with(&self.sql, pg_args(&self.params)?)
                    .execute(conn)
                    .await?;
                done.rows_affected()
            }
        })
    }
}

impl<'q, T: Row> QueryAs<'q, T> {
    pub fn bind(mut self, value: impl Into<Param<'q>>) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// Binds each parameter in order.
    pub fn bind_all(mut self, values: impl IntoIterator<Item = Param<'q>>) -> Self {
        self.query = self.query.bind_all(values);
        self
    }

    pub async fn fetch_all<'c>(self, on: impl Into<Exec<'c>>) -> Result<Vec<T>, sqlx::Error> {
        let Query { sql, params } = &self.query;
        match on.into() {
            Exec::SqlitePool(pool) => {
                sqlx::query_as_with(sql, sqlite_args(params)?)
                    .fetch_all(pool)
                    .await
            }
            Exec::Sqlite(conn) => {
                sqlx::query_as_with(sql, sqlite_args(params)?)
                    .fetch_all(conn)
                    .await
            }
            Exec::PgPool(pool) => {
                sqlx::query_as_with(sql, pg_args(params)?)
                    .fetch_all(pool)
                    .await
            }
            Exec::Pg(conn) => {
                sqlx::query_as_with(sql, pg_args(params)?)
                    .fetch_all(conn)
                    .await
            }
        }
    }

    pub async fn fetch_optional<'c>(
        self,
        on: impl Into<Exec<'c>>,
    ) -> Result<Option<T>, sqlx::Error> {
        let Query { sql, params } = &self.query;
        match on.into() {
            Exec::SqlitePool(pool) => {
                sqlx::query_as_with(sql, sqlite_args(params)?)
                    .fetch_optional(pool)
                    .await
            }
            Exec::Sqlite(conn) => {
                sqlx::query_as_with(sql, sqlite_args(params)?)
                    .fetch_optional(conn)
                    .await
            }
            Exec::PgPool(pool) => {
                sqlx::query_as_with(sql, pg_args(params)?)
                    .fetch_optional(pool)
                    .await
            }
            Exec::Pg(conn) => {
                sqlx::query_as_with(sql, pg_args(params)?)
                    .fetch_optional(conn)
                    .await
            }
        }
    }

    pub async fn fetch_one<'c>(self, on: impl Into<Exec<'c>>) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// The parameters as sqlx's SQLite driver binds them.
fn sqlite_args<'q>(params: &'q [Param<'_>]) -> Result<SqliteArguments<'q>, sqlx::Error> {
    let mut args = SqliteArguments::default();
    for param in params {
        match param {
            Param::Text(v) => args.add(*v),
            Param::Int(v) => args.add(*v),
            Param::Bool(v) => args.add(*v),
            Param::Blob(v) => args.add(*v),
            Param::Time(v) => args.add(*v),
            Param::OwnedText(v) => args.add(v.as_deref()),
            Param::OwnedBlob(v) => args.add(v.as_slice()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// The parameters as sqlx's PostgreSQL driver binds them.
fn pg_args(params: &[Param<'_>]) -> Result<PgArguments, sqlx::Error> {
    let mut args = PgArguments::default();
    for param in params {
        match param {
            Param::Text(v) => args.add(*v),
            Param::Int(v) => args.add(*v),
            Param::Bool(v) => args.add(*v),
            Param::Blob(v) => args.add(*v),
            Param::Time(v) => args.add(*v),
            Param::OwnedText(v) => args.add(v.as_deref()),
            Param::OwnedBlob(v) => args.add(v.as_slice()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// One statement parameter, whatever the driver: every query's values (`db::Query::bind`)
/// and the batch pieces' ([`crate::payments::batch::piece_params`]), bound by each driver its own way.
#[derive(Debug, Clone)]
pub(crate) enum Param<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bool(bool),
    Blob(&'a [u8]),
    Time(Option<time::OffsetDateTime>),
    /// Text the query owns (a value moved into it).
    OwnedText(Option<String>),
    OwnedBlob(Vec<u8>),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Param::Text(v.as_deref())
    }
}

impl From<String> for Param<'_> {
    fn from(v: String) -> Self {
        Param::OwnedText(Some(v))
    }
}

impl From<Option<String>> for Param<'_> {
    fn from(v: Option<String>) -> Self {
        Param::OwnedText(v)
    }
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Bool(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Param::Blob(v)
    }
}

impl From<Vec<u8>> for Param<'_> {
    fn from(v: Vec<u8>) -> Self {
        Param::OwnedBlob(v)
    }
}

impl From<time::OffsetDateTime> for Param<'_> {
    fn from(v: time::OffsetDateTime) -> Self {
        Param::Time(Some(v))
    }
}

impl From<Option<time::OffsetDateTime>> for Param<'_> {
    fn from(v: Option<time::OffsetDateTime>) -> Self {
        Param::Time(v)
    }
}
