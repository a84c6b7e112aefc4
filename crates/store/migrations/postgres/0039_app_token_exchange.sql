-- The public key of an app that exchanges its users' NHS login ID tokens for access tokens
-- (OAuth 2.0 Token Exchange, RFC 8693), as NHS England's API platform does for the NHS App:
-- its client assertions are checked with it. NULL: the app may not exchange tokens.
ALTER TABLE patient_app ADD COLUMN exchange_key TEXT;
