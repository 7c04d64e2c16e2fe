//! Who may connect: the `[[hba]]` rules (PostgreSQL's `pg_hba.conf`, as TOML) and
//! SCRAM-SHA-256 against the verifiers of `[[users]]`.
//!
//! A user's password is stored the way PostgreSQL stores it in `pg_authid`:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64). The server
//! never sees or keeps the password itself, and a stolen verifier does not log in.
//! `tarn passwd` prints one ([`scram_verifier`]).
//!
//! Roles created with `CREATE ROLE ... LOGIN PASSWORD` log in the same way, against
//! the verifier the warehouse keeps for them ([`Users::attach`]); a name in both is
//! the configuration's.
//!
//! An unknown user goes through the same SCRAM exchange as a known one, against a
//! made-up verifier whose salt is fixed per name ([`Users::secret`]), and fails at the
//! same step with the same error: a client cannot tell which names exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use ring::hmac;
use ring::rand::SystemRandom;
use serde::Deserialize;

/// PostgreSQL's default SCRAM iteration count (`scram_iterations`).
pub const SCRAM_ITERATIONS: usize = 4096;

/// A stored SCRAM-SHA-256 verifier.
#[derive(Clone)]
pub struct Verifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are login material for a replayed exchange: never in logs.
        f.debug_struct("Verifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses PostgreSQL's text form. Anything else (a plain-text password above all)
    /// is refused.
    pub fn parse(text: &str) -> Result<Verifier, String> {
        let malformed = || {
            "is not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>); \
             make one with `tarn passwd`"
                .to_string()
        };
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(malformed)?;
        let (params, keys) = rest.split_once('$').ok_or_else(malformed)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(malformed)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or_else(malformed)?;
        let iterations: usize = iterations.parse().map_err(|_| malformed())?;
        let decode = |s: &str| STANDARD.decode(s).map_err(|_| malformed());
        let verifier = Verifier {
            salt: decode(salt)?,
            iterations,
            stored_key: decode(stored_key)?,
            server_key: decode(server_key)?,
        };
        if iterations == 0
            || verifier.salt.is_empty()
            || verifier.stored_key.len() != 32
            || verifier.server_key.len() != 32
        {
            return Err(malformed());
        }
        Ok(verifier)
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// The verifier of `password` with a fresh random salt, in PostgreSQL's text form (what
/// `tarn passwd` prints and `[[users]] password` takes).
pub fn scram_verifier(password: &str) -> String {
    tarn_engine::access::roles::scram_verifier(password)
}

/// The users who may log in with a password, and the server's key for made-up
/// verifiers of unknown names.
pub struct Users {
    verifiers: HashMap<String, Verifier>,
    /// The warehouse whose login roles may log in too.
    warehouse: std::sync::OnceLock<Arc<tarn_storage::Warehouse>>,
    /// Random per server start: an unknown name's salt is stable while it runs.
    mock_key: hmac::Key,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("names", &self.verifiers.keys().collect::<Vec<_>>()).finish()
    }
}

impl Users {
    pub fn new(verifiers: HashMap<String, Verifier>) -> Users {
        let mock_key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("random key");
        Users { verifiers, warehouse: Default::default(), mock_key }
    }

    /// Lets the warehouse's login roles log in (once the server has opened it).
    pub fn attach(&self, warehouse: Arc<tarn_storage::Warehouse>) {
        let _ = self.warehouse.set(warehouse);
    }

    /// The verifier the warehouse keeps for a login role.
    fn role_verifier(&self, user: &str) -> Option<Verifier> {
        let security = self.warehouse.get()?.security();
        let role = security.roles.get(user).filter(|r| r.login)?;
        Verifier::parse(role.password.as_deref()?).ok()
    }

    /// The user's verifier, or for an unknown name a made-up one nobody can answer.
    fn secret(&self, user: &str) -> ScramSecret {
        if let Some(verifier) = self.verifiers.get(user) {
            return verifier.secret();
        }
        if let Some(verifier) = self.role_verifier(user) {
            return verifier.secret();
        }
        let tag =
            |label: &str| hmac::sign(&self.mock_key, format!("{label}\0{user}").as_bytes()).as_ref().to_vec();
        ScramSecret::Verifier {
            salt: tag("salt")[..16].to_vec(),
            iterations: SCRAM_ITERATIONS,
            stored_key: tag("stored"),
            server_key: tag("server"),
        }
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Only SCRAM is offered, which asks for `get_scram_secret`.
        Err(PgWireError::InvalidSASLState)
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        Ok((self.secret(login.user().unwrap_or_default()), None))
    }
}

/// The SCRAM mechanisms: over TLS with channel binding offered (SCRAM-SHA-256-PLUS,
/// bound to the server's certificate), over plain TCP without it.
pub struct Scram {
    pub plain: ScramAuth,
    pub tls: Option<ScramAuth>,
}

impl Scram {
    pub fn new(users: Arc<Users>, certificate_pem: Option<&[u8]>) -> Result<Scram, String> {
        let plain = ScramAuth::new(users.clone());
        let tls = match certificate_pem {
            Some(pem) => {
                let mut tls = ScramAuth::new(users);
                tls.configure_certificate(pem)
                    .map_err(|e| format!("channel binding to the certificate: {e}"))?;
                Some(tls)
            }
            None => None,
        };
        Ok(Scram { plain, tls })
    }

    pub fn for_connection(&self, secure: bool) -> &ScramAuth {
        match (&self.tls, secure) {
            (Some(tls), true) => tls,
            _ => &self.plain,
        }
    }
}

/// One `[[hba]]` rule: which connections it matches and how they authenticate. The
/// first rule that matches decides; a connection no rule matches is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaRule {
    /// `host` (TLS or not), `hostssl` (TLS only) or `hostnossl` (plain only).
    #[serde(rename = "type", default = "HbaRule::default_type")]
    pub kind: String,
    /// `all`, an address, or a CIDR block (`10.0.0.0/8`, `::1/128`).
    pub address: String,
    /// `all` or a user name.
    #[serde(default = "HbaRule::all")]
    pub user: String,
    /// `trust` (loopback addresses only), `scram-sha-256` or `reject`.
    pub method: String,
}

