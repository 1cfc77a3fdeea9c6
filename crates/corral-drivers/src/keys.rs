//! Private key validation.
//!
//! A host is registered with a private key (spec 5.3) long before anything connects with it, so
//! the key is checked at registration: a key Corral could never use must be refused with a clear
//! 400, not discovered later as a failed investigation. The same decoder is used by the transport,
//! so "accepted here" means "usable for authentication".

use russh::keys::ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};

/// What a valid private key is, for display and for matching against `authorized_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The SSH algorithm name: `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`,
    /// `ecdsa-sha2-nistp384` or `ecdsa-sha2-nistp521`.
    pub algorithm: String,
    /// SHA-256 fingerprint of the public half, as `ssh-keygen -lf` prints it
    /// (`SHA256:<base64 without padding>`).
    pub public_fingerprint: String,
}

/// RSA keys shorter than this are refused: OpenSSH servers reject them (since 8.x), so
/// accepting one would only postpone the failure to the first connection.
const MIN_RSA_BITS: u32 = 1024;

/// Validates a private key given as text and describes it.
///
/// Accepted: OpenSSH (`BEGIN OPENSSH PRIVATE KEY`), PKCS#1 RSA (`BEGIN RSA PRIVATE KEY`), SEC1 EC
/// (`BEGIN EC PRIVATE KEY`) and PKCS#8 (`BEGIN PRIVATE KEY`), holding RSA (at least 1024 bits),
/// ECDSA P-256/P-384/P-521 or Ed25519. Refused with a sentence saying why: DSA, keys protected by
/// a passphrase (Corral runs unattended), public keys, security-key (`sk-`) keys and anything
/// else. Messages never quote the input.
pub fn parse_private_key(text: &str) -> Result<KeyInfo, String> {
    let key = decode_private_key(text)?;
    Ok(KeyInfo {
        algorithm: key.algorithm().as_str().to_owned(),
        public_fingerprint: key.public_key().fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// Decodes and validates a private key; the transport authenticates with the result.
pub(crate) fn decode_private_key(text: &str) -> Result<PrivateKey, String> {
    let normalized = normalize(text);
    let label = pem_label(&normalized)?;
    match label.as_str() {
        "OPENSSH PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => return Err(ENCRYPTED.to_owned()),
        "DSA PRIVATE KEY" => return Err(DSA.to_owned()),
        l if l.contains("PUBLIC KEY") => return Err(PUBLIC.to_owned()),
        l => {
            return Err(format!(
                "Unsupported key format '{l}': expected an OpenSSH or PEM private key."
            ));
        }
    }
    // Legacy PEM encryption (`ssh-keygen -m PEM -N <passphrase>`) is announced in a header.
    if normalized
        .lines()
        .any(|l| l.starts_with("Proc-Type:") && l.contains("ENCRYPTED"))
    {
        return Err(ENCRYPTED.to_owned());
    }
    let key = russh::keys::decode_secret_key(&normalized, None).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => ENCRYPTED.to_owned(),
        russh::keys::Error::UnknownAlgorithm(_) | russh::keys::Error::UnsupportedKeyType { .. } => {
            UNSUPPORTED_ALGORITHM.to_owned()
        }
        other => format!("The private key cannot be read ({other})."),
    })?;
    if key.is_encrypted() {
        return Err(ENCRYPTED.to_owned());
    }
    match key.algorithm() {
        Algorithm::Ed25519 => {}
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521,
        } => {}
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map(|k| k.key_size()).unwrap_or(0);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits is too short: at least {MIN_RSA_BITS} bits are needed."
                ));
            }
        }
        Algorithm::Dsa => return Err(DSA.to_owned()),
        Algorithm::SkEcdsaSha2NistP256 | Algorithm::SkEd25519 => {
            return Err(
                "Security-key (sk-) private keys need their hardware token and cannot be used \
                 by Corral."
                    .to_owned(),
            );
        }
        _ => return Err(UNSUPPORTED_ALGORITHM.to_owned()),
    }
    Ok(key)
}

