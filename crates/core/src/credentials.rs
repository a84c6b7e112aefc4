//! Tries at a credential: a password or an authenticator code, of a member of staff or a
//! patient. Tries are counted per account *and* client address. The first [`FREE_TRIES`]
//! failures cost nothing; each one after makes the next try from that address wait twice as
//! long, up to [`LONGEST_WAIT`]. Nothing locks an account: an attacker at one address can slow
//! only their own tries, never the clinician's at another (ASVS 2.2.1).
//!
//! A try is claimed, and counted as a failure, *before* the credential is checked, in one
//! database statement that refuses the claim while a wait is due; a success clears the count.
//! So parallel requests cannot all be checked against the same count.

use chrono::Duration;

/// Failures from one address that cost no wait.
pub const FREE_TRIES: i64 = 3;
/// The longest wait between tries from one address.
pub const LONGEST_WAIT: Duration = Duration::seconds(60);
/// Passwords longer than this are refused before hashing (ASVS 2.1.2: at least 64 allowed,
/// more than 128 refused).
pub const PASSWORD_MAX_CHARS: usize = 128;
/// New passwords are at least this long (ASVS 2.1.1).
pub const PASSWORD_MIN_CHARS: usize = 12;

/// How long the next try must wait after `failures` failures in a row from one address.
pub fn wait_after(failures: i64) -> Duration {
    if failures <= FREE_TRIES {
        return Duration::zero();
    }
    let doublings = u32::try_from(failures - FREE_TRIES - 1).unwrap_or(u32::MAX).min(16);
    Duration::seconds(1i64 << doublings).min(LONGEST_WAIT)
}

/// Which credential a try is for: the same key whether or not the account exists, so that an
/// unknown username is treated exactly like a known one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// A member of staff's sign-in (password and authenticator code), by username.
    pub fn staff(username: &str) -> Self {
        Self(format!("staff/{}", username.trim().to_ascii_lowercase()))
    }
    /// A patient's local login (password and authenticator code), by username.
    pub fn patient(username: &str) -> Self {
        Self(format!("patient/{}", username.trim().to_ascii_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An address that completed a sign-in to the account within this long is known to it.
pub const KNOWN_ADDRESS_FOR: Duration = Duration::days(30);

/// A claimed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Tries from this address since its last success, this one included.
    pub failures: i64,
    /// A sign-in to this account completed from this address within [`KNOWN_ADDRESS_FOR`].
    pub known_address: bool,
}

/// The login an authenticator code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpLogin {
    Staff(crate::ids::StaffId),
    Patient(crate::ids::AccountId),
}

/// Whether a new password is acceptable: the words say what to change.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(format!("Choose a password of at least {PASSWORD_MIN_CHARS} characters"));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(format!("Choose a password of at most {PASSWORD_MAX_CHARS} characters"));
    }
    // ASVS 2.1.7: not a common or breached password, nor one that is easy to guess from one
    // (keyboard runs, repeats, dates, a common word with digits). zxcvbn's estimate, with its
    // lists of the passwords most often found in breaches, must reach "safely unguessable"
    // (score 3 of 4). Only the first 100 characters are weighed: beyond them the estimate only
    // grows, and its work grows faster.
    let weighed: String = password.chars().take(100).collect();
    let estimate = zxcvbn::zxcvbn(&weighed, &[]);
    if (estimate.score() as u8) < PASSWORD_MIN_SCORE {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map_or_else(|| "It would be too easy to guess.".to_owned(), |w| w.to_string());
        return Err(format!(
            "Choose a password that is harder to guess. {why} A few unrelated words together make a strong password."
        ));
    }
    Ok(())
}

/// The strength a new password must reach on zxcvbn's scale of 0 to 4 (3: "safely
/// unguessable", about 10^10 guesses).
pub const PASSWORD_MIN_SCORE: u8 = 3;

/// Whether a new password, typed twice, is acceptable: `Err((field, words))` names the field
/// to correct (`new_password` for the rules, `new_password_again` when the two differ).
pub fn check_new_password_twice(new: &str, again: &str) -> Result<(), (&'static str, String)> {
    check_new_password(new).map_err(|m| ("new_password", m))?;
    if new != again {
        return Err(("new_password_again", "Enter the same new password twice".into()));
    }
    Ok(())
}

/// How long an administrator's one-time code for a new staff password works.
pub const RESET_CODE_VALIDITY: Duration = Duration::hours(24);
/// Characters in that code (from an alphabet without look-alikes: 60 bits).
pub const RESET_CODE_CHARS: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_from_the_fourth_failure_and_stop_at_a_minute() {
        // ASVS 2.2.1: growing delays, never a lock-out an attacker can impose.
        let waits: Vec<i64> = (0..=12).map(|n| wait_after(n).num_seconds()).collect();
        assert_eq!(waits, vec![0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(wait_after(i64::MAX), LONGEST_WAIT);
    }

    #[test]
    fn an_unknown_username_has_the_same_kind_of_subject_as_a_known_one() {
        assert_eq!(Subject::staff(" Dr.Okafor "), Subject::staff("dr.okafor"));
        assert_ne!(Subject::staff("a.b"), Subject::patient("a.b"));
    }

    #[test]
    fn new_passwords_are_between_12_and_128_characters() {
        assert!(check_new_password("river otter").is_err(), "11 characters");
        assert!(check_new_password("river otters").is_ok(), "12 characters");
        let long: String = "river otters swim by night and sleep by day ".repeat(3).chars().take(128).collect();
        assert!(check_new_password(&long).is_ok());
        assert!(check_new_password(&format!("{long}x")).unwrap_err().contains("at most 128"));
    }

    #[test]
    fn common_breached_and_easily_guessed_passwords_are_refused() {
        // ASVS 2.1.7: the passwords found most often in breaches, and near copies of them,
        // are refused however long, with words that say why.
        for weak in ["password1234", "Password123!", "qwertyuiop12", "123456789012", "xxxxxxxxxxxx", "iloveyou2024!"] {
            let why = check_new_password(weak).expect_err(weak);
            assert!(why.starts_with("Choose a password that is harder to guess."), "{weak}: {why}");
        }
        for strong in ["a long test password", "correct horse battery staple", "river otters swim at night"] {
            assert!(check_new_password(strong).is_ok(), "{strong}");
        }
    }

    #[test]
    fn a_new_password_typed_twice_must_match_and_follow_the_rules() {
        assert_eq!(check_new_password_twice("short", "short").unwrap_err().0, "new_password");
        assert_eq!(
            check_new_password_twice("a long new password", "a long new passwort").unwrap_err().0,
            "new_password_again"
        );
        assert!(check_new_password_twice("a long new password", "a long new password").is_ok());
    }
}
