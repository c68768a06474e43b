-- Token signing keys: Ed25519, PKCS#8 DER. The newest signs; every key here is published in the
-- JWKS so tokens signed before a rotation still verify.
CREATE TABLE signing_keys (
    kid               TEXT PRIMARY KEY,
    private_key_pkcs8 BLOB NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE INDEX signing_keys_by_created ON signing_keys (created_at, kid);
