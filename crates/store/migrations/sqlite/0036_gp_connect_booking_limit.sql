-- GP Connect slot availability management: the practice may limit how many of a clinic's slots
-- other care settings may have booked at once (live bookings through GP Connect); NULL is no
-- limit. Slots carry their clinic's.
ALTER TABLE clinic ADD COLUMN others_limit INTEGER;
ALTER TABLE slot ADD COLUMN others_limit INTEGER;
