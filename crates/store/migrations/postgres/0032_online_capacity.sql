-- Online appointment capacity: the share of a clinic's slots offered online when it was planned,
-- how each booking was made (online, by the practice, by another care setting through GP
-- Connect), and whether the patient came. Bookings made before this were online unless another
-- care setting made them: the practice could not book for patients. (Each check is added on its
-- own, after its column: Citus adds no column and constraint in one command.)
ALTER TABLE clinic ADD COLUMN online_share INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clinic ADD CONSTRAINT clinic_online_share CHECK (online_share BETWEEN 0 AND 100);
UPDATE clinic SET online_share = CASE WHEN online_bookable THEN 100 ELSE 0 END;
ALTER TABLE appointment ADD COLUMN channel TEXT NOT NULL DEFAULT 'online';
ALTER TABLE appointment ADD CONSTRAINT appointment_channel CHECK (channel IN ('online', 'practice', 'other_care_setting'));
UPDATE appointment SET channel = 'other_care_setting' WHERE booking_org_ods IS NOT NULL;
ALTER TABLE appointment ADD COLUMN attendance TEXT;
ALTER TABLE appointment ADD CONSTRAINT appointment_attendance CHECK (attendance IN ('attended', 'did_not_attend'));
