//! Users, their credentials and their permissions (SPEC 8.1), as the `[[users]]` tables of
//! the config file give them.
//!
//! A password or token is kept only as a hash (argon2id, or bcrypt `$2a$`/`$2b$`) and checked
//! with the hashing crate's constant-time comparison; hashing is slow on purpose, so callers
//! run `Users::authenticate` off the async threads. Permissions are allow and deny pattern
//! lists per direction: deny wins, and with an `allow` list nothing else is allowed.

use std::time::Duration;

use serde::Deserialize;

/// One `[[users]]` table as written in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name, for user/password authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password hash (argon2id or bcrypt), with `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Token hash (argon2id or bcrypt), for token authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// NATS nkey (a user's public key, `U...`): the client signs the nonce of INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    /// The scope every connection of this user is in.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// What this user may publish and subscribe to; everything when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionsConfig>,
}

fn default_scope() -> String {
    "default".into()
}

/// `[users.permissions]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsConfig {
    /// Subjects this user may publish to.
    #[serde(default)]
    pub publish: RulesConfig,
    /// Patterns this user may subscribe to.
    #[serde(default)]
    pub subscribe: RulesConfig,
    /// May publish to the reply subject of a request it received (once, within
    /// [`RESPONSE_WINDOW`]), whatever `publish` says.
    #[serde(default)]
    pub allow_responses: bool,
}

