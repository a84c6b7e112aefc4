//! Online appointment capacity (issue 26): "Slots say whether patients may book them online;
//! clinics can set the share. A report by week, clinician and appointment type: slots offered,
//! offered online, booked online, booked by staff, did-not-attend by booking channel; the ICB
//! view gets the practice totals." Counts only; every change audited; a failed request changes
//! nothing; one slot never holds two bookings, whoever makes them. Both databases.

use caldicott_app::capacity::{capacity_csv, icb_capacity_csv, Period};
use caldicott_app::fixtures::{self, adult};
use caldicott_app::{auth, App, AppError};
use caldicott_core::appointments::{Appointment, Attendance, BookingChannel, Slot};
use caldicott_core::audit::Action;
use caldicott_core::capacity::monday_of;
use caldicott_core::ids::AppointmentId;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// An app whose clock the test moves forward.
fn app_with_clock(t: &TestStore) -> (App, Arc<AtomicI64>) {
    let offset = Arc::new(AtomicI64::new(0));
    let o = offset.clone();
    let app =
        App::new(t.store.clone(), Arc::new(move || fixtures::now() + Duration::seconds(o.load(Ordering::SeqCst))));
    (app, offset)
}

/// A clinic three days ahead, 09:00 to 10:00 in four 15-minute slots, with this online share;
/// its slots, earliest first.
async fn clinic(app: &App, tp: &fixtures::TestPractice, share: &str) -> Vec<Slot> {
    let day = fixtures::today() + Duration::days(3);
    let f = fixtures::clinic_form(tp, day, ("09:00", "10:00"), 15, share);
    let (clinic, n) = app.create_clinic(&tp.clinician, &f).await.unwrap().unwrap();
    assert_eq!(n, 4);
    app.appointment_book(&tp.clinician, day, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.slot)
        .filter(|s| s.clinic == clinic.id)
        .collect()
}

