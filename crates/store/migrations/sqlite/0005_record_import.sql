-- Records transferred in from another practice (FHIR R4 Bundles): one row per file imported
-- for a patient. The same file (by SHA-256) is imported once per patient.
CREATE TABLE record_import (
    practice_id      BLOB NOT NULL,
    id               BLOB NOT NULL,
    patient_id       BLOB NOT NULL,
    sha256           TEXT NOT NULL,
    from_ods         TEXT NOT NULL,
    entries          INTEGER NOT NULL,
    hidden_by_sender INTEGER NOT NULL,
    pending_review   INTEGER NOT NULL,
    imported_at      TEXT NOT NULL,
    imported_by      TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, patient_id, sha256),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
