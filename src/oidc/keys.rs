//! Signing keys: generation (aws-lc-rs), the public JWK, signing JWTs with a key parsed once, and verifying
//! tokens against a tenant's published keys (jsonwebtoken with its aws-lc-rs backend).
//!
//! Invariants:
//! - A private key leaves this module only as PKCS#8 DER sealed by the caller with the master key; a parsed key
//!   lives in memory in a `KeyRing` (cached per tenant) so signing never re-parses or decrypts.
//! - `kid` is the RFC 7638 JWK thumbprint (SHA-256) of the public key.
//! - Verification pins the algorithm to the one recorded for the `kid`: `none`, HMAC and any algorithm other
//!   than the key's are refused before a signature is looked at.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SigningAlg {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(raw: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::Rs256 => Algorithm::RS256,
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
        }
    }

    /// RSA signing takes about a millisecond: it runs on the blocking pool, the others on the request task.
    pub fn is_slow(self) -> bool {
        self == SigningAlg::Rs256
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A published public key (RFC 7517) as `public_jwk` builds it: RSA keys carry `n` and `e`, P-256 keys `crv`,
/// `x` and `y`, Ed25519 keys (`OKP`) `crv` and `x`. Documents the JWKS and the admin key list; never built.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PublicJwk {
    /// `RSA`, `EC` or `OKP`.
    kty: String,
    /// The RFC 7638 thumbprint of the key.
    kid: String,
    alg: SigningAlg,
    /// Always `sig`.
    #[serde(rename = "use")]
    use_: String,
    /// RSA modulus (base64url).
    n: Option<String>,
    /// RSA exponent (base64url).
    e: Option<String>,
    /// `P-256` or `Ed25519`.
    crv: Option<String>,
    /// EC or OKP x coordinate / public key (base64url).
    x: Option<String>,
    /// EC y coordinate (base64url).
    y: Option<String>,
}

/// A new key pair: its id, public JWK (JSON text) and the private key as PKCS#8 DER (to be sealed).
pub struct GeneratedKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub public_jwk: String,
    pub pkcs8: Vec<u8>,
}

/// Generates a key pair (RSA 2048 takes up to a few hundred milliseconds: call it off the request task).
pub fn generate(alg: SigningAlg) -> Result<GeneratedKey> {
    let failed = |what: &str| Error::internal(format!("generate {alg} key: {what}"));
    let pkcs8 = match alg {
        SigningAlg::Rs256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("rsa"))?;
            pair.as_der().map_err(|_| failed("pkcs8"))?.as_ref().to_vec()
        }
        SigningAlg::Es256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| failed("p256"))?;
            pair.to_pkcs8v1().map_err(|_| failed("pkcs8"))?.as_ref().to_vec()
        }
        SigningAlg::EdDsa => {
            let pair = Ed25519KeyPair::generate().map_err(|_| failed("ed25519"))?;
            pair.to_pkcs8v1().map_err(|_| failed("pkcs8"))?.as_ref().to_vec()
        }
    };
    let parsed = Signer::parse(alg, &pkcs8)?;
    let (public_jwk, kid) = public_jwk(alg, &parsed);
    Ok(GeneratedKey { kid, alg, public_jwk: public_jwk.to_string(), pkcs8 })
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    fn parse(alg: SigningAlg, pkcs8: &[u8]) -> Result<Signer> {
        let bad = |_| Error::internal(format!("stored {alg} signing key does not parse"));
        Ok(match alg {
            SigningAlg::Rs256 => Signer::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?),
            SigningAlg::Es256 => {
                Signer::Ec(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(bad)?)
            }
            SigningAlg::EdDsa => Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?),
        })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| Error::internal("signing failed");
        match self {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature).map_err(failed)?;
                Ok(signature)
            }
            Signer::Ec(pair) => Ok(pair.sign(&SystemRandom::new(), message).map_err(failed)?.as_ref().to_vec()),
            Signer::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK (with `kid`, `alg`, `use`) and the kid, which is the RFC 7638 thumbprint.
