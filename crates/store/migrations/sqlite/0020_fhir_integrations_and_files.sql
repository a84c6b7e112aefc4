-- The FHIR API, second part.
-- An app's token may be for someone its user acts for: the proxy link it was issued under.
ALTER TABLE fhir_token ADD COLUMN proxy_link_id BLOB;

-- Practice integrations (SMART Backend Services): each signs its client assertions with a
-- private key whose public half is registered here, and may be given `system/` scopes.
CREATE TABLE fhir_integration (
    practice_id BLOB NOT NULL,
    id          BLOB NOT NULL,
    name        TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, client_id)
);

-- Their access tokens: hashes only, short-lived.
CREATE TABLE fhir_system_token (
    practice_id    BLOB NOT NULL,
    token_hash     BLOB NOT NULL,
    integration_id BLOB NOT NULL,
    scopes         TEXT NOT NULL,
    issued_at      TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    PRIMARY KEY (practice_id, token_hash),
    FOREIGN KEY (practice_id, integration_id) REFERENCES fhir_integration(practice_id, id)
);
CREATE INDEX fhir_system_token_by_expiry ON fhir_system_token (practice_id, expires_at);

-- The ids (jti) of client assertions already used, until they expire: an assertion is good once.
CREATE TABLE fhir_assertion (
    practice_id    BLOB NOT NULL,
    integration_id BLOB NOT NULL,
    jti            TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    PRIMARY KEY (practice_id, integration_id, jti)
);

-- The stored file of a document entry (a scanned letter, a PDF), served as FHIR Binary.
CREATE TABLE document_file (
    practice_id  BLOB NOT NULL,
    entry_id     BLOB NOT NULL,
    content_type TEXT NOT NULL,
    filename     TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha1         BLOB NOT NULL,
    content      BLOB NOT NULL,
    PRIMARY KEY (practice_id, entry_id),
    FOREIGN KEY (practice_id, entry_id) REFERENCES entry(practice_id, id)
);
