-- Access tokens of the FHIR API: hashes only, each bound to a practice and an app link, with
-- the scopes granted and an expiry (the link itself is checked on every request as well).
CREATE TABLE fhir_token (
    practice_id BLOB NOT NULL,
    token_hash  BLOB NOT NULL,
    link_id     BLOB NOT NULL,
    scopes      TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (practice_id, token_hash)
);
CREATE INDEX fhir_token_by_expiry ON fhir_token (practice_id, expires_at);
