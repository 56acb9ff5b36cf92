//! Signing keys: ECDSA P-256, as cosign uses them.
//!
//! Private keys are read from PEM: PKCS#8 (`PRIVATE KEY`, what `boxwright
//! keygen` writes), SEC1 (`EC PRIVATE KEY`), and cosign's encrypted format
//! (`ENCRYPTED SIGSTORE PRIVATE KEY`, older `ENCRYPTED COSIGN PRIVATE KEY`):
//! a JSON document `{kdf: {name: scrypt, params: {N, r, p}, salt}, cipher:
//! {name: nacl/secretbox, nonce}, ciphertext}` whose plaintext is the PKCS#8
//! DER, the secretbox key being scrypt(password, salt). The password comes
//! from an environment variable. Public keys are PKIX `PUBLIC KEY` PEM.
//!
//! No error or debug output ever holds key bytes or the password: errors
//! name the file and what is wrong with it, never its content.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, Context as _, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;
use crate::input::{read_capped_string, MAX_KEY};

/// The environment variable holding an encrypted key's password, unless
/// `--key-password-env` names another (cosign's).
pub const DEFAULT_PASSWORD_ENV: &str = "COSIGN_PASSWORD";

const PEM_SIGSTORE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const PEM_COSIGN: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// A private key. Its `Debug` shows nothing of it.
pub struct SigningKey(p256::ecdsa::SigningKey);

/// A public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey(p256::ecdsa::VerifyingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.id())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> SigningKey {
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand::rng().fill_bytes(bytes.as_mut());
            // Out of range (about 2^-32 of all values): draw again.
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(bytes.as_ref()) {
                return SigningKey(k);
            }
        }
    }

    /// Read the key in `path`; an encrypted key's password is the value of
    /// the environment variable `password_env`.
    pub fn load(path: &Path, password_env: &str) -> Result<SigningKey> {
        let text = Zeroizing::new(read_capped_string(path, MAX_KEY).map_err(|e| {
            bad_input(format!(
                "signing key {}: cannot be read: {e}",
                path.display()
            ))
        })?);
        let password = || -> Result<Zeroizing<String>> {
            std::env::var(password_env)
                .map(Zeroizing::new)
                .map_err(|_| {
                    // `from_pem`'s errors get the key's path below.
                    bad_input(format!(
                        "it is encrypted: set its password in ${password_env} \
                     (or name another variable with --key-password-env)"
                    ))
                })
        };
        SigningKey::from_pem(&text, &password)
            .map_err(|e| bad_input(format!("signing key {}: {e}", path.display())))
    }

    /// Parse a PEM private key; `password` is asked for only when the key is
    /// encrypted. Errors say what is wrong, never what the key holds.
    pub fn from_pem(
        text: &str,
        password: &dyn Fn() -> Result<Zeroizing<String>>,
    ) -> Result<SigningKey> {
        let label = pem_label(text).ok_or_else(|| anyhow!("not a PEM file"))?;
        match label {
            "PRIVATE KEY" => {
                let (_, der) = p256::pkcs8::SecretDocument::from_pem(text)
                    .map_err(|_| anyhow!("damaged PKCS#8 PEM"))?;
                from_pkcs8(der.as_bytes())
            }
            "EC PRIVATE KEY" => {
                use p256::elliptic_curve::SecretKey;
                let k = SecretKey::<p256::NistP256>::from_sec1_pem(text)
                    .map_err(|_| anyhow!("not an ECDSA P-256 key (or a damaged SEC1 PEM)"))?;
                Ok(SigningKey(k.into()))
            }
            PEM_SIGSTORE | PEM_COSIGN => {
                let body = pem_body(text).ok_or_else(|| anyhow!("damaged PEM"))?;
                let pw = password()?;
                let der = decrypt(&body, pw.as_bytes())?;
                from_pkcs8(&der)
            }
            "PUBLIC KEY" => Err(anyhow!("this is a public key; signing needs the private key")),
            other => Err(anyhow!("PEM type {other:?} is not a private key boxwright reads (PKCS#8 PRIVATE KEY, EC PRIVATE KEY or {PEM_SIGSTORE})")),
        }
    }

    /// PKCS#8 PEM (`PRIVATE KEY`), unencrypted.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| anyhow!("encoding the private key failed"))
    }

    /// cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` PEM, encrypted with
    /// `password` (scrypt N=65536, r=8, p=1, as cosign writes today).
    pub fn to_cosign_pem(&self, password: &str) -> Result<Zeroizing<String>> {
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|_| anyhow!("encoding the private key failed"))?;
        let json = encrypt(der.as_bytes(), password.as_bytes(), 16)?;
        Ok(Zeroizing::new(pem_encode(PEM_SIGSTORE, &json)))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(*self.0.verifying_key())
    }

    /// ECDSA P-256 over SHA-256 of `msg`, DER-encoded (what cosign stores).
    /// Deterministic (RFC 6979): the same key and message give the same bytes.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.0.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
}

