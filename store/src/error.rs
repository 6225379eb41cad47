use thiserror::Error;

/// Errors at the storage boundary. Driver errors that mean something in the domain (row not
/// found, unique or foreign-key violations) are mapped here to `NotFound` and `Conflict`, so
/// callers never match on driver codes.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },

    /// The request is well formed but contradicts the stored state (duplicate serial,
    /// device already bound, wrong status for the transition, …). `code` is stable and
    /// machine-readable; `field` names the input field at fault when there is one.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },

    #[error("unsupported database URL {0:?}: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),

    #[error("database: {0}")]
    Database(#[source] sqlx::Error),

    /// From the payment path's own SQLite connection (`sqlite_payments`).
    #[error("database: {0}")]
    Sqlite(#[source] rusqlite::Error),

    /// From the payment batches' own PostgreSQL connections (`postgres_payments`).
    #[error("database: {0}")]
    Postgres(#[source] tokio_postgres::Error),

    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A stored value that this version cannot interpret (for example an unknown status).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),

    /// The audit row of a write could not be inserted in the write's transaction, so the
    /// write was rolled back (see `audit_scope`).
    #[error("writing the audit row: {0}")]
    Audit(String),

    /// SQLite's payment writer (its thread and connection) could not do the work.
    #[error("the SQLite payment writer: {0}")]
    PaymentWriter(String),
}

impl StoreError {
    pub(crate) fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            entity,
            id: id.into(),
        }
    }

    pub(crate) fn conflict(
        code: &'static str,
        field: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        StoreError::Conflict {
            code,
            message: message.into(),
            field,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // A unique violation that got past the explicit checks (a race between two
            // writers) is still a conflict, not a server error.
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::conflict(
                "already_exists",
                None,
                "a record with the same unique value already exists",
            ),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::conflict(
                "reference_missing",
                None,
                "a referenced record does not exist",
            ),
            sqlx::Error::ColumnDecode { source, .. } => StoreError::Corrupt(source.to_string()),
            _ => StoreError::Database(err),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match &err {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::conflict(
                        "already_exists",
                        None,
                        "a record with the same unique value already exists",
                    )
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::conflict(
                    "reference_missing",
                    None,
                    "a referenced record does not exist",
                ),
                _ => StoreError::Sqlite(err),
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(err.to_string()),
            _ => StoreError::Sqlite(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
