//! Results over time: which entries make a series a person can follow (HbA1c, blood pressure,
//! eGFR, cholesterol, weight, BMI, and any other coded numeric result), the numbers each holds,
//! the range it is read against, and whether each reading lies outside it.
//!
//! Pure: the entries come in already decided. For a patient or a proxy they are only those the
//! visibility engine shows, so a hidden result is absent from the series and from everything
//! worked out from it (its scale, its latest value, its count), never a gap.
//!
//! Readings are never put on one scale with readings in another unit: a reading recorded in a
//! unit other than the series' stays in the series' table, marked as not drawn.

use crate::entry::{Entry, EntryBody};
use crate::ids::EntryId;
use chrono::NaiveDate;

/// A measure people with long-term conditions follow, with words a patient understands.
#[derive(Debug, PartialEq)]
pub struct Measure {
    /// In addresses: `/my/results/hba1c`.
    pub slug: &'static str,
    pub label: &'static str,
    /// What it tells, in plain words.
    pub about: &'static str,
    /// SNOMED CT concepts recorded for it.
    pub codes: &'static [&'static str],
    pub unit: &'static str,
    /// The numbers one reading holds: one, or two for blood pressure (upper, then lower).
    pub parts: &'static [&'static str],
    /// The usual range of each part where the record gives none (a laboratory's range, where
    /// there is one, comes first), and where it comes from.
    pub usual: Option<(&'static [Range], &'static str)>,
}

/// The measures named on their own; other coded numeric results form a series by their code.
pub static MEASURES: &[Measure] = &[
    Measure {
        slug: "hba1c",
        label: "HbA1c",
        about: "Your average blood sugar (glucose) level over the last 2 to 3 months.",
        codes: &["1019431000000105", "999791000000106"],
        unit: "mmol/mol",
        parts: &["HbA1c"],
        usual: None,
    },
    Measure {
        slug: "blood-pressure",
        label: "Blood pressure",
        about: "The pressure of blood in your arteries: the upper number (systolic) when your heart \
                beats, the lower number (diastolic) between beats.",
        codes: &["75367002", "163020007"],
        unit: "mmHg",
        parts: &["Systolic (upper number)", "Diastolic (lower number)"],
        usual: Some((
            &[
                Range { low: Some(90.0), high: Some(139.0), strict: false },
                Range { low: Some(60.0), high: Some(89.0), strict: false },
            ],
            "90/60 to 139/89 mmHg: NICE's threshold for high blood pressure measured at the surgery is 140/90 \
             (135/85 for readings taken at home, which are flagged against that), and the NHS calls blood pressure \
             below 90/60 low",
        )),
    },
    Measure {
        slug: "egfr",
        label: "eGFR (kidney function)",
        about: "How well your kidneys filter your blood, worked out from a blood test. Lower numbers \
                mean the kidneys are working less well.",
        codes: &["1011481000000105", "1020291000000106"],
        unit: "mL/min/1.73m2",
        parts: &["eGFR"],
        usual: None,
    },
    Measure {
        slug: "cholesterol",
        label: "Cholesterol",
        about: "The amount of cholesterol, a fatty substance, in your blood.",
        codes: &["1005671000000105"],
        unit: "mmol/L",
        parts: &["Total cholesterol"],
        usual: None,
    },
    Measure {
        slug: "weight",
        label: "Weight",
        about: "Your body weight.",
        codes: &["27113001"],
        unit: "kg",
        parts: &["Weight"],
        usual: None,
    },
    Measure {
        slug: "bmi",
        label: "Body mass index (BMI)",
        about: "Your weight compared with your height.",
        codes: &["60621009"],
        unit: "kg/m2",
        parts: &["BMI"],
        usual: Some((
            &[Range { low: Some(18.5), high: Some(24.9), strict: false }],
            "18.5 to 24.9: the NHS's healthy weight range for most adults",
        )),
    },
];

