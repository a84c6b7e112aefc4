-- Results and documents waiting for a clinician to file (or review) them.
ALTER TABLE entry ADD COLUMN awaiting_filing BOOLEAN NOT NULL DEFAULT false;
UPDATE entry SET awaiting_filing = true
 WHERE (kind = 'test_result' AND body::jsonb ->> 'filing' = 'unfiled')
    OR (kind = 'document' AND (body::jsonb ->> 'filing' = 'unfiled' OR body::jsonb ->> 'review' = 'unreviewed'));
CREATE INDEX entry_awaiting_filing ON entry (practice_id, entered_at) WHERE awaiting_filing;
-- Who did what, for "recently viewed" and staff activity.
CREATE INDEX audit_by_actor ON audit_event (practice_id, actor_id, seq);
