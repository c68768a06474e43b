-- Token signing keys, now encrypted at rest: `ciphertext` is the Ed25519 PKCS#8 DER sealed with
-- XChaCha20-Poly1305 under EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY, with a random 24-byte `nonce`
-- and the `kid` as associated data (so a row's ciphertext does not decrypt under another kid).
-- The newest key signs; older keys stay published until no token they signed can still be valid,
-- then their rows are deleted.
--
-- The plaintext keys of 20261123000003 are dropped, not converted: SQL cannot encrypt them, and
-- nothing has issued tokens with them yet, so the service simply creates a new key on first use.
DROP TABLE signing_keys;
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    ciphertext BLOB NOT NULL,
    nonce      BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX signing_keys_by_created ON signing_keys (created_at, kid);
