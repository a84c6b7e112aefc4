-- A patient's own access level (R13, D10): when set, it replaces automatic access in both
-- directions; NULL means the practice's automatic access applies.
ALTER TABLE access_setting ADD COLUMN own_level TEXT;
ALTER TABLE access_setting ADD COLUMN own_level_set_on DATE;
ALTER TABLE access_setting ADD COLUMN own_level_set_by TEXT;
