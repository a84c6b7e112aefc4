-- Optional two-step sign-in for local patient accounts: an authenticator-app secret, and
-- sessions that wait for its code before they are signed in.
ALTER TABLE patient_login ADD COLUMN totp_secret TEXT;
ALTER TABLE patient_login ADD COLUMN totp_confirmed BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE patient_session ADD COLUMN stage TEXT NOT NULL DEFAULT 'signed_in';