/// `{ allow = [..], deny = [..] }`, or a plain list `[..]` meaning `allow`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, from = "RulesForm")]
pub struct RulesConfig {
    /// When given, only these patterns are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Never allowed, whatever `allow` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The two ways rules are written.
#[derive(Deserialize)]
#[serde(untagged)]
enum RulesForm {
    List(Vec<String>),
    Table(RulesTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesTable {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

impl From<RulesForm> for RulesConfig {
    fn from(form: RulesForm) -> RulesConfig {
        match form {
            RulesForm::List(allow) => RulesConfig {
                allow: Some(allow),
                deny: Vec::new(),
            },
            RulesForm::Table(RulesTable { allow, deny }) => RulesConfig { allow, deny },
        }
    }
}

/// How long a received request's reply subject stays publishable under `allow_responses`.
pub const RESPONSE_WINDOW: Duration = Duration::from_secs(120);

/// Allow and deny lists of one direction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    allow: Option<Vec<String>>,
    deny: Vec<String>,
}

/// JetStream calls one server of a cluster forwards to another: denied to every user with
/// permissions, both ways (publishing one would reach the API past the user's rules on
/// `$JS.API.>`; reading them would show other users' requests).
const FORWARDED_JETSTREAM: &str = "$HERALD.JSAPI.>";

impl Rules {
    /// Whether a publish to `subject` is allowed.
    pub(crate) fn allows_subject(&self, subject: &str) -> bool {
        !self
            .deny
            .iter()
            .any(|d| herald::subject::matches(d, subject))
            && self
                .allow
                .as_ref()
                .is_none_or(|allow| allow.iter().any(|a| herald::subject::matches(a, subject)))
    }

    /// Whether a subscription to `pattern` is allowed: it must lie inside an allowed pattern
    /// and not inside a denied one. One that merely overlaps a denied pattern is allowed, and
    /// [`filters`](Rules::filters) says the denied subjects must be kept from it.
    pub(crate) fn allows_pattern(&self, pattern: &str) -> bool {
        !self.deny.iter().any(|d| subset(pattern, d))
            && self
                .allow
                .as_ref()
                .is_none_or(|allow| allow.iter().any(|a| subset(pattern, a)))
    }

    /// The denied patterns that some subject matching `pattern` may match: those to check at
    /// delivery. Empty for almost every subscription, which then costs nothing more.
    pub(crate) fn filters(&self, pattern: &str) -> Vec<String> {
        self.deny
            .iter()
            .filter(|d| overlap(pattern, d))
            .cloned()
            .collect()
    }

    fn check(&self, what: &str) -> Result<(), String> {
        for p in self.allow.iter().flatten().chain(&self.deny) {
            herald::subject::check(p).map_err(|e| format!("{what}: {e}"))?;
        }
        Ok(())
    }
}

/// What one user may do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Permissions {
    pub(crate) publish: Rules,
    pub(crate) subscribe: Rules,
    pub(crate) allow_responses: bool,
}

impl Permissions {
    /// A subscription to `pattern` (in `queue`): the denied subjects to withhold from it, or
    /// nats-server's refusal.
    pub(crate) fn subscription(
        &self,
        pattern: &str,
        queue: Option<&str>,
    ) -> Result<Vec<String>, String> {
        if !self.subscribe.allows_pattern(pattern) {
            let using = queue
                .map(|q| format!(" using queue \"{q}\""))
                .unwrap_or_default();
            return Err(format!(
                "Permissions Violation for Subscription to \"{pattern}\"{using}"
            ));
        }
        Ok(self.subscribe.filters(pattern))
    }
}

/// nats-server's refusal of a publish to `subject`.
pub(crate) fn publish_violation(subject: &str) -> String {
    format!("Permissions Violation for Publish to \"{subject}\"")
}

/// Whether `name` can be a client's scope: one token on the wire between nodes (no
/// whitespace or control characters), 1 to 256 bytes, and not one of herald's own (those
/// start with `$`: the nodes' meta group talks in `$herald`).
pub(crate) fn valid_scope(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('$')
        && name.len() <= 256
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// How a user proves who it is.
#[derive(Debug, Clone)]
enum Credential {
    Password { user: String, hash: String },
    Token { hash: String },
    Nkey { public: String },
}

/// A configured user, checked.
#[derive(Debug, Clone)]
pub(crate) struct User {
    credential: Credential,
    pub(crate) scope: String,
    /// `None`: everything allowed.
    pub(crate) permissions: Option<Permissions>,
}

impl User {
    /// The user's name, for logs (never a secret): the user name, or `token user`.
    pub(crate) fn name(&self) -> &str {
        match &self.credential {
            Credential::Password { user, .. } => user,
            Credential::Token { .. } => "token user",
            Credential::Nkey { public } => public,
        }
    }
}

/// What a client presents.
#[derive(Default)]
pub(crate) struct Presented {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    /// An nkey, its signature of `nonce` (base64url), and the nonce the server sent.
    pub(crate) nkey: Option<(String, String, String)>,
}

/// Longest user name, password or token looked at: longer ones fail without hashing.
const MAX_SECRET: usize = 4096;

/// The configured users.
#[derive(Debug, Default)]
pub(crate) struct Users {
    users: Vec<User>,
    /// Credentials verified before, by their SHA-256, to the user they prove: an HTTP client
    /// sending its token with every request pays the slow hash once.
    verified: parking_lot::Mutex<rustc_hash::FxHashMap<[u8; 32], usize>>,
}

/// Verified credentials remembered; past it the memory starts over.
const VERIFIED_KEPT: usize = 4096;

impl Users {
    /// Checks the `[[users]]` tables: each has exactly one kind of credential with a hash
    /// this server can verify, a valid scope, and valid permission patterns.
    pub(crate) fn from_config(configs: &[UserConfig]) -> Result<Users, String> {
        let mut users = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let at = |e: String| format!("users[{i}]: {e}");
            let credential = match (&c.user, &c.password, &c.token) {
                (None, None, None) if c.nkey.is_some() => {
                    let public = c.nkey.clone().unwrap_or_default();
                    let valid = nkeys::KeyPair::from_public_key(&public)
                        .is_ok_and(|_| public.starts_with('U'));
                    if !valid {
                        return Err(at(format!("{public:?} is not a user nkey (U...)")));
                    }
                    Credential::Nkey { public }
                }
                _ if c.nkey.is_some() => {
                    return Err(at("an nkey user has no user, password or token".into()));
                }
                (Some(user), Some(hash), None) => {
                    check_hash(hash).map_err(at)?;
                    if users.iter().any(|u: &User| matches!(&u.credential, Credential::Password { user: other, .. } if other == user)) {
                        return Err(at(format!("user {user:?} is configured twice")));
                    }
                    Credential::Password {
                        user: user.clone(),
                        hash: hash.clone(),
                    }
                }
                (None, None, Some(hash)) => {
                    check_hash(hash).map_err(at)?;
                    Credential::Token { hash: hash.clone() }
                }
                _ => {
                    return Err(at(
                        "give `user` and `password`, `token` alone, or `nkey` alone".into(),
                    ));
                }
            };
            if !valid_scope(&c.scope) {
                return Err(at(format!("invalid scope {:?}", c.scope)));
            }
            let permissions = match &c.permissions {
                None => None,
                Some(p) => {
                    let rules = |r: &RulesConfig| Rules {
                        allow: r.allow.clone(),
                        deny: r
                            .deny
                            .iter()
                            .cloned()
                            .chain([FORWARDED_JETSTREAM.to_owned()])
                            .collect(),
                    };
                    let p = Permissions {
                        publish: rules(&p.publish),
                        subscribe: rules(&p.subscribe),
                        allow_responses: p.allow_responses,
                    };
                    p.publish.check("permissions.publish").map_err(at)?;
                    p.subscribe.check("permissions.subscribe").map_err(at)?;
                    Some(p)
                }
            };
            users.push(User {
                credential,
                scope: c.scope.clone(),
                permissions,
            });
        }
        Ok(Users {
            users,
            verified: Default::default(),
        })
    }

    /// [`authenticate`](Users::authenticate), remembering credentials that worked (by their
    /// SHA-256, never in clear), so that a client presenting them again is not hashed again.
    pub(crate) fn authenticate_cached(&self, presented: &Presented) -> Option<User> {
        use sha2::Digest;
        if presented.nkey.is_some() {
            // A signature is of a fresh nonce: nothing to remember, and the key below does
            // not cover it.
            return self.authenticate(presented).cloned();
        }
        let mut key = sha2::Sha256::new();
        for part in [&presented.user, &presented.password, &presented.token] {
            match part {
                Some(p) => {
                    key.update([1]);
                    key.update((p.len() as u64).to_le_bytes());
                    key.update(p.as_bytes());
                }
                None => key.update([0]),
            }
        }
        let key: [u8; 32] = key.finalize().into();
        if let Some(&i) = self.verified.lock().get(&key) {
            return self.users.get(i).cloned();
        }
        let user = self.authenticate(presented)?;
        let index = self.users.iter().position(|u| std::ptr::eq(u, user))?;
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_KEPT {
            verified.clear();
        }
        verified.insert(key, index);
        Some(user.clone())
    }

    /// Whether any user is configured (then every connection must authenticate).
    pub(crate) fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether some user authenticates with an nkey (then INFO carries a nonce).
    pub(crate) fn nkeys(&self) -> bool {
        self.users
            .iter()
            .any(|u| matches!(u.credential, Credential::Nkey { .. }))
    }

    /// The user `presented` proves to be, if any. Slow (a password hash per candidate): run
    /// it off the async threads.
    pub(crate) fn authenticate(&self, presented: &Presented) -> Option<&User> {
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_SECRET);
        if too_long(&presented.user) || too_long(&presented.password) || too_long(&presented.token)
        {
            return None;
        }
        if let Some((public, sig, nonce)) = &presented.nkey {
            return self.users.iter().find(|u| match &u.credential {
                Credential::Nkey { public: known } => known == public && signed(public, sig, nonce),
                _ => false,
            });
        }
        if let (Some(name), Some(password)) = (&presented.user, &presented.password) {
            return self.users.iter().find(|u| match &u.credential {
                Credential::Password { user, hash } => user == name && verify(password, hash),
                Credential::Token { .. } | Credential::Nkey { .. } => false,
            });
        }
        // A token; some clients send a password-less user instead (`nats://TOKEN@host`).
        let token = presented.token.as_ref().or(presented
            .user
            .as_ref()
            .filter(|_| presented.password.is_none()))?;
        self.users.iter().find(|u| match &u.credential {
            Credential::Token { hash } => verify(token, hash),
            Credential::Password { .. } | Credential::Nkey { .. } => false,
        })
    }
}

/// Whether `sig` (base64url, padded or not, or standard base64) is `public`'s signature of
/// `nonce`.
fn signed(public: &str, sig: &str, nonce: &str) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let Ok(sig) = URL_SAFE_NO_PAD
        .decode(sig.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(sig))
    else {
        return false;
    };
    nkeys::KeyPair::from_public_key(public).is_ok_and(|k| k.verify(nonce.as_bytes(), &sig).is_ok())
}

