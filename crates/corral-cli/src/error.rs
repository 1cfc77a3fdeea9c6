//! The CLI's one error type: a message, the exit code it maps to, and the server's request id.

use std::fmt;

/// Exit codes (docs/cli.md): scripts branch on them, so they never change meaning.
pub mod exit {
    pub const OK: u8 = 0;
    /// The server failed, or an action it ran failed (also a `--wait` that timed out).
    pub const FAILURE: u8 = 1;
    /// Bad command line or bad input (also a 400 from the server, an ambiguous name).
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const CONFLICT: u8 = 4;
    /// 401 or 403.
    pub const DENIED: u8 = 5;
}

#[derive(Debug, Clone)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    /// `X-Request-Id` of the failed request, to find its server log lines.
    pub request_id: Option<String>,
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
            request_id: None,
        }
    }
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(exit::USAGE, message)
    }
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError::new(exit::FAILURE, message)
    }
    pub fn not_found(message: impl Into<String>) -> CliError {
        CliError::new(exit::NOT_FOUND, message)
    }

    /// The exit code an HTTP status maps to.
    pub fn code_for_status(status: u16) -> u8 {
        match status {
            400 | 405 | 413 => exit::USAGE,
            401 | 403 => exit::DENIED,
            404 => exit::NOT_FOUND,
            409 => exit::CONFLICT,
            _ => exit::FAILURE,
        }
    }

    /// An error answer: the contract's JSON body (`message`) when there is one, else the text.
    pub fn from_answer(status: u16, body: &[u8], request_id: Option<String>) -> CliError {
        let text = String::from_utf8_lossy(body);
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| {
                let t = text.trim();
                if t.is_empty() {
                    format!("the server answered {status}")
                } else {
                    t.to_string()
                }
            });
        CliError {
            code: CliError::code_for_status(status),
            message,
            request_id,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}
