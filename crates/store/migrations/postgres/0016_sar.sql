-- Subject access requests (R31–R34): the register, from receipt to release.
CREATE TABLE sar_request (
    practice_id           UUID NOT NULL,
    id                    UUID NOT NULL,
    patient_id            UUID NOT NULL,
    requester             TEXT NOT NULL,
    relationship          TEXT NOT NULL,
    received              DATE NOT NULL,
    waiting_for           TEXT,
    identity_verified     DATE,
    clarified             DATE,
    manifestly_unfounded  BOOLEAN NOT NULL,
    fee_received          DATE,
    notes                 TEXT NOT NULL,
    status                TEXT NOT NULL,
    extension_reason      TEXT,
    extension_notified_on DATE,
    closed_on             DATE,
    close_note            TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    created_by            TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX sar_by_status ON sar_request (practice_id, status, received);
