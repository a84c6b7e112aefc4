#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The binary end to end: build a demo practice, verify its audit chain, then tamper with the
//! database file directly (as someone with file access could) and check that `audit verify`
//! names the first bad event.

use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Db {
    dir: PathBuf,
}

impl Db {
    fn path(&self) -> PathBuf {
        self.dir.join("caldicott.db")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn caldicott(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .args(args)
        .env("CALDICOTT_DATABASE", db)
        .env("CALDICOTT_LOG", "warn")
        .output()
        .expect("the caldicott binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn demo() -> Db {
    let dir = std::env::temp_dir().join(format!("caldicott-cli-{}", uuid::Uuid::now_v7().simple()));
    let db = Db { dir };
    let out =
        caldicott(&db.path(), &["demo", "--build-only", "--patients", "25", "--seed", "3", "--as-of", "2026-11-22"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("Riverside Medical Practice"));
    db
}

async fn tamper(db: &Path, sql: &str) {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display())).await.expect("open");
    sqlx::raw_sql("DROP TRIGGER IF EXISTS audit_event_no_update; DROP TRIGGER IF EXISTS audit_event_no_delete;")
        .execute(&mut c)
        .await
        .expect("drop guards");
    sqlx::raw_sql(sql).execute(&mut c).await.expect("tamper");
}

fn verify(db: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = caldicott(db, &args);
    (out.status.success(), stdout(&out))
}

#[test]
fn a_fresh_demo_verifies_and_a_checkpoint_round_trips() {
    let db = demo();
    let (ok, text) = verify(&db.path(), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("audit chain intact"), "{text}");
    let cp = caldicott(&db.path(), &["audit", "checkpoint"]);
    let line = stdout(&cp);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("checkpoint JSON");
    assert_eq!(v["practice"], "Y90210");
    assert!(v["count"].as_i64().unwrap_or(0) > 25);
    let file = db.dir.join("checkpoint.jsonl");
    std::fs::write(&file, &line).expect("write checkpoint");
    let (ok, text) = verify(&db.path(), &["--checkpoint", file.to_str().unwrap_or_default()]);
    assert!(ok && text.contains("matches 1 checkpoint"), "{text}");
}

#[tokio::test]
async fn an_edited_event_is_named() {
    let db = demo();
    tamper(&db.path(), "UPDATE audit_event SET detail = 'nothing to see' WHERE seq = 5").await;
    let (ok, text) = verify(&db.path(), &[]);
    assert!(!ok);
    assert!(text.contains("BROKEN at event 5") && text.contains("altered"), "{text}");
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    let db = demo();
    tamper(&db.path(), "DELETE FROM audit_event WHERE seq = 9").await;
    let (ok, text) = verify(&db.path(), &[]);
    assert!(!ok);
    assert!(text.contains("BROKEN at event 9") && text.contains("missing"), "{text}");
}

#[tokio::test]
async fn swapped_events_are_named() {
    let db = demo();
    tamper(
        &db.path(),
        "UPDATE audit_event SET seq = -1 WHERE seq = 3; UPDATE audit_event SET seq = 3 WHERE seq = 4; UPDATE audit_event SET seq = 4 WHERE seq = -1;",
    )
    .await;
    let (ok, text) = verify(&db.path(), &[]);
    assert!(!ok);
    assert!(text.contains("BROKEN at event 3"), "{text}");
}

#[tokio::test]
async fn events_cut_off_the_end_are_caught_by_a_checkpoint() {
    let db = demo();
    let file = db.dir.join("checkpoint.jsonl");
    std::fs::write(&file, stdout(&caldicott(&db.path(), &["audit", "checkpoint"]))).expect("write");
    let count: i64 = {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.path().display())).await.expect("open");
        sqlx::query_scalar("SELECT MAX(seq) FROM audit_event").fetch_one(&mut c).await.expect("count")
    };
    // The attacker removes the last two events and rewinds the chain head to match.
    tamper(
        &db.path(),
        &format!(
            "DELETE FROM audit_event WHERE seq > {keep};
             UPDATE audit_head SET count = {keep}, hash = (SELECT hash FROM audit_event WHERE seq = {keep});",
            keep = count - 2
        ),
    )
    .await;
    let (ok, text) = verify(&db.path(), &[]);
    assert!(ok, "without a checkpoint a clean prefix still verifies: {text}");
    let (ok, text) = verify(&db.path(), &["--checkpoint", file.to_str().unwrap_or_default()]);
    assert!(!ok);
    assert!(text.contains(&format!("BROKEN at event {}", count - 1)) && text.contains("cut off"), "{text}");
}

