//! The choke point, checked: every module that answers a patient, a proxy or an app reads record
//! entries only through the one reader (`outside.rs`), which loads, decides and audits, and hands
//! them on as `Shown<…>`, which only the engine makes (`caldicott_core::visibility::Shown`). The type does most of the work (an output
//! that takes `Shown<Entry>` cannot be given an undecided entry); this test catches the rest: a
//! new read of entries from the store, or a new bare decision, in an outside-facing module fails
//! here until it is reviewed and, if it is right, added to the list below with its reason.

/// The outside-facing modules, with their source. (The couriers that send messages to patients
/// live in `caldicott-adapters`, outside this crate, where the store cannot be reached at all.)
const OUTSIDE_FACING: &[(&str, &str)] = &[
    ("patient_services.rs", include_str!("../patients_online/patient_services.rs")),
    ("my_results.rs", include_str!("../patients_online/my_results.rs")),
    ("my_care_plans.rs", include_str!("../patients_online/my_care_plans.rs")),
    ("requests.rs", include_str!("../patients_online/requests.rs")),
    ("documents.rs", include_str!("../records/documents.rs")),
    ("appointments.rs", include_str!("../scheduling/appointments.rs")),
    ("apps.rs", include_str!("../apps_and_messages/apps.rs")),
    ("chat.rs", include_str!("../apps_and_messages/chat.rs")),
    ("outbox.rs", include_str!("../apps_and_messages/outbox.rs")),
    ("fhir_api/mod.rs", include_str!("../apps_and_messages/fhir_api/mod.rs")),
    ("fhir_api/scheduling.rs", include_str!("../apps_and_messages/fhir_api/scheduling.rs")),
    ("fhir_api/prescriptions.rs", include_str!("../apps_and_messages/fhir_api/prescriptions.rs")),
    ("fhir_api/tokens.rs", include_str!("../apps_and_messages/fhir_api/tokens.rs")),
    ("fhir_api/integrations.rs", include_str!("../apps_and_messages/fhir_api/integrations.rs")),
    ("fhir_api/capability.rs", include_str!("../apps_and_messages/fhir_api/capability.rs")),
];

/// The reads and decisions that are allowed, each with why it is safe.
const ALLOWED: &[(&str, &str, usize, &str)] = &[
    (
        "my_care_plans.rs",
        ".checked_only(",
        1,
        "add_to_my_care_plan: the plan is checked as shown to the viewer before they add to it; none of it is shown, and the addition is audited with its task",
    ),
    (
        "my_care_plans.rs",
        "store.add_entries_with_task(",
        1,
        "add_to_my_care_plan: a write of the viewer's own addition and its review task, in one transaction; it reads nothing",
    ),
    (
        "fhir_api/prescriptions.rs",
        ".checked_only(",
        1,
        "order_repeat: an app's order is checked against the repeats the engine offers its viewer (offer_repeat); none is shown, and the order is audited with its task",
    ),
    (
        "requests.rs",
        ".checked_only(",
        2,
        "request_repeats: the order is checked against the repeats offered; none is shown, and the request is audited itself; repeat_page: each order names only the medicines the viewer is shown (OutsideView::entry), part of the page's look, which is audited",
    ),
    (
        "requests.rs",
        "store.entry(",
        1,
        "a clinician approving a repeat request (staff): the template is read to issue it, never shown online",
    ),
    (
        "fhir_api/mod.rs",
        "store.entries(",
        1,
        "fhir_entries: each entry goes through resources_for, which gives an app only AccessPolicy::show's Shown",
    ),
    ("documents.rs", "store.entry(", 1, "staff_document: a document for staff, never an outside viewer"),
    (
        "fhir_api/mod.rs",
        "store.entry(",
        2,
        "entry_for (an app's read is decided before it is answered) and context_for (whether a repeat may be referenced)",
    ),
    (
        "fhir_api/mod.rs",
        "facts_for(",
        1,
        "practice_view: practice-facing callers (staff, systems), who receive every entry, labelled; apps load through outside_view",
    ),
    (
        "fhir_api/mod.rs",
        ".show(",
        1,
        "resources_for: an app's entries are each decided by AccessPolicy::show on its outside_view's policy, and each answer is audited (fhir_audit)",
    ),
    (
        "fhir_api/mod.rs",
        ".decide(",
        3,
        "the staff labels (NOPAT or shareable), entry_for's check, and context_for's repeat references; apps get only AccessPolicy::show's Shown",
    ),
];

/// Each way of reading entries or deciding outside `Shown`, found in `source` (whitespace removed).
fn reads(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut found = Vec::new();
    for (i, _) in code.match_indices("store.") {
        let name: String =
            code[i + "store.".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.contains("entr") && code[i + "store.".len() + name.len()..].starts_with('(') {
            found.push(format!("store.{name}("));
        }
    }
    for pattern in
        [".decide(", ".repeat_offer(", ".offer_repeat(", ".show(", "section_entries(", "facts_for(", ".checked_only("]
    {
        found.extend(code.matches(pattern).map(str::to_owned));
    }
    found
}

#[test]
fn outside_facing_modules_read_entries_only_through_the_engine() {
    // R1–R22 / T1: nothing withheld reaches an online viewer by any path.
    let mut problems = Vec::new();
    for (file, source) in OUTSIDE_FACING {
        let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for r in reads(source) {
            *counts.entry(r).or_default() += 1;
        }
        for (read, n) in counts {
            let allowed =
                ALLOWED.iter().find(|(f, p, _, _)| f == file && *p == read).map_or(0, |(_, _, allowed, _)| *allowed);
            if n > allowed {
                problems.push(format!("{file}: {n} × {read} (allowed {allowed})"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "An outside-facing module reads or decides entries outside the engine's Shown:\n  {}\n\
         Read through the one reader (outside.rs: App::outside_view, then page / entry / repeats, audited), \
         or review it and add it to ALLOWED with its reason.",
        problems.join("\n  ")
    );
}

#[test]
fn the_check_finds_a_read_written_across_lines() {
    let source = "let e = self\n    .store\n    .entry(me.practice, id)\n    .await?;\n// self.store.entries( in a comment\nlet n = self.store.entry_count(p, q);\nif policy.decide(&e).is_shown() {}";
    assert_eq!(reads(source), vec!["store.entry(", "store.entry_count(", ".decide("]);
}
