//! Bearer tokens: JWT HS256 with claims `sub` (a UUID), `role` and `exp`.
//!
//! Shared by the HTTP extractors (verification) and `commerce token`
//! (minting), so both always agree on the claims and the algorithm.
//!
//! HS256 is written here (RFC 7519 / RFC 7515 compact serialization, HMAC
//! from the `hmac` crate) rather than taken from a JWT library: the ones
//! on crates.io build every algorithm they support (RSA, ECDSA, EdDSA and
//! their big-number and curve crates), a fifth of a first build, for one
//! algorithm we use. The e2e suite forges its bad tokens with
//! `jsonwebtoken`, so an independent implementation checks this one.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use commerce_app::{Caller, Role};

/// Shortest secret accepted: HS256 wants at least 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

/// Longest token looked at: ours are ~250 bytes; a header of several KiB
/// is refused before any decoding.
const MAX_TOKEN_LEN: usize = 4096;

/// The JOSE header of every token we mint: `{"alg":"HS256","typ":"JWT"}`.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// The header fields we read; any other `alg` (`none` included) is refused.
#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The claims of our tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: u64,
}

/// Why a token was refused. Deliberately coarse: a client learns that the
/// token is bad, not which check failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the bearer token is expired")]
    Expired,
    /// Which check failed, for the logs only.
    #[error("the bearer token is invalid: {0}")]
    Invalid(&'static str),
}

/// Signing and verification key for one secret.
#[derive(Clone)]
pub struct JwtKeys {
    /// The HMAC keyed once; cloned per use (cheaper than re-keying).
    mac: Hmac<Sha256>,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        JwtKeys {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length"),
        }
    }

    /// The signature of `signing_input` (`header.payload`).
    fn sign(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        mac
    }

    /// Mints a token for `subject` with `role`, valid for `ttl`.
    pub fn mint(&self, subject: Uuid, role: Role, ttl: Duration) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = Claims {
            sub: subject,
            role,
            exp: now + ttl.as_secs(),
            iat: now,
        };
        Ok(self.encode(&claims)?)
    }

    /// Signs `claims` into a compact token.
    fn encode(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let signing_input = format!("{HEADER_B64}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.sign(&signing_input).finalize().into_bytes());
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Verifies the algorithm, the signature (in constant time) and then
    /// the claims and their expiry, and returns the caller.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid("not three segments"));
        };
        let header: Header = decode_segment(header_b64)?;
        if header.alg != "HS256" {
            return Err(AuthError::Invalid("algorithm is not HS256"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Invalid("signature is not base64url"))?;
        let signing_input = &token[..header_b64.len() + 1 + payload.len()];
        self.sign(signing_input)
            .verify_slice(&signature)
            .map_err(|_| AuthError::Invalid("bad signature"))?;
        let claims: Claims = decode_segment(payload)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(AuthError::Expired);
        }
        Ok(Caller {
            subject: claims.sub,
            role: claims.role,
        })
    }
}

/// A base64url segment holding JSON of type `T`.
fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Invalid("segment is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Invalid("segment is not the expected JSON"))
}

/// The secret to use: the configured one, or else the development secret
/// kept in `<data_dir>/jwt-secret`, created on first use. Keeping it in the
/// data directory lets `commerce token` mint tokens that the running
/// `commerce serve` accepts, and keeps them valid across restarts.
pub fn resolve_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_LEN,
            "COMMERCE_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes"
        );
        return Ok((secret.as_bytes().to_vec(), SecretSource::Configured));
    }
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        anyhow::ensure!(
            existing.len() >= MIN_SECRET_LEN,
            "{} is shorter than {MIN_SECRET_LEN} bytes; delete it to generate a new one",
            path.display()
        );
        return Ok((existing.as_bytes().to_vec(), SecretSource::DataDir(path)));
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, secret.as_bytes())?;
    Ok((secret.into_bytes(), SecretSource::Generated(path)))
}

/// Where the secret came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    DataDir(std::path::PathBuf),
    Generated(std::path::PathBuf),
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_forged_ones_do_not() {
        let keys = JwtKeys::new(&[7; 32]);
        let sub = Uuid::new_v4();
        let token = keys
            .mint(sub, Role::Admin, Duration::from_secs(60))
            .unwrap();
        let caller = keys.verify(&token).unwrap();
        assert_eq!(caller.subject, sub);
        assert_eq!(caller.role, Role::Admin);

        let other = JwtKeys::new(&[8; 32]);
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid(_))));
        assert!(matches!(
            keys.verify("not.a.jwt"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = JwtKeys::new(&[7; 32]);
        let claims = Claims {
            sub: Uuid::new_v4(),
            role: Role::Customer,
            exp: 1_000,
            iat: 0,
        };
        let token = keys.encode(&claims).unwrap();
        assert!(matches!(keys.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn the_header_segment_is_the_hs256_jwt_header() {
        let header = URL_SAFE_NO_PAD.decode(HEADER_B64).unwrap();
        assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn tampered_and_unsigned_tokens_are_refused() {
        let keys = JwtKeys::new(&[7; 32]);
        let token = keys
            .mint(Uuid::new_v4(), Role::Customer, Duration::from_secs(60))
            .unwrap();
        let [header, payload, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        // The customer promotes themself: the signature no longer matches.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["role"] = "admin".into();
        let promoted = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let unsigned_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        for bad in [
            format!("{header}.{promoted}.{signature}"),
            format!("{unsigned_header}.{payload}."),
            format!("{unsigned_header}.{payload}.{signature}"),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.{signature}.extra"),
            format!("{header}.{payload}.{}", &signature[1..]),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(
                matches!(keys.verify(&bad), Err(AuthError::Invalid(_))),
                "{bad} was accepted"
            );
        }
        assert!(keys.verify(&token).is_ok());
    }

    #[test]
    fn the_development_secret_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("commerce-secret-{}", Uuid::new_v4()));
        let (first, source) = resolve_secret(None, &dir).unwrap();
        assert!(matches!(source, SecretSource::Generated(_)));
        let (second, source) = resolve_secret(None, &dir).unwrap();
        assert!(matches!(source, SecretSource::DataDir(_)));
        assert_eq!(first, second);
        assert!(resolve_secret(Some("short"), &dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
