-- One schema for both backends: only portable types (TEXT, BIGINT) are used, timestamps are
-- Unix milliseconds. The full request is kept as JSON in `doc`; the other columns are derived from
-- it on every write (by brevet-store only) so the scheduler and lists can index them.
CREATE TABLE requests (
    id          TEXT PRIMARY KEY,
    requester   TEXT NOT NULL,
    binding     TEXT NOT NULL,
    parent_id   TEXT,
    state       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    due_at      BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX requests_due ON requests (due_at);
CREATE INDEX requests_binding ON requests (binding, state);
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_state ON requests (state, created_at);

CREATE TABLE approvals (
    request_id TEXT NOT NULL,
    approver   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- Append-only, hash-chained. `audit_head` holds the last sequence number and hash; appending
-- locks it, which also serialises appends across replicas on PostgreSQL.
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    request_id TEXT,
    data       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_events_request ON audit_events (request_id);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
