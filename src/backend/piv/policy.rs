//! A PIV key's PIN and touch policies, as this crate names them: our own types, so that the
//! public API does not move with the `yubikey` crate (a release candidate, pinned exactly).
//! Converted at the points where `yubikey` is called: key generation, slot metadata, and the
//! attestation certificate's policy extension.

use std::fmt;

/// When the card asks for the PIN before a signature with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PinPolicy {
    /// The slot's default (9c: always, 9e: never, others: once).
    Default,
    /// Never.
    Never,
    /// Once per session.
    Once,
    /// Before every signature.
    Always,
}

/// When the card waits for a touch before a signature with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TouchPolicy {
    /// The card's default (never).
    Default,
    /// Never.
    Never,
    /// Before every signature.
    Always,
    /// Once, then not again for 15 seconds.
    Cached,
}

impl PinPolicy {
    /// The lower-case name (`default`, `never`, `once`, `always`), as CLIs and JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            PinPolicy::Default => "default",
            PinPolicy::Never => "never",
            PinPolicy::Once => "once",
            PinPolicy::Always => "always",
        }
    }
}

impl TouchPolicy {
    /// The lower-case name (`default`, `never`, `always`, `cached`), as CLIs and JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            TouchPolicy::Default => "default",
            TouchPolicy::Never => "never",
            TouchPolicy::Always => "always",
            TouchPolicy::Cached => "cached",
        }
    }
}

impl fmt::Display for PinPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for TouchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<yubikey::PinPolicy> for PinPolicy {
    fn from(p: yubikey::PinPolicy) -> Self {
        match p {
            yubikey::PinPolicy::Default => PinPolicy::Default,
            yubikey::PinPolicy::Never => PinPolicy::Never,
            yubikey::PinPolicy::Once => PinPolicy::Once,
            yubikey::PinPolicy::Always => PinPolicy::Always,
        }
    }
}

impl From<PinPolicy> for yubikey::PinPolicy {
    fn from(p: PinPolicy) -> Self {
        match p {
            PinPolicy::Default => yubikey::PinPolicy::Default,
            PinPolicy::Never => yubikey::PinPolicy::Never,
            PinPolicy::Once => yubikey::PinPolicy::Once,
            PinPolicy::Always => yubikey::PinPolicy::Always,
        }
    }
}

impl From<yubikey::TouchPolicy> for TouchPolicy {
    fn from(p: yubikey::TouchPolicy) -> Self {
        match p {
            yubikey::TouchPolicy::Default => TouchPolicy::Default,
            yubikey::TouchPolicy::Never => TouchPolicy::Never,
            yubikey::TouchPolicy::Always => TouchPolicy::Always,
            yubikey::TouchPolicy::Cached => TouchPolicy::Cached,
        }
    }
}

impl From<TouchPolicy> for yubikey::TouchPolicy {
    fn from(p: TouchPolicy) -> Self {
        match p {
            TouchPolicy::Default => yubikey::TouchPolicy::Default,
            TouchPolicy::Never => yubikey::TouchPolicy::Never,
            TouchPolicy::Always => yubikey::TouchPolicy::Always,
            TouchPolicy::Cached => yubikey::TouchPolicy::Cached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_through_yubikeys_types() {
        for p in [
            PinPolicy::Default,
            PinPolicy::Never,
            PinPolicy::Once,
            PinPolicy::Always,
        ] {
            assert_eq!(PinPolicy::from(yubikey::PinPolicy::from(p)), p);
        }
        for t in [
            TouchPolicy::Default,
            TouchPolicy::Never,
            TouchPolicy::Always,
            TouchPolicy::Cached,
        ] {
            assert_eq!(TouchPolicy::from(yubikey::TouchPolicy::from(t)), t);
        }
        // The byte values the attestation extension carries map through yubikey's own reading.
        assert_eq!(
            PinPolicy::from(yubikey::PinPolicy::try_from(3u8).unwrap()),
            PinPolicy::Always
        );
        assert_eq!(
            TouchPolicy::from(yubikey::TouchPolicy::try_from(3u8).unwrap()),
            TouchPolicy::Cached
        );
    }
}