/// A unit in words, for people who do not read laboratory abbreviations.
pub fn unit_words(unit: &str) -> Option<&'static str> {
    Some(match squash_unit(unit).as_str() {
        "mmol/mol" => "millimoles per mole",
        "mmhg" => "millimetres of mercury",
        "ml/min/1.73m2" => "millilitres a minute for each 1.73 square metres of body surface",
        "mmol/l" => "millimoles per litre",
        "kg" => "kilograms",
        "kg/m2" => "kilograms per square metre",
        "g/l" => "grams per litre",
        "mu/l" => "milliunits per litre",
        "pmol/l" => "picomoles per litre",
        "umol/l" => "micromoles per litre",
        "%" => "per cent",
        "cm" => "centimetres",
        "bpm" | "/min" => "beats a minute",
        _ => return None,
    })
}

/// A unit as compared: no spaces, lower case, superscript two as "2", "µ" as "u".
fn squash_unit(unit: &str) -> String {
    unit.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '²' => '2',
            'µ' | 'μ' => 'u',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether two units are the same unit as written.
pub fn same_unit(a: &str, b: &str) -> bool {
    squash_unit(a) == squash_unit(b)
}

/// A range a value is read against; either end may be missing. An end is within the range
/// unless it was written with '<' or '>' ("<5.0": 5.0 itself is above it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// The end was written '<' or '>': the value itself lies outside.
    pub strict: bool,
}

/// A laboratory's reference range as written: "20-41", "0.27 - 4.2", "3.5 to 5.3", "<5.0",
/// "≤ 5", ">90", "≥60". Anything else is `None` (the words are still shown as written).
pub fn parse_range(text: &str) -> Option<Range> {
    let t = text.trim();
    for (prefix, low_end, strict) in [
        ("<=", false, false),
        (">=", true, false),
        ("≤", false, false),
        ("≥", true, false),
        ("<", false, true),
        (">", true, true),
    ] {
        if let Some(rest) = t.strip_prefix(prefix) {
            let v = whole_number(rest)?;
            let (low, high) = if low_end { (Some(v), None) } else { (None, Some(v)) };
            return Some(Range { low, high, strict });
        }
    }
    let (a, b) = t.split_once(" to ").or_else(|| t.split_once('–')).or_else(|| t.split_once('-'))?;
    let (low, high) = (whole_number(a)?, whole_number(b)?);
    (low <= high).then_some(Range { low: Some(low), high: Some(high), strict: false })
}

/// The whole of `s` as one finite number, or `None`.
fn whole_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// How a value was written relative to the number: exactly, below it ("<5") or above it (">90").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Exactly,
    Below,
    Above,
}

/// A number at the start of `text` ("48", "<5", ">90", "22.4 kg/m2"), how it was written, and
/// the rest (the unit, if one follows).
fn leading_number(text: &str) -> Option<(Bound, f64, &str)> {
    let t = text.trim();
    let (bound, rest) = [("<=", Bound::Below), (">=", Bound::Above), ("<", Bound::Below), (">", Bound::Above)]
        .iter()
        .find_map(|(p, b)| t.strip_prefix(p).map(|r| (*b, r.trim_start())))
        .unwrap_or((Bound::Exactly, t));
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let v = whole_number(&rest[..end])?;
    Some((bound, v, rest[end..].trim()))
}

/// How a reading stands against its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    WithinRange,
    High,
    Low,
    /// The laboratory marked it abnormal; the range does not say which way.
    OutsideRange,
    /// No range to read it against.
    NoRange,
}

impl Flag {
    pub fn words(self) -> &'static str {
        match self {
            Self::WithinRange => "Within range",
            Self::High => "Above range",
            Self::Low => "Below range",
            Self::OutsideRange => "Outside range",
            Self::NoRange => "No range given",
        }
    }
    pub fn is_outside(self) -> bool {
        matches!(self, Self::High | Self::Low | Self::OutsideRange)
    }
    /// For a style class: `within`, `high`, `low`, `outside`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithinRange => "within",
            Self::High => "high",
            Self::Low => "low",
            Self::OutsideRange => "outside",
            Self::NoRange => "none",
        }
    }
}