/// A fresh nonce for INFO: 16 random bytes, base64url.
pub(crate) fn nonce() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    // Without randomness the nonce would repeat and a recorded signature would work again:
    // say so loudly (getrandom fails only on a broken system).
    if let Err(err) = getrandom::fill(&mut bytes) {
        tracing::error!(%err, "no randomness for an nkey nonce");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `hash` is an argon2 or bcrypt hash this server can check.
fn check_hash(hash: &str) -> Result<(), String> {
    if hash.starts_with("$argon2") {
        argon2::PasswordHash::new(hash)
            .map(drop)
            .map_err(|e| format!("unreadable argon2 hash: {e}"))
    } else if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
        bcrypt::HashParts::from_str_checked(hash)
    } else {
        Err("a password or token must be an argon2 (`$argon2id$...`) or bcrypt (`$2b$...`) hash; `herald passwd` prints one".into())
    }
}

trait FromStrChecked {
    fn from_str_checked(hash: &str) -> Result<(), String>;
}

impl FromStrChecked for bcrypt::HashParts {
    fn from_str_checked(hash: &str) -> Result<(), String> {
        hash.parse::<bcrypt::HashParts>()
            .map(drop)
            .map_err(|e| format!("unreadable bcrypt hash: {e}"))
    }
}

/// Checks `secret` against `hash` (constant-time in the hashing crates).
fn verify(secret: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier;
        argon2::PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
    } else {
        bcrypt::verify(secret, hash).unwrap_or(false)
    }
}

