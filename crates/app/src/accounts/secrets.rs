//! Secrets kept in the database encrypted with a key held outside it (ASVS 2.8.3, 6.4.1):
//! today the authenticator-app secrets of staff and patients. A copy of the database alone does
//! not give anyone the codes.
//!
//! The key is 32 random bytes in a file (hex), given by `--secret-key-file` or beside an SQLite
//! database (`<database>.key`). A value is sealed with ChaCha20-Poly1305 (ring) under a fresh
//! random nonce and stored as `enc1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`; the key id
//! (the first four bytes of the key's SHA-256) says which key opens it. `caldicott secrets
//! rotate` makes a new key, seals every secret again under it in one transaction and only then
//! puts the new key in place; the files `<key>.new` and `<key>.old` are read too, so a rotation
//! cut off at any point leaves every secret readable.

use crate::{AppError, AppResult};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const PREFIX: &str = "enc1:";

struct Key {
    id: String,
    key: LessSafeKey,
    /// For values the server signs and later checks (an app-link nonce): a key of its own,
    /// derived from the secret key with a label, never the sealing key itself.
    mac: ring::hmac::Key,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> AppResult<Self> {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| AppError::Internal("secret key".into()))?;
        let derived =
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes), b"caldicott signed values v1");
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        Ok(Self { id, key: LessSafeKey::new(unbound), mac })
    }
}

/// The key that seals new secrets, and every key that may open old ones.
pub struct Keyring {
    primary: Key,
    others: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} + {} more)", self.primary.id, self.others.len())
    }
}

fn random_key() -> AppResult<[u8; 32]> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| AppError::Internal("no randomness for a key".into()))?;
    Ok(bytes)
}

fn read_key(path: &Path) -> AppResult<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AppError::Internal(format!("reading the secret key {}: {e}", path.display())))?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| AppError::Internal(format!("the secret key {} is not 64 hex digits", path.display())))?;
    bytes.try_into().map_err(|_| AppError::Internal(format!("the secret key {} is not 32 bytes", path.display())))
}

/// Writes a key file readable by its owner only, durably.
fn write_key(path: &Path, key: &[u8; 32]) -> AppResult<()> {
    use std::io::Write;
    let io = |e: std::io::Error| AppError::Internal(format!("writing the secret key {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl Keyring {
    /// A key of this process alone (tests, and commands that touch no secret).
    pub fn ephemeral() -> AppResult<Self> {
        Ok(Self { primary: Key::new(&random_key()?)?, others: Vec::new() })
    }

    /// The keyring of a key file, made (with a new random key) if there is none yet. The
    /// `.new` and `.old` files beside it, left by a rotation, open secrets too.
    pub fn from_file(path: &Path) -> AppResult<(Self, bool)> {
        let created = !path.exists();
        if created {
            write_key(path, &random_key()?)?;
        }
        let primary = Key::new(&read_key(path)?)?;
        let mut others = Vec::new();
        for extra in [sibling(path, ".new"), sibling(path, ".old")] {
            if extra.exists() {
                others.push(Key::new(&read_key(&extra)?)?);
            }
        }
        Ok((Self { primary, others }, created))
    }

    /// Seals `plain` under the primary key.
    pub fn seal(&self, plain: &str) -> AppResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| AppError::Internal("no randomness for a nonce".into()))?;
        let mut data = plain.as_bytes().to_vec();
        self.primary
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(PREFIX), &mut data)
            .map_err(|_| AppError::Internal("sealing a secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}:{}", self.primary.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a stored value. A value stored before encryption (no `enc1:`) is returned as it is,
    /// until a rotation seals it.
    pub fn open(&self, stored: &str) -> AppResult<String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_owned()) };
        let fail = |why: &str| AppError::Internal(format!("a stored secret cannot be opened: {why}"));
        let (id, body) = rest.split_once(':').ok_or_else(|| fail("malformed"))?;
        let key = std::iter::once(&self.primary)
            .chain(&self.others)
            .find(|k| k.id == id)
            .ok_or_else(|| fail("it was sealed with a key this server does not have (see docs/security.md)"))?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| fail("malformed"))?;
        if raw.len() < NONCE_LEN {
            return Err(fail("malformed"));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail("malformed"))?;
        let mut data = sealed.to_vec();
        let plain = key.key.open_in_place(nonce, Aad::from(PREFIX), &mut data).map_err(|_| fail("altered"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| fail("malformed"))
    }

    /// Signs `data`: a tag that only this server's key makes.
    pub fn sign(&self, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&self.primary.mac, data.as_bytes()))
    }

    /// Whether `tag` is this server's signature of `data` (under any key it holds).
    pub fn verify(&self, data: &str, tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
        std::iter::once(&self.primary)
            .chain(&self.others)
            .any(|k| ring::hmac::verify(&k.mac, data.as_bytes(), &tag).is_ok())
    }

    /// Whether `stored` is sealed under the primary key (a rotation leaves such values alone).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.strip_prefix(PREFIX).and_then(|r| r.split_once(':')).is_some_and(|(id, _)| id == self.primary.id)
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Secrets sealed again under the new key.
    pub resealed: usize,
    /// Where the previous key now is.
    pub old_key: PathBuf,
}

