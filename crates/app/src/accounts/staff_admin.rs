//! Administrators manage their practice's staff accounts: create them, deactivate and reactivate
//! them (a deactivated member is signed out at once), and reset a member's second factor and
//! lock-out, and record the SDS user id GP Connect names them by. Every change is audited.

use crate::permit;
use crate::setup::create_staff;
use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::ids::*;
use caldicott_core::permissions::Permission;
use caldicott_core::staff::{parse_sds_user_id, Role, SignInState, StaffMember};

/// A member's SDS user id as saved: whose, what is held now, and whether that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsUserIdSaved {
    pub name: String,
    pub kept: Option<String>,
    pub changed: bool,
}

/// What to do to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    Deactivate,
    Reactivate,
    /// Clears the TOTP secret (the member enrols again at the next sign-in) and any lock-out.
    ResetSecondFactor,
}

impl App {
    /// A member of staff of the caller's practice whose account an administrator may manage
    /// (not an ICB analyst's, which belongs to the service operator).
    pub(crate) async fn member_to_manage(&self, who: &StaffPrincipal, staff: StaffId) -> AppResult<StaffMember> {
        let member = self
            .store
            .staff_member(who.practice, staff)
            .await?
            .ok_or_else(|| AppError::NotFound("no such member of staff at this practice".into()))?;
        if member.role == Role::IcbAnalyst {
            return Err(AppError::Forbidden(
                "an ICB analyst's account belongs to the service operator (caldicott staff add)".into(),
            ));
        }
        Ok(member)
    }

    pub async fn staff_accounts(&self, who: &StaffPrincipal) -> AppResult<Vec<StaffMember>> {
        permit(who, Permission::ManageStaff)?;
        Ok(self.store.staff_members(who.practice).await?)
    }

    /// Creates an account; the new member enrols their authenticator at their first sign-in.
    pub async fn add_staff_account(
        &self,
        who: &StaffPrincipal,
        username: &str,
        name: &str,
        role: Role,
        password: &str,
    ) -> AppResult<StaffMember> {
        permit(who, Permission::ManageStaff)?;
        if role == Role::IcbAnalyst {
            return Err(AppError::Forbidden(
                "an ICB analyst sees figures from every practice of the service, so the service operator creates \
                 the account (caldicott staff add --role icb_analyst)"
                    .into(),
            ));
        }
        if name.trim().is_empty() {
            return Err(AppError::BadRequest("Enter the person's name".into()));
        }
        create_staff(self, who.practice, username, name, role, password, who.actor()).await
    }

    pub async fn change_staff_account(
        &self,
        who: &StaffPrincipal,
        staff: StaffId,
        change: AccountChange,
    ) -> AppResult<()> {
        permit(who, Permission::ManageStaff)?;
        if staff == who.staff && change == AccountChange::Deactivate {
            return Err(AppError::BadRequest("You cannot deactivate your own account".into()));
        }
        let member = self.member_to_manage(who, staff).await?;
        // An administrator never holds both factors of a member: after a password reset (whose
        // code the administrator saw) the authenticator stays, until the member has had time to
        // sign in with their own new password.
        if change == AccountChange::ResetSecondFactor {
            if let Some(reset) = self.store.password_reset(who.practice, staff).await? {
                let until = reset.created_at + crate::passwords::BOTH_FACTORS_APART;
                if self.now() < until {
                    return Err(AppError::Conflict(format!(
                        "{}'s password was reset on {}; their authenticator can be reset from {} (an \
                         administrator never holds both), or by the service operator",
                        member.display_name,
                        caldicott_core::uk::uk_date(reset.created_at).format("%-d %B %Y"),
                        caldicott_core::uk::uk_date(until).format("%-d %B %Y")
                    )));
                }
            }
        }
        let audit = |detail: &str| {
            self.audit_record(
                who,
                None,
                Action::StaffUpdate,
                format!("staff/{}", member.id),
                Outcome::Success,
                format!("username={} {detail}", member.username),
            )
        };
        match change {
            AccountChange::Deactivate => {
                self.store.set_staff_active(who.practice, staff, false, &audit("deactivated")).await?
            }
            AccountChange::Reactivate => {
                self.store.set_staff_active(who.practice, staff, true, &audit("reactivated")).await?
            }
            AccountChange::ResetSecondFactor => {
                self.store
                    .set_sign_in_state(
                        who.practice,
                        staff,
                        &SignInState::default(),
                        &audit("second factor and lock-out reset"),
                    )
                    .await?
            }
        }
        Ok(())
    }

    /// Records a member of staff's SDS user id (as on their NHS smartcard), or clears it when
    /// `input` is blank. GP Connect then names them by it (`Practitioner.identifier`), and other
    /// care settings can find a clinician by it. Audited with the value it replaces; the same
    /// value again changes nothing and writes nothing.
    pub async fn set_staff_sds_user_id(
        &self,
        who: &StaffPrincipal,
        staff: StaffId,
        input: &str,
    ) -> AppResult<SdsUserIdSaved> {
        permit(who, Permission::ManageStaff)?;
        let member = self.member_to_manage(who, staff).await?;
        let id = match input.trim() {
            "" => None,
            typed => Some(parse_sds_user_id(typed).map_err(|m| AppError::BadRequest(m.into()))?),
        };
        let saved = |changed| SdsUserIdSaved { name: member.display_name.clone(), kept: id.clone(), changed };
        if id == member.sds_user_id {
            return Ok(saved(false));
        }
        let audit = self.audit_record(
            who,
            None,
            Action::StaffUpdate,
            format!("staff/{}", member.id),
            Outcome::Success,
            format!(
                "username={} sds_user_id {} -> {}",
                member.username,
                member.sds_user_id.as_deref().unwrap_or("none"),
                id.as_deref().unwrap_or("none")
            ),
        );
        let change = (member.sds_user_id.as_deref(), id.as_deref());
        self.store.set_staff_sds_user_id(who.practice, staff, change, &audit).await?;
        Ok(saved(true))
    }
}
