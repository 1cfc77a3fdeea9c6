//! The one error type of the host transport.
//!
//! Every `Display` is a short sentence fit to show a user as a host's `message` (spec 3.3):
//! the caller stores it as it is, so it must never carry key material, and it names the
//! address or user so an operator can act on it without reading logs.

/// Why an SSH operation against a host failed.
///
/// The variants are the distinctions the control plane acts on: `Connect` and `Timeout` are
/// "the host is not there (yet)" (a rolling restart keeps polling), `HostKeyMismatch` is a
/// security event (never retried silently), `AuthRejected` and `InvalidKey` need an operator
/// to fix the registration, `Protocol` is everything else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// TCP could not be established: refused, unreachable, name not resolved, reset before
    /// the SSH greeting. The text is the whole message, e.g. `Connection refused: 127.0.0.2:2222`.
    #[error("{0}")]
    Connect(String),
    /// The connection (TCP + SSH handshake + authentication) exceeded the target's
    /// `connect_timeout`, or the command exceeded its own limit. The text is the whole message.
    #[error("{0}")]
    Timeout(String),
    /// The server presented a host key other than the pinned one. Checked during the key
    /// exchange, before the client authenticates or runs anything. The message is the one
    /// the spec fixes (6.1); the two fingerprints are for logs and for the operator's view.
    #[error("Host key changed.")]
    HostKeyMismatch {
        /// The pinned fingerprint (`SHA256:...`).
        expected: String,
        /// The fingerprint the server presented on this connection.
        actual: String,
    },
    /// The server refused the key for this user.
    #[error("Authentication rejected for user '{user}'.")]
    AuthRejected {
        /// The remote user the key was offered for.
        user: String,
    },
    /// The private key of the target cannot be used (malformed, encrypted, unsupported
    /// algorithm). Detected before any network traffic.
    #[error("{0}")]
    InvalidKey(String),
    /// The peer broke the SSH protocol or closed the session in an unexpected way.
    #[error("SSH error: {0}")]
    Protocol(String),
}

impl SshError {
    /// True when the failure says "the host cannot be reached right now" rather than "the
    /// host answered and refused": a caller waiting for a rebooting host keeps polling on
    /// these and gives up at once on the others.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SshError::Connect(_) | SshError::Timeout(_))
    }
}
