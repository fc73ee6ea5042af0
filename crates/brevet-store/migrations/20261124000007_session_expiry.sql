-- Expired sessions and sign-ins are purged regularly; find them without a full scan.
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX login_flows_expires ON login_flows (expires_at);
