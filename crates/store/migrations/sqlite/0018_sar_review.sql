-- Subject access exports (R33, T37, T38): what a request covers, the requester's authority, a
-- decision per item by a named reviewer, and a record of every release (never the file itself).
ALTER TABLE sar_request ADD COLUMN period_from TEXT;
ALTER TABLE sar_request ADD COLUMN period_to TEXT;
ALTER TABLE sar_request ADD COLUMN authority TEXT;

CREATE TABLE sar_decision (
    practice_id BLOB NOT NULL,
    sar_id      BLOB NOT NULL,
    item_key    TEXT NOT NULL,
    decision    TEXT NOT NULL,
    ground      TEXT,
    reason      TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    decided_at  TEXT NOT NULL,
    PRIMARY KEY (practice_id, sar_id, item_key),
    FOREIGN KEY (practice_id, sar_id) REFERENCES sar_request(practice_id, id)
);

CREATE TABLE sar_release (
    practice_id    BLOB NOT NULL,
    id             BLOB NOT NULL,
    sar_id         BLOB NOT NULL,
    released_at    TEXT NOT NULL,
    released_by    TEXT NOT NULL,
    format         TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    items_released BIGINT NOT NULL,
    items_withheld BIGINT NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, sar_id) REFERENCES sar_request(practice_id, id)
);
CREATE INDEX sar_release_by_sar ON sar_release (practice_id, sar_id, released_at);
