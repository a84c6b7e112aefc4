//! The demo's appointment book: four weeks of past clinics, booked online, by reception and by
//! NHS 111, with attendance recorded (a few did not attend, and yesterday's not all recorded
//! yet), and the next two weeks of clinics planned through the same use case staff use, each
//! offering its share online, some already booked. The online capacity report has something
//! to count from the first start.

use caldicott_app::appointments::NewClinic;
use caldicott_app::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::appointments::*;
use caldicott_core::audit::Action;
use caldicott_core::ids::*;
use caldicott_core::staff::{Role, StaffMember};
use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How many weeks of past clinics the demo holds.
pub const HISTORY_WEEKS: i64 = 4;

/// One clinician's usual session: start, end, slot length, type and online share.
fn session(c: &StaffMember, i: usize) -> (&'static str, &'static str, u16, SlotType, u8) {
    if c.username.starts_with("nurse.") {
        ("14:00", "16:00", 20, SlotType::NurseFaceToFace, 100)
    } else if i % 2 == 1 {
        ("09:00", "11:30", 15, SlotType::GpTelephone, 60)
    } else {
        ("09:00", "11:30", 15, SlotType::GpFaceToFace, 50)
    }
}

fn weekdays(from: NaiveDate, count: usize) -> Vec<NaiveDate> {
    (0..)
        .map(|n| from + Duration::days(n))
        .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .take(count)
        .collect()
}

