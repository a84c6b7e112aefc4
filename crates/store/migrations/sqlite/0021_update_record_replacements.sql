-- GP Connect Update Record: a message id is taken once only when the message was accepted
-- (20013), so a message refused (20009, 20010) can be delivered again; a replacement may name
-- the earlier payload by its Composition or document Bundle identifier; and an entry filed from
-- a payload that a later one replaced is kept for audit, marked superseded.
--
-- SQLite cannot drop a table's UNIQUE constraint, so inbound_message is rebuilt. Its children
-- are set aside and put back, so that no foreign key is ever left dangling.
CREATE TABLE inbound_amendment_keep AS SELECT * FROM inbound_amendment;
CREATE TABLE inbound_entry_keep AS SELECT * FROM inbound_entry;
DELETE FROM inbound_amendment;
DELETE FROM inbound_entry;

CREATE TABLE inbound_message_new (
    practice_id            BLOB NOT NULL,
    id                     BLOB NOT NULL,
    message_id             TEXT NOT NULL,
    sender_ods             TEXT NOT NULL,
    via                    TEXT NOT NULL,
    received_at            TEXT NOT NULL,
    status                 TEXT NOT NULL,
    response_code          INTEGER NOT NULL,
    problems               TEXT NOT NULL,
    payload                TEXT NOT NULL,
    record                 TEXT,
    items                  TEXT,
    patient_id             BLOB,
    replaces               BLOB,
    superseded_by          BLOB,
    task_id                BLOB,
    decided_at             TEXT,
    decided_by             TEXT,
    decision_note          TEXT,
    composition_identifier TEXT,
    document_identifier    TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, patient_id) REFERENCES patient(practice_id, id)
);
INSERT INTO inbound_message_new (practice_id, id, message_id, sender_ods, via, received_at, status, response_code,
    problems, payload, record, items, patient_id, replaces, superseded_by, task_id, decided_at, decided_by, decision_note)
SELECT practice_id, id, message_id, sender_ods, via, received_at, status, response_code,
    problems, payload, record, items, patient_id, replaces, superseded_by, task_id, decided_at, decided_by, decision_note
FROM inbound_message;
DROP TABLE inbound_message;
ALTER TABLE inbound_message_new RENAME TO inbound_message;
CREATE INDEX inbound_by_status ON inbound_message (practice_id, status, received_at);
CREATE UNIQUE INDEX inbound_accepted_message_id ON inbound_message (practice_id, message_id) WHERE response_code = 20013;
CREATE INDEX inbound_by_message_id ON inbound_message (practice_id, message_id);
CREATE INDEX inbound_by_composition_identifier ON inbound_message (practice_id, composition_identifier);
CREATE INDEX inbound_by_document_identifier ON inbound_message (practice_id, document_identifier);

INSERT INTO inbound_amendment SELECT * FROM inbound_amendment_keep;
INSERT INTO inbound_entry SELECT * FROM inbound_entry_keep;
DROP TABLE inbound_amendment_keep;
DROP TABLE inbound_entry_keep;

ALTER TABLE entry ADD COLUMN superseded_at TEXT;
ALTER TABLE entry ADD COLUMN superseded_note TEXT;
