//! `NameRecord`: a human name for a function, signed by its publisher and
//! stored in the DHT under `/orb/name/<name>`, resolved like a DNS name.
//!
//! Whoever reads a record checks the signature before using it, so a peer
//! that stores or relays a record cannot change what a name points to
//! without the publisher's key.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::{PeerId, kad};
use orb_functions::FunctionId;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest function name.
pub const MAX_NAME: usize = 64;

/// `name → function`, signed by the publisher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    /// The name.
    pub name: String,
    /// The function it names.
    pub function: FunctionId,
    /// The publisher's public key (libp2p protobuf encoding).
    pub publisher: Vec<u8>,
    /// The publisher's signature over [`NameRecord::signed_bytes`].
    pub signature: Vec<u8>,
}

impl NameRecord {
    /// Signs `name → function` with `key`.
    pub fn sign(key: &Keypair, name: &str, function: FunctionId) -> Result<Self> {
        check_name(name)?;
        let signature =
            key.sign(&Self::signed_bytes(name, function))
                .map_err(|e| Error::BadName {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            name: name.to_owned(),
            function,
            publisher: key.public().encode_protobuf(),
            signature,
        })
    }

    /// The bytes a publisher signs: a domain tag, the name and the id.
    pub fn signed_bytes(name: &str, function: FunctionId) -> Vec<u8> {
        let mut bytes = b"orb/name/v1\0".to_vec();
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(function.as_bytes());
        bytes
    }

    /// Checks the name and the signature; returns the publisher.
    pub fn verify(&self) -> Result<PeerId> {
        let bad = |reason: &str| Error::BadName {
            name: self.name.clone(),
            reason: reason.to_owned(),
        };
        check_name(&self.name)?;
        let key = PublicKey::try_decode_protobuf(&self.publisher)
            .map_err(|_| bad("publisher key does not decode"))?;
        if !key.verify(
            &Self::signed_bytes(&self.name, self.function),
            &self.signature,
        ) {
            return Err(bad("signature does not match"));
        }
        Ok(key.to_peer_id())
    }

    /// The DHT key of `name`.
    pub fn key(name: &str) -> kad::RecordKey {
        kad::RecordKey::new(&format!("/orb/name/{name}"))
    }

    /// Encodes for the DHT.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes and verifies a record read from the DHT.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let record: Self = postcard::from_bytes(bytes).map_err(|e| Error::BadName {
            name: "?".into(),
            reason: format!("undecodable record: {e}"),
        })?;
        record.verify()?;
        Ok(record)
    }
}

/// Names are 1–64 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName {
            name: name.chars().take(80).collect(),
            reason: format!(
                "a name is 1-{MAX_NAME} characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_record_verifies_and_a_changed_one_does_not() {
        let key = Keypair::generate_ed25519();
        let id = FunctionId::of(b"module");
        let record = NameRecord::sign(&key, "echo", id).unwrap();
        let decoded = NameRecord::decode(&record.encode()).unwrap();
        assert_eq!(decoded.verify().unwrap(), key.public().to_peer_id());

        let mut forged = record.clone();
        forged.function = FunctionId::of(b"other");
        assert!(
            forged
                .verify()
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
        assert!(NameRecord::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "Echo", "-x", "a b", &"x".repeat(65)] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        check_name("image.resize-2_v1").unwrap();
    }
}