/// An argon2id hash of `secret` with a random salt, for the config file (`herald passwd`).
pub fn hash_secret(secret: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash: {e}"))
}

/// Whether every subject `pattern` matches is matched by `of`.
fn subset(pattern: &str, of: &str) -> bool {
    fn go(p: &[&str], o: &[&str]) -> bool {
        match (p.split_first(), o.split_first()) {
            (_, Some((&">", _))) => !p.is_empty(),
            (Some((&">", _)), _) => false,
            (Some((pt, pr)), Some((ot, or))) => {
                (*ot == "*" || (ot == pt && *pt != "*")) && go(pr, or)
            }
            (None, None) => true,
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let o: Vec<&str> = of.split('.').collect();
    go(&p, &o)
}

/// Whether some subject matches both patterns.
fn overlap(a: &str, b: &str) -> bool {
    fn go(a: &[&str], b: &[&str]) -> bool {
        match (a.split_first(), b.split_first()) {
            (Some((&">", _)), _) => !b.is_empty(),
            (_, Some((&">", _))) => !a.is_empty(),
            (Some((at, ar)), Some((bt, br))) => {
                (*at == "*" || *bt == "*" || at == bt) && go(ar, br)
            }
            (None, None) => true,
            _ => false,
        }
    }
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    go(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_and_overlaps_of_patterns() {
        assert!(subset("orders.eu", "orders.*"));
        assert!(subset("orders.*", "orders.>"));
        assert!(subset("orders.>", ">"));
        assert!(!subset(">", "orders.>"));
        assert!(!subset("orders.*", "orders.eu"));
        assert!(!subset("orders", "orders.>"));
        assert!(subset("a.*.c", "a.*.*"));
        assert!(!subset("a.>", "a.*"));
        assert!(overlap("orders.>", "orders.secret.>"));
        assert!(overlap(">", "admin.x"));
        assert!(overlap("a.*", "*.b"));
        assert!(!overlap("a.b", "a.c"));
        assert!(!overlap("a.*", "a.b.c"));
    }

    #[test]
    fn rules_are_a_table_or_a_plain_allow_list_and_unknown_keys_are_refused() {
        let parse = |text: &str| toml::from_str::<PermissionsConfig>(text);
        let p = parse("publish = [\"a.>\"]\nsubscribe = { deny = [\"b\"] }").unwrap();
        assert_eq!(p.publish.allow, Some(vec!["a.>".to_owned()]));
        assert_eq!(p.subscribe.deny, ["b"]);
        assert!(parse("publish = { alow = [\"a\"] }").is_err());
        assert!(parse("publsh = [\"a\"]").is_err());
    }

    #[test]
    fn rules_deny_wins_and_allow_lists_limit() {
        let rules = Rules {
            allow: Some(vec!["orders.>".into(), "_INBOX.>".into()]),
            deny: vec!["orders.secret.>".into()],
        };
        assert!(rules.allows_subject("orders.eu.1"));
        assert!(!rules.allows_subject("orders.secret.x"));
        assert!(!rules.allows_subject("admin"));

        assert!(rules.allows_pattern("orders.*"));
        assert!(
            rules.allows_pattern("orders.>"),
            "overlaps a denied pattern: accepted"
        );
        assert_eq!(rules.filters("orders.>"), ["orders.secret.>"]);
        assert!(rules.filters("orders.eu.*").is_empty());
        assert!(!rules.allows_pattern("orders.secret.*"));
        assert!(!rules.allows_pattern(">"));
    }

    #[test]
    fn users_authenticate_by_password_or_token_and_bad_configs_are_refused() {
        let alice = hash_secret("wonderland").unwrap();
        let token = hash_secret("t0ken").unwrap();
        let users = Users::from_config(&[
            UserConfig {
                user: Some("alice".into()),
                password: Some(alice.clone()),
                token: None,
                nkey: None,
                scope: "shop".into(),
                permissions: None,
            },
            UserConfig {
                user: None,
                password: None,
                token: Some(token),
                nkey: None,
                scope: "metrics".into(),
                permissions: None,
            },
        ])
        .unwrap();
        let with = |user: Option<&str>, password: Option<&str>, token: Option<&str>| Presented {
            user: user.map(Into::into),
            password: password.map(Into::into),
            token: token.map(Into::into),
            nkey: None,
        };
        let ok = users.authenticate(&with(Some("alice"), Some("wonderland"), None));
        assert_eq!(ok.map(|u| u.scope.as_str()), Some("shop"));
        assert!(
            users
                .authenticate(&with(Some("alice"), Some("wrong"), None))
                .is_none()
        );
        assert!(
            users
                .authenticate(&with(Some("bob"), Some("wonderland"), None))
                .is_none()
        );
        assert!(users.authenticate(&with(None, None, None)).is_none());
        let by_token = users.authenticate(&with(None, None, Some("t0ken")));
        assert_eq!(by_token.map(|u| u.scope.as_str()), Some("metrics"));
        let by_user_field = users.authenticate(&with(Some("t0ken"), None, None));
        assert_eq!(by_user_field.map(|u| u.name()), Some("token user"));
        let huge = "x".repeat(MAX_SECRET + 1);
        assert!(
            users
                .authenticate(&with(Some("alice"), Some(&huge), None))
                .is_none()
        );
        // A plain-text password, both kinds of credential, a bad pattern: refused at startup.
        for bad in [
            UserConfig {
                user: Some("a".into()),
                password: Some("plain".into()),
                token: None,
                nkey: None,
                scope: "s".into(),
                permissions: None,
            },
            UserConfig {
                user: Some("a".into()),
                password: Some(alice.clone()),
                token: Some(alice.clone()),
                nkey: None,
                scope: "s".into(),
                permissions: None,
            },
            UserConfig {
                user: Some("a".into()),
                password: Some(alice.clone()),
                token: None,
                nkey: None,
                scope: "has space".into(),
                permissions: None,
            },
            UserConfig {
                user: Some("a".into()),
                password: Some(alice.clone()),
                token: None,
                nkey: None,
                scope: "s".into(),
                permissions: Some(PermissionsConfig {
                    publish: RulesConfig {
                        allow: Some(vec!["a.>.b".into()]),
                        deny: vec![],
                    },
                    ..Default::default()
                }),
            },
        ] {
            assert!(Users::from_config(&[bad]).is_err());
        }
        let bcrypt_hash = bcrypt::hash("secret", 4).unwrap();
        let users = Users::from_config(&[UserConfig {
            user: Some("b".into()),
            password: Some(bcrypt_hash),
            token: None,
            nkey: None,
            scope: "s".into(),
            permissions: None,
        }])
        .unwrap();
        assert!(
            users
                .authenticate(&with(Some("b"), Some("secret"), None))
                .is_some()
        );
    }

    #[test]
    fn forwarded_jetstream_calls_are_no_restricted_users() {
        let users = Users::from_config(&[UserConfig {
            user: Some("r".into()),
            password: Some(hash_secret("pw").unwrap()),
            token: None,
            nkey: None,
            scope: "default".into(),
            permissions: Some(PermissionsConfig {
                publish: RulesConfig {
                    allow: Some(vec![">".into()]),
                    deny: vec!["$JS.API.STREAM.DELETE.>".into()],
                },
                subscribe: RulesConfig::default(),
                allow_responses: false,
            }),
        }])
        .unwrap();
        let presented = Presented {
            user: Some("r".into()),
            password: Some("pw".into()),
            token: None,
            nkey: None,
        };
        let user = users.authenticate(&presented).unwrap();
        let perms = user.permissions.as_ref().unwrap();
        assert!(perms.publish.allows_subject("orders.1"));
        assert!(!perms.publish.allows_subject("$HERALD.JSAPI.node-a"));
        assert!(perms.subscribe.allows_pattern(">"));
        assert_eq!(perms.subscribe.filters(">"), ["$HERALD.JSAPI.>"]);
    }
}

/// Reply subjects of requests a connection received, publishable once each under
/// `allow_responses` until [`RESPONSE_WINDOW`] passes.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    granted: parking_lot::Mutex<rustc_hash::FxHashMap<Box<str>, std::time::Instant>>,
}

/// Most reply subjects one connection holds grants for; past it, new requests' replies are
/// not granted (the oldest expire first).
const MAX_RESPONSES: usize = 16 * 1024;

impl Responses {
    /// Lets the connection publish once to `reply`.
    pub(crate) fn grant(&self, reply: &str) {
        let now = std::time::Instant::now();
        let mut granted = self.granted.lock();
        if granted.len() >= MAX_RESPONSES {
            granted.retain(|_, at| now.duration_since(*at) < RESPONSE_WINDOW);
            if granted.len() >= MAX_RESPONSES {
                return;
            }
        }
        granted.insert(reply.into(), now);
    }

    /// Uses up the grant for `subject`, if there is a live one.
    pub(crate) fn take(&self, subject: &str) -> bool {
        self.granted
            .lock()
            .remove(subject)
            .is_some_and(|at| at.elapsed() < RESPONSE_WINDOW)
    }
}