async fn the_report_counts_what_was_offered_how_each_booking_was_made_and_who_did_not_come(t: &TestStore) {
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let analyst = auth::authenticate(&app, &tp.analyst_token).await.unwrap();

    // A share that is not 0 to 100 is named and plans nothing.
    let day = fixtures::today() + Duration::days(3);
    let bad = fixtures::clinic_form(&tp, day, ("09:00", "10:00"), 15, "150");
    let problems = app.create_clinic(&tp.clinician, &bad).await.unwrap().unwrap_err();
    assert_eq!(problems.iter().map(|p| p.field).collect::<Vec<_>>(), ["online_share"]);
    assert!(app.appointment_book(&tp.clinician, day, 1).await.unwrap().is_empty(), "nothing was planned");

    // Half of four slots are offered online.
    let slots = clinic(&app, &tp, "50%").await;
    let online: Vec<&Slot> = slots.iter().filter(|s| s.online_bookable).collect();
    let offline: Vec<&Slot> = slots.iter().filter(|s| !s.online_bookable).collect();
    assert_eq!((online.len(), offline.len()), (2, 2));

    // A patient books online; a slot not offered online cannot be booked online.
    let a = adult(&app, tp.practice.id).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &a, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    assert!(matches!(app.book_online(&me, None, offline[0].id).await, Err(AppError::NotFound(_))));
    let (booked_online, _) = app.book_online(&me, None, online[0].id).await.unwrap();
    assert_eq!(booked_online.channel, BookingChannel::Online);

    // Reception books a slot not offered online for a patient who phoned.
    let b = adult(&app, tp.practice.id).await.unwrap();
    let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    for (typed, why) in [("123", "Enter a valid"), ("9434765870", "No patient registered")] {
        let problem = app.staff_book(&reception, offline[0].id, typed).await.unwrap().unwrap_err();
        assert!(problem.field == "nhs_number" && problem.message.starts_with(why), "{typed}: {problem:?}");
    }
    assert!(matches!(
        app.staff_book(&reception, online[0].id, b.nhs_number.as_str()).await,
        Err(AppError::Conflict(_))
    ));
    assert_eq!(
        app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count,
        before,
        "refused bookings write nothing"
    );
    let (by_practice, _, who) =
        app.staff_book(&reception, offline[0].id, &format!(" {} ", b.nhs_number.as_str())).await.unwrap().unwrap();
    assert_eq!((by_practice.channel, who.id), (BookingChannel::Practice, b.id));
    assert!(by_practice.booked_by.contains(&reception.name), "{}", by_practice.booked_by);

    // The practice offers the last slot online after all; another care setting books the
    // other online one (as GP Connect does).
    let changed = app.set_slot_online(&reception, offline[1].id, true).await.unwrap();
    assert!(changed.online_bookable);
    let c = adult(&app, tp.practice.id).await.unwrap();
    let from_111 = Appointment::new(
        AppointmentId::from_uuid(caldicott_app::new_id()),
        online[1].id,
        c.id,
        fixtures::now(),
        "by NHS 111, through GP Connect".into(),
        BookingChannel::OtherCareSetting,
    );
    app.store_for_tests()
        .book_slot(tp.practice.id, &from_111, &fixtures::audit(Action::AppointmentBook, Some(c.id)))
        .await
        .unwrap();

    // Attendance is recorded only once the appointment has started.
    assert!(matches!(
        app.record_attendance(&reception, booked_online.id, Attendance::DidNotAttend).await,
        Err(AppError::Conflict(_))
    ));
    clock.store(Duration::days(4).num_seconds(), Ordering::SeqCst);
    assert!(
        matches!(app.set_slot_online(&reception, offline[1].id, false).await, Err(AppError::Conflict(_))),
        "a slot that has started keeps its online offer"
    );
    app.record_attendance(&reception, booked_online.id, Attendance::Attended).await.unwrap();
    // Corrected: it was a did-not-attend.
    app.record_attendance(&reception, booked_online.id, Attendance::DidNotAttend).await.unwrap();
    app.record_attendance(&reception, by_practice.id, Attendance::Attended).await.unwrap();

    // The report: one line for the week, this clinician, this type.
    let week = monday_of(day);
    let period = Period { from: week, weeks: 1 };
    assert!(matches!(app.capacity_report(&reception, period).await, Err(AppError::Forbidden(_))));
    let report = app.capacity_report(&manager, period).await.unwrap();
    assert_eq!(report.lines.len(), 1, "{:?}", report.lines);
    let line = &report.lines[0];
    assert_eq!((line.week, line.clinician.as_str()), (week, tp.clinician.name.as_str()));
    let n = line.counts;
    assert_eq!((n.offered, n.offered_online), (4, 3), "the share, then one more offered online");
    assert_eq!((n.booked_online, n.booked_by_practice, n.booked_by_other_care_settings), (1, 1, 1));
    assert_eq!(
        (n.did_not_attend_online, n.did_not_attend_by_practice, n.did_not_attend_by_other_care_settings),
        (1, 0, 0)
    );
    assert_eq!(n.attendance_not_recorded, 1, "the other care setting's booking");
    assert_eq!(report.total, n);
    let csv = capacity_csv(&report);
    assert!(csv.contains(&format!("{week},{},gp_face_to_face,4,3,75,1,1,1,1,0,0,1\n", tp.clinician.name)), "{csv}");
    for person in [&a, &b, &c] {
        assert!(!csv.contains(person.nhs_number.as_str()) && !csv.contains(&person.name.family), "counts only");
    }

    // A cancelled booking is not counted.
    app.staff_cancel_appointment(&reception, by_practice.id, b.id).await.unwrap();
    assert!(matches!(
        app.record_attendance(&reception, by_practice.id, Attendance::Attended).await,
        Err(AppError::Conflict(_))
    ));
    let after = app.capacity_report(&manager, period).await.unwrap().total;
    assert_eq!((after.booked_by_practice, after.booked()), (0, 2));

    // The ICB sees this practice's totals, and only an ICB analyst does.
    assert!(matches!(app.icb_capacity(&manager, period).await, Err(AppError::Forbidden(_))));
    let icb = app.icb_capacity(&analyst, period).await.unwrap();
    let ours = icb.iter().find(|r| r.practice == tp.practice.id).unwrap();
    assert_eq!(ours.counts, after);
    let file = icb_capacity_csv(&period, &icb);
    assert!(file.contains(&format!("{},", tp.practice.ods_code.as_str())) && !file.contains(&tp.clinician.name));

    let actions = fixtures::audit_actions(&app, tp.practice.id).await;
    for action in ["appointment.slot_online_change", "appointment.attendance", "report.view"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| *a == "appointment.attendance").count(), 3);
}

