-- Appointments (clinics cut into slots, bookings), the practice task list, and nominated
-- pharmacies.
CREATE TABLE clinic (
    practice_id     UUID NOT NULL,
    id              UUID NOT NULL,
    clinician_id    UUID NOT NULL,
    clinician_name  TEXT NOT NULL,
    day             DATE NOT NULL,
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
    practice_id     UUID NOT NULL,
    id              UUID NOT NULL,
    clinic_id       UUID NOT NULL,
    starts_at       TIMESTAMPTZ NOT NULL,
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
    practice_id  UUID NOT NULL,
    id           UUID NOT NULL,
    slot_id      UUID NOT NULL,
    patient_id   UUID NOT NULL,
    booked_at    TIMESTAMPTZ NOT NULL,
    booked_by    TEXT NOT NULL,
    cancelled_at TIMESTAMPTZ,
    cancelled_by TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, slot_id) REFERENCES slot(practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
-- One live booking per slot, whatever races (T46).
CREATE UNIQUE INDEX appointment_one_per_slot ON appointment (practice_id, slot_id) WHERE cancelled_at IS NULL;
CREATE INDEX appointment_by_patient ON appointment (practice_id, patient_id);

CREATE TABLE task (
    practice_id  UUID NOT NULL,
    id           UUID NOT NULL,
    patient_id   UUID NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    requested_by TEXT NOT NULL,
    body         TEXT NOT NULL,
    outcome      TEXT,
    closed_at    TIMESTAMPTZ,
    closed_by    TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX task_open ON task (practice_id, status, created_at);
CREATE INDEX task_by_patient ON task (practice_id, patient_id, created_at);

CREATE TABLE nominated_pharmacy (
    practice_id UUID NOT NULL,
    patient_id  UUID NOT NULL,
    ods_code    TEXT NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (practice_id, patient_id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);

-- How many hours before an appointment patients can still cancel it online.
ALTER TABLE practice ADD COLUMN cancel_cutoff_hours INTEGER NOT NULL DEFAULT 24;
