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

/// Both databases' migrations, from one list: (version, name, file stem). Each database has its
/// own SQL text in `migrations/<database>/<stem>.sql`; the schema-parity test compares the two.
macro_rules! migrations {
    ($($version:literal $name:literal $file:literal,)*) => {
        pub const SQLITE: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/sqlite/", $file, ".sql")),
        }),*];
        pub const POSTGRES: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/postgres/", $file, ".sql")),
        }),*];
    };
}

migrations! {
    1 "init" "0001_init",
    2 "staff_sessions" "0002_staff_sessions",
    3 "filing_queue" "0003_filing_queue",
    4 "visible_online_default" "0004_visible_online_default",
    5 "record_import" "0005_record_import",
    6 "patient_services" "0006_patient_services",
    7 "appointments_and_tasks" "0007_appointments_and_tasks",
    8 "oidc_subjects" "0008_oidc_subjects",
    9 "patient_two_step" "0009_patient_two_step",
    10 "outbox" "0010_outbox",
    11 "linked_apps" "0011_linked_apps",
    12 "app_nhs_login" "0012_app_nhs_login",
    13 "governance" "0013_governance",
    14 "count_indexes" "0014_count_indexes",
    15 "update_record" "0015_update_record",
    16 "sar" "0016_sar",
    17 "staff_messages" "0017_staff_messages",
    18 "sar_review" "0018_sar_review",
    19 "fhir_tokens" "0019_fhir_tokens",
    20 "fhir_integrations_and_files" "0020_fhir_integrations_and_files",
    21 "update_record_replacements" "0021_update_record_replacements",
    22 "own_access_level" "0022_own_access_level",
    23 "outbox_once" "0023_outbox_once",
    24 "credential_tries" "0024_credential_tries",
    25 "audit_client" "0025_audit_client",
    26 "passwords" "0026_passwords",
    27 "app_link_nonces" "0027_app_link_nonces",
    28 "sar_export_jobs" "0028_sar_export_jobs",
    29 "account_tries" "0029_account_tries",
    30 "gp_connect" "0030_gp_connect",
    31 "gp_connect_appointments" "0031_gp_connect_appointments",
    32 "online_capacity" "0032_online_capacity",
    33 "outbox_wake" "0033_outbox_wake",
    34 "gp_connect_dissent" "0034_gp_connect_dissent",
    35 "gp_connect_bookable_by" "0035_gp_connect_bookable_by",
    36 "gp_connect_booking_limit" "0036_gp_connect_booking_limit",
    37 "gp_connect_booking_window" "0037_gp_connect_booking_window",
    38 "staff_sds_user_id" "0038_staff_sds_user_id",
    39 "app_token_exchange" "0039_app_token_exchange",
}

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
