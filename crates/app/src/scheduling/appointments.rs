//! Appointments: staff plan clinics of slots; patients, and proxies with the appointments
//! permission, book free online-bookable slots and cancel before the practice's cut-off. One slot
//! never holds two live bookings: the database refuses the second (T46).

use crate::patient_services::PatientPrincipal;
use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::{IdentityLevel, ProxyLink};
use caldicott_core::appointments::*;
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::staff::Role;
use caldicott_core::visibility::proxy_link_lapse;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};

/// How far ahead patients see bookable slots.
pub const BOOKING_HORIZON_DAYS: i64 = 28;

/// A service a patient or proxy may use for someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Appointments,
    Prescriptions,
}

/// The person whose services are being used, and how the caller acts for them.
#[derive(Debug, Clone)]
pub struct ActingFor {
    pub patient: Patient,
    pub link: Option<ProxyLink>,
}

impl ActingFor {
    /// "the patient, online" or "Jane Doe (mother), online": who asked, for tasks and bookings.
    pub fn requester(&self, me: &PatientPrincipal) -> String {
        match &self.link {
            None => "the patient, online".into(),
            Some(l) => format!("{} ({}), online", me.name, l.relationship.to_lowercase()),
        }
    }
}

/// The clinic form as typed.
#[derive(Debug, Clone, Default)]
pub struct NewClinic {
    pub clinician: String,
    pub day: String,
    pub month: String,
    pub year: String,
    pub start: String,
    pub end: String,
    pub slot_minutes: String,
    pub slot_type: String,
    /// The share of its slots patients may book online, in percent as typed ("50" or "50%").
    pub online_share: String,
    /// Other care settings (NHS 111, urgent care) may book it through GP Connect.
    pub others_bookable: bool,
    /// Only these kinds of organisation (`OrganisationType` codes), when any are ticked.
    pub others_types: Vec<String>,
    /// Only these organisations: ODS codes as typed, separated by commas or spaces.
    pub others_ods: String,
    /// At most this many of its slots booked through GP Connect at once, as typed; empty for no
    /// limit.
    pub others_limit: String,
    /// Each slot offered to them from this many hours before it starts, as typed; empty: from
    /// when the clinic is made.
    pub others_release_hours: String,
    pub location: String,
}

/// A booking as the patient sees it.
#[derive(Debug, Clone)]
pub struct MyAppointment {
    pub id: AppointmentId,
    pub slot: Slot,
    pub cancelled: bool,
    pub can_cancel: bool,
}

/// A slot with its booking and the booked patient, for the staff appointment book.
#[derive(Debug, Clone)]
pub struct BookLine {
    pub slot: Slot,
    pub booking: Option<(Appointment, Patient)>,
}