/// Where a value lies against a range, for a value that is exact, below or above the number.
/// Only what is certain is flagged: "<5" against 2–4 is not known to be high or low.
fn against(range: &Range, bound: Bound, v: f64) -> Flag {
    let high = range.high.is_some_and(|h| match bound {
        Bound::Exactly => v > h || (range.strict && v == h),
        Bound::Above => v >= h,
        Bound::Below => false,
    });
    let low = range.low.is_some_and(|l| match bound {
        Bound::Exactly => v < l || (range.strict && v == l),
        Bound::Below => v <= l,
        Bound::Above => false,
    });
    match (high, low) {
        (true, _) => Flag::High,
        (_, true) => Flag::Low,
        _ => Flag::WithinRange,
    }
}

/// One reading in a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub entry: EntryId,
    pub date: NaiveDate,
    /// One number per part of the series.
    pub values: Vec<f64>,
    /// As recorded, with its unit: "128/82 mmHg", ">90 mL/min/1.73m2".
    pub as_recorded: String,
    pub unit: String,
    /// The range it was read against, as written ("" when there is none).
    pub range_text: String,
    pub flag: Flag,
    /// Recorded in another unit than the series': kept in the table, not drawn.
    pub other_unit: bool,
    /// Recorded by the patient (or a proxy for them) at home, not by the practice or a laboratory.
    pub patient_entered: bool,
}

/// What a series is of.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesOf {
    Measure(&'static Measure),
    /// Another coded numeric result, by its SNOMED CT concept.
    Code(String),
}

/// Readings of one measure, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub of: SeriesOf,
    pub slug: String,
    pub label: String,
    pub about: Option<&'static str>,
    pub unit: String,
    pub parts: Vec<String>,
    /// The range the chart shades for each part: the latest drawn reading's laboratory range,
    /// or the measure's usual range.
    pub ranges: Vec<Option<Range>>,
    /// Where a usual range comes from, when the chart uses one.
    pub range_source: Option<&'static str>,
    pub readings: Vec<Reading>,
}

impl Series {
    /// The readings drawn on the chart: those in the series' unit.
    pub fn drawn(&self) -> impl Iterator<Item = &Reading> {
        self.readings.iter().filter(|r| !r.other_unit)
    }
    pub fn latest(&self) -> Option<&Reading> {
        self.readings.last()
    }
}

fn measure_of(concept: &str) -> Option<&'static Measure> {
    MEASURES.iter().find(|m| m.codes.contains(&concept))
}

/// The slug of a series for another coded result: `code-<concept id>`.
fn code_slug(concept: &str) -> String {
    format!("code-{concept}")
}

/// What one entry holds as a reading, if it is one: (what it is of, label, reading before its
/// flag and unit check, the laboratory's abnormal mark).
struct Raw {
    of: SeriesOf,
    label: String,
    date: NaiveDate,
    entry: EntryId,
    bounds: Vec<(Bound, f64)>,
    unit: String,
    as_recorded: String,
    range_text: String,
    lab_abnormal: bool,
    patient_entered: bool,
}

fn raw_reading(e: &Entry) -> Option<Raw> {
    if e.superseded.is_some() {
        return None;
    }
    let code = e.code.as_ref()?;
    let concept = code.concept.as_str();
    let measure = measure_of(concept);
    let of = measure.map_or_else(|| SeriesOf::Code(concept.to_owned()), SeriesOf::Measure);
    let label = measure.map_or_else(|| code.term.clone(), |m| m.label.to_owned());
    let pair = measure.is_some_and(|m| m.parts.len() == 2);
    let (text, unit, range_text, lab_abnormal) = match &e.body {
        EntryBody::TestResult { value, unit, range, abnormal, .. } => {
            (value.as_str(), Some(unit.trim()), range.trim().to_owned(), *abnormal)
        }
        EntryBody::Coded { value: Some(v) } => (v.as_str(), None, String::new(), false),
        _ => return None,
    };
    let (bounds, rest) = if pair {
        // "128/82 mmHg": two exact numbers.
        let (a, b) = text.trim().split_once('/')?;
        let (ba, va, rest_a) = leading_number(a)?;
        let (bb, vb, rest) = leading_number(b)?;
        if ba != Bound::Exactly || bb != Bound::Exactly || !rest_a.is_empty() {
            return None;
        }
        (vec![(ba, va), (bb, vb)], rest)
    } else {
        let (b, v, rest) = leading_number(text)?;
        (vec![(b, v)], rest)
    };
    let unit = match unit {
        Some(u) if !u.is_empty() => u.to_owned(),
        _ if !rest.is_empty() => rest.to_owned(),
        _ => measure.map_or(String::new(), |m| m.unit.to_owned()),
    };
    let as_recorded =
        if rest.is_empty() && !unit.is_empty() { format!("{} {unit}", text.trim()) } else { text.trim().to_owned() };
    Some(Raw {
        of,
        label,
        date: e.event_date,
        entry: e.id,
        bounds,
        unit,
        as_recorded,
        range_text,
        lab_abnormal,
        patient_entered: e.origin == crate::entry::Origin::PatientEntered,
    })
}