fn public_jwk(alg: SigningAlg, signer: &Signer) -> (Value, String) {
    // Members in lexicographic order, as the thumbprint requires.
    let (members, thumb_input) = match signer {
        Signer::Rsa(pair) => {
            let key = pair.public_key();
            let n = b64(key.modulus().big_endian_without_leading_zero());
            let e = b64(key.exponent().big_endian_without_leading_zero());
            let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            (json!({"kty": "RSA", "n": n, "e": e}), input)
        }
        Signer::Ec(pair) => {
            let point = pair.public_key().as_ref();
            let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
            let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            (json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}), input)
        }
        Signer::Ed(pair) => {
            let x = b64(pair.public_key().as_ref());
            let input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
            (json!({"kty": "OKP", "crv": "Ed25519", "x": x}), input)
        }
    };
    let kid = b64(&Sha256::digest(thumb_input.as_bytes()));
    let mut jwk = members;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!("sig");
    (jwk, kid)
}

/// The `typ` header of a JWT this server signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typ {
    /// ID tokens.
    Jwt,
    /// Access tokens (RFC 9068).
    AccessToken,
}

/// A parsed private key with its pre-encoded protected headers.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    signer: Signer,
    header_jwt: String,
    header_at: String,
}

impl SigningKey {
    pub fn open(kid: &str, alg: SigningAlg, pkcs8: &[u8]) -> Result<SigningKey> {
        let signer = Signer::parse(alg, pkcs8)?;
        let header = |typ: &str| b64(json!({"alg": alg.as_str(), "typ": typ, "kid": kid}).to_string().as_bytes());
        Ok(SigningKey { kid: kid.to_owned(), alg, signer, header_jwt: header("JWT"), header_at: header("at+jwt") })
    }

    /// The compact JWS of `claims`.
    pub fn sign(&self, typ: Typ, claims: &impl Serialize) -> Result<String> {
        let payload = serde_json::to_vec(claims).map_err(Error::internal)?;
        let header = match typ {
            Typ::Jwt => &self.header_jwt,
            Typ::AccessToken => &self.header_at,
        };
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 400);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.signer.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// `at_hash`/`c_hash` of OIDC Core §3.1.3.6: the left half of the hash of `value`, base64url. All three
    /// algorithms here hash with SHA-256 (EdDSA with Ed25519 included, per the OIDC registry practice).
    pub fn half_hash(&self, value: &str) -> String {
        let digest = Sha256::digest(value.as_bytes());
        b64(&digest[..16])
    }
}

/// A published public key.
pub struct PublicKey {
    pub alg: SigningAlg,
    decoding: DecodingKey,
}

impl PublicKey {
    pub fn from_jwk(alg: SigningAlg, jwk: &Value) -> Result<PublicKey> {
        let s = |k: &str| jwk.get(k).and_then(Value::as_str).unwrap_or_default();
        let bad = |_| Error::internal("stored public key does not parse");
        let decoding = match alg {
            SigningAlg::Rs256 => DecodingKey::from_rsa_components(s("n"), s("e")).map_err(bad)?,
            SigningAlg::Es256 => DecodingKey::from_ec_components(s("x"), s("y")).map_err(bad)?,
            SigningAlg::EdDsa => DecodingKey::from_ed_components(s("x")).map_err(bad)?,
        };
        Ok(PublicKey { alg, decoding })
    }
}

/// Why a token was not accepted (logged at debug; clients see only `invalid_token`).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("not a JWT")]
    Malformed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("algorithm does not match the key")]
    WrongAlgorithm,
    #[error("wrong token type")]
    WrongType,
    #[error("{0}")]
    Invalid(jsonwebtoken::errors::Error),
}

