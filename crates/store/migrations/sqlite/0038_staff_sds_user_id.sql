-- A member of staff's SDS user id (the identity on their NHS smartcard), when the practice has
-- recorded it: GP Connect names practitioners by it and other care settings find them by it.
-- One member of staff per id within a practice; NULL is not recorded.
ALTER TABLE staff ADD COLUMN sds_user_id TEXT;
CREATE UNIQUE INDEX staff_one_per_sds_user_id ON staff (practice_id, sds_user_id);
