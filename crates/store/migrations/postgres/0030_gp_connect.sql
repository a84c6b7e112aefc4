-- GP Connect Access Record: Structured: the practice's switch (on by default) and its
-- Accredited System ID on the Spine, to which requests must be addressed (Ssp-To).
ALTER TABLE practice ADD COLUMN gp_connect_structured BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE practice ADD COLUMN gp_connect_asid TEXT;
