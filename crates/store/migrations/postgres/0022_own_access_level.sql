-- A patient's own access level (R13, D10): when set, it replaces automatic access in both
-- directions; NULL means the practice's automatic access applies.
ALTER TABLE access_setting ADD COLUMN own_level TEXT;
ALTER TABLE access_setting ADD COLUMN own_level_set_on DATE;
ALTER TABLE access_setting ADD COLUMN own_level_set_by TEXT;
-- R7: set by a transfer-in to its date, cleared when staff next set the level: until then the
-- grants made by hand do not reach the entries the transfer brought.
ALTER TABLE access_setting ADD COLUMN transfer_hold_since DATE;
