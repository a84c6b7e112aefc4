-- When each practice's outbox next has something to do: the earliest time a queued message is
-- due or a claimed one's claim runs out. The worker reads this small table to find the practices
-- with work and claims within each one, so that on Citus its poll every few seconds reads one
-- reference table and then only the shards of practices with messages due, not every shard.
-- Every write that makes a message due moves the practice's time earlier, in its transaction;
-- the worker sets it again from the practice's outbox after each claim, or takes it away.
CREATE TABLE outbox_wake (
    practice_id UUID PRIMARY KEY REFERENCES practice(id),
    due_at      TIMESTAMPTZ NOT NULL
);
INSERT INTO outbox_wake (practice_id, due_at)
    SELECT practice_id, MIN(CASE WHEN status = 'queued' THEN next_attempt_at ELSE COALESCE(lease_until, next_attempt_at) END)
    FROM outbox WHERE status IN ('queued', 'sending') GROUP BY practice_id;
CREATE INDEX outbox_wake_due ON outbox_wake (due_at);
-- A claim reads one practice's due messages.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (practice_id, status, next_attempt_at);
