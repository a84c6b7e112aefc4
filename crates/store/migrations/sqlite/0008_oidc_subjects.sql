-- Online accounts reached through an OpenID Connect provider (NHS login): the provider's
-- subject identifier for each account.
CREATE TABLE oidc_subject (
    practice_id BLOB NOT NULL,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    account_id  BLOB NOT NULL,
    linked_at   TEXT NOT NULL,
    PRIMARY KEY (practice_id, issuer, subject),
    FOREIGN KEY (practice_id, account_id) REFERENCES online_account(practice_id, id)
);