/// Makes a new key for `key_file`, seals every stored secret again under it in one
/// transaction, then puts it in place (the previous key moves to `<key>.old`). Cut off at any
/// point, every secret stays readable: the new key is on disk (`<key>.new`) before any secret
/// is sealed with it, and both are read at start-up.
pub async fn rotate(store: &dyn caldicott_store::Store, key_file: &Path) -> AppResult<Rotation> {
    let (current, _) = Keyring::from_file(key_file)?;
    let new_path = sibling(key_file, ".new");
    let old_path = sibling(key_file, ".old");
    let fresh = match new_path.exists() {
        // A rotation cut off before: finish it with the key it made.
        true => read_key(&new_path)?,
        false => {
            let k = random_key()?;
            write_key(&new_path, &k)?;
            k
        }
    };
    let next = Keyring { primary: Key::new(&fresh)?, others: Vec::new() };
    let reseal = |stored: &str| -> Result<Option<String>, String> {
        if next.is_current(stored) {
            return Ok(None);
        }
        let plain = current.open(stored).map_err(|e| e.to_string())?;
        next.seal(&plain).map(Some).map_err(|e| e.to_string())
    };
    let resealed = store.reseal_secrets(&reseal).await.map_err(|e| AppError::Internal(e.to_string()))?;
    let io = |e: std::io::Error| AppError::Internal(format!("putting the new key in place: {e}"));
    if old_path.exists() {
        std::fs::remove_file(&old_path).map_err(io)?;
    }
    std::fs::rename(key_file, &old_path).map_err(io)?;
    std::fs::rename(&new_path, key_file).map_err(io)?;
    Ok(Rotation { resealed, old_key: old_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_shows_nothing_of_itself() {
        let ring = Keyring::ephemeral().unwrap();
        let sealed = ring.seal("JBSWY3DPEHPK3PXP").unwrap();
        assert!(sealed.starts_with("enc1:") && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(sealed, ring.seal("JBSWY3DPEHPK3PXP").unwrap(), "a fresh nonce each time");
        assert_eq!(ring.open(&sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(Keyring::ephemeral().unwrap().open(&sealed).is_err(), "another key cannot open it");
        // An altered value is refused, not opened to something else.
        let mut altered = sealed.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.open(&altered).is_err());
        // A value stored before encryption reads as it is.
        assert_eq!(ring.open("JBSWY3DPEHPK3PXP").unwrap(), "JBSWY3DPEHPK3PXP");
    }

    #[test]
    fn a_key_file_is_made_once_and_read_again() {
        let dir = std::env::temp_dir().join(format!("caldicott-key-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.key");
        let (first, created) = Keyring::from_file(&path).unwrap();
        assert!(created);
        let (again, created) = Keyring::from_file(&path).unwrap();
        assert!(!created);
        assert_eq!(again.open(&first.seal("s").unwrap()).unwrap(), "s");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
