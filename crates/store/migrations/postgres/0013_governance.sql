-- Governance (R35–R37): enhanced review outcomes, bulk 104/106 jobs, the action plan, and the
-- reason automatic access is paused. 104 and 106 entries get their own index so that the
-- exclusion figures are quick across a whole service.
CREATE INDEX entry_enhanced_review ON entry (practice_id, patient_id, entered_at)
    WHERE code IN ('1364731000000104', '1364751000000106');

ALTER TABLE practice ADD COLUMN pause_reason TEXT;

CREATE TABLE enhanced_review_outcome (
    practice_id UUID NOT NULL,
    id          UUID NOT NULL,
    patient_id  UUID NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    next_review DATE,
    decided_at  TIMESTAMPTZ NOT NULL,
    decided_by  TEXT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
CREATE INDEX review_outcome_by_patient ON enhanced_review_outcome (practice_id, patient_id, decided_at);

CREATE TABLE bulk_code_job (
    practice_id UUID NOT NULL,
    id          UUID NOT NULL,
    code        TEXT NOT NULL,
    cohort      TEXT NOT NULL,
    patients    BIGINT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL,
    applied_by  TEXT NOT NULL,
    undoes      UUID,
    undone_by   UUID,
    PRIMARY KEY (practice_id, id)
);

CREATE TABLE bulk_code_item (
    practice_id UUID NOT NULL,
    job_id      UUID NOT NULL,
    patient_id  UUID NOT NULL,
    entry_id    UUID NOT NULL,
    PRIMARY KEY (practice_id, job_id, patient_id),
    FOREIGN KEY (practice_id, job_id) REFERENCES bulk_code_job(practice_id, id),
    FOREIGN KEY (practice_id, entry_id) REFERENCES entry(practice_id, id)
);

CREATE TABLE action_plan (
    practice_id   UUID PRIMARY KEY REFERENCES practice(id),
    owner         TEXT NOT NULL,
    review_by     DATE NOT NULL,
    below_half_by DATE NOT NULL,
    progress      TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    updated_by    TEXT NOT NULL
);
