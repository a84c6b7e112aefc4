-- Tries at each account's credentials across every address: a burst, then one per interval
-- (GCRA). One row per account holds the theoretical arrival time of the next try; a try is taken
-- in one statement that refuses it when the account's rate is spent. In the database, not one
-- server's memory, so that several servers behind a load balancer share one limit.
CREATE TABLE account_tries (
    practice_id BLOB   NOT NULL,
    subject     TEXT   NOT NULL,
    tat_ms      BIGINT NOT NULL,
    PRIMARY KEY (practice_id, subject)
);
