-- Results and documents waiting for a clinician to file (or review) them.
ALTER TABLE entry ADD COLUMN awaiting_filing BOOLEAN NOT NULL DEFAULT 0;
UPDATE entry SET awaiting_filing = 1
 WHERE (kind = 'test_result' AND json_extract(body, '$.filing') = 'unfiled')
    OR (kind = 'document' AND (json_extract(body, '$.filing') = 'unfiled' OR json_extract(body, '$.review') = 'unreviewed'));
CREATE INDEX entry_awaiting_filing ON entry (practice_id, entered_at) WHERE awaiting_filing;
-- Who did what, for "recently viewed" and staff activity.
CREATE INDEX audit_by_actor ON audit_event (practice_id, actor_id, seq);
