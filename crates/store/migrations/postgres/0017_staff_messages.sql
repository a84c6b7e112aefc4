-- Staff instant messages (R43): kept for good; "delete" hides a message from its participants
-- and records who deleted it and when. A message may be about a patient.
CREATE TABLE staff_message (
    practice_id  UUID NOT NULL,
    id           UUID NOT NULL,
    sender_id    UUID NOT NULL,
    sender_name  TEXT NOT NULL,
    to_staff_id  UUID,
    to_team      TEXT,
    body         TEXT NOT NULL,
    patient_id   UUID,
    sent_at      TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ,
    deleted_by   TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX staff_message_by_patient ON staff_message (practice_id, patient_id) WHERE patient_id IS NOT NULL;
CREATE INDEX staff_message_by_time ON staff_message (practice_id, sent_at);

CREATE TABLE staff_message_read (
    practice_id UUID NOT NULL,
    message_id  UUID NOT NULL,
    staff_id    UUID NOT NULL,
    read_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (practice_id, message_id, staff_id)
);
