-- Third-party patient apps registered by the practice, and their links to patients (R21).
CREATE TABLE patient_app (
    practice_id        BLOB NOT NULL,
    id                 BLOB NOT NULL,
    name               TEXT NOT NULL,
    supplier           TEXT NOT NULL,
    client_id          TEXT NOT NULL,
    client_secret_hash BLOB NOT NULL,
    active             BOOLEAN NOT NULL,
    created_at         TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (client_id)
);

CREATE TABLE app_link (
    practice_id   BLOB NOT NULL,
    id            BLOB NOT NULL,
    app_id        BLOB NOT NULL,
    patient_id    BLOB NOT NULL,
    via           TEXT NOT NULL,
    linkage_ref   TEXT,
    token_hash    BLOB NOT NULL,
    linked_at     TEXT NOT NULL,
    revoked_at    TEXT,
    revoked_why   TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, app_id) REFERENCES patient_app(practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX app_link_by_patient ON app_link (practice_id, patient_id);
