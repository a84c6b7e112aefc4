-- A message is done only when the patient was told, once.
-- task_id: the alert task a safety-net message answers; when the message fails for good the
-- task opens again with the reason.
-- tries: every try ever started, never reset by "Send again"; a message tried before is looked
-- up at the provider by its reference before it is sent again.
-- email_message_id: the Message-ID an email carries, fixed before its first try and reused on
-- every retry, so a receiving server can drop a repeat.
ALTER TABLE outbox ADD COLUMN task_id UUID;
ALTER TABLE outbox ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN email_message_id TEXT;
UPDATE outbox SET tries = attempts;
CREATE INDEX outbox_by_task ON outbox (practice_id, task_id);
