-- GP Connect slot availability management: a clinic offered to other care settings may be kept
-- for some kinds of organisation (GPConnect-OrganisationType-1 codes) and/or some organisations
-- (ODS codes), each list space-separated; empty is no restriction. Slots carry their clinic's.
ALTER TABLE clinic ADD COLUMN others_types TEXT NOT NULL DEFAULT '';
ALTER TABLE clinic ADD COLUMN others_ods TEXT NOT NULL DEFAULT '';
ALTER TABLE slot ADD COLUMN others_types TEXT NOT NULL DEFAULT '';
ALTER TABLE slot ADD COLUMN others_ods TEXT NOT NULL DEFAULT '';
