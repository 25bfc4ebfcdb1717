//! `FunctionId`: the content address of a function.
//!
//! A function is named by the blake3 hash of its module bytes, so two nodes
//! that hold the same id hold the same code. Shown as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The blake3 hash of a WebAssembly module's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId([u8; 32]);

impl FunctionId {
    /// The id of a module with these bytes.
    pub fn of(module: &[u8]) -> Self {
        Self(*blake3::hash(module).as_bytes())
    }

    /// Wraps raw hash bytes (for example, read from a peer or a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FunctionId({})", &self.to_hex()[..16])
    }
}

impl FromStr for FunctionId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        blake3::Hash::from_hex(s)
            .map(|h| Self(*h.as_bytes()))
            .map_err(|_| Error::InvalidFunctionId(s.to_owned()))
    }
}

impl Serialize for FunctionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for FunctionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = FunctionId::of(b"\0asm");
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(id.to_hex().parse::<FunctionId>().ok(), Some(id));
        assert_eq!(id.to_hex(), blake3::hash(b"\0asm").to_hex().as_str());
    }

    #[test]
    fn bad_hex_is_a_clear_error() {
        let err = "xyz".parse::<FunctionId>().unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
