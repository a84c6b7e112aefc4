//! Reading rows into domain types, written once for every driver. [`Cols`] is the little each
//! driver must offer: a nullable value of a handful of types, by column name. It is implemented
//! for sqlx's SQLite and PostgreSQL rows and for rusqlite's rows (the embedded fast read path).

use crate::{StoreError, StoreResult};
use caldicott_core::access::*;
use caldicott_core::audit::StoredEvent;
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::*;
use caldicott_core::snomed::{Coding, ConceptId};
use caldicott_core::staff::*;
use caldicott_core::NhsNumber;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use uuid::Uuid;

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} has an unknown value {value:?}"))
}

fn null(column: &str) -> StoreError {
    StoreError::Corrupt(format!("{column} is unexpectedly empty"))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Nullable column values by name.
pub(crate) trait Cols {
    fn opt_text(&self, c: &str) -> StoreResult<Option<String>>;
    fn opt_uuid(&self, c: &str) -> StoreResult<Option<Uuid>>;
    fn opt_date(&self, c: &str) -> StoreResult<Option<NaiveDate>>;
    fn opt_time(&self, c: &str) -> StoreResult<Option<DateTime<Utc>>>;
    fn opt_bool(&self, c: &str) -> StoreResult<Option<bool>>;
    fn opt_int(&self, c: &str) -> StoreResult<Option<i64>>;
    fn opt_bytes(&self, c: &str) -> StoreResult<Option<Vec<u8>>>;

    fn text(&self, c: &str) -> StoreResult<String> {
        self.opt_text(c)?.ok_or_else(|| null(c))
    }
    fn uuid(&self, c: &str) -> StoreResult<Uuid> {
        self.opt_uuid(c)?.ok_or_else(|| null(c))
    }
    fn date(&self, c: &str) -> StoreResult<NaiveDate> {
        self.opt_date(c)?.ok_or_else(|| null(c))
    }
    fn time(&self, c: &str) -> StoreResult<DateTime<Utc>> {
        self.opt_time(c)?.ok_or_else(|| null(c))
    }
    fn flag(&self, c: &str) -> StoreResult<bool> {
        self.opt_bool(c)?.ok_or_else(|| null(c))
    }
    fn int(&self, c: &str) -> StoreResult<i64> {
        self.opt_int(c)?.ok_or_else(|| null(c))
    }
    fn bytes(&self, c: &str) -> StoreResult<Vec<u8>> {
        self.opt_bytes(c)?.ok_or_else(|| null(c))
    }
}

macro_rules! sqlx_cols {
    ($Row:ty) => {
        impl Cols for $Row {
            fn opt_text(&self, c: &str) -> StoreResult<Option<String>> {
                self.try_get(c).map_err(crate::sql::db)
            }
            fn opt_uuid(&self, c: &str) -> StoreResult<Option<Uuid>> {
                self.try_get(c).map_err(crate::sql::db)
            }
            fn opt_date(&self, c: &str) -> StoreResult<Option<NaiveDate>> {
                self.try_get(c).map_err(crate::sql::db)
            }
            fn opt_time(&self, c: &str) -> StoreResult<Option<DateTime<Utc>>> {
                self.try_get(c).map_err(crate::sql::db)
            }
            fn opt_bool(&self, c: &str) -> StoreResult<Option<bool>> {
                self.try_get(c).map_err(crate::sql::db)
            }
            fn opt_int(&self, c: &str) -> StoreResult<Option<i64>> {
                // PostgreSQL keeps small numbers as INTEGER (i32) and sequence numbers as BIGINT.
                match self.try_get::<Option<i64>, _>(c) {
                    Ok(v) => Ok(v),
                    Err(_) => self.try_get::<Option<i32>, _>(c).map(|v| v.map(i64::from)).map_err(crate::sql::db),
                }
            }
            fn opt_bytes(&self, c: &str) -> StoreResult<Option<Vec<u8>>> {
                self.try_get(c).map_err(crate::sql::db)
            }
        }
    };
}

sqlx_cols!(sqlx::sqlite::SqliteRow);
sqlx_cols!(sqlx::postgres::PgRow);

/// Passes each read on to the driver's own row.
macro_rules! either_row {
    ($($f:ident -> $T:ty),*) => {
        impl Cols for crate::db::Row {
            $(fn $f(&self, c: &str) -> StoreResult<Option<$T>> {
                match self {
                    crate::db::Row::Sqlite(r) => r.$f(c),
                    crate::db::Row::Postgres(r) => r.$f(c),
                }
            })*
        }
    };
}

either_row!(opt_text -> String, opt_uuid -> Uuid, opt_date -> NaiveDate, opt_time -> DateTime<Utc>,
    opt_bool -> bool, opt_int -> i64, opt_bytes -> Vec<u8>);

/// rusqlite reads the values sqlx-sqlite wrote: UUIDs as 16-byte blobs, dates as `YYYY-MM-DD`,
/// times as RFC 3339 text, booleans as integers.
impl Cols for rusqlite::Row<'_> {
    fn opt_text(&self, c: &str) -> StoreResult<Option<String>> {
        use rusqlite::types::ValueRef;
        match self.get_ref(c).map_err(crate::sqlite_fast::err)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
            other => Err(corrupt(c, &format!("{other:?}"))),
        }
    }
    fn opt_uuid(&self, c: &str) -> StoreResult<Option<Uuid>> {
        use rusqlite::types::ValueRef;
        match self.get_ref(c).map_err(crate::sqlite_fast::err)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => Uuid::from_slice(b).map(Some).map_err(|_| corrupt(c, "blob")),
            other => Err(corrupt(c, &format!("{other:?}"))),
        }
    }
    fn opt_date(&self, c: &str) -> StoreResult<Option<NaiveDate>> {
        self.opt_text(c)?.map(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| corrupt(c, &s))).transpose()
    }
    fn opt_time(&self, c: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.opt_text(c)?
            .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|_| corrupt(c, &s)))
            .transpose()
    }
    fn opt_bool(&self, c: &str) -> StoreResult<Option<bool>> {
        Ok(self.opt_int(c)?.map(|v| v != 0))
    }
    fn opt_int(&self, c: &str) -> StoreResult<Option<i64>> {
        use rusqlite::types::ValueRef;
        match self.get_ref(c).map_err(crate::sqlite_fast::err)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(i) => Ok(Some(i)),
            other => Err(corrupt(c, &format!("{other:?}"))),
        }
    }
    fn opt_bytes(&self, c: &str) -> StoreResult<Option<Vec<u8>>> {
        use rusqlite::types::ValueRef;
        match self.get_ref(c).map_err(crate::sqlite_fast::err)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => Ok(Some(b.to_vec())),
            other => Err(corrupt(c, &format!("{other:?}"))),
        }
    }
}

