//! What each staff role may do: one table, used by every use case's check and rendered into
//! the last section of `docs/permissions.md` (a test keeps the two the same). The routes table
//! above it in that file is the web layer's, tested route by route and role by role.
//!
//! A row names a permission, the roles that have it, what it covers and the refusal a person
//! without it is given. Practice staff roles follow the NHS England guidance that administrators
//! run the service and do not open records, and ICB analysts see counts only, never a patient.

use crate::staff::Role;

/// One thing a member of staff may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Find patients and open their records (the staff view, "view as", the audit trail).
    OpenRecords,
    RegisterPatients,
    /// Transfer a record in from another practice's file.
    TransferRecordsIn,
    /// Issue patient credentials: registration letters, password letters, sign-up help.
    IssuePatientCredentials,
    ManageAppointments,
    /// The online appointment capacity report (counts by clinician, no patient).
    AppointmentCapacity,
    RecordConsultations,
    /// Hide or show entries online, and code 104 or 106 by hand.
    HideEntries,
    FileResultsAndDocuments,
    /// Decide on requests about medicines and the record (repeats, record corrections).
    DecideRequests,
    SeeTasks,
    ChangeOnlineAccess,
    DecideEnhancedReviews,
    ReadProxyAccess,
    DecideProxyAccess,
    /// Exclusion reviews and reports, and bulk 104/106 coding.
    GovernanceReports,
    ServiceFigures,
    HandleSubjectAccessRequests,
    DecideSubjectAccessRequests,
    ReleaseSubjectAccessExports,
    SeePharmacyMessages,
    DecidePharmacyMessages,
    RegisterPharmacies,
    MessageTheTeam,
    /// Messages to patients: the outbox and delivery reports.
    MessagePatients,
    EditMessagePresets,
    /// The practice's action plan for its exclusion figures.
    KeepActionPlan,
    /// Judge that releasing something would cause serious harm (the appropriate health
    /// professional of a subject access request).
    JudgeSeriousHarm,
    ChangePracticeSettings,
    ManageStaff,
    /// Patient apps and practice integrations: register, turn off, revoke.
    ManageAppsAndIntegrations,
    ManageApiTokens,
}

use Permission::*;
use Role::{Administrator as Admin, Clinician, IcbAnalyst as Icb, PracticeManager as Manager, Receptionist};

/// One row of the table.
pub struct Row {
    pub permission: Permission,
    pub roles: &'static [Role],
    /// What it covers, for the rendered table.
    pub what: &'static str,
    /// What a person without it is told.
    pub refusal: &'static str,
}

const TEAM: &[Role] = &[Receptionist, Clinician, Manager];
const CLINICAL_LEADS: &[Role] = &[Clinician, Manager];

