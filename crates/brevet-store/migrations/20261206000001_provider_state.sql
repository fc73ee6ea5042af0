-- State a provider keeps for itself, per provider instance: JSON values under keys, each with an
-- optional expiry (past it the entry is gone for readers and purged) and a version for
-- compare-and-set. A provider that needs state adds no table of its own.
CREATE TABLE provider_state (
    provider   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at BIGINT,
    version    BIGINT NOT NULL,
    PRIMARY KEY (provider, key)
);
CREATE INDEX provider_state_expiry ON provider_state (expires_at);