fn parsed<T>(what: &str, s: String, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<T> {
    parse(&s).ok_or_else(|| corrupt(what, &s))
}

pub(crate) fn practice(r: &impl Cols) -> StoreResult<Practice> {
    let age = r.int("proxy_review_age")?;
    Ok(Practice {
        id: PracticeId::from_uuid(r.uuid("id")?),
        ods_code: parsed("ods_code", r.text("ods_code")?, |s| OdsCode::parse(s).ok())?,
        name: r.text("name")?,
        telephone: r.text("telephone")?,
        address: PostalAddress {
            lines: from_json("address_lines", &r.text("address_lines")?)?,
            postcode: r.text("postcode")?,
        },
        online: OnlineServicesSettings {
            prospective_switch_on: r.opt_date("switch_on")?,
            paused: r.flag("paused")?,
            pause_reason: r.opt_text("pause_reason")?.unwrap_or_default(),
            accept_update_record: r.opt_bool("accept_update_record")?.unwrap_or(true),
            gp_connect_structured: r.opt_bool("gp_connect_structured")?.unwrap_or(true),
            gp_connect_documents: r.opt_bool("gp_connect_documents")?.unwrap_or(true),
            gp_connect_asid: r
                .opt_text("gp_connect_asid")?
                .map(|a| Asid::parse(&a).map_err(|_| corrupt("gp_connect_asid", &a)))
                .transpose()?,
            default_level: parsed("default_level", r.text("default_level")?, AccessLevel::parse)?,
            proxy_review_age: u8::try_from(age)
                .ok()
                .and_then(|a| ProxyReviewAge::new(a).ok())
                .ok_or_else(|| corrupt("proxy_review_age", &age.to_string()))?,
            visible_online_by_default: r.opt_bool("visible_online_by_default")?.unwrap_or(true),
            show_staff_names_to_patients: r.opt_bool("show_staff_names")?.unwrap_or(false),
            cancel_cutoff_hours: r
                .opt_int("cancel_cutoff_hours")?
                .map_or(Ok(24), |h| u16::try_from(h).map_err(|_| corrupt("cancel_cutoff_hours", &h.to_string())))?,
        },
    })
}

pub(crate) fn staff(practice: PracticeId, r: &impl Cols) -> StoreResult<StaffMember> {
    Ok(StaffMember {
        id: StaffId::from_uuid(r.uuid("id")?),
        practice,
        username: r.text("username")?,
        display_name: r.text("display_name")?,
        role: parsed("role", r.text("role")?, Role::parse)?,
        password_hash: r.text("password_hash")?,
        active: r.flag("active")?,
        sds_user_id: r.opt_text("sds_user_id")?,
        sign_in: SignInState {
            totp_secret: r.opt_text("totp_secret")?,
            totp_confirmed: r.opt_bool("totp_confirmed")?.unwrap_or(false),
            failed: r.opt_int("failed_sign_ins")?.unwrap_or(0),
            locked_until: r.opt_time("locked_until")?,
        },
    })
}

/// A session from a row that aliases its columns with an `s_` prefix.
pub(crate) fn session(practice: PracticeId, r: &impl Cols) -> StoreResult<StaffSession> {
    Ok(StaffSession {
        id: SessionId::from_uuid(r.uuid("s_id")?),
        practice,
        staff: StaffId::from_uuid(r.uuid("s_staff_id")?),
        secret_hash: r.bytes("s_secret_hash")?.try_into().map_err(|_| StoreError::Corrupt("session hash".into()))?,
        csrf_token: r.text("s_csrf_token")?,
        stage: parsed("session stage", r.text("s_stage")?, SessionStage::parse)?,
        created_at: r.time("s_created_at")?,
        last_seen_at: r.time("s_last_seen_at")?,
        expires_at: r.time("s_expires_at")?,
        ended_at: r.opt_time("s_ended_at")?,
    })
}

/// A token from a row that aliases its own `created_at` as `token_created_at`.
pub(crate) fn token(practice: PracticeId, id: TokenId, r: &impl Cols) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id,
        practice,
        staff: StaffId::from_uuid(r.uuid("staff_id")?),
        label: r.text("label")?,
        secret_hash: r.bytes("secret_hash")?.try_into().map_err(|_| StoreError::Corrupt("token hash".into()))?,
        created_at: r.time("token_created_at")?,
        expires_at: r.time("expires_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

/// A registration from a row of the patient–registration join (columns prefixed `r_`), if the
/// row has one.
pub(crate) fn joined_registration(r: &impl Cols) -> StoreResult<Option<Registration>> {
    let Some(kind) = r.opt_text("r_kind")? else { return Ok(None) };
    Ok(Some(Registration {
        kind: parsed("registration kind", kind, RegistrationKind::parse)?,
        started: r.date("r_started")?,
        ended: r.opt_date("r_ended")?,
        previous_practice: r.opt_text("r_previous_practice")?,
    }))
}

pub(crate) fn patient(practice: PracticeId, r: &impl Cols, registrations: Vec<Registration>) -> StoreResult<Patient> {
    let preferred = r.opt_int("preferred_contact")?;
    Ok(Patient {
        id: PatientId::from_uuid(r.uuid("id")?),
        practice,
        nhs_number: parsed("nhs_number", r.text("nhs_number")?, |s| NhsNumber::parse(s).ok())?,
        name: PersonName { title: r.opt_text("title")?, given: r.text("given_name")?, family: r.text("family_name")? },
        date_of_birth: r.date("date_of_birth")?,
        sex: parsed("sex", r.text("sex")?, Sex::parse)?,
        contact: ContactDetails {
            email: r.opt_text("email")?,
            mobile: r.opt_text("mobile")?,
            address: PostalAddress {
                lines: from_json("address_lines", &r.text("address_lines")?)?,
                postcode: r.text("postcode")?,
            },
        },
        preferred_contact: PreferredContactMethod::from_code(preferred.and_then(|c| u8::try_from(c).ok()))
            .ok_or_else(|| corrupt("preferred_contact", &format!("{preferred:?}")))?,
        registrations,
        date_of_death: r.opt_date("date_of_death")?,
    })
}

pub(crate) fn entry(r: &impl Cols) -> StoreResult<Entry> {
    let origin = match (r.text("origin")?.as_str(), r.opt_text("origin_ods")?) {
        ("native", _) => Origin::Native,
        ("patient", _) => Origin::PatientEntered,
        ("transferred_in", Some(from_ods)) => Origin::TransferredIn { from_ods },
        ("inbound", Some(sender_ods)) => Origin::Inbound { sender_ods },
        (o, _) => return Err(corrupt("entry origin", o)),
    };
    let code = match r.opt_text("code")? {
        None => None,
        Some(c) => Some(Coding {
            concept: ConceptId::parse(&c).map_err(|_| corrupt("entry code", &c))?,
            term: r.opt_text("term")?.unwrap_or_default(),
        }),
    };
    let visibility = match r.opt_text("hidden_reason")? {
        None => OnlineVisibility::Visible,
        Some(reason) => OnlineVisibility::Hidden(
            Redaction::new(
                parsed("hidden_reason", reason, HiddenReason::parse)?,
                &r.opt_text("hidden_note")?.unwrap_or_default(),
                &r.opt_text("hidden_by")?.unwrap_or_default(),
                r.time("hidden_at")?,
            )
            .map_err(|e| StoreError::Corrupt(format!("hidden entry: {e}")))?,
        ),
    };
    Ok(Entry {
        id: EntryId::from_uuid(r.uuid("id")?),
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        event_date: r.date("event_date")?,
        entered_at: r.time("entered_at")?,
        author: Author { staff: r.opt_uuid("author_staff_id")?.map(StaffId::from_uuid), name: r.text("author_name")? },
        origin,
        code,
        body: from_json("entry body", &r.text("body")?)?,
        visibility,
        nopat: r.flag("nopat")?,
        safeguarding: r.flag("safeguarding")?,
        confidential: r.flag("confidential")?,
        superseded: match r.opt_time("superseded_at")? {
            Some(at) => Some(Superseded { at, note: r.opt_text("superseded_note")?.unwrap_or_default() }),
            None => None,
        },
    })
}

pub(crate) fn linkage_key(r: &impl Cols) -> StoreResult<caldicott_core::online::LinkageKey> {
    let hash = r.bytes("key_hash")?;
    Ok(caldicott_core::online::LinkageKey {
        account_ref: r.text("account_ref")?,
        holder: PatientId::from_uuid(r.uuid("holder_id")?),
        key_hash: hash.as_slice().try_into().map_err(|_| corrupt("key_hash", "length"))?,
        identity: parsed("identity level", r.text("identity_level")?, IdentityLevel::parse)?,
        issued_at: r.time("issued_at")?,
        issued_by: r.text("issued_by")?,
        used_at: r.opt_time("used_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        resets: r.opt_uuid("resets_account_id")?.map(AccountId::from_uuid),
    })
}

pub(crate) fn password_reset(r: &impl Cols) -> StoreResult<caldicott_core::staff::PasswordReset> {
    Ok(caldicott_core::staff::PasswordReset {
        staff: StaffId::from_uuid(r.uuid("staff_id")?),
        code_hash: r.bytes("code_hash")?.as_slice().try_into().map_err(|_| corrupt("code_hash", "length"))?,
        made_by: StaffId::from_uuid(r.uuid("made_by")?),
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        used_at: r.opt_time("used_at")?,
    })
}

pub(crate) fn patient_login(r: &impl Cols) -> StoreResult<caldicott_core::online::PatientLogin> {
    Ok(caldicott_core::online::PatientLogin {
        account: AccountId::from_uuid(r.uuid("account_id")?),
        username: r.text("username")?,
        password_hash: r.text("password_hash")?,
        failed_sign_ins: u32::try_from(r.int("failed_sign_ins")?).unwrap_or(0),
        locked_until: r.opt_time("locked_until")?,
        totp_secret: r.opt_text("totp_secret")?,
        totp_confirmed: r.opt_bool("totp_confirmed")?.unwrap_or(false),
    })
}

pub(crate) fn patient_session(r: &impl Cols) -> StoreResult<caldicott_core::online::PatientSession> {
    let hash = r.bytes("secret_hash")?;
    Ok(caldicott_core::online::PatientSession {
        id: SessionId::from_uuid(r.uuid("id")?),
        account: AccountId::from_uuid(r.uuid("account_id")?),
        secret_hash: hash.as_slice().try_into().map_err(|_| corrupt("secret_hash", "length"))?,
        csrf_token: r.text("csrf_token")?,
        stage: parsed(
            "session stage",
            r.opt_text("stage")?.unwrap_or_else(|| "signed_in".into()),
            SessionStage::parse,
        )?,
        created_at: r.time("created_at")?,
        last_seen_at: r.time("last_seen_at")?,
        expires_at: r.time("expires_at")?,
        ended_at: r.opt_time("ended_at")?,
    })
}

/// An online account from a joined row whose account id is in column `id_col`.
pub(crate) fn online_account(r: &impl Cols, id_col: &str) -> StoreResult<OnlineAccount> {
    Ok(OnlineAccount {
        id: AccountId::from_uuid(r.uuid(id_col)?),
        holder: PatientId::from_uuid(r.uuid("holder_id")?),
        kind: parsed("account kind", r.text("kind")?, AccountKind::parse)?,
        identity: parsed("identity level", r.text("identity_level")?, IdentityLevel::parse)?,
        created_at: r.time("a_created_at")?,
    })
}

pub(crate) fn slot(r: &impl Cols) -> StoreResult<caldicott_core::appointments::Slot> {
    use caldicott_core::appointments::SlotType;
    Ok(caldicott_core::appointments::Slot {
        id: SlotId::from_uuid(r.uuid("id")?),
        clinic: ClinicId::from_uuid(r.uuid("clinic_id")?),
        clinician: StaffId::from_uuid(r.uuid("clinician_id")?),
        starts_at: r.time("starts_at")?,
        minutes: u16::try_from(r.int("minutes")?).map_err(|_| corrupt("minutes", "range"))?,
        slot_type: parsed("slot type", r.text("slot_type")?, SlotType::parse)?,
        online_bookable: r.flag("online_bookable")?,
        others_bookable: r.flag("others_bookable")?,
        others_bookable_by: caldicott_core::appointments::BookableBy::from_columns(
            &r.text("others_types")?,
            &r.text("others_ods")?,
            r.opt_int("others_limit")?
                .map(|l| u16::try_from(l).map_err(|_| corrupt("others_limit", "range")))
                .transpose()?,
            r.opt_int("others_release_hours")?
                .map(|l| u16::try_from(l).map_err(|_| corrupt("others_release_hours", "range")))
                .transpose()?,
        )
        .ok_or_else(|| corrupt("organisation type", "unknown"))?,
        clinician_name: r.text("clinician_name")?,
        location: r.text("location")?,
    })
}

/// A slot row joined with its live booking (`a_id` and the appointment's columns), if any.
pub(crate) fn slot_and_booking(
    r: &impl Cols,
) -> StoreResult<(caldicott_core::appointments::Slot, Option<caldicott_core::appointments::Appointment>)> {
    let slot = slot(r)?;
    let booking = match r.opt_uuid("a_id")? {
        Some(_) => Some(appointment(r, slot.id)?),
        None => None,
    };
    Ok((slot, booking))
}

/// A booking row joined with its slot.
pub(crate) fn appointment_and_slot(
    r: &impl Cols,
) -> StoreResult<(caldicott_core::appointments::Appointment, caldicott_core::appointments::Slot)> {
    let slot = slot(r)?;
    Ok((appointment(r, slot.id)?, slot))
}

/// A booking from a row that also holds its slot; the booking's id is in `a_id`.
pub(crate) fn appointment(r: &impl Cols, slot: SlotId) -> StoreResult<caldicott_core::appointments::Appointment> {
    Ok(caldicott_core::appointments::Appointment {
        id: AppointmentId::from_uuid(r.uuid("a_id")?),
        slot,
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        booked_at: r.time("booked_at")?,
        booked_by: r.text("booked_by")?,
        cancelled_at: r.opt_time("cancelled_at")?,
        cancelled_by: r.opt_text("cancelled_by")?,
        version: u32::try_from(r.int("version")?).map_err(|_| corrupt("appointment version", "range"))?,
        description: r.opt_text("description")?,
        comment: r.opt_text("comment")?,
        booked_through: match (r.opt_text("booking_org_ods")?, r.opt_text("booking_org_name")?) {
            (Some(ods), Some(name)) => Some(caldicott_core::appointments::BookingOrganisation {
                ods,
                name,
                telephone: r.opt_text("booking_org_telephone")?,
            }),
            _ => None,
        },
        cancellation_reason: r.opt_text("cancellation_reason")?,
        channel: channel(r)?,
        attendance: attendance(r)?,
    })
}

/// A count column (a `COUNT` or `SUM`), which is never negative.
pub(crate) fn count(r: &impl Cols, c: &str) -> StoreResult<u64> {
    u64::try_from(r.int(c)?).map_err(|_| corrupt(c, "negative count"))
}

fn channel(r: &impl Cols) -> StoreResult<caldicott_core::appointments::BookingChannel> {
    parsed("booking channel", r.text("channel")?, caldicott_core::appointments::BookingChannel::parse)
}

fn attendance(r: &impl Cols) -> StoreResult<Option<caldicott_core::appointments::Attendance>> {
    r.opt_text("attendance")?
        .map(|a| parsed("attendance", a, caldicott_core::appointments::Attendance::parse))
        .transpose()
}

/// A slot as the capacity report reads it, with its live booking's channel and attendance.
pub(crate) fn capacity_fact(r: &impl Cols) -> StoreResult<caldicott_core::capacity::SlotFact> {
    use caldicott_core::appointments::SlotType;
    Ok(caldicott_core::capacity::SlotFact {
        starts_at: r.time("starts_at")?,
        clinician_name: r.text("clinician_name")?,
        slot_type: parsed("slot type", r.text("slot_type")?, SlotType::parse)?,
        online: r.flag("online_bookable")?,
        booking: match r.opt_text("channel")? {
            Some(_) => Some((channel(r)?, attendance(r)?)),
            None => None,
        },
    })
}

pub(crate) fn task(r: &impl Cols) -> StoreResult<caldicott_core::tasks::Task> {
    use caldicott_core::tasks::{TaskKind, TaskStatus};
    Ok(caldicott_core::tasks::Task {
        id: TaskId::from_uuid(r.uuid("id")?),
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        kind: parsed("task kind", r.text("kind")?, TaskKind::parse)?,
        status: parsed("task status", r.text("status")?, TaskStatus::parse)?,
        created_at: r.time("created_at")?,
        requested_by: r.text("requested_by")?,
        body: from_json("task body", &r.text("body")?)?,
        outcome: r.opt_text("outcome")?,
        closed_at: r.opt_time("closed_at")?,
        closed_by: r.opt_text("closed_by")?,
    })
}

pub(crate) fn message(r: &impl Cols) -> StoreResult<caldicott_core::messages::OutboundMessage> {
    use caldicott_core::messages::{Channel, MessageStatus};
    Ok(caldicott_core::messages::OutboundMessage {
        id: MessageId::from_uuid(r.uuid("id")?),
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        purpose: r.text("purpose")?,
        channel: parsed("channel", r.text("channel")?, Channel::parse)?,
        recipient: r.text("recipient")?,
        subject: r.text("subject")?,
        body: r.text("body")?,
        idempotency_key: r.text("idempotency_key")?,
        status: parsed("message status", r.text("status")?, MessageStatus::parse)?,
        attempts: u32::try_from(r.int("attempts")?).unwrap_or(0),
        next_attempt_at: r.time("next_attempt_at")?,
        last_error: r.opt_text("last_error")?,
        provider_id: r.opt_text("provider_id")?,
        fragments: u32::try_from(r.int("fragments")?).unwrap_or(0),
        cost_hundredths: r.int("cost_hundredths")?,
        created_at: r.time("created_at")?,
        sent_at: r.opt_time("sent_at")?,
        task: r.opt_uuid("task_id")?.map(caldicott_core::ids::TaskId::from_uuid),
        tries: u32::try_from(r.int("tries")?).unwrap_or(0),
        email_message_id: r.opt_text("email_message_id")?,
    })
}

/// An app from a row; its id is in `id_col` (`a_id` when joined to a link).
pub(crate) fn patient_app(r: &impl Cols, id_col: &str) -> StoreResult<caldicott_core::online::PatientApp> {
    let hash = r.bytes("client_secret_hash")?;
    Ok(caldicott_core::online::PatientApp {
        id: AppId::from_uuid(r.uuid(id_col)?),
        name: r.text("name")?,
        supplier: r.text("supplier")?,
        client_id: r.text("client_id")?,
        client_secret_hash: hash.as_slice().try_into().map_err(|_| corrupt("client_secret_hash", "length"))?,
        nhs_login_client_id: r.opt_text("nhs_login_client_id")?,
        exchange_key: r.opt_text("exchange_key")?,
        active: r.flag("active")?,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn app_link(r: &impl Cols) -> StoreResult<caldicott_core::online::AppLink> {
    use caldicott_core::online::LinkVia;
    let hash = r.bytes("token_hash")?;
    Ok(caldicott_core::online::AppLink {
        id: AppLinkId::from_uuid(r.uuid("id")?),
        app: AppId::from_uuid(r.uuid("app_id")?),
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        via: parsed("link via", r.text("via")?, LinkVia::parse)?,
        linkage_ref: r.opt_text("linkage_ref")?,
        token_hash: hash.as_slice().try_into().map_err(|_| corrupt("token_hash", "length"))?,
        linked_at: r.time("linked_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        revoked_why: r.opt_text("revoked_why")?,
    })
}

pub(crate) fn record_import(r: &impl Cols) -> StoreResult<crate::RecordImport> {
    Ok(crate::RecordImport {
        id: r.uuid("id")?,
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        sha256: r.text("sha256")?,
        from_ods: r.text("from_ods")?,
        entries: r.int("entries")?,
        hidden_by_sender: r.int("hidden_by_sender")?,
        pending_review: r.int("pending_review")?,
        imported_at: r.time("imported_at")?,
        imported_by: r.text("imported_by")?,
    })
}

pub(crate) fn proxy(r: &impl Cols) -> StoreResult<ProxyLink> {
    let reason = r.opt_text("status_reason")?.unwrap_or_default();
    let status = match (r.text("status")?.as_str(), r.opt_date("status_since")?) {
        ("active", _) => ProxyStatus::Active,
        ("suspended", Some(since)) => ProxyStatus::Suspended { since, reason },
        ("revoked", Some(on)) => ProxyStatus::Revoked { on, reason },
        ("refused", Some(on)) => ProxyStatus::Refused { on, reason },
        (s, _) => return Err(corrupt("proxy status", s)),
    };
    Ok(ProxyLink {
        id: ProxyLinkId::from_uuid(r.uuid("id")?),
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        proxy: PatientId::from_uuid(r.uuid("proxy_id")?),
        relationship: r.text("relationship")?,
        basis: parsed("proxy basis", r.text("basis")?, ProxyBasis::parse)?,
        scope: ProxyScope {
            appointments: r.flag("appointments")?,
            prescriptions: r.flag("prescriptions")?,
            demographics: r.flag("demographics")?,
            record: parsed("proxy record level", r.text("record_level")?, AccessLevel::parse)?,
            record_from: r.opt_date("record_from")?.map_or(RecordFrom::Beginning, RecordFrom::Date),
        },
        granted_on: r.date("granted_on")?,
        decided_by: r.text("decided_by")?,
        ends_on: r.opt_date("ends_on")?,
        status,
    })
}

pub(crate) fn audit_event(r: &impl Cols) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        practice: PracticeId::from_uuid(r.uuid("practice_id")?),
        seq: r.int("seq")?,
        id: r.text("id")?,
        at: r.time("at")?,
        actor_kind: r.text("actor_kind")?,
        actor_id: r.text("actor_id")?,
        actor_role: r.text("actor_role")?,
        patient: r.opt_text("patient_id")?,
        action: r.text("action")?,
        entity: r.text("entity")?,
        outcome: r.text("outcome")?,
        detail: r.text("detail")?,
        client: r.opt_text("client_addr")?,
        prev_hash: r.bytes("prev_hash")?,
        hash: r.bytes("hash")?,
    })
}

/// Folds the rows of the one access-facts UNION (tagged `src`), one at a time.
#[derive(Default)]
pub(crate) struct FactsFold {
    facts: crate::AccessFacts,
    found: bool,
}

impl FactsFold {
    pub(crate) fn push(&mut self, r: &impl Cols) -> StoreResult<()> {
        let text = r.opt_text("level")?.unwrap_or_default();
        let facts = &mut self.facts;
        match r.text("src")?.as_str() {
            "s" => {
                self.found = true;
                facts.settings.opted_out = r.opt_bool("flag")?.unwrap_or(false);
                facts.settings.transfer_review_pending = r.opt_date("from_date")?;
                facts.settings.own_level = match r.opt_text("level")? {
                    None => None,
                    Some(level) => Some(OwnLevel {
                        level: parsed("own level", level, AccessLevel::parse)?,
                        set_on: r.date("granted_on")?,
                        set_by: r.opt_text("granted_by")?.unwrap_or_default(),
                    }),
                };
            }
            "g" => facts.settings.grants.push(LevelGrant {
                level: parsed("grant level", text, AccessLevel::parse)?,
                from: r.opt_date("from_date")?.map_or(RecordFrom::Beginning, RecordFrom::Date),
                granted_on: r.date("granted_on")?,
                granted_by: r.opt_text("granted_by")?.unwrap_or_default(),
            }),
            "c" => facts.enhanced_review_codes.push((text, r.time("entered_at")?)),
            "a" => facts.account_identities.push(parsed("identity level", text, IdentityLevel::parse)?),
            "i" => {
                let at = r.time("entered_at")?;
                facts.transferred_in = Some(facts.transferred_in.map_or(at, |t| t.max(at)));
            }
            other => return Err(corrupt("access facts", other)),
        }
        Ok(())
    }

    /// The facts, or not found when the patient has no settings row (no such patient).
    pub(crate) fn finish(mut self) -> StoreResult<crate::AccessFacts> {
        if !self.found {
            return Err(StoreError::NotFound("patient"));
        }
        self.facts.settings.grants.sort_by_key(|g| g.granted_on);
        self.facts.enhanced_review_codes.sort_by_key(|(_, at)| *at);
        Ok(self.facts)
    }
}

/// A patient listing from a joined row whose patient id is aliased `p_id`.
pub(crate) fn listing(r: &impl Cols) -> StoreResult<crate::PatientListing> {
    Ok(crate::PatientListing {
        id: PatientId::from_uuid(r.uuid("p_id")?),
        nhs_number: parsed("nhs_number", r.text("nhs_number")?, |s| NhsNumber::parse(s).ok())?,
        name: PersonName { title: r.opt_text("title")?, given: r.text("given_name")?, family: r.text("family_name")? },
        date_of_birth: r.date("date_of_birth")?,
        sex: parsed("sex", r.text("sex")?, Sex::parse)?,
        address: PostalAddress {
            lines: from_json("address_lines", &r.text("address_lines")?)?,
            postcode: r.text("postcode")?,
        },
        date_of_death: r.opt_date("date_of_death")?,
    })
}
