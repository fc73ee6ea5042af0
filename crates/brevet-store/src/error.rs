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
    /// The kill switch locks the principal a write was for (checked by the write itself).
    #[error("`{0}` is locked by the kill switch")]
    Locked(String),
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
