-- Narrow indexes that cover what the exclusion figures read of each patient (date of birth and
-- death) and of each registration (start and end), so that counting a whole service reads
-- indexes in key order instead of the wide patient rows.
CREATE INDEX patient_for_counts ON patient (practice_id, id, date_of_birth, date_of_death);
CREATE INDEX registration_for_counts ON registration (practice_id, patient_id, started, ended);
