-- caldicott schema, PostgreSQL dialect. Every table of practice data leads its key with
-- practice_id, so that the schema can be distributed by practice (Citus) later.

CREATE TABLE practice (
    id               UUID PRIMARY KEY,
    ods_code         TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    telephone        TEXT NOT NULL,
    address_lines    TEXT NOT NULL,
    postcode         TEXT NOT NULL,
    switch_on        DATE,
    paused           BOOLEAN NOT NULL,
    default_level    TEXT NOT NULL,
    proxy_review_age INTEGER NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE staff (
    practice_id   UUID NOT NULL REFERENCES practice(id),
    id            UUID NOT NULL,
    username      TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active        BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, username)
);

CREATE TABLE api_token (
    practice_id UUID NOT NULL,
    id          UUID NOT NULL,
    staff_id    UUID NOT NULL,
    label       TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, staff_id) REFERENCES staff(practice_id, id)
);

CREATE TABLE patient (
    practice_id       UUID NOT NULL REFERENCES practice(id),
    id                UUID NOT NULL,
    nhs_number        TEXT NOT NULL,
    title             TEXT,
    given_name        TEXT NOT NULL,
    family_name       TEXT NOT NULL,
    date_of_birth     DATE NOT NULL,
    sex               TEXT NOT NULL,
    email             TEXT,
    mobile            TEXT,
    address_lines     TEXT NOT NULL,
    postcode          TEXT NOT NULL,
    preferred_contact INTEGER,
    date_of_death     DATE,
    created_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, nhs_number)
);
CREATE INDEX patient_by_name ON patient (practice_id, family_name, given_name);
CREATE INDEX patient_by_postcode ON patient (practice_id, postcode);

CREATE TABLE registration (
    practice_id       UUID NOT NULL,
    patient_id        UUID NOT NULL,
    position          INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    started           DATE NOT NULL,
    ended             DATE,
    previous_practice TEXT,
    PRIMARY KEY (practice_id, patient_id, position),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

CREATE TABLE entry (
    practice_id     UUID NOT NULL,
    id              UUID NOT NULL,
    patient_id      UUID NOT NULL,
    kind            TEXT NOT NULL,
    event_date      DATE NOT NULL,
    entered_at      TIMESTAMPTZ NOT NULL,
    author_staff_id UUID,
    author_name     TEXT NOT NULL,
    origin          TEXT NOT NULL,
    origin_ods      TEXT,
    code            TEXT,
    term            TEXT,
    body            TEXT NOT NULL,
    hidden_reason   TEXT,
    hidden_note     TEXT,
    hidden_by       TEXT,
    hidden_at       TIMESTAMPTZ,
    nopat           BOOLEAN NOT NULL,
    safeguarding    BOOLEAN NOT NULL,
    confidential    BOOLEAN NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX entry_by_patient ON entry (practice_id, patient_id, event_date DESC, entered_at DESC, id DESC);
CREATE INDEX entry_by_code ON entry (practice_id, patient_id, code) WHERE code IS NOT NULL;

CREATE TABLE access_setting (
    practice_id UUID NOT NULL,
    patient_id  UUID NOT NULL,
    opted_out   BOOLEAN NOT NULL,
    PRIMARY KEY (practice_id, patient_id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

CREATE TABLE access_grant (
    practice_id UUID NOT NULL,
    patient_id  UUID NOT NULL,
    level       TEXT NOT NULL,
    from_date   DATE,
    granted_on  DATE NOT NULL,
    granted_by  TEXT NOT NULL,
    PRIMARY KEY (practice_id, patient_id, level),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

CREATE TABLE online_account (
    practice_id    UUID NOT NULL,
    id             UUID NOT NULL,
    holder_id      UUID NOT NULL,
    kind           TEXT NOT NULL,
    identity_level TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, holder_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX online_account_by_holder ON online_account (practice_id, holder_id);

CREATE TABLE proxy_link (
    practice_id      UUID NOT NULL,
    id               UUID NOT NULL,
    patient_id       UUID NOT NULL,
    proxy_id         UUID NOT NULL,
    relationship     TEXT NOT NULL,
    basis            TEXT NOT NULL,
    appointments     BOOLEAN NOT NULL,
    prescriptions    BOOLEAN NOT NULL,
    demographics     BOOLEAN NOT NULL,
    record_level     TEXT NOT NULL,
    record_from      DATE,
    granted_on       DATE NOT NULL,
    decided_by       TEXT NOT NULL,
    ends_on          DATE,
    status           TEXT NOT NULL,
    status_since     DATE,
    status_reason    TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id),
    FOREIGN KEY (practice_id, proxy_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX proxy_link_by_patient ON proxy_link (practice_id, patient_id);
CREATE INDEX proxy_link_by_proxy ON proxy_link (practice_id, proxy_id);

CREATE TABLE audit_event (
    practice_id UUID NOT NULL REFERENCES practice(id),
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    patient_id  TEXT,
    action      TEXT NOT NULL,
    entity      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL,
    PRIMARY KEY (practice_id, seq)
);
CREATE INDEX audit_by_patient ON audit_event (practice_id, patient_id, seq) WHERE patient_id IS NOT NULL;

CREATE TABLE audit_head (
    practice_id UUID PRIMARY KEY REFERENCES practice(id),
    count       BIGINT NOT NULL,
    hash        BYTEA NOT NULL
);

CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;

CREATE TRIGGER audit_event_no_update BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
