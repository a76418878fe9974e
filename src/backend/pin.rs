//! Where a PIN comes from: an environment variable, a file, a prompt, or the caller's memory.
//!
//! The PIN itself only ever lives in a [`SecretString`]: it is zeroized on drop and prints as
//! `[REDACTED]`. A `PinSource` names the source, never the PIN, so it can be logged.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;

use crate::error::BackendError;

/// Where to read a PIN from.
#[derive(Clone)]
#[non_exhaustive]
pub enum PinSource {
    /// `env:NAME` — an environment variable.
    Env(String),
    /// `file:PATH` — the first line of a file.
    File(PathBuf),
    /// `prompt` — ask on the terminal (refused when there is none).
    Prompt,
    /// A PIN the caller already holds (library use).
    Value(SecretString),
}

impl PinSource {
    /// Parses `env:NAME`, `file:PATH` or `prompt`.
    pub fn parse(s: &str) -> Result<Self, BackendError> {
        // The text given is never echoed: `pin-source=123456` (the PIN itself, by mistake) is
        // the likeliest wrong value.
        let bad = |reason: &str| BackendError::PinSource {
            source_name: "the pin-source given".to_owned(),
            reason: reason.to_owned(),
        };
        if s == "prompt" {
            return Ok(PinSource::Prompt);
        }
        match s.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Ok(PinSource::Env(name.to_owned())),
            Some(("file", path)) if !path.is_empty() => Ok(PinSource::File(PathBuf::from(path))),
            _ => Err(bad("expected `env:NAME`, `file:PATH` or `prompt`")),
        }
    }

    /// Whether a prompt can reach a person: the process has a terminal to ask on. The prompt
    /// reads the terminal itself (`/dev/tty`), not stdin, so `sign-challenge < challenge.json`
    /// at a desk still asks for the PIN; a process without a terminal (a service, CI) does not
    /// ask, and a PIN is never read from a pipe.
    pub fn can_prompt() -> bool {
        #[cfg(unix)]
        {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .is_ok()
        }
        #[cfg(not(unix))]
        {
            use std::io::IsTerminal;
            std::io::stdin().is_terminal()
        }
    }

    /// Reads the PIN. `what` names the device in the prompt (`PIN for token custody`).
    pub fn read(&self, what: &str) -> Result<SecretString, BackendError> {
        let fail = |reason: String| BackendError::PinSource {
            source_name: self.to_string(),
            reason,
        };
        let pin: String = match self {
            PinSource::Value(pin) => return Ok(pin.clone()),
            PinSource::Env(name) => std::env::var(name).map_err(|_| {
                fail(format!(
                    "environment variable `{name}` is not set (or not UTF-8)"
                ))
            })?,
            PinSource::File(path) => {
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?,
                );
                text.lines().next().unwrap_or("").to_owned()
            }
            PinSource::Prompt => {
                if !PinSource::can_prompt() {
                    return Err(fail(
                        "no terminal to prompt on; use pin-source=env:NAME or file:PATH".to_owned(),
                    ));
                }
                rpassword::prompt_password(format!("{what}: ")).map_err(|e| fail(e.to_string()))?
            }
        };
        if pin.is_empty() {
            return Err(fail("the PIN is empty".to_owned()));
        }
        Ok(SecretString::from(pin))
    }
}

impl fmt::Display for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::Env(n) => write!(f, "env:{n}"),
            PinSource::File(p) => write!(f, "file:{}", p.display()),
            PinSource::Prompt => f.write_str("prompt"),
            PinSource::Value(_) => f.write_str("a PIN given by the caller"),
        }
    }
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinSource({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn parses_sources_and_reads_env_and_file() {
        assert!(matches!(
            PinSource::parse("prompt").unwrap(),
            PinSource::Prompt
        ));
        assert!(PinSource::parse("env:").is_err());
        let err = PinSource::parse("123456").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("123456"), "{err}");
        assert!(err.to_string().contains("env:NAME"), "{err}");

        std::env::set_var("DFNS_SIGNER_TEST_PIN_A", "246810");
        let pin = PinSource::parse("env:DFNS_SIGNER_TEST_PIN_A")
            .unwrap()
            .read("PIN")
            .unwrap();
        assert_eq!(pin.expose_secret(), "246810");

        let dir = std::env::temp_dir().join(format!("dfns-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pin");
        std::fs::write(&file, "97531\nignored\n").unwrap();
        let pin = PinSource::File(file).read("PIN").unwrap();
        assert_eq!(pin.expose_secret(), "97531");
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let src = PinSource::Value(SecretString::from("314159".to_owned()));
        assert!(!format!("{src:?} {src}").contains("314159"));
        let err = PinSource::Env("DFNS_SIGNER_TEST_PIN_UNSET".into())
            .read("PIN")
            .unwrap_err();
        assert!(
            err.to_string().contains("DFNS_SIGNER_TEST_PIN_UNSET"),
            "{err}"
        );
    }
}
