//! Word lists for the demo practice: common UK names, places, and clinical phrases with real
//! SNOMED CT concept ids. Nothing here describes a real person.

pub const GIVEN_FEMALE: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Sophia", "Grace", "Freya", "Florence",
    "Emily", "Poppy", "Ella", "Evie", "Margaret", "Susan", "Patricia", "Linda", "Karen", "Sarah", "Helen", "Joanne",
    "Rebecca", "Aisha", "Fatima", "Priya", "Zainab", "Chloe", "Megan", "Siobhan", "Niamh", "Bronwen", "Dorothy", "Joan",
];
pub const GIVEN_MALE: &[&str] = &[
    "Oliver", "George", "Noah", "Arthur", "Leo", "Muhammad", "Harry", "Oscar", "Archie", "Henry", "Theo", "Jack",
    "Freddie", "Alfie", "Charlie", "Thomas", "David", "John", "Michael", "Paul", "Andrew", "Mark", "Richard", "Stephen",
    "Ian", "Gareth", "Rhys", "Callum", "Hamza", "Ravi", "Kwame", "Tomasz", "Declan", "Ewan", "Kenneth", "Ronald",
];
pub const FAMILY: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Thomas", "Clarke", "Jackson", "Wood", "Harris",
    "Edwards", "Turner", "Martin", "Cooper", "Hill", "Ward", "Hughes", "Moore", "Clark", "King", "Harrison", "Lewis",
    "Baker", "Lee", "Allen", "Morris", "Khan", "Scott", "Watson", "Davis", "Parker", "James", "Bennett", "Young",
    "Phillips", "Richardson", "Mitchell", "Bailey", "Carter", "Cook", "Singh", "Shaw", "Bell", "Collins", "Morgan",
    "Kelly", "Begum", "Miller", "Cox", "Hussain", "Marshall", "Simpson", "Price", "Anderson", "Adams", "Wilkinson",
    "Ali", "Ahmed", "Foster", "Ellis", "Murphy", "Chapman", "Mason", "Gray", "Richards", "Webb", "Griffiths", "Hunt",
    "Palmer", "Campbell", "Holmes", "Mills", "Rogers", "Barnes", "Knight", "Matthews", "Barker", "Powell", "Stevens",
    "Kaur", "Fisher", "Butler", "Dixon", "Russell", "Harvey", "Pearson", "Graham", "Okafor", "Nowak", "Osei",
];
pub const STREETS: &[&str] = &[
    "High Street", "Station Road", "Main Street", "Park Road", "Church Road", "Church Street", "London Road",
    "Victoria Road", "Green Lane", "Manor Road", "Church Lane", "Park Avenue", "The Avenue", "The Crescent",
    "Queens Road", "New Road", "Grange Road", "Kings Road", "Kingsway", "Windsor Road", "Highfield Road", "Mill Lane",
    "Alexandra Road", "York Road", "Springfield Road", "Richmond Road", "Albert Road", "The Drive", "Mill Road",
];
pub const TOWN: &str = "Riverside";
pub const POSTCODE_AREA: &str = "RV";

/// (SNOMED CT concept id, term) of long-term conditions, with a repeat medicine for each.
pub const CONDITIONS: &[(&str, &str, &str, &str)] = &[
    ("38341003", "Hypertensive disorder", "Amlodipine 5mg tablets", "One tablet once a day"),
    ("195967001", "Asthma", "Salbutamol 100micrograms/dose inhaler", "Two puffs when required"),
    ("44054006", "Type 2 diabetes mellitus", "Metformin 500mg tablets", "One tablet twice a day with food"),
    ("35489007", "Depressive disorder", "Sertraline 50mg tablets", "One tablet once a day"),
    ("40930008", "Hypothyroidism", "Levothyroxine sodium 50microgram tablets", "One tablet each morning"),
    ("49436004", "Atrial fibrillation", "Apixaban 5mg tablets", "One tablet twice a day"),
    ("13645005", "Chronic obstructive lung disease", "Tiotropium 2.5micrograms/dose inhaler", "Two puffs once a day"),
    ("396275006", "Osteoarthritis", "Paracetamol 500mg tablets", "Two tablets up to four times a day"),
    ("55822004", "Hyperlipidaemia", "Atorvastatin 20mg tablets", "One tablet at night"),
];

