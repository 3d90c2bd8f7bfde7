//! Bearer tokens: JWT HS256 with claims `sub` (a UUID), `role` and `exp`.
//!
//! Shared by the HTTP extractors (verification) and `commerce token`
//! (minting), so both always agree on the claims and the algorithm.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use commerce_app::{Caller, Role};

/// Shortest secret accepted: HS256 wants at least 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

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
    #[error("the bearer token is invalid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

/// Signing and verification keys for one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
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
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm and expiry, and returns the caller.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e),
            })?;
        Ok(Caller {
            subject: data.claims.sub,
            role: data.claims.role,
        })
    }
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
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(matches!(keys.verify(&token), Err(AuthError::Expired)));
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
