-- The outbox: every message caldicott sends, written in the transaction of the action that
-- caused it, then delivered by a worker with retries. The reference given to a provider is the
-- message id: it carries no personal data.
CREATE TABLE outbox (
    practice_id     BLOB NOT NULL,
    id              BLOB NOT NULL,
    patient_id      BLOB NOT NULL,
    purpose         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    provider_id     TEXT,
    fragments       INTEGER NOT NULL,
    cost_hundredths INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, idempotency_key),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_patient ON outbox (practice_id, patient_id, created_at);
CREATE INDEX outbox_by_provider_id ON outbox (provider_id);

-- Provider callbacks already applied, by the provider's notification id.
CREATE TABLE outbox_callback (
    provider_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider_id, status)
);

CREATE TABLE message_preset (
    practice_id BLOB NOT NULL,
    id          BLOB NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, name)
);
