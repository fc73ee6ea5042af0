#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store configuration: {0}")]
    Config(String),
    #[error("cannot connect to the store: {0}")]
    Connect(String),
    #[error("cannot migrate the store schema: {0}")]
    Migrate(String),
    #[error("request {0} was changed by someone else at the same time; retry")]
    Conflict(String),
    /// A lease or lock that a step needed is held by another live operation.
    #[error("{0} is being worked on by another operation; retry in a moment")]
    Busy(String),
    /// A kill-switch lock (on the principal, or `*` for everyone) stopped a write for the
    /// principal it binds (checked by the write itself).
    #[error("locked by the kill switch (its lock on `{}`)", .0.principal)]
    Locked(Box<crate::PrincipalLock>),
    /// A write that can never be right, refused before anything was written.
    #[error("{0}")]
    Refused(String),
    #[error("`{0}` has already recorded a decision on this request")]
    AlreadyDecided(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e.to_string())
    }
}
