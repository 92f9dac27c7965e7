//! The gateway's tokens: HS256 JWTs with a required issuer, audience,
//! subject, issue time and expiry, checked with a leeway and a maximum
//! lifetime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest key accepted, in bytes (HS256's output size).
pub const MIN_SECRET: usize = 32;

/// The role that may do everything (see [`Claims::roles`]).
pub const ADMIN: &str = "admin";

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The caller: a user id (`"42"`) for a user, any name for an admin.
    pub sub: String,
    /// Who issued it: must be the gateway's [`JwtConfig::issuer`].
    pub iss: String,
    /// Whom it is for: must be the gateway's [`JwtConfig::audience`].
    pub aud: String,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Expiry, in seconds since the Unix epoch; `exp - iat` is at most
    /// [`JwtConfig::max_lifetime`].
    pub exp: u64,
    /// Not before, in seconds since the Unix epoch, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Roles: [`ADMIN`] reads and writes everything; without it the
    /// caller is the user `sub` and reaches only what is theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// What a verified token says (the fields the gateway uses).
#[derive(Debug, Deserialize)]
pub(super) struct Verified {
    pub(super) sub: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    pub(super) roles: Vec<String>,
}

/// Why a token was refused: for the log (at debug), never for the answer.
#[derive(Debug)]
pub(super) enum Refused {
    /// What jsonwebtoken found: signature, algorithm, `exp`, `nbf`,
    /// `iss`, `aud`, a missing claim, a malformed token.
    Invalid(jsonwebtoken::errors::ErrorKind),
    /// Issued in the future.
    IssuedInTheFuture,
    /// `exp - iat` over the maximum lifetime.
    LivesTooLong,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(kind) => write!(f, "{kind:?}"),
            Refused::IssuedInTheFuture => f.write_str("issued in the future"),
            Refused::LivesTooLong => f.write_str("lifetime over the maximum"),
        }
    }
}

/// The key and the rules tokens are checked with; also signs tokens for
/// demos and tests (real tokens come from an identity provider sharing the
/// key). `Debug` shows no key.
#[derive(Clone)]
pub struct JwtConfig {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The required `iss` (`JWT_ISSUER`, `meshguard-examples`).
    pub issuer: String,
    /// The required `aud` (`JWT_AUDIENCE`, `meshguard-gateway`).
    pub audience: String,
    /// The longest `exp - iat` accepted (`JWT_MAX_LIFETIME_SECS`, 1 h).
    pub max_lifetime: Duration,
    /// The clock skew tolerated on `exp`, `nbf` and `iat`
    /// (`JWT_LEEWAY_SECS`, 30 s).
    pub leeway: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_lifetime", &self.max_lifetime)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtConfig {
    /// Tokens signed with `secret` (at least [`MIN_SECRET`] bytes), the
    /// default issuer, audience, lifetime and leeway.
    pub fn new(secret: &[u8]) -> Result<JwtConfig, String> {
        if secret.len() < MIN_SECRET {
            return Err(format!(
                "JWT_SECRET must be at least {MIN_SECRET} bytes (e.g. `openssl rand -base64 48`)"
            ));
        }
        Ok(JwtConfig {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: "meshguard-examples".into(),
            audience: "meshguard-gateway".into(),
            max_lifetime: Duration::from_secs(3600),
            leeway: Duration::from_secs(30),
        })
    }

    /// A random key from the OS, for demos and `gateway --dev`: tokens
    /// signed with it die with the process.
    pub fn random() -> JwtConfig {
        let mut secret = [0u8; MIN_SECRET];
        getrandom::fill(&mut secret).expect("the OS has randomness");
        JwtConfig::new(&secret).expect("long enough")
    }

    /// From the environment: `JWT_SECRET` (required), `JWT_ISSUER`,
    /// `JWT_AUDIENCE`, `JWT_MAX_LIFETIME_SECS`, `JWT_LEEWAY_SECS`.
    pub fn from_env() -> Result<JwtConfig, String> {
        JwtConfig::from_vars(crate::config::env_opt)
    }

    /// As [`from_env`](Self::from_env), reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<JwtConfig, String> {
        let secret = var("JWT_SECRET").ok_or_else(|| {
            format!(
                "JWT_SECRET is not set: the gateway needs the key its tokens are signed \
                 with (HS256, at least {MIN_SECRET} bytes, e.g. `openssl rand -base64 48`); \
                 `gateway --dev` makes a random one for development"
            )
        })?;
        let mut config = JwtConfig::new(secret.as_bytes())?;
        if let Some(v) = var("JWT_ISSUER") {
            config.issuer = v;
        }
        if let Some(v) = var("JWT_AUDIENCE") {
            config.audience = v;
        }
        let secs = |name: &str, default: Duration| -> Result<Duration, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("{name}={v:?} is not a number of seconds")),
            }
        };
        config.max_lifetime = secs("JWT_MAX_LIFETIME_SECS", config.max_lifetime)?;
        config.leeway = secs("JWT_LEEWAY_SECS", config.leeway)?;
        Ok(config)
    }

    /// A token for `sub` with `roles`, issued now, living the maximum
    /// lifetime.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let iat = now();
        self.sign(&Claims {
            sub: sub.into(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat + self.max_lifetime.as_secs(),
            nbf: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
    }

    /// `claims` signed with the key (HS256), whatever they say.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signs any claims")
    }

    /// The token's claims, if its signature, algorithm (HS256 only),
    /// issuer, audience, expiry, not-before, issue time and lifetime pass.
    pub(super) fn verify(&self, token: &str) -> Result<Verified, Refused> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = self.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Verified>(token, &self.decoding, &v)
            .map_err(|e| Refused::Invalid(e.into_kind()))?
            .claims;
        if claims.iat > now() + self.leeway.as_secs() {
            return Err(Refused::IssuedInTheFuture);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime.as_secs() {
            return Err(Refused::LivesTooLong);
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch (JWT times are wall-clock times).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