#[tokio::test]
async fn deleting_the_last_event_without_rewinding_the_head_is_caught() {
    let db = demo();
    tamper(&db.path(), "DELETE FROM audit_event WHERE seq = (SELECT MAX(seq) FROM audit_event)").await;
    let (ok, text) = verify(&db.path(), &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("cut off"), "{text}");
}

#[test]
fn tokens_are_issued_by_the_command_line() {
    let db = demo();
    let out =
        caldicott(&db.path(), &["token", "create", "--practice", "Y90210", "--staff", "dr.hughes", "--days", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).trim().starts_with("cal_"));
    let bad = caldicott(&db.path(), &["token", "create", "--practice", "Y90210", "--staff", "nobody"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no active staff member"));
    let out = caldicott(&db.path(), &["migrate"]);
    assert!(out.status.success() && stdout(&out).contains("up to date"));
}

#[test]
fn tokens_are_listed_and_revoked_by_the_command_line() {
    let db = demo();
    let out = caldicott(
        &db.path(),
        &["token", "create", "--practice", "Y90210", "--staff", "dr.hughes", "--label", "nightly export"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = stdout(&out).trim().to_owned();
    let list = caldicott(&db.path(), &["token", "list", "--ods", "Y90210"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(!text.contains(&secret), "a token's secret is never listed");
    let line = text.lines().find(|l| l.contains("nightly export")).expect("the new token is listed").to_owned();
    assert!(line.contains("active") && line.contains("dr.hughes"), "{line}");
    let id = line.split_whitespace().next().unwrap().to_owned();
    let out = caldicott(&db.path(), &["token", "revoke", "--ods", "Y90210", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = stdout(&caldicott(&db.path(), &["token", "list", "--practice", "Y90210"]));
    assert!(after.lines().any(|l| l.starts_with(&id) && l.contains("revoked")), "{after}");
    // Again: nothing to revoke. Another practice's code does not reach it.
    assert!(!caldicott(&db.path(), &["token", "revoke", "--ods", "Y90210", &id]).status.success());
    assert!(!caldicott(&db.path(), &["token", "revoke", "--ods", "Z99999", &id]).status.success());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Issue 24: `--database` is taken wherever it is written, a log written to a pipe or file has no
/// colour codes, and `--log-format json` writes one JSON object a line.
#[test]
fn the_database_option_goes_anywhere_and_logs_suit_a_file_or_a_collector() {
    let db = demo();
    let p = db.path();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_caldicott"))
            .args(args)
            .env_remove("CALDICOTT_DATABASE")
            .env("CALDICOTT_LOG", "info")
            .output()
            .expect("the caldicott binary runs")
    };
    let at = p.to_str().unwrap();
    let late = run(&["report", "exclusions", "--practice", "Y90210", "--as", "m.clarke", "--database", at]);
    assert!(late.status.success(), "--database after the report's own options: {}", stderr(&late));
    let early = run(&["report", "--database", at, "exclusions", "--practice", "Y90210", "--as", "m.clarke"]);
    assert!(early.status.success(), "{}", stderr(&early));
    assert_eq!(stdout(&late), stdout(&early));
    // New databases, so that the migrations are logged.
    let (one, two) = (p.with_file_name("logged-as-text.db"), p.with_file_name("logged-as-json.db"));
    let text = run(&["migrate", "--database", one.to_str().unwrap()]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stderr(&text).contains("applied schema migration"), "{}", stderr(&text));
    assert!(!stderr(&text).contains('\u{1b}'), "no colour codes in a log that is not a terminal: {:?}", stderr(&text));
    let json = run(&["--log-format", "json", "migrate", "--database", two.to_str().unwrap()]);
    assert!(json.status.success(), "{}", stderr(&json));
    let lines: Vec<serde_json::Value> = stderr(&json)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not a JSON line: {l}")))
        .collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()),
        "{lines:?}"
    );
}

#[test]
fn bulk_code_is_a_dry_run_until_confirmed_and_reports_come_out_as_csv() {
    // R35, R36, R37, from the command line.
    let db = demo();
    let p = db.path();
    let count_104 = |p: &Path| {
        let out =
            caldicott(p, &["report", "exclusions", "--practice", "Y90210", "--as", "m.clarke", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("report JSON");
        v["figures"]["active_104"].as_i64().expect("a count")
    };
    let before = count_104(&p);
    let cohort = ["--practice", "Y90210", "--as", "m.clarke", "--code", "104", "--min-age", "30", "--max-age", "40"];
    let dry = caldicott(&p, &[&["bulk-code"], &cohort[..]].concat());
    assert_eq!(dry.status.code(), Some(2), "a dry run: {}", stderr(&dry));
    assert!(stderr(&dry).contains("NHS England advises against applying 104 in bulk"));
    let n: String = stderr(&dry).split("--confirm ").nth(1).expect("the count to confirm").trim().to_owned();
    assert!(n.parse::<i64>().expect("a number") > 0);
    assert_eq!(count_104(&p), before, "nothing changed");
    let wrong = caldicott(&p, &[&["bulk-code"], &cohort[..], &["--confirm", "99999"]].concat());
    assert!(!wrong.status.success());
    assert_eq!(count_104(&p), before, "nothing changed");
    let done = caldicott(&p, &[&["bulk-code"], &cohort[..], &["--confirm", &n]].concat());
    assert!(done.status.success(), "{}", stderr(&done));
    let job: serde_json::Value = serde_json::from_str(&stdout(&done)).expect("job JSON");
    assert_eq!(job["patients"].as_i64(), n.parse::<i64>().ok());
    assert!(count_104(&p) > before);
    // The monthly return lists them, as CSV.
    let ret = caldicott(&p, &["report", "monthly-return", "--practice", "Y90210", "--as", "m.clarke"]);
    let csv = stdout(&ret);
    assert!(csv.starts_with("nhs_number,family_name,given_name,date_of_birth,age,date_added,added_by\n"), "{csv}");
    assert!(csv.lines().count() as i64 > n.parse::<i64>().unwrap_or(0));
    // Undo with 106, confirmed the same way.
    let id = job["id"].as_str().expect("job id").to_owned();
    let undo = caldicott(
        &p,
        &["bulk-code", "--practice", "Y90210", "--as", "m.clarke", "--code", "106", "--undo", &id, "--confirm", &n],
    );
    assert!(undo.status.success(), "{}", stderr(&undo));
    assert_eq!(count_104(&p), before);
    // A receptionist may not; the audit chain is intact after all of it.
    let refused = caldicott(
        &p,
        &[&["bulk-code"], &cohort[..]]
            .concat()
            .iter()
            .map(|a| if *a == "m.clarke" { "j.baker" } else { a })
            .collect::<Vec<_>>(),
    );
    assert!(!refused.status.success());
    assert!(verify(&p, &[]).0);
}

#[test]
fn the_online_appointment_capacity_report_runs_on_the_demo() {
    // Issue 26: by week, clinician and type: slots offered, offered online, booked online, by
    // the practice and by other care settings, and did-not-attends by how they were booked.
    let db = demo();
    let p = db.path();
    let who = ["--practice", "Y90210", "--as", "m.clarke"];
    let out = caldicott(&p, &[&["report", "appointments"], &who[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "week_starting,clinician,appointment_type,slots_offered,offered_online,percent_offered_online,\
             booked_online,booked_by_practice,booked_by_other_care_settings,did_not_attend_online,\
             did_not_attend_by_practice,did_not_attend_by_other_care_settings,attendance_not_recorded"
        )
    );
    let rows: Vec<Vec<u64>> =
        lines.map(|l| l.split(',').skip(3).map(|n| n.parse().unwrap_or(u64::MAX)).collect()).collect();
    assert!(rows.len() >= 8, "weeks of clinics for each clinician: {csv}");
    let sum = |i: usize| rows.iter().map(|r| r[i]).sum::<u64>();
    assert!(sum(0) > sum(1) && sum(1) > 0, "some slots, not all, are offered online: {csv}");
    assert!(sum(3) > 0 && sum(4) > 0 && sum(5) > 0, "booked online, by the practice and by NHS 111: {csv}");
    assert!(sum(6) > 0, "some online bookings were not attended: {csv}");
    assert!(rows.iter().all(|r| r[1] <= r[0] && r[3] + r[4] + r[5] <= r[0]), "{csv}");
    // JSON, a chosen period, and the refusals.
    let json = caldicott(&p, &[&["report", "appointments", "--format", "json", "--weeks", "1"], &who[..]].concat());
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("report JSON");
    assert_eq!(v["period"]["weeks"], 1);
    assert!(v["total"]["offered"].as_u64().is_some());
    let bad = caldicott(&p, &[&["report", "appointments", "--weeks", "52"], &who[..]].concat());
    assert!(!bad.status.success() && stderr(&bad).contains("from 1 to 26"), "{}", stderr(&bad));
    let receptionist = caldicott(&p, &["report", "appointments", "--practice", "Y90210", "--as", "j.baker"]);
    assert!(!receptionist.status.success(), "for practice managers and administrators");
}

#[test]
fn only_the_operator_makes_an_icb_analyst_who_sees_counts_only() {
    let db = demo();
    let p = db.path();
    let add = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .args([
            "staff",
            "add",
            "--practice",
            "Y90210",
            "--username",
            "icb.two",
            "--name",
            "ICB Two",
            "--role",
            "icb_analyst",
        ])
        .env("CALDICOTT_DATABASE", &p)
        .env("CALDICOTT_STAFF_PASSWORD", "a long enough password")
        .env("CALDICOTT_LOG", "warn")
        .output()
        .expect("runs");
    assert!(add.status.success(), "{}", stderr(&add));
    let icb = caldicott(&p, &["report", "icb", "--practice", "Y90210", "--as", "icb.two"]);
    assert!(icb.status.success(), "{}", stderr(&icb));
    let csv = stdout(&icb);
    assert!(csv.starts_with("ods_code,practice,registered_16_plus,active_104,"), "{csv}");
    assert!(csv.contains("Y90210,Riverside Medical Practice,"));
    assert!(!csv.chars().collect::<Vec<_>>().windows(10).any(|w| w.iter().all(char::is_ascii_digit)), "no NHS number");
    // Issue 26: the practices' online appointment totals, by the same analyst; counts only.
    let appts =
        caldicott(&p, &["report", "icb-appointments", "--practice", "Y90210", "--as", "icb.two", "--weeks", "4"]);
    assert!(appts.status.success(), "{}", stderr(&appts));
    let csv = stdout(&appts);
    assert!(csv.starts_with("ods_code,practice,from,to,slots_offered,offered_online,"), "{csv}");
    let ours: Vec<&str> =
        csv.lines().find(|l| l.starts_with("Y90210,")).expect("the demo practice").split(',').collect();
    assert!(ours[4].parse::<u64>().expect("slots offered") > 0, "the demo's past clinics are counted: {csv}");
    assert!(!csv.contains("Dr "), "no clinician either");
    assert!(!caldicott(&p, &["report", "icb-appointments", "--practice", "Y90210", "--as", "m.clarke"])
        .status
        .success());
    // The analyst cannot produce the patient-level return; practice staff cannot see the ICB view.
    assert!(!caldicott(&p, &["report", "monthly-return", "--practice", "Y90210", "--as", "icb.two"]).status.success());
    assert!(!caldicott(&p, &["report", "icb", "--practice", "Y90210", "--as", "m.clarke"]).status.success());
}

#[test]
fn a_subject_access_export_comes_out_of_the_command_line_once_reviewed() {
    // The demo's request from Omar Haddad: a hidden letter about his brother and a deleted staff
    // message wait for decisions; the export is refused until they have them.
    let db = demo();
    let p = db.path();
    let who = ["--practice", "Y90210", "--as", "m.clarke"];
    let list = caldicott(&p, &[&["sar", "list"], &who[..]].concat());
    assert!(list.status.success(), "{}", stderr(&list));
    let register: serde_json::Value = serde_json::from_str(&stdout(&list)).expect("register JSON");
    let sar = register
        .as_array()
        .and_then(|r| r.iter().find(|s| s["patient_name"].as_str().unwrap_or("").contains("HADDAD")))
        .expect("the demo request")["sar"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let out = std::env::temp_dir().join(format!("caldicott-sar-out-{}", uuid::Uuid::now_v7().simple()));
    let out_s = out.display().to_string();
    let early = caldicott(&p, &[&["sar", "export"], &who[..], &["--sar", &sar, "--out", &out_s]].concat());
    assert!(!early.status.success());
    assert!(stderr(&early).contains("still need"), "{}", stderr(&early));
    let review = caldicott(&p, &[&["sar", "review"], &who[..], &["--sar", &sar, "--flagged"]].concat());
    let flagged: serde_json::Value = serde_json::from_str(&stdout(&review)).expect("review JSON");
    let items = flagged["items"].as_array().expect("items");
    let letter = items.iter().find(|i| i["flags"].to_string().contains("Third-party")).expect("the hidden letter");
    let letter_key = letter["key"].as_str().unwrap().to_owned();
    // A withholding without a reason is refused, with the field named.
    let bad = caldicott(
        &p,
        &[&["sar", "decide"], &who[..], &["--sar", &sar, "--key", &letter_key, "--withhold", "third_party"]].concat(),
    );
    assert!(!bad.status.success() && stderr(&bad).contains("reason"), "{}", stderr(&bad));
    let ok = caldicott(
        &p,
        &[
            &["sar", "decide"],
            &who[..],
            &["--sar", &sar, "--key", &letter_key, "--withhold", "third_party", "--reason", "About his brother"],
        ]
        .concat(),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    for i in items.iter().filter(|i| i["key"] != letter_key.as_str()) {
        let k = i["key"].as_str().unwrap();
        let r = caldicott(&p, &[&["sar", "decide"], &who[..], &["--sar", &sar, "--key", k]].concat());
        assert!(r.status.success(), "{}", stderr(&r));
    }
    let done = caldicott(&p, &[&["sar", "export"], &who[..], &["--sar", &sar, "--out", &out_s]].concat());
    assert!(done.status.success(), "{}", stderr(&done));
    let files: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2);
    let pdf = files.iter().find(|f| f.extension().is_some_and(|e| e == "pdf")).expect("the PDF");
    let text = Command::new("pdftotext").arg(pdf).arg("-").output().expect("pdftotext");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("His brother answered first"), "the deleted staff message is disclosed");
    assert!(text.contains("Deleted from the inbox by Dr Chidi Okafor"));
    assert!(!text.contains("under the team's care"), "the withheld letter is not");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(pdf).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // The files are never replaced (and nothing more is released); a receptionist may not export.
    let again = caldicott(&p, &[&["sar", "export"], &who[..], &["--sar", &sar, "--out", &out_s]].concat());
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
    let reception =
        caldicott(&p, &["sar", "export", "--practice", "Y90210", "--as", "j.baker", "--sar", &sar, "--out", &out_s]);
    assert!(!reception.status.success());
    std::fs::remove_dir_all(&out).ok();
    assert!(verify(&p, &[]).0);
}

/// The documentation names commands as they are: every `caldicott …` command written in
/// README.md, ARCHITECTURE.md and docs/*.md is one `caldicott --help` knows, and every flag it
/// shows is one that command takes.
#[test]
fn the_documentation_names_commands_as_they_are() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for f in std::fs::read_dir(root.join("docs")).unwrap() {
        files.push(f.unwrap().path());
    }
    let mut checked = 0;
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("caldicott ") {
            // A command: what follows up to the end of the line or of the inline code span.
            let rest = &text[at + "caldicott ".len()..];
            let line = rest.split(['\n', '`', ')']).next().unwrap_or("");
            let words: Vec<&str> = line.split_whitespace().collect();
            // The command and its subcommand; `report exclusions|trend` names each of them.
            let path: Vec<&str> = words
                .iter()
                .take_while(|w| {
                    w.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c == '|') && !w.starts_with('-')
                })
                .take(2)
                .copied()
                .collect();
            let Some(first) = path.first() else { continue };
            let top = Command::new(env!("CARGO_BIN_EXE_caldicott")).arg("--help").output().unwrap();
            let commands = String::from_utf8_lossy(&top.stdout).into_owned();
            // Prose ("caldicott is", "caldicott that spans") is not a command.
            if !commands.lines().any(|l| l.split_whitespace().next() == Some(first)) {
                continue;
            }
            let subs: Vec<Option<&str>> = match path.get(1) {
                Some(s) => s.split('|').map(Some).collect(),
                None => vec![None],
            };
            for sub in subs {
                let args: Vec<&str> = std::iter::once(*first).chain(sub).collect();
                let help = Command::new(env!("CARGO_BIN_EXE_caldicott")).args(&args).arg("--help").output().unwrap();
                let said = String::from_utf8_lossy(&help.stdout).into_owned();
                let named = args.join(" ");
                assert!(help.status.success(), "{}: `caldicott {named}` is not a command", file.display());
                for flag in words.iter().filter(|w| w.trim_start_matches('[').starts_with("--")) {
                    let flag = flag.trim_start_matches('[').split(['=', ']', ',']).next().unwrap_or(flag);
                    assert!(
                        said.contains(&format!("{flag} ")) || said.contains(&format!("{flag}\n")),
                        "{}: `caldicott {named}` takes no {flag}",
                        file.display()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "{checked} commands checked");
}

#[tokio::test]
async fn secrets_rotate_seals_every_secret_under_a_new_key() {
    // ASVS 2.8.3: authenticator secrets are sealed with a key kept beside, not in, the database;
    // rotation makes a new key and seals everything again, keeping the previous key as .old.
    let db = demo();
    let key = std::path::PathBuf::from(format!("{}.key", db.path().display()));
    let before = std::fs::read_to_string(&key).expect("the demo made a key beside the database");
    // A secret written before sealing existed.
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.path().display())).await.expect("open");
    sqlx::query("UPDATE staff SET totp_secret = 'JBSWY3DPEHPK3PXP', totp_confirmed = 1 WHERE username = 'dr.okafor'")
        .execute(&mut c)
        .await
        .expect("legacy secret");
    let out = caldicott(&db.path(), &["secrets", "rotate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).starts_with("1 secret(s) sealed again"), "{}", stdout(&out));
    let stored: String = sqlx::query_scalar("SELECT totp_secret FROM staff WHERE username = 'dr.okafor'")
        .fetch_one(&mut c)
        .await
        .expect("read back");
    assert!(stored.starts_with("enc1:") && !stored.contains("JBSWY3DPEHPK3PXP"), "{stored}");
    let after = std::fs::read_to_string(&key).expect("the new key is in place");
    assert_ne!(before, after);
    let old = std::fs::read_to_string(format!("{}.old", key.display())).expect("the previous key is kept");
    assert_eq!(old, before);
}

/// Runs git in `dir`, quietly, as a test author.
fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(ok.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn a_commit_to_hazard_carrying_code_without_a_review_of_the_log_fails_naming_the_hazards() {
    // Issue 21: a change to the visibility engine (or any path a hazard watches) must touch the
    // hazard log; CI names the hazards to review.
    let dir = std::env::temp_dir().join(format!("caldicott-safety-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("docs/safety")).unwrap();
    std::fs::create_dir_all(dir.join("engine")).unwrap();
    let log = r#"
[[hazard]]
id = "H01"
title = "Hidden entry shown online"
causes = "c"
effect = "e"
harm = "h"
initial = { severity = 5, likelihood = 3 }
residual = { severity = 4, likelihood = 1 }
status = "controlled"
watch = ["engine/"]
[[hazard.control]]
kind = "design"
text = "one engine"
tests = ["x::y"]
"#;
    std::fs::write(dir.join("docs/safety/hazards.toml"), log).unwrap();
    std::fs::write(dir.join("engine/visibility.rs"), "// v1\n").unwrap();
    std::fs::write(dir.join("README.md"), "readme\n").unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "first"]);
    let changes = || {
        Command::new(env!("CARGO_BIN_EXE_caldicott")).args(["safety", "changes", "--root"]).arg(&dir).output().unwrap()
    };
    assert!(changes().status.success(), "nothing changed since the log");
    // A change elsewhere needs no review.
    std::fs::write(dir.join("README.md"), "readme 2\n").unwrap();
    git(&dir, &["commit", "-qam", "docs"]);
    assert!(changes().status.success());
    // A change to the engine, committed without the log, fails and names H01 and the file.
    std::fs::write(dir.join("engine/visibility.rs"), "// v2\n").unwrap();
    git(&dir, &["commit", "-qam", "engine"]);
    let out = changes();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("H01 Hidden entry shown online") && err.contains("engine/visibility.rs"), "{err}");
    // Reviewing the log (being edited now, or committed afterwards) clears it.
    std::fs::write(dir.join("docs/safety/hazards.toml"), format!("{log}\n# reviewed\n")).unwrap();
    assert!(changes().status.success(), "the log is being reviewed with the change");
    git(&dir, &["commit", "-qam", "review"]);
    assert!(changes().status.success(), "reviewed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_crates_depend_one_way() {
    // Issue 22, ARCHITECTURE.md: cli → web → adapters → app → store → core (fhir and pdf: pure
    // mapping, below app), no arrow back up; every workspace member has its place; the web layer reaches
    // data only through app's use cases (no dependency on the store); the FHIR mapping does no IO.
    let order = ["core", "fhir", "pdf", "store", "app", "adapters", "demo", "web", "cli"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("../Cargo.toml")).unwrap()).unwrap();
    let members: Vec<String> = workspace["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().trim_start_matches("crates/").to_owned())
        .collect();
    let mut placed: Vec<&str> = order.to_vec();
    placed.sort_unstable();
    let mut members_sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    members_sorted.sort_unstable();
    assert_eq!(members_sorted, placed, "every workspace crate needs its place in the layering");
    for (i, name) in order.iter().enumerate() {
        let text = std::fs::read_to_string(root.join(name).join("Cargo.toml")).unwrap();
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        for dep in deps.keys().filter_map(|d| d.strip_prefix("caldicott-")) {
            let at = order
                .iter()
                .position(|o| *o == dep)
                .unwrap_or_else(|| panic!("{name} depends on unknown caldicott-{dep}"));
            assert!(at < i, "caldicott-{name} depends on caldicott-{dep}, which is above it");
        }
        if *name == "web" {
            assert!(!deps.contains_key("caldicott-store"), "the web layer depends on the store directly");
            // The bulk-loading door (App::seeding) is the demo's alone, never a route's.
            assert!(!deps.contains_key("caldicott-demo"), "the web layer depends on the demo generator");
        }
        if matches!(*name, "fhir" | "pdf") {
            for io in ["caldicott-store", "tokio", "sqlx", "ureq", "lettre"] {
                assert!(!deps.contains_key(io), "caldicott-{name} depends on {io}, which does IO");
            }
        }
        if matches!(*name, "app" | "web") {
            // The use cases reach mail, Notify and NHS login only through the ports app owns.
            for client in ["caldicott-adapters", "lettre", "ureq", "openidconnect"] {
                assert!(!deps.contains_key(client), "caldicott-{name} depends on {client}");
            }
        }
    }
}
