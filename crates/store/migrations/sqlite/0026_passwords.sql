-- Passwords (ASVS 2.5). A one-time code an administrator made so that a member of staff can set
-- a new password: one per member (a new code replaces the last), kept only as its SHA-256, used
-- once, until expires_at (24 hours). Making it replaced the old password at once.
CREATE TABLE staff_password_reset (
    practice_id BLOB NOT NULL,
    staff_id    BLOB NOT NULL,
    code_hash   BLOB NOT NULL,
    made_by     BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (practice_id, staff_id),
    FOREIGN KEY (practice_id, staff_id) REFERENCES staff(practice_id, id)
);
-- A letter for a patient who forgot their password sets a new password for this existing local
-- account (null: a sign-up letter, which makes a new account).
ALTER TABLE linkage_key ADD COLUMN resets_account_id BLOB;
