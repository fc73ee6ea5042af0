-- Serialises provider work on one binding (principal + resource + profile) across tasks and
-- replicas, so an activation and a revocation of overlapping grants can never interleave.
CREATE TABLE binding_locks (
    binding     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
