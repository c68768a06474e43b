//! Passwords: the policy (12 to 128 characters, none of them a control character) and argon2id
//! hashing. A [`Password`] is a
//! `SecretString` from the moment it is parsed, so it never shows in Debug output, logs or errors;
//! its hash is only ever handled as a `SecretString` too. Hashing is CPU-heavy: callers on an
//! async runtime run these functions on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chassis::text::TextRule;
use secrecy::{ExposeSecret, SecretString};

/// A password that satisfies the policy. Its Debug output is redacted.
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 128;
    /// Spaces count and are kept (untrimmed); control characters are refused, as PRECIS'
    /// OpaqueString profile (RFC 8265) for passwords does, since no keyboard types them.
    pub const RULE: TextRule = TextRule::single_line(Self::MAX_CHARS).untrimmed();

    /// Takes ownership so the only copy is the secret one. The error never quotes the password.
    pub fn parse(text: String) -> Result<Password, String> {
        let secret = SecretString::from(text);
        if let Err(chassis::text::TextError::ForbiddenCharacter { position, .. }) =
            Self::RULE.parse(secret.expose_secret())
        {
            // Which character is not said: the error must not reveal any of the password.
            return Err(format!(
                "must not contain control characters (found one at character {position})"
            ));
        }
        let n_chars = secret.expose_secret().chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n_chars) {
            return Err(format!(
                "must be {} to {} characters long",
                Self::MIN_CHARS,
                Self::MAX_CHARS
            ));
        }
        Ok(Password(secret))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Hashes `password` with argon2id (default parameters, a fresh random salt) into a PHC string.
pub fn hash_password(password: &Password) -> anyhow::Result<SecretString> {
    let hash = Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        // The error says what failed (salt, params), never the input.
        .map_err(|error| anyhow::anyhow!("Failed to hash a password: {error}"))?;
    Ok(SecretString::from(hash.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash matches nothing.
pub fn verify_password(password: &str, hash: &SecretString) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash.expose_secret())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::{Password, hash_password, verify_password};

    #[test]
    fn the_policy_is_12_to_128_characters() {
        assert!(Password::parse("x".repeat(11)).is_err());
        assert!(Password::parse("x".repeat(12)).is_ok());
        assert!(Password::parse("x".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse(" spaces count ".to_owned()).is_ok());
        assert!(Password::parse("correct\0horse battery".to_owned()).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let password = Password::parse("correct horse battery".to_owned()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = Password::parse("correct horse battery".to_owned()).unwrap();
        let hash = hash_password(&password).unwrap();
        assert!(secrecy::ExposeSecret::expose_secret(&hash).starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
    }
}
