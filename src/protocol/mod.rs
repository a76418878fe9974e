//! The Dfns protocol as pure functions and types: no I/O, no clock, no randomness.
pub mod encoding;
