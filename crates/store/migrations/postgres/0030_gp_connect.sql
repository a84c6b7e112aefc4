-- GP Connect Access Record: Structured and Access Document: the practice's switches (on by default) and its
-- Accredited System ID on the Spine, to which requests must be addressed (Ssp-To).
ALTER TABLE practice ADD COLUMN gp_connect_structured BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE practice ADD COLUMN gp_connect_documents BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE practice ADD COLUMN gp_connect_asid TEXT;
