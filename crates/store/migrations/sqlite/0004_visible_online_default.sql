-- Whether a new entry's "visible online" box starts ticked (practice policy).
ALTER TABLE practice ADD COLUMN visible_online_by_default BOOLEAN NOT NULL DEFAULT 1;