/// The table: every permission once, in the order the rendered table shows them.
pub const TABLE: &[Row] = &[
    Row {
        permission: OpenRecords,
        roles: TEAM,
        what: "find patients and open their records, the online view as the patient or a proxy, and the audit trail",
        refusal: "administrators manage accounts and ICB analysts see counts: neither opens a patient record",
    },
    Row {
        permission: RegisterPatients,
        roles: TEAM,
        what: "register and deregister patients",
        refusal: "only the practice team registers patients",
    },
    Row {
        permission: TransferRecordsIn,
        roles: &[Clinician, Manager],
        what: "transfer a record in from another practice's file",
        refusal: "only clinicians and practice managers transfer records in",
    },
    Row {
        permission: IssuePatientCredentials,
        roles: TEAM,
        what: "issue registration and password letters to patients",
        refusal: "only the practice team issues patient credentials",
    },
    Row {
        permission: ManageAppointments,
        roles: TEAM,
        what: "clinics, slots and bookings",
        refusal: "only the practice team manages appointments",
    },
    Row {
        permission: AppointmentCapacity,
        roles: &[Manager, Admin],
        what: "the online appointment capacity report: slots offered and booked by channel, and did-not-attends",
        refusal: "the appointment capacity report is for practice managers and administrators",
    },
    Row {
        permission: RecordConsultations,
        roles: &[Clinician],
        what: "record consultations and split them",
        refusal: "only clinicians record consultations",
    },
    Row {
        permission: HideEntries,
        roles: &[Clinician],
        what: "hide or show entries online, and code 104 or 106 for one patient",
        refusal: "only clinicians hide or show entries and record 104 or 106",
    },
    Row {
        permission: FileResultsAndDocuments,
        roles: &[Clinician],
        what: "file results and documents from the queue",
        refusal: "only clinicians file results and documents",
    },
    Row {
        permission: DecideRequests,
        roles: &[Clinician],
        what: "decide repeat requests and other requests about medicines and the record",
        refusal: "only clinicians decide on requests about medicines and the record",
    },
    Row {
        permission: SeeTasks,
        roles: TEAM,
        what: "see the practice's tasks",
        refusal: "only the practice team sees the practice's tasks",
    },
    Row {
        permission: ChangeOnlineAccess,
        roles: CLINICAL_LEADS,
        what: "change a patient's online access level and settings, and record their dissent from GP Connect sharing",
        refusal: "only clinicians and practice managers change a patient's online access",
    },
    Row {
        permission: DecideEnhancedReviews,
        roles: &[Clinician],
        what: "decide enhanced reviews (whether a patient's access may go ahead)",
        refusal: "only clinicians decide enhanced reviews",
    },
    Row {
        permission: ReadProxyAccess,
        roles: TEAM,
        what: "see who acts for a patient",
        refusal: "only the practice team sees proxy access",
    },
    Row {
        permission: DecideProxyAccess,
        roles: CLINICAL_LEADS,
        what: "grant, suspend, end or refuse proxy access",
        refusal: "only clinicians and practice managers decide proxy access",
    },
    Row {
        permission: GovernanceReports,
        roles: CLINICAL_LEADS,
        what: "exclusion reviews and reports, and bulk 104 or 106 coding",
        refusal: "only clinicians and practice managers see exclusion reviews and reports",
    },
    Row {
        permission: ServiceFigures,
        roles: &[Icb],
        what: "the service-wide figures across practices (counts only)",
        refusal: "the service-wide figures are for ICB analysts",
    },
    Row {
        permission: HandleSubjectAccessRequests,
        roles: TEAM,
        what: "log and work on subject access requests",
        refusal: "only the practice team handles subject access requests",
    },
    Row {
        permission: DecideSubjectAccessRequests,
        roles: CLINICAL_LEADS,
        what: "extend, refuse or close subject access requests",
        refusal: "clinicians and practice managers extend, refuse or close requests",
    },
    Row {
        permission: ReleaseSubjectAccessExports,
        roles: CLINICAL_LEADS,
        what: "review and release subject access exports",
        refusal: "clinicians and practice managers review and release subject access exports",
    },
    Row {
        permission: SeePharmacyMessages,
        roles: TEAM,
        what: "see pharmacy Update Record messages",
        refusal: "only the practice team sees pharmacy messages",
    },
    Row {
        permission: DecidePharmacyMessages,
        roles: &[Clinician],
        what: "amend, file, reject or match pharmacy messages",
        refusal: "only clinicians amend, file or reject pharmacy messages",
    },
    Row {
        permission: RegisterPharmacies,
        roles: &[Admin],
        what: "register the pharmacies that send Update Record messages",
        refusal: "administrators register the pharmacies that send Update Record messages",
    },
    Row {
        permission: MessageTheTeam,
        roles: TEAM,
        what: "instant messages between members of the practice team",
        refusal: "instant messages are for the practice team",
    },
    Row {
        permission: MessagePatients,
        roles: TEAM,
        what: "send messages to patients and see their delivery",
        refusal: "only the practice team messages patients",
    },
    Row {
        permission: EditMessagePresets,
        roles: &[Manager],
        what: "edit the practice's message presets",
        refusal: "practice managers edit message presets",
    },
    Row {
        permission: KeepActionPlan,
        roles: &[Manager],
        what: "keep the practice's action plan for its exclusion figures",
        refusal: "the practice manager keeps the action plan",
    },
    Row {
        permission: JudgeSeriousHarm,
        roles: &[Clinician],
        what: "judge serious harm when withholding from a subject access export",
        refusal: "only a clinician can judge serious harm (the appropriate health professional)",
    },
    Row {
        permission: ChangePracticeSettings,
        roles: &[Manager],
        what: "the practice's online-services settings",
        refusal: "only the practice manager changes the practice's online-services settings",
    },
    Row {
        permission: ManageStaff,
        roles: &[Admin],
        what: "staff accounts, roles and one-time codes",
        refusal: "only administrators manage staff accounts",
    },
    Row {
        permission: ManageAppsAndIntegrations,
        roles: &[Admin],
        what: "register, turn off and on patient apps and practice integrations",
        refusal: "only administrators register and turn off apps and integrations",
    },
    Row {
        permission: ManageApiTokens,
        roles: &[Admin],
        what: "see and revoke API tokens",
        refusal: "only administrators see and revoke API tokens",
    },
];

