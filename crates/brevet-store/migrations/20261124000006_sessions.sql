-- Portal and CLI sessions. Only a SHA-256 of the session token is stored, so a copy of the
-- database does not let anyone sign in.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    roles_json  TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_principal ON sessions (principal);

-- Sign-ins in progress (OIDC authorization code with PKCE, or device authorization): short-lived
-- and deleted when used, so a state value or device code can be redeemed once.
CREATE TABLE login_flows (
    id_hash    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    secret     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    return_to  TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