/// Every series the entries hold, the named measures first (in [`MEASURES`]' order), then other
/// coded results by label.
pub fn series_of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<Series> {
    let mut raws: Vec<Raw> = entries.into_iter().filter_map(raw_reading).collect();
    raws.sort_by(|a, b| a.date.cmp(&b.date).then(a.entry.as_uuid().cmp(&b.entry.as_uuid())));
    let mut out: Vec<Series> = Vec::new();
    for r in raws {
        let slug = match &r.of {
            SeriesOf::Measure(m) => m.slug.to_owned(),
            SeriesOf::Code(c) => code_slug(c),
        };
        let at = match out.iter().position(|s| s.slug == slug) {
            Some(i) => i,
            None => {
                out.push(new_series(&r, slug));
                out.len() - 1
            }
        };
        let s = &mut out[at];
        if let SeriesOf::Code(_) = s.of {
            // The latest reading names another coded result's series.
            s.label = r.label.clone();
        }
        s.readings.push(Reading {
            entry: r.entry,
            date: r.date,
            values: r.bounds.iter().map(|(_, v)| *v).collect(),
            as_recorded: r.as_recorded,
            unit: r.unit,
            range_text: r.range_text,
            flag: Flag::NoRange,
            other_unit: false,
            patient_entered: r.patient_entered,
        });
        let flag = flag_of(s, &r.bounds, r.lab_abnormal, r.patient_entered);
        if let Some(last) = s.readings.last_mut() {
            last.flag = flag;
        }
    }
    for s in &mut out {
        settle_units(s);
    }
    let rank = |s: &Series| match s.of {
        SeriesOf::Measure(m) => MEASURES.iter().position(|x| x.slug == m.slug).unwrap_or(0),
        SeriesOf::Code(_) => MEASURES.len(),
    };
    out.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.label.cmp(&b.label)));
    out
}

/// The one series with this slug, if the entries hold it.
pub fn series<'a>(entries: impl IntoIterator<Item = &'a Entry>, slug: &str) -> Option<Series> {
    series_of(entries).into_iter().find(|s| s.slug == slug)
}

fn new_series(r: &Raw, slug: String) -> Series {
    let (about, unit, parts) = match &r.of {
        SeriesOf::Measure(m) => (Some(m.about), m.unit.to_owned(), m.parts.iter().map(|p| (*p).to_owned()).collect()),
        SeriesOf::Code(_) => (None, String::new(), vec![r.label.clone()]),
    };
    Series {
        of: r.of.clone(),
        slug,
        label: r.label.clone(),
        about,
        unit,
        parts,
        ranges: Vec::new(),
        range_source: None,
        readings: Vec::new(),
    }
}

/// A reading's flag: against its laboratory range if it has one it can read, else the measure's
/// usual range; a laboratory's abnormal mark is never lost, even where the range cannot say
/// which way.
fn flag_of(s: &Series, bounds: &[(Bound, f64)], lab_abnormal: bool, at_home: bool) -> Flag {
    let reading = s.readings.last().map(|r| r.range_text.as_str()).unwrap_or("");
    let ranges: Vec<Range> = match (parse_range(reading), &s.of) {
        (Some(r), _) if bounds.len() == 1 => vec![r],
        (_, SeriesOf::Measure(m)) if at_home && m.slug == "blood-pressure" => HOME_BLOOD_PRESSURE.to_vec(),
        (_, SeriesOf::Measure(Measure { usual: Some((usual, _)), .. })) if usual.len() == bounds.len() => {
            usual.to_vec()
        }
        _ => Vec::new(),
    };
    // (A home blood pressure is read against the home threshold above.)
    let flags: Vec<Flag> = ranges.iter().zip(bounds).map(|(r, (b, v))| against(r, *b, *v)).collect();
    if let Some(f) = flags.iter().find(|f| **f == Flag::High).or_else(|| flags.iter().find(|f| **f == Flag::Low)) {
        return *f;
    }
    match (lab_abnormal, flags.is_empty()) {
        (true, _) => Flag::OutsideRange,
        (false, true) => Flag::NoRange,
        (false, false) => Flag::WithinRange,
    }
}

