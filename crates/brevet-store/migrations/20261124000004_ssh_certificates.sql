-- Every SSH certificate Brevet signed; revoked ones (until they expire) make up the KRL.
CREATE TABLE ssh_certificates (
    provider     TEXT NOT NULL,
    serial       BIGINT NOT NULL,
    binding      TEXT NOT NULL,
    grant_id     TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    valid_before BIGINT NOT NULL,
    revoked_at   BIGINT,
    PRIMARY KEY (provider, serial)
);
CREATE INDEX ssh_certificates_binding ON ssh_certificates (provider, binding);
CREATE INDEX ssh_certificates_valid ON ssh_certificates (provider, valid_before);
