-- Patient services: linkage credentials issued at the practice, local patient logins made with
-- them, and patient sessions.
CREATE TABLE linkage_key (
    practice_id    UUID NOT NULL,
    account_ref    TEXT NOT NULL,
    holder_id      UUID NOT NULL,
    key_hash       BYTEA NOT NULL,
    identity_level TEXT NOT NULL,
    issued_at      TIMESTAMPTZ NOT NULL,
    issued_by      TEXT NOT NULL,
    used_at        TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ,
    PRIMARY KEY (practice_id, account_ref),
    FOREIGN KEY (practice_id, holder_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX linkage_key_by_holder ON linkage_key (practice_id, holder_id);

CREATE TABLE patient_login (
    practice_id     UUID NOT NULL,
    account_id      UUID NOT NULL,
    username        TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    failed_sign_ins INTEGER NOT NULL,
    locked_until    TIMESTAMPTZ,
    PRIMARY KEY (practice_id, account_id),
    UNIQUE (practice_id, username),
    FOREIGN KEY (practice_id, account_id) REFERENCES online_account(practice_id, id)
);

CREATE TABLE patient_session (
    practice_id  UUID NOT NULL,
    id           UUID NOT NULL,
    account_id   UUID NOT NULL,
    secret_hash  BYTEA NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, account_id) REFERENCES online_account(practice_id, id)
);

-- Whether "who viewed my record" names members of staff, or only their role.
ALTER TABLE practice ADD COLUMN show_staff_names BOOLEAN NOT NULL DEFAULT false;
