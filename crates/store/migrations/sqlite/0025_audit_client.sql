-- The network address a request came from (the TCP peer, as text), on the audit events written
-- for it. Null for events written before this migration, and for the command line and
-- background work. When present it is part of the event's hash.
ALTER TABLE audit_event ADD COLUMN client_addr TEXT;
