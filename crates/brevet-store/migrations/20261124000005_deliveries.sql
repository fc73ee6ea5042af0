-- The notification outbox. The dispatcher reads the audit log after `notify_cursor.seq` and, in
-- the same transaction that moves the cursor, inserts one delivery per interested subscriber;
-- workers then send due deliveries and record every attempt. (subscriber, event_key) is unique,
-- so an event can never be queued twice for one subscriber, whichever replica dispatches it.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    subscriber      TEXT NOT NULL,
    event_key       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    request_id      TEXT,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    UNIQUE (subscriber, event_key)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX deliveries_request ON deliveries (request_id, subscriber);

-- How far the dispatcher has read the audit log. It starts at the log's end when this migration
-- runs: notifications begin with this version, history is not replayed to subscribers.
CREATE TABLE notify_cursor (
    id  BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO notify_cursor (id, seq) SELECT 1, seq FROM audit_head WHERE id = 1;

-- Where the Slack approval message of a request was posted, so it can be updated later.
CREATE TABLE slack_messages (
    request_id TEXT PRIMARY KEY,
    channel    TEXT NOT NULL,
    ts         TEXT NOT NULL
);

-- Grants whose "expiring soon" notice has been queued: at most once per grant.
CREATE TABLE expiry_notices (
    request_id TEXT PRIMARY KEY,
    queued_at  BIGINT NOT NULL
);