const ENCRYPTED: &str = "The private key is protected by a passphrase; Corral needs an unencrypted key.";
const DSA: &str = "DSA keys are not supported; use an Ed25519, ECDSA or RSA key.";
const PUBLIC: &str = "This is a public key; the private key is needed.";
const UNSUPPORTED_ALGORITHM: &str =
    "Unsupported key algorithm; use an Ed25519, ECDSA (P-256, P-384, P-521) or RSA key.";

/// Keys arrive pasted through JSON and base64 from every kind of client: CRLF line ends,
/// indentation and blank lines are common, and the decoder wants bare lines.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The label of the first `-----BEGIN <label>-----` line, or a message for input that is not
/// PEM-armoured at all (with a hint for the common mistakes).
fn pem_label(normalized: &str) -> Result<String, String> {
    for line in normalized.lines() {
        if let Some(rest) = line.strip_prefix("-----BEGIN ")
            && let Some(label) = rest.strip_suffix("-----")
        {
            return Ok(label.trim().to_owned());
        }
    }
    let first = normalized.lines().next().unwrap_or("");
    let public_prefixes = [
        "ssh-",
        "ecdsa-sha2-",
        "sk-ssh-",
        "sk-ecdsa-",
        "---- BEGIN SSH2 PUBLIC KEY",
    ];
    if public_prefixes.iter().any(|p| first.starts_with(p)) {
        return Err(PUBLIC.to_owned());
    }
    if first.starts_with("PuTTY-User-Key-File") {
        return Err(
            "PuTTY keys are not supported; export the key in OpenSSH format (puttygen -O \
             private-openssh)."
                .to_owned(),
        );
    }
    if normalized.is_empty() {
        return Err("The private key is empty.".to_owned());
    }
    Err(
        "Not a private key: expected an OpenSSH or PEM private key (\"-----BEGIN ... PRIVATE \
         KEY-----\")."
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8410 section 10.3: an Ed25519 key in PKCS#8 (`openssl genpkey -algorithm ed25519`).
    const ED25519_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----";

    #[test]
    fn ed25519_pkcs8_is_accepted() {
        let info = parse_private_key(ED25519_PKCS8).unwrap();
        assert_eq!(info.algorithm, "ssh-ed25519");
        assert!(info.public_fingerprint.starts_with("SHA256:"));
        assert_eq!(info.public_fingerprint.len(), "SHA256:".len() + 43);
    }

    #[test]
    fn crlf_indentation_and_blank_lines_are_tolerated() {
        let messy = format!("\r\n  {}\r\n\r\n", ED25519_PKCS8.replace('\n', "\r\n    "));
        assert_eq!(parse_private_key(&messy), parse_private_key(ED25519_PKCS8));
    }

    #[test]
    fn garbage_empty_and_public_keys_are_refused_with_clear_messages() {
        let cases = [
            ("", "empty"),
            ("hello world", "Not a private key"),
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2pr+Bfus1hvPof4Wb/plZCzSbqadHH0u+/f4ODtKnE x",
                "public key",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----",
                "public key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                "Unsupported key format",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 !!\n-----END OPENSSH PRIVATE KEY-----",
                "cannot be read",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                "cannot be read",
            ),
            ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none", "PuTTY"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
                "passphrase",
            ),
        ];
        for (input, needle) in cases {
            let err = parse_private_key(input).unwrap_err();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.ends_with('.'), "{err}");
        }
    }

    #[test]
    fn error_messages_never_quote_key_material() {
        let secret_body = "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp";
        let broken = format!("-----BEGIN PRIVATE KEY-----\n{secret_body}\n-----END PRIVATE KEY-----");
        let err = parse_private_key(&broken).unwrap_err();
        assert!(!err.contains(secret_body), "{err}");
        assert!(!err.contains("MC4CAQ"), "{err}");
    }
}
