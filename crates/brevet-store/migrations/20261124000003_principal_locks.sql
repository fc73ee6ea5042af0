-- The kill switch: a locked principal can make, approve, activate or extend nothing until
-- unlocked. The principal `*` locks everyone but admins.
CREATE TABLE principal_locks (
    principal TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    locked_by TEXT NOT NULL,
    locked_at BIGINT NOT NULL
);