/// Fixes the series' unit (a named measure's own; for another coded result, its latest
/// reading's), marks readings in any other unit as not drawn, and sets the ranges the chart
/// shades.
fn settle_units(s: &mut Series) {
    if s.unit.is_empty() {
        s.unit = s.readings.last().map(|r| r.unit.clone()).unwrap_or_default();
    }
    for r in &mut s.readings {
        r.other_unit = !same_unit(&r.unit, &s.unit);
    }
    let lab = s.drawn().last().and_then(|r| parse_range(&r.range_text)).filter(|_| s.parts.len() == 1);
    match (lab, &s.of) {
        (Some(r), _) => s.ranges = vec![Some(r)],
        (None, SeriesOf::Measure(Measure { usual: Some((usual, source)), .. })) => {
            s.ranges = usual.iter().map(|r| Some(*r)).collect();
            s.range_source = Some(source);
        }
        _ => s.ranges = vec![None; s.parts.len()],
    }
}

/// Blood pressure measured at home is high from 135/85 (NICE NG136), lower than at the surgery.
const HOME_BLOOD_PRESSURE: [Range; 2] = [
    Range { low: Some(90.0), high: Some(134.0), strict: false },
    Range { low: Some(60.0), high: Some(84.0), strict: false },
];

/// The measures a patient may record at home and add to their care plan: blood pressure from a
/// home monitor and weight from scales. Blood tests are the laboratory's.
pub const HOME_MEASURES: [&str; 2] = ["blood-pressure", "weight"];

/// A home reading as it is recorded: the measure's code and term, and the value with its unit
/// ("132/84 mmHg", "81.4 kg"), or what is wrong with it, in words for the person entering it.
pub fn home_reading(slug: &str, value: &str) -> Result<(&'static str, &'static str, String), String> {
    let measure = MEASURES
        .iter()
        .find(|m| m.slug == slug && HOME_MEASURES.contains(&m.slug))
        .ok_or_else(|| "Choose blood pressure or weight".to_owned())?;
    let v = value.trim().trim_end_matches(measure.unit).trim();
    let number = |s: &str| whole_number(s).filter(|n| n.fract() == 0.0 || measure.slug == "weight");
    match measure.slug {
        "blood-pressure" => {
            let (a, b) = v.split_once('/').ok_or("Enter both numbers, like 132/84")?;
            let (Some(sys), Some(dia)) = (number(a), number(b)) else {
                return Err("Enter both numbers as whole numbers, like 132/84".into());
            };
            if !(50.0..=300.0).contains(&sys)
                || !(30.0..=200.0).contains(&dia)
                || !(10.0..=150.0).contains(&(sys - dia))
            {
                return Err("Check the numbers: the upper number (50 to 300) comes first, and is 10 to 150 more than the lower (30 to 200)".into());
            }
            Ok((measure.codes[0], "Home blood pressure reading", format!("{sys}/{dia} mmHg")))
        }
        _ => {
            let kg = number(v).ok_or("Enter your weight in kilograms, like 81.4")?;
            if v.split_once('.').is_some_and(|(_, d)| d.len() > 1) {
                return Err("Enter your weight to one decimal place at most, like 81.4".into());
            }
            if !(2.0..=400.0).contains(&kg) {
                return Err("Enter your weight in kilograms, from 2 to 400".into());
            }
            Ok((measure.codes[0], "Body weight", format!("{kg} kg")))
        }
    }
}

