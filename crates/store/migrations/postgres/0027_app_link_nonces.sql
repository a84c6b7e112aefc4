-- Linking an app with NHS login: the app first asks for a nonce, which it puts in its NHS login
-- request; the ID token must carry it back. A nonce links once: its hash is kept here until it
-- expires, and a second use is refused.
CREATE TABLE app_link_nonces_used (
    practice_id UUID           NOT NULL,
    app_id      UUID           NOT NULL,
    nonce_hash  BYTEA          NOT NULL,
    expires_ms  BIGINT         NOT NULL,
    PRIMARY KEY (practice_id, app_id, nonce_hash)
);