async fn the_practice_and_a_patient_booking_one_slot_at_once_get_it_once(t: &TestStore) {
    // T46 holds whoever books: eight staff bookings and eight online bookings of one slot, all at
    // once: exactly one succeeds, the rest are told it has gone.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let slots = clinic(&app, &tp, "100").await;
    let target = slots[0].id;
    let mut tries = Vec::new();
    for i in 0..16 {
        let p = adult(&app, tp.practice.id).await.unwrap();
        let app = app.clone();
        if i % 2 == 0 {
            let who = reception.clone();
            tries.push(tokio::spawn(async move {
                app.staff_book(&who, target, p.nhs_number.as_str()).await.map(|r| r.is_ok())
            }));
        } else {
            let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &p, "P9").await.unwrap();
            let me = app.patient_signed_in(&cookie).await.unwrap().who;
            tries.push(tokio::spawn(async move { app.book_online(&me, None, target).await.map(|_| true) }));
        }
    }
    let mut won = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(true) => won += 1,
            Ok(false) => panic!("a valid NHS number was refused"),
            Err(AppError::Conflict(_) | AppError::NotFound(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
    let book = app.appointment_book(&reception, fixtures::today() + Duration::days(3), 1).await.unwrap();
    assert!(book.iter().find(|l| l.slot.id == target).is_some_and(|l| l.booking.is_some()));
}

both!(
    the_report_counts_what_was_offered_how_each_booking_was_made_and_who_did_not_come,
    the_practice_and_a_patient_booking_one_slot_at_once_get_it_once;
    citus: the_report_counts_what_was_offered_how_each_booking_was_made_and_who_did_not_come,
    the_practice_and_a_patient_booking_one_slot_at_once_get_it_once
);

#[test]
fn a_report_covers_whole_weeks_and_says_what_is_wrong_with_a_bad_period() {
    let today = fixtures::date(2026, 12, 10); // a Thursday
    let default = Period::parse(None, None, today).unwrap();
    assert_eq!((default.from, default.weeks), (fixtures::date(2026, 11, 9), 8), "four weeks back, eight in all");
    let p = Period::parse(Some("2026-12-06"), Some("2"), today).unwrap();
    assert_eq!(p.from, fixtures::date(2026, 11, 30), "a Sunday belongs to the week that began on the Monday");
    assert_eq!(p.end(), fixtures::date(2026, 12, 14));
    assert_eq!(p.describe(), "30 November 2026 to 13 December 2026");
    assert!(Period::parse(Some("6/12/2026"), None, today).unwrap_err().contains("YYYY-MM-DD"));
    // A year the calendar cannot count 26 weeks past is refused, not a server error.
    for far in ["+262000-01-01", "0001-01-01"] {
        assert!(Period::parse(Some(far), Some("26"), today).unwrap_err().contains("from 1900 to 2200"), "{far}");
    }
    for weeks in ["0", "27", "two", "-1"] {
        assert!(Period::parse(None, Some(weeks), today).unwrap_err().contains("1 to 26"), "{weeks}");
    }
}
