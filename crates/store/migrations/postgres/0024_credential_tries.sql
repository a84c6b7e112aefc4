-- Tries at a credential (a password, an authenticator code), one row per account and client
-- address. A try is claimed, and counted as failed, before the credential is checked, in one
-- statement that refuses the claim while a wait is due; a success deletes the row. Each failure
-- beyond the free tries makes the next one wait longer (caldicott_core::credentials). Nothing
-- locks an account: a wait from one address never holds back a try from another.
-- succeeded_ms: when a sign-in last completed from this address (0: never); such an address is
-- known to the account and is not held to the account-wide rate an attacker could spend.
CREATE TABLE credential_tries (
    practice_id   UUID    NOT NULL,
    subject       TEXT    NOT NULL,
    address       TEXT    NOT NULL,
    failures      BIGINT  NOT NULL,
    wait_until_ms BIGINT  NOT NULL,
    last_try_ms   BIGINT  NOT NULL,
    succeeded_ms  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (practice_id, subject, address)
);
-- An authenticator code is accepted once: the last time step used, per login.
ALTER TABLE staff ADD COLUMN totp_last_step BIGINT;
ALTER TABLE patient_login ADD COLUMN totp_last_step BIGINT;
