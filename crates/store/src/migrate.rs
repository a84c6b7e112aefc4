//! Embedded schema migrations. Each runs in its own transaction (both databases have
//! transactional DDL), so a crash leaves the schema at the old version or the new one, never in
//! between. A database newer than this binary, or one whose applied migration differs from the
//! embedded text, is refused.

use crate::{StoreError, StoreResult};
use sha2::{Digest, Sha256};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, name: "staff_sessions", sql: include_str!("../migrations/sqlite/0002_staff_sessions.sql") },
    Migration { version: 3, name: "filing_queue", sql: include_str!("../migrations/sqlite/0003_filing_queue.sql") },
    Migration {
        version: 4,
        name: "visible_online_default",
        sql: include_str!("../migrations/sqlite/0004_visible_online_default.sql"),
    },
    Migration { version: 5, name: "record_import", sql: include_str!("../migrations/sqlite/0005_record_import.sql") },
    Migration {
        version: 6,
        name: "patient_services",
        sql: include_str!("../migrations/sqlite/0006_patient_services.sql"),
    },
    Migration {
        version: 7,
        name: "appointments_and_tasks",
        sql: include_str!("../migrations/sqlite/0007_appointments_and_tasks.sql"),
    },
    Migration { version: 8, name: "oidc_subjects", sql: include_str!("../migrations/sqlite/0008_oidc_subjects.sql") },
    Migration {
        version: 9,
        name: "patient_two_step",
        sql: include_str!("../migrations/sqlite/0009_patient_two_step.sql"),
    },
    Migration { version: 10, name: "outbox", sql: include_str!("../migrations/sqlite/0010_outbox.sql") },
    Migration { version: 11, name: "linked_apps", sql: include_str!("../migrations/sqlite/0011_linked_apps.sql") },
    Migration { version: 12, name: "app_nhs_login", sql: include_str!("../migrations/sqlite/0012_app_nhs_login.sql") },
    Migration { version: 13, name: "governance", sql: include_str!("../migrations/sqlite/0013_governance.sql") },
    Migration { version: 14, name: "count_indexes", sql: include_str!("../migrations/sqlite/0014_count_indexes.sql") },
    Migration { version: 15, name: "update_record", sql: include_str!("../migrations/sqlite/0015_update_record.sql") },
    Migration { version: 16, name: "sar", sql: include_str!("../migrations/sqlite/0016_sar.sql") },
    Migration {
        version: 17,
        name: "staff_messages",
        sql: include_str!("../migrations/sqlite/0017_staff_messages.sql"),
    },
    Migration { version: 18, name: "sar_review", sql: include_str!("../migrations/sqlite/0018_sar_review.sql") },
    Migration { version: 19, name: "fhir_tokens", sql: include_str!("../migrations/sqlite/0019_fhir_tokens.sql") },
    Migration {
        version: 20,
        name: "fhir_integrations_and_files",
        sql: include_str!("../migrations/sqlite/0020_fhir_integrations_and_files.sql"),
    },
    Migration {
        version: 21,
        name: "update_record_replacements",
        sql: include_str!("../migrations/sqlite/0021_update_record_replacements.sql"),
    },
    Migration {
        version: 22,
        name: "own_access_level",
        sql: include_str!("../migrations/sqlite/0022_own_access_level.sql"),
    },
    Migration { version: 23, name: "outbox_once", sql: include_str!("../migrations/sqlite/0023_outbox_once.sql") },
    Migration {
        version: 24,
        name: "credential_tries",
        sql: include_str!("../migrations/sqlite/0024_credential_tries.sql"),
    },
    Migration { version: 25, name: "audit_client", sql: include_str!("../migrations/sqlite/0025_audit_client.sql") },
    Migration { version: 26, name: "passwords", sql: include_str!("../migrations/sqlite/0026_passwords.sql") },
    Migration {
        version: 27,
        name: "app_link_nonces",
        sql: include_str!("../migrations/sqlite/0027_app_link_nonces.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/postgres/0001_init.sql") },
    Migration {
        version: 2,
        name: "staff_sessions",
        sql: include_str!("../migrations/postgres/0002_staff_sessions.sql"),
    },
    Migration { version: 3, name: "filing_queue", sql: include_str!("../migrations/postgres/0003_filing_queue.sql") },
    Migration {
        version: 4,
        name: "visible_online_default",
        sql: include_str!("../migrations/postgres/0004_visible_online_default.sql"),
    },
    Migration { version: 5, name: "record_import", sql: include_str!("../migrations/postgres/0005_record_import.sql") },
    Migration {
        version: 6,
        name: "patient_services",
        sql: include_str!("../migrations/postgres/0006_patient_services.sql"),
    },
    Migration {
        version: 7,
        name: "appointments_and_tasks",
        sql: include_str!("../migrations/postgres/0007_appointments_and_tasks.sql"),
    },
    Migration { version: 8, name: "oidc_subjects", sql: include_str!("../migrations/postgres/0008_oidc_subjects.sql") },
    Migration {
        version: 9,
        name: "patient_two_step",
        sql: include_str!("../migrations/postgres/0009_patient_two_step.sql"),
    },
    Migration { version: 10, name: "outbox", sql: include_str!("../migrations/postgres/0010_outbox.sql") },
    Migration { version: 11, name: "linked_apps", sql: include_str!("../migrations/postgres/0011_linked_apps.sql") },
    Migration {
        version: 12,
        name: "app_nhs_login",
        sql: include_str!("../migrations/postgres/0012_app_nhs_login.sql"),
    },
    Migration { version: 13, name: "governance", sql: include_str!("../migrations/postgres/0013_governance.sql") },
    Migration {
        version: 14,
        name: "count_indexes",
        sql: include_str!("../migrations/postgres/0014_count_indexes.sql"),
    },
    Migration {
        version: 15,
        name: "update_record",
        sql: include_str!("../migrations/postgres/0015_update_record.sql"),
    },
    Migration { version: 16, name: "sar", sql: include_str!("../migrations/postgres/0016_sar.sql") },
    Migration {
        version: 17,
        name: "staff_messages",
        sql: include_str!("../migrations/postgres/0017_staff_messages.sql"),
    },
    Migration { version: 18, name: "sar_review", sql: include_str!("../migrations/postgres/0018_sar_review.sql") },
    Migration { version: 19, name: "fhir_tokens", sql: include_str!("../migrations/postgres/0019_fhir_tokens.sql") },
    Migration {
        version: 20,
        name: "fhir_integrations_and_files",
        sql: include_str!("../migrations/postgres/0020_fhir_integrations_and_files.sql"),
    },
    Migration {
        version: 21,
        name: "update_record_replacements",
        sql: include_str!("../migrations/postgres/0021_update_record_replacements.sql"),
    },
    Migration {
        version: 22,
        name: "own_access_level",
        sql: include_str!("../migrations/postgres/0022_own_access_level.sql"),
    },
    Migration { version: 23, name: "outbox_once", sql: include_str!("../migrations/postgres/0023_outbox_once.sql") },
    Migration {
        version: 24,
        name: "credential_tries",
        sql: include_str!("../migrations/postgres/0024_credential_tries.sql"),
    },
    Migration { version: 25, name: "audit_client", sql: include_str!("../migrations/postgres/0025_audit_client.sql") },
    Migration { version: 26, name: "passwords", sql: include_str!("../migrations/postgres/0026_passwords.sql") },
    Migration {
        version: 27,
        name: "app_link_nonces",
        sql: include_str!("../migrations/postgres/0027_app_link_nonces.sql"),
    },
];

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migration (
    version    BIGINT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the applied migrations against the embedded ones and returns those still to apply.
pub fn pending<'a>(all: &'a [Migration], applied: &[(i64, String)]) -> StoreResult<Vec<&'a Migration>> {
    for (version, sum) in applied {
        match all.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Migration(format!(
                    "the database has schema version {version}, which this caldicott does not know: it is newer than this binary"
                )))
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::Migration(format!(
                    "schema migration {version} ({}) applied to this database differs from the one built in",
                    m.name
                )))
            }
            Some(_) => {}
        }
    }
    Ok(all.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).collect())
}
