//! PIV key slots by their hex names (`9a`, `9c`, `9d`, `9e`, retired `82`–`95`).

use std::fmt;
use std::str::FromStr;

use yubikey::piv::{RetiredSlotId, SlotId};

use crate::error::BackendError;

/// A PIV slot that can hold a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(SlotId);

impl Slot {
    /// 9A, PIV Authentication (PIN once per session by default).
    pub const AUTHENTICATION: Slot = Slot(SlotId::Authentication);
    /// 9C, Digital Signature (PIN before every signature by default).
    pub const SIGNATURE: Slot = Slot(SlotId::Signature);
    /// 9D, Key Management.
    pub const KEY_MANAGEMENT: Slot = Slot(SlotId::KeyManagement);
    /// 9E, Card Authentication (no PIN by default).
    pub const CARD_AUTHENTICATION: Slot = Slot(SlotId::CardAuthentication);

    /// The slot's one-byte id (`0x9a`).
    pub fn id(self) -> u8 {
        self.0.into()
    }

    /// The slot as the `yubikey` crate names it.
    pub fn slot_id(self) -> SlotId {
        self.0
    }

    /// Every slot that can hold a signing key, in PIV order.
    pub fn all() -> Vec<Slot> {
        let mut out = vec![
            Slot::AUTHENTICATION,
            Slot::SIGNATURE,
            Slot::KEY_MANAGEMENT,
            Slot::CARD_AUTHENTICATION,
        ];
        out.extend((0x82u8..=0x95).filter_map(|id| {
            RetiredSlotId::try_from(id)
                .ok()
                .map(|r| Slot(SlotId::Retired(r)))
        }));
        out
    }
}

impl FromStr for Slot {
    type Err = BackendError;

    /// Parses `9a`, `9c`, `9d`, `9e` or a retired slot `82`–`95` (case-insensitive, optional `0x`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let hex = lower.strip_prefix("0x").unwrap_or(&lower);
        let id = u8::from_str_radix(hex, 16).ok();
        let slot = id.and_then(|id| match id {
            0x9a | 0x9c | 0x9d | 0x9e => SlotId::try_from(id).ok(),
            0x82..=0x95 => RetiredSlotId::try_from(id).ok().map(SlotId::Retired),
            _ => None,
        });
        slot.map(Slot).ok_or_else(|| BackendError::InvalidUri {
            uri: format!("piv:slot={s}"),
            reason: "PIV signing slots are 9a, 9c, 9d, 9e and the retired slots 82 to 95"
                .to_owned(),
        })
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signing_slots_only() {
        assert_eq!("9a".parse::<Slot>().unwrap(), Slot::AUTHENTICATION);
        assert_eq!("9C".parse::<Slot>().unwrap(), Slot::SIGNATURE);
        assert_eq!("0x95".parse::<Slot>().unwrap().id(), 0x95);
        assert_eq!("82".parse::<Slot>().unwrap().to_string(), "82");
        for bad in ["9b", "f9", "80", "96", "zz", ""] {
            assert!(bad.parse::<Slot>().is_err(), "{bad}");
        }
        assert_eq!(Slot::all().len(), 24);
    }
}
