-- caldicott schema, SQLite dialect. Every table of practice data leads its key with practice_id.

CREATE TABLE practice (
    id               BLOB PRIMARY KEY NOT NULL,
    ods_code         TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    telephone        TEXT NOT NULL,
    address_lines    TEXT NOT NULL,
    postcode         TEXT NOT NULL,
    switch_on        TEXT,
    paused           BOOLEAN NOT NULL,
    default_level    TEXT NOT NULL,
    proxy_review_age INTEGER NOT NULL,
    created_at       TEXT NOT NULL
);

CREATE TABLE staff (
    practice_id   BLOB NOT NULL REFERENCES practice(id),
    id            BLOB NOT NULL,
    username      TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active        BOOLEAN NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, username)
);

CREATE TABLE api_token (
    practice_id BLOB NOT NULL,
    id          BLOB NOT NULL,
    staff_id    BLOB NOT NULL,
    label       TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, staff_id) REFERENCES staff(practice_id, id)
);

CREATE TABLE patient (
    practice_id       BLOB NOT NULL REFERENCES practice(id),
    id                BLOB NOT NULL,
    nhs_number        TEXT NOT NULL,
    title             TEXT,
    given_name        TEXT NOT NULL,
    family_name       TEXT NOT NULL,
    date_of_birth     TEXT NOT NULL,
    sex               TEXT NOT NULL,
    email             TEXT,
    mobile            TEXT,
    address_lines     TEXT NOT NULL,
    postcode          TEXT NOT NULL,
    preferred_contact INTEGER,
    date_of_death     TEXT,
    created_at        TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, nhs_number)
);
CREATE INDEX patient_by_name ON patient (practice_id, family_name, given_name);
CREATE INDEX patient_by_postcode ON patient (practice_id, postcode);

CREATE TABLE registration (
    practice_id       BLOB NOT NULL,
    patient_id        BLOB NOT NULL,
    position          INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    started           TEXT NOT NULL,
    ended             TEXT,
    previous_practice TEXT,
    PRIMARY KEY (practice_id, patient_id, position),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

CREATE TABLE entry (
    practice_id     BLOB NOT NULL,
    id              BLOB NOT NULL,
    patient_id      BLOB NOT NULL,
    kind            TEXT NOT NULL,
    event_date      TEXT NOT NULL,
    entered_at      TEXT NOT NULL,
    author_staff_id BLOB,
    author_name     TEXT NOT NULL,
    origin          TEXT NOT NULL,
    origin_ods      TEXT,
    code            TEXT,
    term            TEXT,
    body            TEXT NOT NULL,
    hidden_reason   TEXT,
    hidden_note     TEXT,
    hidden_by       TEXT,
    hidden_at       TEXT,
    nopat           BOOLEAN NOT NULL,
    safeguarding    BOOLEAN NOT NULL,
    confidential    BOOLEAN NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX entry_by_patient ON entry (practice_id, patient_id, event_date DESC, entered_at DESC, id DESC);
CREATE INDEX entry_by_code ON entry (practice_id, patient_id, code) WHERE code IS NOT NULL;

CREATE TABLE access_setting (
    practice_id BLOB NOT NULL,
    patient_id  BLOB NOT NULL,
    opted_out   BOOLEAN NOT NULL,
    PRIMARY KEY (practice_id, patient_id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

CREATE TABLE access_grant (
    practice_id BLOB NOT NULL,
    patient_id  BLOB NOT NULL,
    level       TEXT NOT NULL,
    from_date   TEXT,
    granted_on  TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    PRIMARY KEY (practice_id, patient_id, level),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

CREATE TABLE online_account (
    practice_id    BLOB NOT NULL,
    id             BLOB NOT NULL,
    holder_id      BLOB NOT NULL,
    kind           TEXT NOT NULL,
    identity_level TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, holder_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX online_account_by_holder ON online_account (practice_id, holder_id);

CREATE TABLE proxy_link (
    practice_id      BLOB NOT NULL,
    id               BLOB NOT NULL,
    patient_id       BLOB NOT NULL,
    proxy_id         BLOB NOT NULL,
    relationship     TEXT NOT NULL,
    basis            TEXT NOT NULL,
    appointments     BOOLEAN NOT NULL,
    prescriptions    BOOLEAN NOT NULL,
    demographics     BOOLEAN NOT NULL,
    record_level     TEXT NOT NULL,
    record_from      TEXT,
    granted_on       TEXT NOT NULL,
    decided_by       TEXT NOT NULL,
    ends_on          TEXT,
    status           TEXT NOT NULL,
    status_since     TEXT,
    status_reason    TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id),
    FOREIGN KEY (practice_id, proxy_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX proxy_link_by_patient ON proxy_link (practice_id, patient_id);
CREATE INDEX proxy_link_by_proxy ON proxy_link (practice_id, proxy_id);

-- The audit log: append-only, hash-chained per practice.
CREATE TABLE audit_event (
    practice_id BLOB NOT NULL REFERENCES practice(id),
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    patient_id  TEXT,
    action      TEXT NOT NULL,
    entity      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL,
    PRIMARY KEY (practice_id, seq)
);
CREATE INDEX audit_by_patient ON audit_event (practice_id, patient_id, seq) WHERE patient_id IS NOT NULL;

-- The head of each practice's chain, updated in the same transaction as every append.
CREATE TABLE audit_head (
    practice_id BLOB PRIMARY KEY NOT NULL REFERENCES practice(id),
    count       INTEGER NOT NULL,
    hash        BLOB NOT NULL
);

CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