/// A tenant's keys: the active signing key and every published public key by kid, with the JWKS document.
pub struct KeyRing {
    /// Unique per ring built (`KeyRing::next_generation`): a rebuilt ring (rotation, retirement, new settings)
    /// never reuses an earlier ring's verified tokens.
    pub generation: u64,
    /// Whether the tenant was active when the ring was built (`Oidc::published_ring` trusts only such rings;
    /// a status change drops the ring).
    pub tenant_active: bool,
    pub issuer: String,
    pub active: Arc<SigningKey>,
    pub public: HashMap<String, PublicKey>,
    /// `{"keys":[…]}` as served.
    pub jwks: axum::body::Bytes,
    pub jwks_etag: String,
}

impl KeyRing {
    /// A generation number no ring built before has had.
    pub fn next_generation() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks signature, algorithm, `typ`, issuer and (unless `allow_expired`) expiry; returns the claims.
    pub fn verify(&self, token: &str, typ: Typ, allow_expired: bool) -> std::result::Result<Value, Rejected> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Malformed)?;
        let kid = header.kid.as_deref().ok_or(Rejected::UnknownKey)?;
        let key = self.public.get(kid).ok_or(Rejected::UnknownKey)?;
        if header.alg != key.alg.jwt() {
            return Err(Rejected::WrongAlgorithm);
        }
        let typ_ok = match typ {
            Typ::AccessToken => header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")),
            Typ::Jwt => header.typ.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("JWT")),
        };
        if !typ_ok {
            return Err(Rejected::WrongType);
        }
        let mut validation = Validation::new(key.alg.jwt());
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.validate_exp = !allow_expired;
        validation.required_spec_claims = ["exp", "iss", "sub"].iter().map(|s| s.to_string()).collect();
        jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(Rejected::Invalid)
    }
}

/// Access tokens whose signature and claims passed `KeyRing::verify` recently, so that a resource server
/// introspecting (or calling userinfo with) the same token again skips the signature check, which is most of the
/// cost of an introspection (an ES256 verification is ~40 µs, the lookup ~1 µs).
///
/// Keyed by SHA-256 of the ring's generation and the whole token, so a changed byte anywhere, another tenant or a
/// rebuilt ring (rotation, retirement) misses. Expiry is checked again on every hit. Only the signature check is
/// cached: revocation and session state are still read on every call. Bounded in memory and age.
pub struct VerifiedTokens(moka::sync::Cache<[u8; 32], (Arc<Value>, u32)>);

