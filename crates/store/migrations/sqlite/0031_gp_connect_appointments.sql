-- GP Connect Appointment Management: clinics and slots the practice offers to other care settings
-- (NHS 111, urgent care, hospitals), and what a booking made through GP Connect carries: its
-- version (for If-Match), the booker's description and comment, the booking organisation, and
-- the reason given for a cancellation.
ALTER TABLE clinic ADD COLUMN others_bookable BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE slot ADD COLUMN others_bookable BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE appointment ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE appointment ADD COLUMN description TEXT;
ALTER TABLE appointment ADD COLUMN comment TEXT;
ALTER TABLE appointment ADD COLUMN booking_org_ods TEXT;
ALTER TABLE appointment ADD COLUMN booking_org_name TEXT;
ALTER TABLE appointment ADD COLUMN booking_org_telephone TEXT;
ALTER TABLE appointment ADD COLUMN cancellation_reason TEXT;