impl VerifyingKey {
    /// Read a PKIX `PUBLIC KEY` PEM (cosign.pub).
    pub fn load(path: &Path) -> Result<VerifyingKey> {
        let text = read_capped_string(path, MAX_KEY).map_err(|e| {
            bad_input(format!(
                "public key {}: cannot be read: {e}",
                path.display()
            ))
        })?;
        VerifyingKey::from_pem(&text)
            .map_err(|e| bad_input(format!("public key {}: {e}", path.display())))
    }

    pub fn from_pem(text: &str) -> Result<VerifyingKey> {
        match pem_label(text) {
            Some("PUBLIC KEY") => p256::ecdsa::VerifyingKey::from_public_key_pem(text)
                .map(VerifyingKey)
                .map_err(|_| {
                    anyhow!(
                        "not an ECDSA P-256 public key ({}); boxwright verifies ECDSA P-256 signatures, as cosign makes them",
                        public_key_kind(text)
                    )
                }),
            Some(l) if l.contains("PRIVATE") => Err(anyhow!(
                "this is a private key; verifying needs the public key"
            )),
            _ => Err(anyhow!("not a PEM public key")),
        }
    }

    pub fn to_pem(&self) -> Result<String> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| anyhow!("encoding the public key failed"))
    }

    /// Whether `der_sig` is a valid signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], der_sig: &[u8]) -> bool {
        p256::ecdsa::Signature::from_der(der_sig).is_ok_and(|sig| self.0.verify(msg, &sig).is_ok())
    }

    /// A short name for the key in reports: `sha256:` + 12 hex digits of its
    /// DER encoding.
    pub fn id(&self) -> String {
        use sha2::Digest as _;
        let der = self
            .0
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        format!("sha256:{}", &hex::encode(sha2::Sha256::digest(der))[..12])
    }
}

fn from_pkcs8(der: &[u8]) -> Result<SigningKey> {
    match p256::ecdsa::SigningKey::from_pkcs8_der(der) {
        Ok(k) => Ok(SigningKey(k)),
        Err(_) => {
            let kind = p256::pkcs8::PrivateKeyInfo::try_from(der)
                .map(|info| algorithm_name(&info.algorithm))
                .unwrap_or_else(|_| "not a PKCS#8 key".into());
            Err(anyhow!(
                "not an ECDSA P-256 key ({kind}); boxwright signs with ECDSA P-256 as cosign does"
            ))
        }
    }
}

/// What the PEM public key `text` holds, for an error.
fn public_key_kind(text: &str) -> String {
    use p256::pkcs8::spki::{Document, SubjectPublicKeyInfoRef};
    Document::from_pem(text)
        .ok()
        .and_then(|(_, doc)| {
            SubjectPublicKeyInfoRef::try_from(doc.as_bytes())
                .ok()
                .map(|info| algorithm_name(&info.algorithm))
        })
        .unwrap_or_else(|| "not a PKIX public key".into())
}

fn algorithm_name(alg: &p256::pkcs8::AlgorithmIdentifierRef<'_>) -> String {
    let oid = alg.oid.to_string();
    let params = alg
        .parameters_oid()
        .map(|o| o.to_string())
        .unwrap_or_default();
    match (oid.as_str(), params.as_str()) {
        ("1.2.840.113549.1.1.1", _) => "an RSA key".into(),
        ("1.3.101.112", _) => "an Ed25519 key".into(),
        ("1.2.840.10045.2.1", "1.3.132.0.34") => "an ECDSA P-384 key".into(),
        ("1.2.840.10045.2.1", "1.3.132.0.35") => "an ECDSA P-521 key".into(),
        ("1.2.840.10045.2.1", p) => format!("an EC key on curve {p}"),
        (o, _) => format!("a key of algorithm {o}"),
    }
}

/// The label of the first PEM block.
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(&text[start..start + end])
}