/// What a rule asks of a matching connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    Scram,
    Reject,
}

impl HbaRule {
    fn default_type() -> String {
        "host".into()
    }

    fn all() -> String {
        "all".into()
    }

    pub fn new(address: &str, method: &str) -> HbaRule {
        HbaRule {
            kind: Self::default_type(),
            address: address.into(),
            user: Self::all(),
            method: method.into(),
        }
    }

    pub fn method(&self) -> Result<Method, String> {
        match self.method.as_str() {
            "trust" => Ok(Method::Trust),
            "scram-sha-256" => Ok(Method::Scram),
            "reject" => Ok(Method::Reject),
            other => Err(format!("hba method \"{other}\" is not one of trust, scram-sha-256, reject")),
        }
    }

    fn block(&self) -> Result<Option<(IpAddr, u8)>, String> {
        if self.address == "all" {
            return Ok(None);
        }
        let bad = || format!("hba address \"{}\" is not all, an address or a CIDR block", self.address);
        let (ip, bits) = match self.address.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (self.address.as_str(), None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Some((ip, bits)))
    }

    /// Checks the rule's words and that `trust` covers loopback addresses only.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.kind.as_str(), "host" | "hostssl" | "hostnossl") {
            return Err(format!("hba type \"{}\" is not one of host, hostssl, hostnossl", self.kind));
        }
        let method = self.method()?;
        let block = self.block()?;
        if method == Method::Trust {
            let loopback = match block {
                Some((IpAddr::V4(ip), bits)) => ip.is_loopback() && bits >= 8,
                Some((IpAddr::V6(ip), bits)) => ip.is_loopback() && bits == 128,
                None => false,
            };
            if !loopback {
                return Err(format!(
                    "hba rule for \"{}\" trusts addresses beyond loopback: trust is only for 127.0.0.0/8 and ::1",
                    self.address
                ));
            }
        }
        Ok(())
    }

    fn matches(&self, peer: IpAddr, user: &str, secure: bool) -> bool {
        let kind = match self.kind.as_str() {
            "hostssl" => secure,
            "hostnossl" => !secure,
            _ => true,
        };
        let user = self.user == "all" || self.user == user;
        let address = match self.block() {
            Ok(None) => true,
            Ok(Some((block, bits))) => in_block(peer, block, bits),
            Err(_) => false,
        };
        kind && user && address
    }
}

