-- GP Connect Update Record (R24–R30): the practice's switch (on by default), the pharmacies
-- allowed to send, every message received (kept whole, accepted or not), the amendments made
-- before filing, and the entries each filed message made.
ALTER TABLE practice ADD COLUMN accept_update_record BOOLEAN NOT NULL DEFAULT TRUE;

CREATE TABLE update_record_sender (
    practice_id UUID NOT NULL,
    id          UUID NOT NULL,
    ods_code    TEXT NOT NULL,
    name        TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (client_id),
    UNIQUE (practice_id, ods_code)
);

CREATE TABLE inbound_message (
    practice_id    UUID NOT NULL,
    id             UUID NOT NULL,
    message_id     TEXT NOT NULL,
    sender_ods     TEXT NOT NULL,
    via            TEXT NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    status         TEXT NOT NULL,
    response_code  INTEGER NOT NULL,
    problems       TEXT NOT NULL,
    payload        TEXT NOT NULL,
    record         TEXT,
    items          TEXT,
    patient_id     UUID,
    replaces       UUID,
    superseded_by  UUID,
    task_id        UUID,
    decided_at     TIMESTAMPTZ,
    decided_by     TEXT,
    decision_note  TEXT,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, message_id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX inbound_by_status ON inbound_message (practice_id, status, received_at);

CREATE TABLE inbound_amendment (
    practice_id UUID NOT NULL,
    id          UUID NOT NULL,
    inbound_id  UUID NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    by_name     TEXT NOT NULL,
    change      TEXT NOT NULL,
    items       TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, inbound_id) REFERENCES inbound_message(practice_id, id)
);

CREATE TABLE inbound_entry (
    practice_id UUID NOT NULL,
    inbound_id  UUID NOT NULL,
    entry_id    UUID NOT NULL,
    PRIMARY KEY (practice_id, inbound_id, entry_id),
    FOREIGN KEY (practice_id, inbound_id) REFERENCES inbound_message(practice_id, id),
    FOREIGN KEY (practice_id, entry_id) REFERENCES entry(practice_id, id)
);
CREATE INDEX inbound_entry_by_entry ON inbound_entry (practice_id, entry_id);
