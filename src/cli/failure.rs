//! How a command fails: an exit status from a documented set and two lines on stderr — what
//! went wrong, then what to do.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | anything else (a refused attestation, a malformed answer…) |
//! | 2 | usage or configuration: a flag, a key URI, a file, a PIN or secret source |
//! | 3 | a policy approval is pending (the call is neither done nor failed) |
//! | 4 | device or PIN: the HSM, the YubiKey, pcscd, a wrong or blocked PIN |
//! | 5 | the Dfns API refused the request |

use std::process::ExitCode;

use dfns_signer::{BackendError, ClientError, Error, ProtocolError};

/// Exit status: anything else.
pub const EXIT_OTHER: u8 = 1;
/// Exit status: usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: a policy approval is pending.
pub const EXIT_POLICY_PENDING: u8 = 3;
/// Exit status: device or PIN problem.
pub const EXIT_DEVICE: u8 = 4;
/// Exit status: the Dfns API refused.
pub const EXIT_API: u8 = 5;

/// A failed command: its exit status, what went wrong, and what to do.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    what: String,
    fix: String,
}

impl Failure {
    /// A failure with its exit status, message and remedy.
    pub fn new(code: u8, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Failure {
            code,
            what: what.into(),
            fix: fix.into(),
        }
    }

    /// A wrong flag, file or source (exit 2).
    pub fn usage(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, what, fix)
    }

    /// The exit status.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// Exit status, what went wrong, what to do (for reports that show several failures).
    pub fn parts(self) -> (u8, String, String) {
        (self.code, self.what, self.fix)
    }

    /// Prints the two lines and gives the exit status.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {}", self.what);
        eprintln!("  what to do: {}", self.fix);
        ExitCode::from(self.code)
    }
}

impl From<String> for Failure {
    fn from(what: String) -> Self {
        Failure::new(
            EXIT_OTHER,
            what,
            "run again with DFNS_SIGNER_LOG=debug to see each step",
        )
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let what = e.to_string();
        match &e {
            Error::Backend(b) => match b {
                BackendError::InvalidUri { .. }
                | BackendError::PinSource { .. }
                | BackendError::KeyLoad { .. } => Failure::usage(
                    what,
                    "fix the key URI, its file or its PIN source (see `dfns-signer <command> \
                     --help`)",
                ),
                BackendError::PinIncorrect { .. }
                | BackendError::PinBlocked { .. }
                | BackendError::LastPinTry { .. } => Failure::new(
                    EXIT_DEVICE,
                    what,
                    "check the PIN before trying again: each wrong try counts against the device",
                ),
                BackendError::AmbiguousDevice { .. } => Failure::new(
                    EXIT_DEVICE,
                    what,
                    "say which one: add ?serial=N (one of the serials above) to the key URI",
                ),
                BackendError::SlotOccupied { .. } => Failure::new(
                    EXIT_DEVICE,
                    what,
                    "choose an empty slot (`dfns-signer keys list`), or pass --force to replace \
                     the key (it is lost for good)",
                ),
                _ => Failure::new(
                    EXIT_DEVICE,
                    what,
                    "check the device: plugged in, its service running (pcscd for a YubiKey), \
                     not busy in another program; `dfns-signer keys list` shows what is found",
                ),
            },
            Error::Config(config) => Failure::usage(what, config.fix()),
            // Dfns did not offer this credential: deactivated, another identity's, or a wrong
            // id. Its answer, so a refusal by the API.
            Error::Protocol(ProtocolError::CredentialNotAllowed { .. }) => Failure::new(
                EXIT_API,
                what,
                "check the credential id and that it is active (`dfns-signer credential list`)",
            ),
            Error::Client(ClientError::Api(_)) => Failure::new(
                EXIT_API,
                what,
                "Dfns refused the request: check the auth token, the credential id and the \
                 permissions of this identity",
            ),
            Error::Client(ClientError::Config(_)) => {
                Failure::usage(what, "fix the option named above")
            }
            Error::Client(ClientError::SignerRequired { .. }) => Failure::usage(
                what,
                "give --key URI and --cred-id ID: this endpoint needs a user action signature",
            ),
            _ => Failure::new(
                EXIT_OTHER,
                what,
                "run again with DFNS_SIGNER_LOG=debug to see each step",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_documented_exit_status() {
        let api = Error::from(ClientError::Api(Box::new(dfns_signer::ApiError::new(
            403,
            "Forbidden",
        ))));
        assert_eq!(Failure::from(api).code, EXIT_API);
        let pin = Error::from(BackendError::PinIncorrect {
            device: "YubiKey 1".into(),
            tries_left: Some(2),
        });
        assert_eq!(Failure::from(pin).code, EXIT_DEVICE);
        let uri = Error::from(BackendError::InvalidUri {
            uri: "x".into(),
            reason: "y".into(),
        });
        assert_eq!(Failure::from(uri).code, EXIT_USAGE);
        assert_eq!(Failure::from("other".to_owned()).code, EXIT_OTHER);
    }
}
