-- Subject access exports being made or waiting to be collected. They are held here, not in one
-- server's memory, so that any server behind the load balancer shows an export's progress and
-- hands each file over once. A file is dropped when it is collected; a job is dropped 15
-- minutes after it began. The server making an export beats `heartbeat_at`; a job whose
-- heartbeat stops (its server stopped) is shown as failed.
CREATE TABLE sar_export_job (
    practice_id   BLOB        NOT NULL,
    id            BLOB        NOT NULL,
    sar_id        BLOB        NOT NULL,
    staff_id      BLOB        NOT NULL,
    started_at    TEXT        NOT NULL,
    heartbeat_at  TEXT        NOT NULL,
    stage         TEXT        NOT NULL,
    done          BIGINT      NOT NULL,
    total         BIGINT      NOT NULL,
    finished      BOOLEAN     NOT NULL,
    failure       TEXT,
    file_stem     TEXT,
    released      BIGINT      NOT NULL,
    withheld      BIGINT      NOT NULL,
    pdf           BLOB,
    pdf_sha256    TEXT,
    pdf_bytes     BIGINT,
    pdf_taken     BOOLEAN     NOT NULL,
    bundle        BLOB,
    bundle_sha256 TEXT,
    bundle_bytes  BIGINT,
    bundle_taken  BOOLEAN     NOT NULL,
    PRIMARY KEY (practice_id, id),
    FOREIGN KEY (practice_id, sar_id) REFERENCES sar_request(practice_id, id)
);
CREATE INDEX sar_export_job_started ON sar_export_job (practice_id, started_at);