pub const ACUTE_MEDS: &[(&str, &str, &str)] = &[
    ("Amoxicillin 500mg capsules", "One capsule three times a day for 5 days", "15"),
    ("Naproxen 250mg tablets", "One tablet twice a day with food", "28"),
    ("Prednisolone 5mg tablets", "Six tablets once a day for 5 days", "30"),
    ("Nitrofurantoin 100mg modified-release capsules", "One capsule twice a day for 3 days", "6"),
    ("Hydrocortisone 1% cream", "Apply thinly twice a day", "30g"),
];

pub const ALLERGIES: &[(&str, &str, &str)] = &[
    ("91936005", "Allergy to penicillin", "Rash"),
    ("300916003", "Latex allergy", "Urticaria"),
    ("91935009", "Allergy to peanuts", "Anaphylaxis"),
    ("294505008", "Allergy to aspirin", "Wheeze"),
];

/// (concept id, term) of observations recorded at routine visits.
pub const OBSERVATIONS: &[(&str, &str, &[&str])] = &[
    ("75367002", "Blood pressure", &["128/82 mmHg", "142/91 mmHg", "118/76 mmHg", "135/88 mmHg"]),
    ("60621009", "Body mass index", &["22.4 kg/m2", "27.9 kg/m2", "31.2 kg/m2", "24.8 kg/m2"]),
    ("266919005", "Never smoked tobacco", &[]),
    ("8517006", "Ex-smoker", &[]),
    ("77176002", "Smoker", &[]),
];

pub const RESULTS: &[(&str, &str, &str, &str, &str)] = &[
    ("1019431000000105", "HbA1c level", "mmol/mol", "20-41", "48"),
    ("1011481000000105", "eGFR", "mL/min/1.73m2", ">90", "58"),
    ("1022541000000102", "Haemoglobin estimation", "g/L", "115-165", "109"),
    ("1022791000000101", "Serum TSH level", "mU/L", "0.27-4.2", "6.8"),
    ("1005671000000105", "Serum cholesterol level", "mmol/L", "<5.0", "6.1"),
];

pub const VACCINES: &[(&str, &str)] = &[
    ("86198006", "Influenza vaccination"),
    ("38598009", "Measles, mumps and rubella vaccination"),
    ("871751006", "COVID-19 vaccination"),
    ("12866006", "Pneumococcal vaccination"),
];

pub const PRESENTING: &[(&str, &str)] = &[
    ("Sore throat for 4 days, no fever. Tonsils mildly inflamed, no exudate. FeverPAIN 1.", "Self-care advice, safety-netted."),
    ("Lower back pain after lifting, no red flags. Full range of movement with discomfort.", "Analgesia, keep active, physio self-referral."),
    ("Cough for 2 weeks, non-productive. Chest clear, sats 98% on air.", "Likely post-viral. Review if not settling in 3 weeks."),
    ("Review of blood pressure. Home readings average 138/86.", "Continue current treatment, recheck in 6 months."),
    ("Feeling low for several weeks, sleeping poorly. PHQ-9 score 14.", "Discussed options; referred to talking therapies."),
    ("Annual asthma review. Using reliever twice a week. Inhaler technique checked.", "Asthma action plan updated."),
    ("Itchy rash on both forearms for 1 week. Dry scaly patches.", "Eczema. Emollients and mild steroid cream."),
    ("Diabetes review. Feet checked: pulses present, sensation normal.", "HbA1c improved. Continue metformin."),
    ("Knee pain, worse on stairs. Crepitus, no effusion.", "Probable osteoarthritis. Exercise leaflet, analgesia."),
    ("Urinary frequency and dysuria for 2 days. Dipstick nitrite positive.", "Uncomplicated UTI. Antibiotics issued."),
    ("Medication review. Taking all medicines as prescribed, no side effects.", "Repeat prescriptions re-authorised for 12 months."),
];

/// Consultations that name someone else or could cause harm if read without support.
pub const SENSITIVE: &[(&str, &str)] = &[
    ("Attended with bruising to upper arm. Discloses partner has been controlling about money and contact with friends.", "third_party"),
    ("Mother reports the patient's father has a history of alcohol misuse and has been aggressive at home.", "third_party"),
    ("Imaging shows a mass suspicious for malignancy. Not yet discussed with patient; appointment booked to explain.", "potentially_harmful"),
    ("Information from social services about a sibling's child protection plan.", "third_party"),
];

pub const LETTERS: &[&str] = &[
    "Discharge summary, Riverside General Hospital",
    "Outpatient letter, cardiology",
    "Outpatient letter, orthopaedics",
    "Physiotherapy discharge letter",
    "Radiology report: chest X-ray",
    "Letter from Riverside talking therapies service",
];
