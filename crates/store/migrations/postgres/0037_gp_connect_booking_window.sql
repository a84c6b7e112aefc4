-- GP Connect slot availability management, booking window/embargo: a clinic offered to other
-- care settings may offer each slot only from this many hours before it starts; NULL is from
-- when the clinic is made. Slots carry their clinic's.
ALTER TABLE clinic ADD COLUMN others_release_hours INTEGER;
ALTER TABLE slot ADD COLUMN others_release_hours INTEGER;
