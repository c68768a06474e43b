//! jsonwebtoken's cryptography, limited to the one algorithm Emporium signs and accepts: EdDSA
//! over Ed25519, with `ed25519-dalek`.
//!
//! jsonwebtoken's own `rust_crypto` backend also builds RSA, P-256, P-384 and HMAC, none of which
//! the verifier may ever accept (the header's `alg` is pinned before any key is looked at). This
//! provider cannot even construct them: asking it for another algorithm is an error, never a
//! panic.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

/// Makes the EdDSA-only provider jsonwebtoken's provider for this process; idempotent and cheap. Called by
/// everything in the chassis that signs or verifies before it does so.
pub fn install() {
    // `Err` means a provider is installed already: ours, by an earlier call.
    let _ = PROVIDER.install_default();
}

/// The EdDSA-only provider.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        ed_pub_components_from_private_key,
        ..KeyUtils::new_unimplemented()
    },
};

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    if *algorithm != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(key.as_bytes())
        .map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(Signer(key)))
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let bytes: &[u8; 32] = key
        .try_get_as_bytes()?
        .try_into()
        .map_err(|_| ErrorKind::InvalidEddsaKey)?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(Verifier(key)))
}

fn ed_pub_components_from_private_key(pkcs8_der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::InvalidEddsaKey.into());
    }
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8_der)
        .map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(key.verifying_key().to_bytes().to_vec())
}

struct Signer(ed25519_dalek::SigningKey);

impl jsonwebtoken::signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(message).to_bytes().to_vec())
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct Verifier(ed25519_dalek::VerifyingKey);

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Verifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        let signature = ed25519_dalek::Signature::from_slice(signature)?;
        // Strict: refuses the malleable and small-order encodings plain `verify` lets through.
        self.0.verify_strict(message, &signature)
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_algorithms_are_errors_not_panics() {
        install();
        let secret = EncodingKey::from_secret(b"secret");
        for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
            let error = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(algorithm),
                &serde_json::json!({}),
                &secret,
            )
            .unwrap_err();
            assert_eq!(*error.kind(), ErrorKind::InvalidAlgorithm, "{algorithm:?}");
        }
    }
}
