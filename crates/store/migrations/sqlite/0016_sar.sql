-- Subject access requests (R31–R34): the register, from receipt to release.
CREATE TABLE sar_request (
    practice_id           BLOB NOT NULL,
    id                    BLOB NOT NULL,
    patient_id            BLOB NOT NULL,
    requester             TEXT NOT NULL,
    relationship          TEXT NOT NULL,
    received              TEXT NOT NULL,
    waiting_for           TEXT,
    identity_verified     TEXT,
    clarified             TEXT,
    manifestly_unfounded  BOOLEAN NOT NULL,
    fee_received          TEXT,
    notes                 TEXT NOT NULL,
    status                TEXT NOT NULL,
    extension_reason      TEXT,
    extension_notified_on TEXT,
    closed_on             TEXT,
    close_note            TEXT,
    created_at            TEXT NOT NULL,
    created_by            TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX sar_by_status ON sar_request (practice_id, status, received);