/// The decoded body of the first PEM block.
fn pem_body(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let begin = text.find("-----BEGIN ")?;
    let after = begin + text[begin..].find('\n')? + 1;
    let end = after + text[after..].find("-----END ")?;
    let b64: String = text[after..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok().map(Zeroizing::new)
}

fn pem_encode(label: &str, body: &[u8]) -> String {
    let b64 = B64.encode(body);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// cosign's (go-securesystemslib's) encrypted-data document.
#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

fn scrypt_key(password: &[u8], salt: &[u8], p: &ScryptParams) -> Result<Zeroizing<[u8; 32]>> {
    // Limits keep a hostile key file from asking for gigabytes.
    let log_n = match p.n {
        n if n.is_power_of_two() && (2..=1 << 20).contains(&n) => n.trailing_zeros() as u8,
        _ => return Err(anyhow!("unsupported scrypt parameters")),
    };
    if !(1..=32).contains(&p.r) || !(1..=16).contains(&p.p) {
        return Err(anyhow!("unsupported scrypt parameters"));
    }
    let params = scrypt::Params::new(log_n, p.r, p.p, 32)
        .map_err(|_| anyhow!("unsupported scrypt parameters"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut())
        .map_err(|_| anyhow!("unsupported scrypt parameters"))?;
    Ok(key)
}

/// Open cosign's encrypted document `json` with `password`.
fn decrypt(json: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let doc: Encrypted =
        serde_json::from_slice(json).map_err(|_| anyhow!("damaged encrypted key document"))?;
    if doc.kdf.name != "scrypt" || doc.cipher.name != "nacl/secretbox" {
        return Err(anyhow!(
            "encrypted with {}/{}; boxwright reads scrypt/nacl/secretbox",
            doc.kdf.name,
            doc.cipher.name
        ));
    }
    if doc.cipher.nonce.len() != 24 {
        return Err(anyhow!("damaged encrypted key document (nonce)"));
    }
    let key = scrypt_key(password, &doc.kdf.salt, &doc.kdf.params)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(
            doc.cipher.nonce.as_slice().into(),
            doc.ciphertext.as_slice(),
        )
        .map(Zeroizing::new)
        .map_err(|_| anyhow!("wrong password, or the key file is damaged"))
}

/// Encrypt `plaintext` as cosign does, with scrypt N = 2^log_n.
fn encrypt(plaintext: &[u8], password: &[u8], log_n: u8) -> Result<Vec<u8>> {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut nonce);
    let params = ScryptParams {
        n: 1 << log_n,
        r: 8,
        p: 1,
    };
    let key = scrypt_key(password, &salt, &params)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(nonce.as_slice().into(), plaintext)
        .map_err(|_| anyhow!("encrypting the key failed"))?;
    let doc = Encrypted {
        kdf: Kdf {
            name: "scrypt".into(),
            params,
            salt: salt.to_vec(),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    serde_json::to_vec(&doc).context("encoding the encrypted key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_of_another_algorithm_is_named() {
        let rsa = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC7yb30m6kup0sxKuT1PDEGIBKl
kt3AkXeg3vhWNCrv48e5Qd3kR+/OxRDkXDCKlJuIx3I7Ihe3DHmBGurFLxIBWAXf
JapFPuQIre8901jGo7WtK5JzM8m0a0r1Vn83MBlyvPfuMVEMEa549fOYlo6I5KZJ
KH8O1xXZHmmMSnZLmQIDAQAB
-----END PUBLIC KEY-----
";
        let e = VerifyingKey::from_pem(rsa).err().map(|e| e.to_string());
        let e = e.expect("an RSA key was taken");
        assert!(e.contains("an RSA key"), "{e}");
        let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let e = VerifyingKey::from_pem(junk).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not a PKIX public key")));
    }

    fn pw(p: &'static str) -> impl Fn() -> Result<Zeroizing<String>> {
        move || Ok(Zeroizing::new(p.to_string()))
    }

    #[test]
    fn go_securesystemslib_vector_decrypts() {
        // The legacy-parameter vector of go-securesystemslib's encrypted package.
        let doc = br#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#;
        assert_eq!(&*decrypt(doc, b"supersecret").unwrap(), b"reallyimportant");
        let e = decrypt(doc, b"wrong").unwrap_err().to_string();
        assert!(e.contains("wrong password"), "{e}");
    }

    #[test]
    fn keys_round_trip_through_every_format_and_sign() {
        let k = SigningKey::generate();
        let plain = k.to_pkcs8_pem().unwrap();
        let back = SigningKey::from_pem(&plain, &pw("unused")).unwrap();
        assert_eq!(back.verifying_key(), k.verifying_key());

        let enc = k.to_cosign_pem("s3cret").unwrap();
        assert!(enc.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = SigningKey::from_pem(&enc, &pw("s3cret")).unwrap();
        let e = SigningKey::from_pem(&enc, &pw("nope"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("nope"), "{e}");

        let public = VerifyingKey::from_pem(&k.verifying_key().to_pem().unwrap()).unwrap();
        let sig = back.sign(b"payload");
        assert_eq!(
            sig,
            k.sign(b"payload"),
            "RFC 6979 signatures are deterministic"
        );
        assert!(public.verify(b"payload", &sig));
        assert!(!public.verify(b"payload!", &sig));
        assert!(format!("{k:?}").contains("redacted"));
    }

    #[test]
    fn an_encrypted_key_without_its_password_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.key");
        let enc = SigningKey::generate().to_cosign_pem("s3cret").unwrap();
        std::fs::write(&path, enc).unwrap();
        let var = "BOXWRIGHT_TEST_PASSWORD_NEVER_SET";
        let e = SigningKey::load(&path, var).unwrap_err().to_string();
        assert_eq!(e.matches(&*path.to_string_lossy()).count(), 1, "{e}");
        assert!(e.contains(&format!("${var}")), "{e}");
    }

    #[test]
    fn other_key_types_are_named() {
        // An Ed25519 PKCS#8 key (RFC 8410's example).
        let ed = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let e = SigningKey::from_pem(ed, &pw("")).unwrap_err().to_string();
        assert!(e.contains("Ed25519"), "{e}");
        let e = SigningKey::from_pem("hello", &pw(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a PEM"), "{e}");
    }
}