/// Plans the clinics and makes the bookings; says how many bookings it made. `patients` are the people the bookings are for
/// (not the demo's named patients, whose own appointments the tour books and cancels).
pub async fn seed_appointments(
    app: &App,
    practice: PracticeId,
    staff: &[StaffMember],
    reception: &StaffPrincipal,
    patients: &[PatientId],
    seed: u64,
) -> AppResult<usize> {
    if patients.is_empty() {
        return Ok(0);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0a99_0117);
    let today = caldicott_core::uk::uk_date(app.now());
    let now = app.now();
    let clinicians: Vec<&StaffMember> = staff.iter().filter(|s| s.role == Role::Clinician && s.active).collect();
    let nhs_111 = BookingOrganisation {
        ods: "NHS111".into(),
        name: "NHS 111 (Riverside and District)".into(),
        telephone: Some("0300 123 1111".into()),
    };

    // The past: clinics made directly (the book does not plan days gone), then their bookings.
    let first = caldicott_core::capacity::monday_of(today) - Duration::weeks(HISTORY_WEEKS);
    let past: Vec<NaiveDate> = weekdays(first, 40).into_iter().filter(|d| *d < today).collect();
    let mut booked = 0usize;
    for day in &past {
        for (i, c) in clinicians.iter().enumerate() {
            let (start, end, minutes, slot_type, online_share) = session(c, i);
            let clinic = Clinic {
                id: ClinicId::from_uuid(new_id()),
                clinician: c.id,
                clinician_name: c.display_name.clone(),
                date: *day,
                start: NaiveTime::parse_from_str(start, "%H:%M").unwrap_or_default(),
                end: NaiveTime::parse_from_str(end, "%H:%M").unwrap_or_default(),
                slot_minutes: minutes,
                slot_type,
                online_share,
                others_bookable: slot_type == SlotType::GpFaceToFace,
                others_bookable_by: Default::default(),
                location: if slot_type == SlotType::NurseFaceToFace { "Treatment room" } else { "Consulting room" }
                    .into(),
            };
            let slots = clinic
                .slots(|| SlotId::from_uuid(new_id()))
                .map_err(|e| AppError::Internal(format!("demo clinic: {e}")))?;
            let audit =
                app.seeding().audit(reception, None, Action::ClinicCreate, format!("clinic/{}", clinic.id), "demo");
            app.seeding().plan_clinic(practice, &clinic, &slots, &audit).await?;
            let recent = *day == past[past.len() - 1];
            for slot in &slots {
                let roll: f64 = rng.gen_range(0.0..1.0);
                let channel = match (slot.online_bookable, slot.others_bookable) {
                    (true, _) if roll < 0.78 => BookingChannel::Online,
                    (true, _) if roll < 0.88 => BookingChannel::Practice,
                    (false, true) if roll < 0.12 => BookingChannel::OtherCareSetting,
                    (false, _) if roll < 0.86 => BookingChannel::Practice,
                    _ => continue,
                };
                let patient = patients[rng.gen_range(0..patients.len())];
                let dna = match channel {
                    BookingChannel::Online => 0.08,
                    BookingChannel::Practice => 0.04,
                    BookingChannel::OtherCareSetting => 0.03,
                };
                let attendance = if recent && rng.gen_bool(0.4) {
                    None
                } else if rng.gen_bool(dna) {
                    Some(Attendance::DidNotAttend)
                } else {
                    Some(Attendance::Attended)
                };
                let lead = Duration::hours(rng.gen_range(2..24 * 14));
                let mut a = booking(slot, patient, channel, slot.starts_at - lead, reception, &nhs_111);
                a.attendance = attendance;
                let audit = app.seeding().audit(
                    reception,
                    Some(patient),
                    Action::AppointmentBook,
                    format!("appointment/{}", a.id),
                    "demo history",
                );
                app.seeding().book(practice, &a, &audit).await?;
                booked += 1;
            }
        }
    }

    // The next two weeks, planned as staff plan them; some slots already taken.
    for day in weekdays(today + Duration::days(1), 10) {
        for (i, c) in clinicians.iter().enumerate() {
            let (start, end, minutes, slot_type, online_share) = session(c, i);
            let clinic = NewClinic {
                clinician: c.id.to_string(),
                day: day.day().to_string(),
                month: day.month().to_string(),
                year: day.year().to_string(),
                start: start.into(),
                end: end.into(),
                slot_minutes: minutes.to_string(),
                slot_type: slot_type.as_str().into(),
                online_share: online_share.to_string(),
                // GPs' face-to-face sessions are also offered to other care settings; on Fridays
                // they are kept for NHS 111 and urgent care, before the weekend.
                others_bookable: slot_type == SlotType::GpFaceToFace,
                others_types: if day.weekday() == Weekday::Fri {
                    vec![OrganisationType::UrgentCare.code().to_owned()]
                } else {
                    Vec::new()
                },
                others_ods: String::new(),
                // Up to four of a Friday session's slots may be booked by urgent care.
                others_limit: if day.weekday() == Weekday::Fri { "4".into() } else { String::new() },
                // Each offered to other care settings from a week before it starts.
                others_release_hours: "168".into(),
                location: if slot_type == SlotType::NurseFaceToFace { "Treatment room" } else { "Consulting room" }
                    .into(),
            };
            if let Err(problems) = app.create_clinic(reception, &clinic).await? {
                return Err(AppError::Internal(format!("demo clinic: {problems:?}")));
            }
        }
    }
    let horizon = caldicott_core::uk::uk_start_of(today + Duration::days(16));
    let upcoming = app.appointment_book(reception, today + Duration::days(1), 14).await?;
    let last_day = upcoming.iter().map(|l| uk_time(l.slot.starts_at).date_naive()).max();
    for line in upcoming {
        let slot = line.slot;
        // The last day stays free for the tour's own bookings.
        if slot.starts_at >= horizon || Some(uk_time(slot.starts_at).date_naive()) == last_day {
            continue;
        }
        let roll: f64 = rng.gen_range(0.0..1.0);
        let channel = match slot.online_bookable {
            true if roll < 0.35 => BookingChannel::Online,
            false if roll < 0.45 => BookingChannel::Practice,
            _ => continue,
        };
        let patient = patients[rng.gen_range(0..patients.len())];
        let at = (now - Duration::hours(rng.gen_range(1..72))).min(now);
        let a = booking(&slot, patient, channel, at, reception, &nhs_111);
        let audit = app.seeding().audit(
            reception,
            Some(patient),
            Action::AppointmentBook,
            format!("appointment/{}", a.id),
            "demo",
        );
        app.seeding().book(practice, &a, &audit).await?;
        booked += 1;
    }
    Ok(booked)
}

fn booking(
    slot: &Slot,
    patient: PatientId,
    channel: BookingChannel,
    at: chrono::DateTime<chrono::Utc>,
    reception: &StaffPrincipal,
    nhs_111: &BookingOrganisation,
) -> Appointment {
    let by = match channel {
        BookingChannel::Online => "the patient, online".to_owned(),
        BookingChannel::Practice => format!("by {} at the practice", reception.name),
        BookingChannel::OtherCareSetting => {
            format!("by a clinician at {} ({}), through GP Connect", nhs_111.name, nhs_111.ods)
        }
    };
    let mut a = Appointment::new(AppointmentId::from_uuid(new_id()), slot.id, patient, at, by, channel);
    if channel == BookingChannel::OtherCareSetting {
        a.booked_through = Some(nhs_111.clone());
        a.description = Some("Assessed by NHS 111: needs to be seen today".into());
    }
    a
}
