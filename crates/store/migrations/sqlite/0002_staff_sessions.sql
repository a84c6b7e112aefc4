-- Staff sign-in: a TOTP second factor, lock-out after repeated failures, and server-side sessions.

ALTER TABLE staff ADD COLUMN totp_secret TEXT;
ALTER TABLE staff ADD COLUMN totp_confirmed BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE staff ADD COLUMN failed_sign_ins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE staff ADD COLUMN locked_until TEXT;

CREATE TABLE staff_session (
    practice_id  BLOB NOT NULL,
    id           BLOB NOT NULL,
    staff_id     BLOB NOT NULL,
    secret_hash  BLOB NOT NULL,
    csrf_token   TEXT NOT NULL,
    stage        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    ended_at     TEXT,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, staff_id) REFERENCES staff(practice_id, id)
);
CREATE INDEX staff_session_by_staff ON staff_session (practice_id, staff_id);