impl VerifiedTokens {
    /// A cache holding about `max_bytes` of claims (each entry weighs four times its token's length, a generous
    /// estimate of the parsed claims plus the entry itself).
    pub fn new(max_bytes: u64) -> VerifiedTokens {
        VerifiedTokens(
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, (_, weight): &(Arc<Value>, u32)| *weight)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
        )
    }

    /// `ring.verify(token, Typ::AccessToken, false)`, answered from the cache when this exact token passed it.
    pub fn verify_access(&self, ring: &KeyRing, token: &str) -> std::result::Result<Value, Rejected> {
        use sha2::Digest;
        let key: [u8; 32] =
            sha2::Sha256::new().chain_update(ring.generation.to_be_bytes()).chain_update(token).finalize().into();
        let now = crate::now_unix();
        if let Some((claims, _)) = self.0.get(&key)
            && claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp >= now)
        {
            return Ok(Value::clone(&claims));
        }
        let claims = ring.verify(token, Typ::AccessToken, false)?;
        let weight = u32::try_from(token.len().saturating_mul(4)).unwrap_or(u32::MAX);
        self.0.insert(key, (Arc::new(claims.clone()), weight));
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies_and_rejects_tampering() {
        for alg in SigningAlg::ALL {
            let generated = generate(alg).unwrap();
            let key = SigningKey::open(&generated.kid, alg, &generated.pkcs8).unwrap();
            let jwk: Value = serde_json::from_str(&generated.public_jwk).unwrap();
            let mut public = HashMap::new();
            public.insert(generated.kid.clone(), PublicKey::from_jwk(alg, &jwk).unwrap());
            let ring = KeyRing {
                generation: KeyRing::next_generation(),
                tenant_active: true,
                issuer: "https://id.example/t/acme".into(),
                active: Arc::new(key),
                public,
                jwks: axum::body::Bytes::new(),
                jwks_etag: String::new(),
            };
            let exp = crate::now_unix() + 60;
            let claims = json!({"iss": "https://id.example/t/acme", "sub": "u1", "exp": exp});
            let token = ring.active.sign(Typ::AccessToken, &claims).unwrap();
            assert_eq!(ring.verify(&token, Typ::AccessToken, false).unwrap()["sub"], "u1", "{alg}");
            assert!(matches!(ring.verify(&token, Typ::Jwt, false), Err(Rejected::WrongType)));
            // A changed payload fails.
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = b64(json!({"iss": "https://id.example/t/acme", "sub": "u2", "exp": exp}).to_string().as_bytes());
            assert!(ring.verify(&parts.join("."), Typ::AccessToken, false).is_err(), "{alg}");
            // `alg: none` fails.
            let none = b64(json!({"alg": "none", "typ": "at+jwt", "kid": generated.kid}).to_string().as_bytes());
            let unsigned = format!("{none}.{}.", parts[1]);
            assert!(ring.verify(&unsigned, Typ::AccessToken, false).is_err(), "{alg}");
            // Another issuer fails.
            let other = ring.active.sign(Typ::AccessToken, &json!({"iss": "x", "sub": "u1", "exp": exp})).unwrap();
            assert!(ring.verify(&other, Typ::AccessToken, false).is_err());
        }
    }

    #[test]
    fn verified_tokens_skip_only_the_signature_check_of_the_same_token_and_ring() {
        let generated = generate(SigningAlg::Es256).unwrap();
        let key = Arc::new(SigningKey::open(&generated.kid, SigningAlg::Es256, &generated.pkcs8).unwrap());
        let jwk: Value = serde_json::from_str(&generated.public_jwk).unwrap();
        let ring = |generation: u64, with_key: bool| {
            let mut public = HashMap::new();
            if with_key {
                public.insert(generated.kid.clone(), PublicKey::from_jwk(SigningAlg::Es256, &jwk).unwrap());
            }
            KeyRing {
                generation,
                tenant_active: true,
                issuer: "https://id.example/t/acme".into(),
                active: key.clone(),
                public,
                jwks: axum::body::Bytes::new(),
                jwks_etag: String::new(),
            }
        };
        let generation = KeyRing::next_generation();
        let (full, keyless) = (ring(generation, true), ring(generation, false));
        let cache = VerifiedTokens::new(1 << 20);
        let claims = |exp: i64| json!({"iss": "https://id.example/t/acme", "sub": "u1", "exp": exp});
        let token = key.sign(Typ::AccessToken, &claims(crate::now_unix() + 1)).unwrap();
        // Before a first full check nothing is cached: the keyless ring refuses.
        assert!(matches!(cache.verify_access(&keyless, &token), Err(Rejected::UnknownKey)));
        assert_eq!(cache.verify_access(&full, &token).unwrap()["sub"], "u1");
        // Same generation and token: answered from the cache (the keyless ring could not have verified it).
        assert_eq!(cache.verify_access(&keyless, &token).unwrap()["sub"], "u1");
        // One byte changed, or a rebuilt ring: a full check, which fails here.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(cache.verify_access(&full, &tampered).is_err());
        assert!(cache.verify_access(&ring(KeyRing::next_generation(), false), &token).is_err());
        // Expiry is checked on every hit.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(cache.verify_access(&keyless, &token).is_err());
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1's example key and thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let input = format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#);
        assert_eq!(b64(&Sha256::digest(input.as_bytes())), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
