-- Linking an app with NHS login: the app first asks for a nonce, which it puts in its NHS login
-- request; the ID token must carry it back. A nonce links once: its hash is kept here until it
-- expires, and a second use is refused.
CREATE TABLE app_link_nonces_used (
    practice_id BLOB           NOT NULL,
    app_id      BLOB           NOT NULL,
    nonce_hash  BLOB           NOT NULL,
    expires_ms  INTEGER        NOT NULL,
    PRIMARY KEY (practice_id, app_id, nonce_hash)
);
