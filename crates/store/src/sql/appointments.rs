//! [`AppointmentStore`] on both databases: clinics, slots and appointments.

use super::*;
use async_trait::async_trait;

/// The columns of a slot joined with a booking (`a`), as `rows::slot_and_booking` and
/// `rows::appointment_and_slot` read them.
macro_rules! slot_booking_columns {
    () => {
        "SELECT s.*, c.clinician_id, a.id AS a_id, a.patient_id, a.booked_at, a.booked_by, a.cancelled_at, a.cancelled_by, a.version, \
         a.description, a.comment, a.booking_org_ods, a.booking_org_name, a.booking_org_telephone, a.cancellation_reason, \
         a.channel, a.attendance"
    };
}

#[async_trait]
impl AppointmentStore for SqlStore {
    async fn create_clinic(
        &self,
        practice: PracticeId,
        c: &Clinic,
        slots: &[Slot],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let (types, ods) = c.others_bookable_by.columns();
        let limit = c.others_bookable_by.limit.map(i32::from);
        let release = c.others_bookable_by.release_hours.map(i32::from);
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO clinic (practice_id, id, clinician_id, clinician_name, day, start_time, end_time, slot_minutes, \
             slot_type, online_bookable, location, others_bookable, online_share, others_types, others_ods, others_limit, \
             others_release_hours) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(practice.as_uuid())
        .bind(c.id.as_uuid())
        .bind(c.clinician.as_uuid())
        .bind(&c.clinician_name)
        .bind(c.date)
        .bind(c.start.format("%H:%M").to_string())
        .bind(c.end.format("%H:%M").to_string())
        .bind(i32::from(c.slot_minutes))
        .bind(c.slot_type.as_str())
        .bind(c.online_share > 0)
        .bind(&c.location)
        .bind(c.others_bookable)
        .bind(i32::from(c.online_share))
        .bind(&types)
        .bind(&ods)
        .bind(limit)
        .bind(release)
        .execute(&mut tx)
        .await?;
        for s in slots {
            query(
                "INSERT INTO slot (practice_id, id, clinic_id, starts_at, minutes, slot_type, online_bookable, clinician_name, location, \
                 others_bookable, others_types, others_ods, others_limit, others_release_hours) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(practice.as_uuid())
            .bind(s.id.as_uuid())
            .bind(c.id.as_uuid())
            .bind(s.starts_at)
            .bind(i32::from(s.minutes))
            .bind(s.slot_type.as_str())
            .bind(s.online_bookable)
            .bind(&s.clinician_name)
            .bind(&s.location)
            .bind(s.others_bookable)
            // A slot carries its clinic's.
            .bind(&types)
            .bind(&ods)
            .bind(limit)
        .bind(release)
            .execute(&mut tx)
            .await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn slots_between(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(Slot, Option<Appointment>)>> {
        query(
            concat!(
                slot_booking_columns!(),
                " FROM slot s JOIN clinic c ON c.practice_id = s.practice_id AND c.id = s.clinic_id \
                 LEFT JOIN appointment a ON a.practice_id = s.practice_id AND a.slot_id = s.id AND a.cancelled_at IS NULL \
                 WHERE s.practice_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3 ORDER BY s.starts_at, s.clinician_name"
            ),
        )
        .bind(practice.as_uuid())
        .bind(from)
        .bind(to)
        .fetch_all(self.read())
        .await?
        .iter()
        .map(rows::slot_and_booking)
        .collect()
    }

    async fn slot(&self, practice: PracticeId, id: SlotId) -> StoreResult<Option<Slot>> {
        self.row_by("SELECT s.*, c.clinician_id FROM slot s JOIN clinic c ON c.practice_id = s.practice_id AND c.id = s.clinic_id \
             WHERE s.practice_id = $1 AND s.id = $2", practice, id.as_uuid(), rows::slot).await
    }

    async fn book_slot(&self, practice: PracticeId, a: &Appointment, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO appointment (practice_id, id, slot_id, patient_id, booked_at, booked_by, version, description, comment, \
             booking_org_ods, booking_org_name, booking_org_telephone, channel, attendance) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(practice.as_uuid())
        .bind(a.id.as_uuid())
        .bind(a.slot.as_uuid())
        .bind(a.patient.as_uuid())
        .bind(a.booked_at)
        .bind(&a.booked_by)
        .bind(i32::try_from(a.version).unwrap_or(i32::MAX))
        .bind(a.description.as_deref())
        .bind(a.comment.as_deref())
        .bind(a.booked_through.as_ref().map(|o| o.ods.as_str()))
        .bind(a.booked_through.as_ref().map(|o| o.name.as_str()))
        .bind(a.booked_through.as_ref().and_then(|o| o.telephone.as_deref()))
        .bind(a.channel.as_str())
        .bind(a.attendance.map(|x| x.as_str()));
        let mut tx = self.begin().await?;
        if a.booked_through.is_some() {
            // The clinic's row is locked first (SQLite's transaction holds the write lock from
            // its start), so bookings at the same moment count one after the other.
            let lock = format!(
                "SELECT c.id, c.others_limit FROM clinic c JOIN slot s ON s.practice_id = c.practice_id AND s.clinic_id = c.id \
                 WHERE s.practice_id = $1 AND s.id = $2{}",
                tx.row_lock()
            );
            let row = query(&lock)
                .bind(practice.as_uuid())
                .bind(a.slot.as_uuid())
                .fetch_optional(&mut tx)
                .await?
                .ok_or(StoreError::Conflict(Conflict::MissingReference))?;
            if let Some(limit) = row.opt_int("others_limit")? {
                let booked: i64 = query(
                    "SELECT COUNT(*) AS n FROM appointment a JOIN slot s ON s.practice_id = a.practice_id AND s.id = a.slot_id \
                     WHERE a.practice_id = $1 AND s.clinic_id = $2 AND a.booking_org_ods IS NOT NULL AND a.cancelled_at IS NULL",
                )
                .bind(practice.as_uuid())
                .bind(row.uuid("id")?)
                .fetch_one(&mut tx)
                .await?
                .int("n")?;
                if booked >= limit {
                    return Err(StoreError::Conflict(Conflict::OthersLimitReached));
                }
            }
        }
        q.execute(&mut tx).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn others_bookings_by_clinic(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(ClinicId, u32)>> {
        // A clinic is one day: its slots all start within a day of any one of them.
        query(
            "SELECT s.clinic_id, COUNT(*) AS n FROM appointment a JOIN slot s ON s.practice_id = a.practice_id AND s.id = a.slot_id \
             WHERE a.practice_id = $1 AND a.booking_org_ods IS NOT NULL AND a.cancelled_at IS NULL \
             AND s.starts_at >= $2 AND s.starts_at < $3 GROUP BY s.clinic_id",
        )
        .bind(practice.as_uuid())
        .bind(from - chrono::Duration::days(1))
        .bind(to + chrono::Duration::days(1))
        .fetch_all(self.read())
        .await?
        .iter()
        .map(|r| Ok((ClinicId::from_uuid(r.uuid("clinic_id")?), u32::try_from(r.int("n")?).unwrap_or(u32::MAX))))
        .collect()
    }

    async fn cancel_appointment(
        &self,
        practice: PracticeId,
        id: AppointmentId,
        patient: PatientId,
        change: &BookingChange<'_>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let sql = format!(
            "UPDATE appointment SET cancelled_at = $1, cancelled_by = $2, cancellation_reason = $3, version = version + 1 \
             WHERE practice_id = $4 AND id = $5 AND patient_id = $6 AND cancelled_at IS NULL{}",
            if change.expected_version.is_some() { " AND version = $7" } else { "" }
        );
        let mut q = query(&sql)
            .bind(change.at)
            .bind(change.by)
            .bind(change.reason)
            .bind(practice.as_uuid())
            .bind(id.as_uuid())
            .bind(patient.as_uuid());
        if let Some(v) = change.expected_version {
            q = q.bind(i32::try_from(v).unwrap_or(i32::MAX));
        }
        self.change_one_audited(practice, q, "booked appointment", &[audit]).await
    }

    async fn amend_appointment(&self, practice: PracticeId, a: &Appointment, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "UPDATE appointment SET description = $1, comment = $2, version = version + 1 \
             WHERE practice_id = $3 AND id = $4 AND patient_id = $5 AND cancelled_at IS NULL AND version = $6",
        )
        .bind(a.description.as_deref())
        .bind(a.comment.as_deref())
        .bind(practice.as_uuid())
        .bind(a.id.as_uuid())
        .bind(a.patient.as_uuid())
        .bind(i32::try_from(a.version).unwrap_or(i32::MAX));
        self.change_one_audited(practice, q, "booked appointment at that version", &[audit]).await
    }

    async fn appointments_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(Appointment, Slot)>> {
        query(concat!(
            slot_booking_columns!(),
            " FROM appointment a JOIN slot s ON s.practice_id = a.practice_id AND s.id = a.slot_id \
                 JOIN clinic c ON c.practice_id = s.practice_id AND c.id = s.clinic_id \
                 WHERE a.practice_id = $1 AND a.patient_id = $2 ORDER BY s.starts_at DESC, a.booked_at DESC"
        ))
        .bind(practice.as_uuid())
        .bind(patient.as_uuid())
        .fetch_all(self.read())
        .await?
        .iter()
        .map(rows::appointment_and_slot)
        .collect()
    }

    async fn appointment(&self, practice: PracticeId, id: AppointmentId) -> StoreResult<Option<(Appointment, Slot)>> {
        self.row_by(
            concat!(
                slot_booking_columns!(),
                " FROM appointment a JOIN slot s ON s.practice_id = a.practice_id AND s.id = a.slot_id \
                 JOIN clinic c ON c.practice_id = s.practice_id AND c.id = s.clinic_id \
                 WHERE a.practice_id = $1 AND a.id = $2"
            ),
            practice,
            id.as_uuid(),
            rows::appointment_and_slot,
        )
        .await
    }

    async fn slot_with_booking(
        &self,
        practice: PracticeId,
        id: SlotId,
    ) -> StoreResult<Option<(Slot, Option<Appointment>)>> {
        self.row_by(
            concat!(
                slot_booking_columns!(),
                " FROM slot s JOIN clinic c ON c.practice_id = s.practice_id AND c.id = s.clinic_id \
                 LEFT JOIN appointment a ON a.practice_id = s.practice_id AND a.slot_id = s.id AND a.cancelled_at IS NULL \
                 WHERE s.practice_id = $1 AND s.id = $2"
            ),
            practice,
            id.as_uuid(),
            rows::slot_and_booking,
        )
        .await
    }

    async fn set_slot_online(
        &self,
        practice: PracticeId,
        slot: SlotId,
        online: bool,
        now: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query("UPDATE slot SET online_bookable = $1 WHERE practice_id = $2 AND id = $3 AND starts_at > $4")
            .bind(online)
            .bind(practice.as_uuid())
            .bind(slot.as_uuid())
            .bind(now);
        self.change_one_audited(practice, q, "slot that has not started", &[audit]).await
    }

    async fn record_attendance(
        &self,
        practice: PracticeId,
        id: AppointmentId,
        attendance: caldicott_core::appointments::Attendance,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q =
            query("UPDATE appointment SET attendance = $1 WHERE practice_id = $2 AND id = $3 AND cancelled_at IS NULL")
                .bind(attendance.as_str())
                .bind(practice.as_uuid())
                .bind(id.as_uuid());
        self.change_one_audited(practice, q, "booked appointment", &[audit]).await
    }

    async fn capacity_facts(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<caldicott_core::capacity::SlotFact>> {
        query(
            "SELECT s.starts_at, s.clinician_name, s.slot_type, s.online_bookable, a.channel, a.attendance FROM slot s \
             LEFT JOIN appointment a ON a.practice_id = s.practice_id AND a.slot_id = s.id AND a.cancelled_at IS NULL \
             WHERE s.practice_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3 ORDER BY s.starts_at",
        )
        .bind(practice.as_uuid())
        .bind(from)
        .bind(to)
        .fetch_all(self.read())
        .await?
        .iter()
        .map(rows::capacity_fact)
        .collect()
    }

    async fn service_capacity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<PracticeCapacity>> {
        // Counted per practice in a subquery grouped by the distribution column, then joined
        // to every practice (one with no clinics shows noughts).
        let rows = query(concat!(
            "SELECT pr.id, pr.ods_code, pr.name, ",
            "COALESCE(c.offered, 0) AS offered, COALESCE(c.offered_online, 0) AS offered_online, ",
            "COALESCE(c.booked_online, 0) AS booked_online, COALESCE(c.booked_practice, 0) AS booked_practice, ",
            "COALESCE(c.booked_other, 0) AS booked_other, COALESCE(c.dna_online, 0) AS dna_online, ",
            "COALESCE(c.dna_practice, 0) AS dna_practice, COALESCE(c.dna_other, 0) AS dna_other, ",
            "COALESCE(c.unrecorded, 0) AS unrecorded ",
            "FROM practice pr LEFT JOIN (SELECT s.practice_id, COUNT(*) AS offered, ",
            "SUM(CASE WHEN s.online_bookable THEN 1 ELSE 0 END) AS offered_online, ",
            "SUM(CASE WHEN a.channel = 'online' THEN 1 ELSE 0 END) AS booked_online, ",
            "SUM(CASE WHEN a.channel = 'practice' THEN 1 ELSE 0 END) AS booked_practice, ",
            "SUM(CASE WHEN a.channel = 'other_care_setting' THEN 1 ELSE 0 END) AS booked_other, ",
            "SUM(CASE WHEN a.channel = 'online' AND a.attendance = 'did_not_attend' THEN 1 ELSE 0 END) AS dna_online, ",
            "SUM(CASE WHEN a.channel = 'practice' AND a.attendance = 'did_not_attend' THEN 1 ELSE 0 END) AS dna_practice, ",
            "SUM(CASE WHEN a.channel = 'other_care_setting' AND a.attendance = 'did_not_attend' THEN 1 ELSE 0 END) AS dna_other, ",
            "SUM(CASE WHEN a.id IS NOT NULL AND a.attendance IS NULL AND s.starts_at <= $3 THEN 1 ELSE 0 END) AS unrecorded ",
            "FROM slot s LEFT JOIN appointment a ON a.practice_id = s.practice_id AND a.slot_id = s.id AND a.cancelled_at IS NULL ",
            "WHERE s.starts_at >= $1 AND s.starts_at < $2 GROUP BY s.practice_id) c ON c.practice_id = pr.id ORDER BY pr.ods_code"
        ))
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PracticeCapacity {
                    practice: PracticeId::from_uuid(r.uuid("id")?),
                    ods_code: r.text("ods_code")?,
                    name: r.text("name")?,
                    counts: caldicott_core::capacity::Counts {
                        offered: rows::count(r, "offered")?,
                        offered_online: rows::count(r, "offered_online")?,
                        booked_online: rows::count(r, "booked_online")?,
                        booked_by_practice: rows::count(r, "booked_practice")?,
                        booked_by_other_care_settings: rows::count(r, "booked_other")?,
                        did_not_attend_online: rows::count(r, "dna_online")?,
                        did_not_attend_by_practice: rows::count(r, "dna_practice")?,
                        did_not_attend_by_other_care_settings: rows::count(r, "dna_other")?,
                        attendance_not_recorded: rows::count(r, "unrecorded")?,
                    },
                })
            })
            .collect()
    }
}
