-- A patient's dissent from sharing their record with other care settings through GP Connect, as
-- the practice recorded it: while a row stands, Access Record: Structured and Access Document
-- answer every request for the patient with NO_PATIENT_CONSENT. Withdrawing the dissent deletes
-- the row; the audit log keeps both events.
CREATE TABLE gp_connect_dissent (
    practice_id BLOB NOT NULL,
    patient_id  BLOB NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (practice_id, patient_id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