impl Permission {
    fn row(self) -> Option<&'static Row> {
        TABLE.iter().find(|r| r.permission == self)
    }

    /// Whether `role` has this permission. A permission without a row is nobody's (fails
    /// closed).
    pub fn allows(self, role: Role) -> bool {
        self.row().is_some_and(|r| r.roles.contains(&role))
    }

    /// Ok, or the refusal to give a person of `role`.
    pub fn check(self, role: Role) -> Result<(), &'static str> {
        if self.allows(role) {
            Ok(())
        } else {
            Err(self.row().map_or("your role does not allow this", |r| r.refusal))
        }
    }
}

/// The table as Markdown: one row per permission, a column per role.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "## The use cases' table\n\n\
         Every use case checks one row of this table (`crates/core/src/permissions.rs`), and this \
         section is generated from it; a test fails when the two differ \
         (`cargo run -p caldicott -- permissions` prints it).\n\n| May | ",
    );
    out.push_str(&Role::ALL.map(Role::display).join(" | "));
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for row in TABLE {
        out.push_str("| ");
        out.push_str(row.what);
        for role in Role::ALL {
            out.push_str(if row.roles.contains(&role) { " | yes" } else { " | no" });
        }
        out.push_str(" |\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_has_one_row() {
        let mut seen = std::collections::HashSet::new();
        for row in TABLE {
            assert!(seen.insert(row.permission), "{:?} has two rows", row.permission);
            assert!(!row.roles.is_empty() && !row.refusal.is_empty() && !row.what.is_empty());
        }
    }

    #[test]
    fn administrators_and_icb_analysts_never_reach_a_patient() {
        // R-governance: administrators run the service; ICB analysts see counts only.
        for p in [
            OpenRecords,
            RegisterPatients,
            TransferRecordsIn,
            IssuePatientCredentials,
            ManageAppointments,
            HideEntries,
            ChangeOnlineAccess,
            DecideProxyAccess,
            HandleSubjectAccessRequests,
            SeePharmacyMessages,
            MessagePatients,
        ] {
            assert!(!p.allows(Role::Administrator) && !p.allows(Role::IcbAnalyst), "{p:?}");
        }
        for row in TABLE {
            if row.roles.contains(&Role::IcbAnalyst) {
                assert_eq!(row.permission, ServiceFigures, "an ICB analyst has nothing but the figures");
            }
        }
    }

    #[test]
    fn clinical_decisions_are_for_clinicians() {
        for p in [
            RecordConsultations,
            HideEntries,
            FileResultsAndDocuments,
            DecideRequests,
            DecideEnhancedReviews,
            JudgeSeriousHarm,
        ] {
            assert_eq!(TABLE.iter().find(|r| r.permission == p).unwrap().roles, &[Role::Clinician], "{p:?}");
        }
        assert_eq!(
            HideEntries.check(Role::Receptionist),
            Err("only clinicians hide or show entries and record 104 or 106")
        );
    }

    #[test]
    fn the_published_table_is_the_one_checked() {
        let published = include_str!("../../../docs/permissions.md");
        let section = published.find("## The use cases' table").map(|i| &published[i..]);
        assert_eq!(section, Some(render_markdown().as_str()), "docs/permissions.md is out of date: regenerate it");
    }
}
