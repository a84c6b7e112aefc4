-- Records transferred in from another practice (FHIR R4 Bundles): one row per file imported
-- for a patient. The same file (by SHA-256) is imported once per patient.
CREATE TABLE record_import (
    practice_id      UUID NOT NULL,
    id               UUID NOT NULL,
    patient_id       UUID NOT NULL,
    sha256           TEXT NOT NULL,
    from_ods         TEXT NOT NULL,
    entries          BIGINT NOT NULL,
    hidden_by_sender BIGINT NOT NULL,
    pending_review   BIGINT NOT NULL,
    imported_at      TIMESTAMPTZ NOT NULL,
    imported_by      TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    UNIQUE (practice_id, patient_id, sha256),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
