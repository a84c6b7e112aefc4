//! Setting up a practice and its staff (used by the demo and by administrators).

use crate::auth::hash_password;
use crate::{new_id, App, AppError, AppResult};
use caldicott_core::audit::{Action, Actor, AuditRecord, Outcome};
use caldicott_core::ids::*;
use caldicott_core::practice::{OdsCode, OnlineServicesSettings, PostalAddress, Practice};
use caldicott_core::staff::{normalise_username, Role, SignInState, StaffMember};

#[derive(Debug, Clone)]
pub struct NewPractice {
    pub ods_code: String,
    pub name: String,
    pub telephone: String,
    pub address: PostalAddress,
    pub online: OnlineServicesSettings,
}

pub async fn create_practice(app: &App, new: NewPractice, by: Actor) -> AppResult<Practice> {
    let ods_code = OdsCode::parse(&new.ods_code).map_err(|e| AppError::BadRequest(e.to_string()))?;
    if new.name.trim().is_empty() {
        return Err(AppError::BadRequest("a practice needs a name".into()));
    }
    let practice = Practice {
        id: PracticeId::from_uuid(new_id()),
        ods_code,
        name: new.name.trim().to_owned(),
        telephone: new.telephone.trim().to_owned(),
        address: new.address,
        online: new.online,
    };
    let audit = AuditRecord::new(
        AuditEventId::from_uuid(new_id()),
        app.now(),
        by,
        None,
        Action::PracticeCreate,
        format!("practice/{}", practice.id),
        Outcome::Success,
        format!("ods={}", practice.ods_code),
    );
    app.store.create_practice(&practice, &audit).await?;
    Ok(practice)
}

pub async fn create_staff(
    app: &App,
    practice: PracticeId,
    username: &str,
    display_name: &str,
    role: Role,
    password: &str,
    by: Actor,
) -> AppResult<StaffMember> {
    let username = normalise_username(username).ok_or_else(|| {
        AppError::BadRequest("a username is 3 to 64 letters, digits, dots, hyphens or underscores".into())
    })?;
    if password.chars().count() < 12 {
        return Err(AppError::BadRequest("a password needs at least 12 characters".into()));
    }
    let staff = StaffMember {
        id: StaffId::from_uuid(new_id()),
        practice,
        username,
        display_name: display_name.trim().to_owned(),
        role,
        password_hash: hash_password(password)?,
        active: true,
        sds_user_id: None,
        sign_in: SignInState::default(),
    };
    let audit = AuditRecord::new(
        AuditEventId::from_uuid(new_id()),
        app.now(),
        by,
        None,
        Action::StaffCreate,
        format!("staff/{}", staff.id),
        Outcome::Success,
        format!("username={} role={}", staff.username, role.as_str()),
    );
    app.store.create_staff(practice, &staff, &audit).await?;
    Ok(staff)
}