fn in_block(peer: IpAddr, block: IpAddr, bits: u8) -> bool {
    match (peer.to_canonical(), block) {
        (IpAddr::V4(peer), IpAddr::V4(block)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(peer) & mask == u32::from(block) & mask
        }
        (IpAddr::V6(peer), IpAddr::V6(block)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(peer) & mask == u128::from(block) & mask
        }
        _ => false,
    }
}

/// The rules in force, in order.
#[derive(Debug, Clone)]
pub struct Hba(pub Vec<HbaRule>);

impl Hba {
    /// How a connection from `peer` as `user` authenticates, or the FATAL error that
    /// refuses it (28000, worded as PostgreSQL words it).
    pub fn method(&self, peer: IpAddr, user: &str, database: &str, secure: bool) -> Result<Method, String> {
        let encryption = if secure { "SSL encryption" } else { "no encryption" };
        let peer = peer.to_canonical();
        match self.0.iter().find(|rule| rule.matches(peer, user, secure)) {
            Some(rule) => match rule.method() {
                Ok(Method::Reject) => Err(format!(
                    "hba rejects connection for host \"{peer}\", user \"{user}\", database \"{database}\", {encryption}"
                )),
                Ok(method) => Ok(method),
                Err(e) => Err(e),
            },
            None => Err(format!(
                "no hba entry for host \"{peer}\", user \"{user}\", database \"{database}\", {encryption}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_round_trip_and_plain_text_is_refused() {
        use pgwire::api::auth::sasl::scram::gen_salted_password;
        // The engine's verifier is the one pgwire derives from the same salt.
        let salt = [7u8; 16];
        let ScramSecret::Verifier { stored_key, server_key, .. } = ScramSecret::verifier_from_salted_password(
            salt.to_vec(),
            gen_salted_password("secret", &salt, SCRAM_ITERATIONS),
            SCRAM_ITERATIONS,
        ) else {
            unreachable!("a verifier")
        };
        let ours =
            Verifier::parse(&tarn_engine::access::roles::scram_verifier_with_salt("secret", &salt)).unwrap();
        assert_eq!((ours.stored_key, ours.server_key), (stored_key, server_key));
        let text = scram_verifier("secret");
        let v = Verifier::parse(&text).unwrap();
        assert_eq!(v.iterations, SCRAM_ITERATIONS);
        assert_eq!(v.salt.len(), 16);
        assert!(Verifier::parse("secret").unwrap_err().contains("tarn passwd"));
        assert!(Verifier::parse("SCRAM-SHA-256$4096:c2FsdA==$a:b").is_err());
        // Two verifiers of one password differ (fresh salt).
        assert_ne!(text, scram_verifier("secret"));
    }

    #[test]
    fn rules_match_in_order_and_trust_stays_on_loopback() {
        let hba = Hba(vec![
            HbaRule::new("127.0.0.1/32", "trust"),
            HbaRule { kind: "hostssl".into(), ..HbaRule::new("10.0.0.0/8", "scram-sha-256") },
            HbaRule::new("all", "reject"),
        ]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(hba.method(local, "a", "tarn", false), Ok(Method::Trust));
        assert_eq!(hba.method(inside, "a", "tarn", true), Ok(Method::Scram));
        assert_eq!(hba.method(mapped, "a", "tarn", true), Ok(Method::Scram));
        assert!(hba.method(inside, "a", "tarn", false).unwrap_err().contains("rejects"));
        assert!(Hba(vec![]).method(local, "a", "tarn", false).unwrap_err().contains("no hba entry"));

        assert!(HbaRule::new("127.0.0.1", "trust").validate().is_ok());
        assert!(HbaRule::new("::1/128", "trust").validate().is_ok());
        assert!(HbaRule::new("0.0.0.0/0", "trust").validate().is_err());
        assert!(HbaRule::new("all", "trust").validate().is_err());
        assert!(HbaRule::new("10.0.0.0/33", "reject").validate().is_err());
        assert!(HbaRule::new("all", "md5").validate().is_err());
    }
}
