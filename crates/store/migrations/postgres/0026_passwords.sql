-- Passwords (ASVS 2.5). A one-time code an administrator made so that a member of staff can set
-- a new password: one per member (a new code replaces the last), kept only as its SHA-256, used
-- once, until expires_at (24 hours). Making it replaced the old password at once.
CREATE TABLE staff_password_reset (
    practice_id UUID NOT NULL,
    staff_id    UUID NOT NULL,
    code_hash   BYTEA NOT NULL,
    made_by     UUID NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    PRIMARY KEY (practice_id, staff_id),
    FOREIGN KEY (practice_id, staff_id) REFERENCES staff(practice_id, id)
);
-- A letter for a patient who forgot their password sets a new password for this existing local
-- account (null: a sign-up letter, which makes a new account).
ALTER TABLE linkage_key ADD COLUMN resets_account_id UUID;
