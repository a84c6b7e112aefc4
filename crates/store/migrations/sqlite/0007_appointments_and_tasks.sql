-- Appointments (clinics cut into slots, bookings), the practice task list, and nominated
-- pharmacies.
CREATE TABLE clinic (
    practice_id     BLOB NOT NULL,
    id              BLOB NOT NULL,
    clinician_id    BLOB NOT NULL,
    clinician_name  TEXT NOT NULL,
    day             TEXT NOT NULL,
    start_time      TEXT NOT NULL,
    end_time        TEXT NOT NULL,
    slot_minutes    INTEGER NOT NULL,
    slot_type       TEXT NOT NULL,
    online_bookable BOOLEAN NOT NULL,
    location        TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, clinician_id) REFERENCES staff(practice_id, id)
);
CREATE INDEX clinic_by_day ON clinic (practice_id, day);

CREATE TABLE slot (
    practice_id     BLOB NOT NULL,
    id              BLOB NOT NULL,
    clinic_id       BLOB NOT NULL,
    starts_at       TEXT NOT NULL,
    minutes         INTEGER NOT NULL,
    slot_type       TEXT NOT NULL,
    online_bookable BOOLEAN NOT NULL,
    clinician_name  TEXT NOT NULL,
    location        TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, clinic_id) REFERENCES clinic(practice_id, id)
);
CREATE INDEX slot_by_time ON slot (practice_id, starts_at);

CREATE TABLE appointment (
    practice_id  BLOB NOT NULL,
    id           BLOB NOT NULL,
    slot_id      BLOB NOT NULL,
    patient_id   BLOB NOT NULL,
    booked_at    TEXT NOT NULL,
    booked_by    TEXT NOT NULL,
    cancelled_at TEXT,
    cancelled_by TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, slot_id) REFERENCES slot(practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
-- One live booking per slot, whatever races (T46).
CREATE UNIQUE INDEX appointment_one_per_slot ON appointment (practice_id, slot_id) WHERE cancelled_at IS NULL;
CREATE INDEX appointment_by_patient ON appointment (practice_id, patient_id);

CREATE TABLE task (
    practice_id  BLOB NOT NULL,
    id           BLOB NOT NULL,
    patient_id   BLOB NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    body         TEXT NOT NULL,
    outcome      TEXT,
    closed_at    TEXT,
    closed_by    TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX task_open ON task (practice_id, status, created_at);
CREATE INDEX task_by_patient ON task (practice_id, patient_id, created_at);

CREATE TABLE nominated_pharmacy (
    practice_id BLOB NOT NULL,
    patient_id  BLOB NOT NULL,
    ods_code    TEXT NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (practice_id, patient_id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

-- How many hours before an appointment patients can still cancel it online.
ALTER TABLE practice ADD COLUMN cancel_cutoff_hours INTEGER NOT NULL DEFAULT 24;
