-- An app that signs its users in with NHS login can link with that identity instead of the
-- letter: its client id at NHS login is the audience of the ID tokens it presents.
ALTER TABLE patient_app ADD COLUMN nhs_login_client_id TEXT;