/// A share in whole percent, 0 to 100, with or without a percent sign.
fn parse_share(s: &str) -> Option<u8> {
    s.trim().trim_end_matches('%').trim_end().parse::<u8>().ok().filter(|p| *p <= 100)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

/// A whole number from 1 to `max` as typed, or nothing when the field is left empty.
fn optional_whole(typed: &str, max: u16, field: &'static str, message: &str) -> Result<Option<u16>, FieldProblem> {
    match typed.trim() {
        "" => Ok(None),
        n => n
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .map(Some)
            .ok_or_else(|| FieldProblem { field, message: message.into() }),
    }
}

/// Which other care settings a clinic is kept for, from the form: the kinds ticked and the ODS
/// codes typed (commas or spaces between them), each code checked.
fn bookable_by(f: &NewClinic) -> Result<BookableBy, FieldProblem> {
    let mut types = Vec::new();
    for t in &f.others_types {
        let t = OrganisationType::parse(t).ok_or_else(|| FieldProblem {
            field: "others_types",
            message: "Choose GP practices, urgent care, or neither".into(),
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let mut ods = Vec::new();
    for code in f.others_ods.split(|c: char| c == ',' || c.is_whitespace()).filter(|c| !c.is_empty()) {
        let code = caldicott_core::practice::OdsCode::parse(code).map_err(|_| FieldProblem {
            field: "others_ods",
            message: format!("{code} is not an ODS code: enter codes such as RR8 or A1001, separated by commas"),
        })?;
        let code = code.as_str().to_ascii_uppercase();
        if !ods.contains(&code) {
            ods.push(code);
        }
    }
    if ods.len() > 50 {
        return Err(FieldProblem { field: "others_ods", message: "Enter at most 50 ODS codes".into() });
    }
    let limit = optional_whole(
        &f.others_limit,
        500,
        "others_limit",
        "Enter how many slots other care settings may book, a whole number from 1 to 500, or leave it empty for no limit",
    )?;
    let release_hours = optional_whole(
        &f.others_release_hours,
        2160,
        "others_release_hours",
        "Enter how many hours before each slot starts to offer it, a whole number from 1 to 2160 (90 days), or leave it empty",
    )?;
    Ok(BookableBy { types, ods, limit, release_hours })
}

impl App {
    /// Checks that `me` may use `service` for the person behind `link` (or for themselves):
    /// the link is theirs, active, not ended, grants the service, and the person is registered.
    pub async fn acting_for(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        service: ServiceKind,
    ) -> AppResult<ActingFor> {
        if me.identity == IdentityLevel::P0 {
            return Err(AppError::Forbidden("verify your identity to use online services".into()));
        }
        let today = self.today();
        let link = match link {
            None => None,
            Some(id) => {
                let l = self
                    .store
                    .proxy_link(me.practice, id)
                    .await?
                    .filter(|l| l.proxy == me.holder)
                    .ok_or_else(|| AppError::NotFound("you do not act for anyone through that link".into()))?;
                let allowed = match service {
                    ServiceKind::Appointments => l.scope.appointments,
                    ServiceKind::Prescriptions => l.scope.prescriptions,
                };
                let patient = self.store.patient(me.practice, l.patient).await?;
                let practice =
                    self.store.practice(me.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
                let lapsed = patient.is_none_or(|p| proxy_link_lapse(&l, &p, &practice.online, today).is_some());
                if lapsed || !allowed {
                    return Err(AppError::Forbidden(
                        "you cannot use this service for this person; contact the practice".into(),
                    ));
                }
                Some(l)
            }
        };
        let target = link.as_ref().map_or(me.holder, |l| l.patient);
        let patient = self
            .store
            .patient(me.practice, target)
            .await?
            .filter(|p| p.registration_on(today).is_some() && !p.is_deceased_on(today))
            .ok_or_else(|| AppError::NotFound("this person is not registered at the practice".into()))?;
        Ok(ActingFor { patient, link })
    }

    /// Plans a clinic and cuts it into slots, or says what is wrong with the form.
    pub async fn create_clinic(
        &self,
        who: &StaffPrincipal,
        f: &NewClinic,
    ) -> AppResult<Result<(Clinic, usize), Vec<FieldProblem>>> {
        permit(who, Permission::ManageAppointments)?;
        let mut problems = Vec::new();
        let clinician = match f.clinician.parse::<StaffId>() {
            Ok(id) => {
                self.store.staff_member(who.practice, id).await?.filter(|s| s.active && s.role == Role::Clinician)
            }
            Err(_) => None,
        };
        if clinician.is_none() {
            problems.push(FieldProblem { field: "clinician", message: "Choose the clinician".into() });
        }
        let date = match (f.day.trim().parse::<u32>(), f.month.trim().parse::<u32>(), f.year.trim().parse::<i32>()) {
            (Ok(d), Ok(m), Ok(y)) => NaiveDate::from_ymd_opt(y, m, d),
            _ => None,
        };
        let today = self.today();
        match date {
            Some(d) if d >= today && d <= today + Duration::days(366) => {}
            _ => problems.push(FieldProblem {
                field: "day",
                message: "Enter a date from today to a year ahead, for example 1 12 2026".into(),
            }),
        }
        let (start, end) = (parse_time(&f.start), parse_time(&f.end));
        if start.is_none() {
            problems.push(FieldProblem { field: "start", message: "Enter the start time, for example 09:00".into() });
        }
        if end.is_none() {
            problems.push(FieldProblem { field: "end", message: "Enter the end time, for example 12:00".into() });
        }
        let minutes = f.slot_minutes.trim().parse::<u16>().ok();
        if minutes.is_none() {
            problems.push(FieldProblem { field: "slot_minutes", message: "Enter the slot length in minutes".into() });
        }
        let slot_type = SlotType::parse(&f.slot_type);
        if slot_type.is_none() {
            problems.push(FieldProblem { field: "slot_type", message: "Choose the type of appointment".into() });
        }
        let online_share = parse_share(&f.online_share);
        if online_share.is_none() {
            problems.push(FieldProblem {
                field: "online_share",
                message: "Enter the share of slots patients can book online, a whole number from 0 to 100".into(),
            });
        }
        let bookable_by = bookable_by(f);
        if let Err(p) = &bookable_by {
            problems.push(p.clone());
        }
        let location = f.location.trim();
        if location.is_empty() || location.len() > 100 {
            problems
                .push(FieldProblem { field: "location", message: "Enter where it happens, for example Room 2".into() });
        }
        let (
            Some(clinician),
            Some(date),
            Some(start),
            Some(end),
            Some(minutes),
            Some(slot_type),
            Some(online_share),
            true,
        ) = (clinician, date, start, end, minutes, slot_type, online_share, problems.is_empty())
        else {
            return Ok(Err(problems));
        };
        let clinic = Clinic {
            id: ClinicId::from_uuid(new_id()),
            clinician: clinician.id,
            clinician_name: clinician.display_name,
            date,
            start,
            end,
            slot_minutes: minutes,
            slot_type,
            online_share,
            others_bookable: f.others_bookable,
            // Only for a clinic offered to other care settings.
            others_bookable_by: if f.others_bookable { bookable_by.unwrap_or_default() } else { BookableBy::default() },
            location: location.to_owned(),
        };
        let slots = match clinic.slots(|| SlotId::from_uuid(new_id())) {
            Ok(s) => s,
            Err(e) => {
                let field = match e {
                    ClinicError::SlotLength => "slot_minutes",
                    ClinicError::OnlineShare => "online_share",
                    _ => "end",
                };
                return Ok(Err(vec![FieldProblem {
                    field,
                    message: format!("{}{}", e.to_string()[..1].to_uppercase(), &e.to_string()[1..]),
                }]));
            }
        };
        let audit = self.audit_record(
            who,
            None,
            Action::ClinicCreate,
            format!("clinic/{}", clinic.id),
            Outcome::Success,
            format!(
                "{} {} {}-{} {} slots, {} online{}",
                clinic.clinician_name,
                date,
                f.start.trim(),
                f.end.trim(),
                slots.len(),
                slots.iter().filter(|s| s.online_bookable).count(),
                match (clinic.others_bookable, clinic.others_bookable_by.describe()) {
                    (false, _) => String::new(),
                    (true, None) => ", offered to other care settings".into(),
                    (true, Some(d)) => format!(", offered to other care settings: {d}"),
                }
            ),
        );
        self.store.create_clinic(who.practice, &clinic, &slots, &audit).await?;
        Ok(Ok((clinic, slots.len())))
    }

    /// The appointment book for the days from `from`, with who is booked into each slot.
    pub async fn appointment_book(&self, who: &StaffPrincipal, from: NaiveDate, days: i64) -> AppResult<Vec<BookLine>> {
        permit(who, Permission::ManageAppointments)?;
        let start = uk_instant(from, NaiveTime::MIN).ok_or_else(|| AppError::BadRequest("no such date".into()))?;
        let end = uk_instant(from + Duration::days(days.clamp(1, 14)), NaiveTime::MIN)
            .ok_or_else(|| AppError::BadRequest("no such date".into()))?;
        let mut out = Vec::new();
        for (slot, booking) in self.store.slots_between(who.practice, start, end).await? {
            let booking = match booking {
                Some(a) => self.store.patient(who.practice, a.patient).await?.map(|p| (a, p)),
                None => None,
            };
            out.push(BookLine { slot, booking });
        }
        let booked = out.iter().filter(|l| l.booking.is_some()).count();
        self.audit_look(
            who,
            None,
            Action::AppointmentBookView,
            format!("appointment-book/{from}"),
            format!("booked={booked}"),
        )
        .await?;
        Ok(out)
    }

    /// Free slots the caller may book online, earliest first.
    pub async fn bookable_slots(&self, me: &PatientPrincipal, link: Option<ProxyLinkId>) -> AppResult<Vec<Slot>> {
        self.acting_for(me, link, ServiceKind::Appointments).await?;
        let now = self.now();
        Ok(self
            .store
            .slots_between(me.practice, now, now + Duration::days(BOOKING_HORIZON_DAYS))
            .await?
            .into_iter()
            .filter(|(s, b)| b.is_none() && can_book_online(s, now))
            .map(|(s, _)| s)
            .collect())
    }

    /// The caller's (or their dependant's) appointments, upcoming first then past.
    pub async fn my_appointments(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
    ) -> AppResult<(Vec<MyAppointment>, Vec<MyAppointment>)> {
        let who = self.acting_for(me, link, ServiceKind::Appointments).await?;
        let practice = self.store.practice(me.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let now = self.now();
        let (mut upcoming, mut past) = (Vec::new(), Vec::new());
        for (a, slot) in self.store.appointments_for_patient(me.practice, who.patient.id).await? {
            let live = a.cancelled_at.is_none();
            let mine = MyAppointment {
                id: a.id,
                can_cancel: live && can_cancel_online(slot.starts_at, now, practice.online.cancel_cutoff_hours),
                cancelled: !live,
                slot,
            };
            if mine.slot.starts_at > now {
                upcoming.push(mine);
            } else {
                past.push(mine);
            }
        }
        upcoming.reverse();
        Ok((upcoming, past))
    }

    /// Books a slot online. Someone else's booking of the same slot, even at the same instant,
    /// makes this a conflict and leaves theirs in place.
    pub async fn book_online(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        slot: SlotId,
    ) -> AppResult<(Appointment, Slot)> {
        let who = self.acting_for(me, link, ServiceKind::Appointments).await?;
        self.book_for(me.practice, who.patient.id, slot, who.requester(me), me.actor(who.link.as_ref()), None).await
    }

    /// Books a free online-bookable slot for a patient, audited as `actor`: the one way a
    /// booking is made online, from the pages or an app. `reason` is what the patient wrote it
    /// is for, and a further comment, when their app sent them.
    pub(crate) async fn book_for(
        &self,
        practice: PracticeId,
        patient: PatientId,
        slot: SlotId,
        booked_by: String,
        actor: caldicott_core::audit::Actor,
        reason: Option<(String, Option<String>)>,
    ) -> AppResult<(Appointment, Slot)> {
        let now = self.now();
        let slot = self
            .store
            .slot(practice, slot)
            .await?
            .filter(|s| can_book_online(s, now))
            .ok_or_else(|| AppError::NotFound("that appointment is not available to book online".into()))?;
        let mut appointment = Appointment::new(
            AppointmentId::from_uuid(new_id()),
            slot.id,
            patient,
            now,
            booked_by,
            BookingChannel::Online,
        );
        if let Some((description, comment)) = reason {
            appointment.description = Some(description);
            appointment.comment = comment;
        }
        let audit = self.patient_audit(
            actor,
            Some(patient),
            Action::AppointmentBook,
            format!("appointment/{}", appointment.id),
            Outcome::Success,
            format!("slot/{} at {}", slot.id, slot.starts_at.to_rfc3339()),
        );
        self.store.book_slot(practice, &appointment, &audit).await?;
        Ok((appointment, slot))
    }

    /// Cancels an upcoming appointment online, up to the practice's cut-off.
    pub async fn cancel_online(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        id: AppointmentId,
    ) -> AppResult<()> {
        let who = self.acting_for(me, link, ServiceKind::Appointments).await?;
        self.cancel_for(me.practice, who.patient.id, id, who.requester(me), me.actor(who.link.as_ref()), None).await
    }

    /// Cancels a patient's upcoming appointment online, up to the practice's cut-off, audited
    /// as `actor`: the one way an online cancellation is made, from the pages or an app (with
    /// the reason it gave, if any).
    pub(crate) async fn cancel_for(
        &self,
        practice_id: PracticeId,
        patient: PatientId,
        id: AppointmentId,
        by: String,
        actor: caldicott_core::audit::Actor,
        reason: Option<&str>,
    ) -> AppResult<()> {
        let practice = self.store.practice(practice_id).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let now = self.now();
        let (_, slot) = self
            .store
            .appointments_for_patient(practice_id, patient)
            .await?
            .into_iter()
            .find(|(a, _)| a.id == id && a.cancelled_at.is_none())
            .ok_or_else(|| AppError::NotFound("no such booked appointment".into()))?;
        let cutoff = practice.online.cancel_cutoff_hours;
        if !can_cancel_online(slot.starts_at, now, cutoff) {
            return Err(AppError::Conflict(format!(
                "appointments can only be cancelled online up to {cutoff} hours before; phone the practice on {}",
                practice.telephone
            )));
        }
        let audit = self.patient_audit(
            actor,
            Some(patient),
            Action::AppointmentCancel,
            format!("appointment/{id}"),
            Outcome::Success,
            "cancelled online",
        );
        let change = caldicott_store::BookingChange { at: now, by: &by, reason, expected_version: None };
        self.store.cancel_appointment(practice_id, id, patient, &change, &audit).await?;
        Ok(())
    }

    /// Cancels a booking at the practice (for example when the patient phones).
    pub async fn staff_cancel_appointment(
        &self,
        who: &StaffPrincipal,
        id: AppointmentId,
        patient: PatientId,
    ) -> AppResult<()> {
        permit(who, Permission::ManageAppointments)?;
        let audit = self.audit_record(
            who,
            Some(patient),
            Action::AppointmentCancel,
            format!("appointment/{id}"),
            Outcome::Success,
            "cancelled by the practice",
        );
        let by = format!("{} at the practice", who.name);
        let change = caldicott_store::BookingChange { at: self.now(), by: &by, reason: None, expected_version: None };
        self.store.cancel_appointment(who.practice, id, patient, &change, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::NotFound(_) => {
                AppError::Conflict("this appointment is not booked any more".into())
            }
            other => other.into(),
        })
    }
}

impl App {
    /// Books a slot for a patient at the practice (the patient phoned or came to the desk):
    /// any slot that has not started, offered online or not. The patient is found by NHS
    /// number among those registered here. Someone else's booking of the slot, even at the
    /// same instant, makes this a conflict and leaves theirs in place.
    pub async fn staff_book(
        &self,
        who: &StaffPrincipal,
        slot: SlotId,
        nhs_number: &str,
    ) -> AppResult<Result<(Appointment, Slot, Patient), FieldProblem>> {
        permit(who, Permission::ManageAppointments)?;
        let now = self.now();
        let (slot, booking) = self
            .store
            .slot_with_booking(who.practice, slot)
            .await?
            .ok_or_else(|| AppError::NotFound("no such slot".into()))?;
        if slot.starts_at <= now {
            return Err(AppError::Conflict("this slot has started; choose a later one".into()));
        }
        if booking.is_some() {
            return Err(AppError::Conflict("this slot has just been booked; choose another".into()));
        }
        let patient = match self.registered_by_nhs(who, nhs_number).await? {
            Ok(p) => p,
            Err(problem) => return Ok(Err(problem)),
        };
        let appointment = Appointment::new(
            AppointmentId::from_uuid(new_id()),
            slot.id,
            patient.id,
            now,
            format!("by {} at the practice", who.name),
            BookingChannel::Practice,
        );
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::AppointmentBook,
            format!("appointment/{}", appointment.id),
            Outcome::Success,
            format!("slot/{} at {} channel=practice", slot.id, slot.starts_at.to_rfc3339()),
        );
        self.store.book_slot(who.practice, &appointment, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::Conflict(_) => {
                AppError::Conflict("this slot has just been booked; choose another".into())
            }
            other => other.into(),
        })?;
        Ok(Ok((appointment, slot, patient)))
    }

    /// The registered, living patient an NHS number typed at the desk names, shown to the
    /// member of staff before they book (name, date of birth) so that the booking is for the
    /// person on the phone. Audited as a search that found them.
    pub async fn patient_to_book(
        &self,
        who: &StaffPrincipal,
        nhs_number: &str,
    ) -> AppResult<Result<Patient, FieldProblem>> {
        permit(who, Permission::ManageAppointments)?;
        let found = self.registered_by_nhs(who, nhs_number).await?;
        if let Ok(p) = &found {
            self.audit_look(who, Some(p.id), Action::PatientSearch, "patients", "by=NhsNumber for=booking results=1")
                .await?;
        }
        Ok(found)
    }

    async fn registered_by_nhs(
        &self,
        who: &StaffPrincipal,
        nhs_number: &str,
    ) -> AppResult<Result<Patient, FieldProblem>> {
        let Ok(number) = caldicott_core::nhs_number::NhsNumber::parse(nhs_number.trim()) else {
            return Ok(Err(FieldProblem {
                field: "nhs_number",
                message: "Enter a valid 10-digit NHS number, for example 943 476 5919".into(),
            }));
        };
        let today = self.today();
        let Some(patient) = self
            .store
            .patient_by_nhs_number(who.practice, &number)
            .await?
            .filter(|p| p.registration_on(today).is_some() && !p.is_deceased_on(today))
        else {
            return Ok(Err(FieldProblem {
                field: "nhs_number",
                message: "No patient registered at this practice has that NHS number".into(),
            }));
        };
        Ok(Ok(patient))
    }

    /// One slot of the practice with its live booking, for the pages that act on it.
    pub async fn slot_for_staff(&self, who: &StaffPrincipal, id: SlotId) -> AppResult<(Slot, Option<Appointment>)> {
        permit(who, Permission::ManageAppointments)?;
        self.store.slot_with_booking(who.practice, id).await?.ok_or_else(|| AppError::NotFound("no such slot".into()))
    }

    /// Offers a slot that has not started online, or stops offering it; a booking already in
    /// it stays.
    pub async fn set_slot_online(&self, who: &StaffPrincipal, slot: SlotId, online: bool) -> AppResult<Slot> {
        permit(who, Permission::ManageAppointments)?;
        let now = self.now();
        let found =
            self.store.slot(who.practice, slot).await?.ok_or_else(|| AppError::NotFound("no such slot".into()))?;
        let audit = self.audit_record(
            who,
            None,
            Action::SlotOnlineChange,
            format!("slot/{slot}"),
            Outcome::Success,
            format!("online: {} -> {online}", found.online_bookable),
        );
        self.store.set_slot_online(who.practice, slot, online, now, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::NotFound(_) => {
                AppError::Conflict("this slot has started; its online offer cannot change".into())
            }
            other => other.into(),
        })?;
        Ok(Slot { online_bookable: online, ..found })
    }

    /// Records whether the patient came to a booked appointment that has started, or corrects
    /// what was recorded.
    pub async fn record_attendance(
        &self,
        who: &StaffPrincipal,
        id: AppointmentId,
        attendance: Attendance,
    ) -> AppResult<(Appointment, Slot)> {
        permit(who, Permission::ManageAppointments)?;
        let (appointment, slot) = self
            .store
            .appointment(who.practice, id)
            .await?
            .ok_or_else(|| AppError::NotFound("no such appointment".into()))?;
        if appointment.cancelled_at.is_some() {
            return Err(AppError::Conflict("this appointment was cancelled".into()));
        }
        if !can_record_attendance(slot.starts_at, self.now()) {
            return Err(AppError::Conflict(
                "whether the patient came can be recorded once the appointment has started".into(),
            ));
        }
        let audit = self.audit_record(
            who,
            Some(appointment.patient),
            Action::AppointmentAttendance,
            format!("appointment/{id}"),
            Outcome::Success,
            format!(
                "{} (was: {})",
                attendance.as_str(),
                appointment.attendance.map_or("not recorded", Attendance::as_str)
            ),
        );
        self.store.record_attendance(who.practice, id, attendance, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::NotFound(_) => {
                AppError::Conflict("this appointment is not booked any more".into())
            }
            other => other.into(),
        })?;
        Ok((Appointment { attendance: Some(attendance), ..appointment }, slot))
    }
}

/// The start of a UK day, for the staff appointment book.
pub fn day_start(d: NaiveDate) -> Option<DateTime<Utc>> {
    uk_instant(d, NaiveTime::MIN)
}
