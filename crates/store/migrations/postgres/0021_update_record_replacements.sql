-- GP Connect Update Record: a message id is taken once only when the message was accepted
-- (20013), so a message refused (20009, 20010) can be delivered again; a replacement may name
-- the earlier payload by its Composition or document Bundle identifier; and an entry filed from
-- a payload that a later one replaced is kept for audit, marked superseded.
ALTER TABLE inbound_message DROP CONSTRAINT inbound_message_practice_id_message_id_key;
CREATE UNIQUE INDEX inbound_accepted_message_id ON inbound_message (practice_id, message_id) WHERE response_code = 20013;
CREATE INDEX inbound_by_message_id ON inbound_message (practice_id, message_id);
ALTER TABLE inbound_message ADD COLUMN composition_identifier TEXT;
ALTER TABLE inbound_message ADD COLUMN document_identifier TEXT;
CREATE INDEX inbound_by_composition_identifier ON inbound_message (practice_id, composition_identifier);
CREATE INDEX inbound_by_document_identifier ON inbound_message (practice_id, document_identifier);

ALTER TABLE entry ADD COLUMN superseded_at TIMESTAMPTZ;
ALTER TABLE entry ADD COLUMN superseded_note TEXT;