/// Whether `slug` could name a series (so an address with anything else is refused early).
pub fn is_series_slug(slug: &str) -> bool {
    MEASURES.iter().any(|m| m.slug == slug)
        || slug.strip_prefix("code-").is_some_and(|c| crate::snomed::ConceptId::parse(c).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Author, Filing, OnlineVisibility, Origin, Superseded};
    use crate::ids::PatientId;
    use crate::snomed::{Coding, ConceptId};
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn entry(n: u128, date: &str, code: &str, term: &str, body: EntryBody) -> Entry {
        Entry {
            id: EntryId::from_uuid(Uuid::from_u128(n)),
            patient: PatientId::from_uuid(Uuid::from_u128(1)),
            event_date: date.parse().unwrap(),
            entered_at: Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap(),
            author: Author { staff: None, name: "Lab".into() },
            origin: Origin::Native,
            code: Some(Coding { concept: ConceptId::parse(code).unwrap(), term: term.into() }),
            body,
            visibility: OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        }
    }

    fn result(n: u128, date: &str, code: &str, value: &str, unit: &str, range: &str, abnormal: bool) -> Entry {
        let body = EntryBody::TestResult {
            test: "Test".into(),
            value: value.into(),
            unit: unit.into(),
            range: range.into(),
            abnormal,
            filing: Filing::Filed,
        };
        entry(n, date, code, "Test", body)
    }

    fn coded(n: u128, date: &str, code: &str, term: &str, value: &str) -> Entry {
        entry(n, date, code, term, EntryBody::Coded { value: Some(value.into()) })
    }

    const HBA1C: &str = "1019431000000105";
    const BP: &str = "75367002";

    #[test]
    fn the_named_measures_are_found_by_their_codes_and_read_oldest_first() {
        let es = [
            result(1, "2026-03-01", HBA1C, "52", "mmol/mol", "20-41", true),
            result(2, "2025-09-01", HBA1C, "58", "mmol/mol", "20-41", true),
            coded(3, "2026-01-10", BP, "Blood pressure", "142/91 mmHg"),
            coded(4, "2026-02-10", "60621009", "Body mass index", "27.9 kg/m2"),
        ];
        let all = series_of(&es);
        let slugs: Vec<&str> = all.iter().map(|s| s.slug.as_str()).collect();
        assert_eq!(slugs, ["hba1c", "blood-pressure", "bmi"]);
        let h = &all[0];
        assert_eq!(h.readings.iter().map(|r| r.values[0]).collect::<Vec<_>>(), [58.0, 52.0]);
        assert_eq!(h.latest().unwrap().date, "2026-03-01".parse::<NaiveDate>().unwrap());
        assert_eq!(h.ranges, vec![Some(Range { low: Some(20.0), high: Some(41.0), strict: false })]);
        assert_eq!(h.readings[0].flag, Flag::High);
    }

    #[test]
    fn blood_pressure_holds_both_numbers_and_either_above_the_threshold_is_high() {
        let es = [
            coded(1, "2026-01-01", BP, "Blood pressure", "128/82 mmHg"),
            coded(2, "2026-02-01", BP, "Blood pressure", "142/85 mmHg"),
            coded(3, "2026-03-01", BP, "Blood pressure", "130/90 mmHg"),
            coded(4, "2026-04-01", BP, "Blood pressure", "139/89 mmHg"),
            coded(5, "2026-05-01", BP, "Blood pressure", "85/55 mmHg"),
        ];
        let s = series(&es, "blood-pressure").unwrap();
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.readings[0].values, [128.0, 82.0]);
        let flags: Vec<Flag> = s.readings.iter().map(|r| r.flag).collect();
        // NICE: 140/90 or more at the surgery is high; both numbers count on their own.
        assert_eq!(flags, [Flag::WithinRange, Flag::High, Flag::High, Flag::WithinRange, Flag::Low]);
        assert!(s.range_source.unwrap().contains("140/90"));
    }

    #[test]
    fn a_laboratory_range_is_read_as_written_and_what_is_certain_is_flagged() {
        assert_eq!(parse_range("20-41"), Some(Range { low: Some(20.0), high: Some(41.0), strict: false }));
        assert_eq!(parse_range(" 0.27 - 4.2 "), Some(Range { low: Some(0.27), high: Some(4.2), strict: false }));
        assert_eq!(parse_range("3.5 to 5.3"), Some(Range { low: Some(3.5), high: Some(5.3), strict: false }));
        assert_eq!(parse_range("<5.0"), Some(Range { low: None, high: Some(5.0), strict: true }));
        assert_eq!(parse_range("≥ 60"), Some(Range { low: Some(60.0), high: None, strict: false }));
        assert_eq!(parse_range(">90"), Some(Range { low: Some(90.0), high: None, strict: true }));
        for unreadable in ["", "See report", "41-20", "-", "5-", "1e3-2e3", "NaN-1"] {
            assert_eq!(parse_range(unreadable), None, "{unreadable}");
        }
        let r = Range { low: Some(2.0), high: Some(4.0), strict: false };
        assert_eq!(against(&r, Bound::Exactly, 4.0), Flag::WithinRange, "both ends are in the range");
        assert_eq!(against(&r, Bound::Exactly, 4.1), Flag::High);
        assert_eq!(against(&r, Bound::Exactly, 1.9), Flag::Low);
        // "<5" against 2-4 might be anywhere below 5: not known to be high.
        assert_eq!(against(&r, Bound::Below, 5.0), Flag::WithinRange);
        assert_eq!(against(&r, Bound::Below, 2.0), Flag::Low);
        assert_eq!(against(&r, Bound::Above, 4.0), Flag::High);
        // eGFR ">90" against ">90" is within it.
        assert_eq!(
            against(&Range { low: Some(90.0), high: None, strict: true }, Bound::Above, 90.0),
            Flag::WithinRange
        );
        // "<5.0": 5.0 itself is above the range; ">60": 60 itself is below it.
        assert_eq!(against(&parse_range("<5.0").unwrap(), Bound::Exactly, 5.0), Flag::High);
        assert_eq!(against(&parse_range("<5.0").unwrap(), Bound::Exactly, 4.9), Flag::WithinRange);
        assert_eq!(against(&parse_range(">60").unwrap(), Bound::Exactly, 60.0), Flag::Low);
        assert_eq!(against(&parse_range("<=5").unwrap(), Bound::Exactly, 5.0), Flag::WithinRange);
    }

    #[test]
    fn a_laboratory_abnormal_mark_is_never_lost() {
        let es = [
            result(1, "2026-01-01", "1022791000000101", "6.8", "mU/L", "", true),
            result(2, "2026-02-01", "1022791000000101", "3.0", "mU/L", "see comment", true),
            result(3, "2026-03-01", "1022791000000101", "2.0", "mU/L", "", false),
        ];
        let s = series(&es, "code-1022791000000101").unwrap();
        let flags: Vec<Flag> = s.readings.iter().map(|r| r.flag).collect();
        assert_eq!(flags, [Flag::OutsideRange, Flag::OutsideRange, Flag::NoRange]);
        assert!(flags[0].is_outside() && !flags[2].is_outside());
    }

    #[test]
    fn readings_in_another_unit_are_kept_but_never_drawn_on_the_same_scale() {
        // An HbA1c in per cent (the old DCCT unit) beside mmol/mol would read as a fall from 58 to 7.
        let es = [
            result(1, "2025-01-01", HBA1C, "58", "mmol/mol", "20-41", true),
            result(2, "2025-06-01", HBA1C, "7.5", "%", "", true),
            result(3, "2026-01-01", HBA1C, "48", "mmol/mol", "20-41", true),
        ];
        let s = series(&es, "hba1c").unwrap();
        assert_eq!(s.readings.len(), 3);
        let drawn: Vec<f64> = s.drawn().map(|r| r.values[0]).collect();
        assert_eq!(drawn, [58.0, 48.0]);
        assert!(s.readings[1].other_unit);
        // Another coded result takes its latest reading's unit.
        let es = [
            result(4, "2025-01-01", "1022541000000102", "13.1", "g/dL", "", false),
            result(5, "2026-01-01", "1022541000000102", "138", "g/L", "115-165", false),
        ];
        let s = series(&es, "code-1022541000000102").unwrap();
        assert_eq!(s.unit, "g/L");
        assert!(s.readings[0].other_unit && !s.readings[1].other_unit);
    }

    #[test]
    fn words_and_unreadable_values_make_no_reading_and_superseded_entries_none() {
        let mut old = result(3, "2026-01-01", HBA1C, "60", "mmol/mol", "20-41", true);
        old.superseded =
            Some(Superseded { at: Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap(), note: "replaced".into() });
        let es = [
            result(1, "2026-01-01", HBA1C, "Haemolysed", "", "", false),
            coded(2, "2026-01-01", BP, "Blood pressure", "high"),
            coded(4, "2026-01-01", BP, "Blood pressure", "<140/90"),
            coded(5, "2026-01-01", "266919005", "Never smoked tobacco", ""),
            old,
        ];
        assert!(series_of(&es).is_empty(), "{:?}", series_of(&es));
    }

    #[test]
    fn coded_values_carry_their_unit_and_bare_numbers_take_the_measures() {
        let es = [
            coded(1, "2026-01-01", "27113001", "Body weight", "82.5"),
            coded(2, "2026-02-01", "27113001", "Body weight", "80.1 kg"),
        ];
        let s = series(&es, "weight").unwrap();
        assert_eq!(s.readings[0].as_recorded, "82.5 kg");
        assert_eq!(s.readings[1].as_recorded, "80.1 kg");
        assert!(s.drawn().count() == 2);
        assert_eq!(s.readings[0].flag, Flag::NoRange);
    }

    #[test]
    fn home_readings_are_blood_pressure_or_weight_with_plausible_numbers() {
        assert_eq!(
            home_reading("blood-pressure", " 132/84 ").unwrap(),
            ("75367002", "Home blood pressure reading", "132/84 mmHg".into())
        );
        assert_eq!(home_reading("blood-pressure", "132/84 mmHg").unwrap().2, "132/84 mmHg");
        assert_eq!(home_reading("weight", "81.4").unwrap().2, "81.4 kg");
        assert_eq!(home_reading("weight", "81.4kg").unwrap().2, "81.4 kg");
        for (slug, bad) in [
            ("blood-pressure", "84/132"),
            ("blood-pressure", "132"),
            ("blood-pressure", "132/84/1"),
            ("blood-pressure", "1320/84"),
            ("blood-pressure", "132.5/84"),
            ("blood-pressure", "300/30"),
            ("blood-pressure", "51/50"),
            ("weight", "81.123"),
            ("weight", "-3"),
            ("weight", "eighty"),
            ("weight", "4000"),
            ("hba1c", "48"),
            ("code-27113001", "80"),
        ] {
            assert!(home_reading(slug, bad).is_err(), "{slug} {bad}");
        }
        // What is recorded is read back as a reading of the same series.
        let (code, term, value) = home_reading("blood-pressure", "150/95").unwrap();
        let mut e = coded(1, "2026-01-01", code, term, &value);
        e.origin = Origin::PatientEntered;
        let s = series(std::slice::from_ref(&e), "blood-pressure").unwrap();
        assert_eq!((s.readings[0].values.clone(), s.readings[0].flag), (vec![150.0, 95.0], Flag::High));
        assert!(s.readings[0].patient_entered);
        // At home, 135/85 or more is high (NICE NG136): 136/86 at home is high, at the surgery not.
        let (code, term, value) = home_reading("blood-pressure", "136/86").unwrap();
        let mut home = coded(2, "2026-02-01", code, term, &value);
        home.origin = Origin::PatientEntered;
        let surgery = coded(3, "2026-03-01", BP, "Blood pressure", "136/86 mmHg");
        let s = series(&[home, surgery], "blood-pressure").unwrap();
        assert_eq!(s.readings.iter().map(|r| r.flag).collect::<Vec<_>>(), [Flag::High, Flag::WithinRange]);
    }

    #[test]
    fn slugs_are_the_measures_or_a_concept_id() {
        assert!(is_series_slug("hba1c") && is_series_slug("code-1022541000000102"));
        for bad in ["", "code-", "code-12", "code-abc123456", "HBA1C", "../etc", "code-0123456"] {
            assert!(!is_series_slug(bad), "{bad}");
        }
        assert_eq!(unit_words("mL/min/1.73m²"), unit_words("ml/min/1.73m2"));
        assert_eq!(unit_words("mmol/mol"), Some("millimoles per mole"));
    }
}
