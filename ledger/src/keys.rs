//! Keys, signatures and digests: ed25519 (the same keys as a node's
//! libp2p identity) and 32-byte blake3 digests. Every signature is over a
//! domain-separated message, so a signed receipt can never pass for a vote.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Fixed-size byte strings: hex in JSON, raw bytes in postcard.
macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses lower- or upper-case hex of exactly the right length.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes or {} hex digits", $len, 2 * $len)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_hex(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        <[u8; $len]>::try_from(v)
                            .map($name)
                            .map_err(|_| E::invalid_length(v.len(), &self))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }
    };
}

fixed_bytes!(
    /// A blake3 digest.
    Digest,
    32
);
fixed_bytes!(
    /// An ed25519 public key (a node's or publisher's identity).
    PublicKey,
    32
);
fixed_bytes!(
    /// An ed25519 signature.
    Signature,
    64
);

impl Digest {
    /// blake3 of `tag ‖ data`: the domain tag keeps hashes of different
    /// kinds of object apart.
    pub fn of(tag: &[u8], data: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(tag);
        h.update(data);
        Self(*h.finalize().as_bytes())
    }
}

impl PublicKey {
    /// Checks `signature` over `tag ‖ message` (strict: no malleable
    /// signatures, no small-order keys).
    pub fn verify(&self, tag: &[u8], message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&tagged(tag, message), &sig).is_ok()
    }
}

fn tagged(tag: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + message.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(message);
    m
}

/// Verifies many `(key, tag ‖ message, signature)` triples at once with
/// ed25519 batch verification; false when any one is bad.
pub fn verify_batch(items: &[(PublicKey, Vec<u8>, Signature)]) -> bool {
    batch_with(items, |k| VerifyingKey::from_bytes(&k.0).ok())
}

fn batch_with(
    items: &[(PublicKey, Vec<u8>, Signature)],
    mut key_of: impl FnMut(&PublicKey) -> Option<VerifyingKey>,
) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut keys = Vec::with_capacity(items.len());
    for (k, _, _) in items {
        match key_of(k) {
            Some(k) if !k.is_weak() => keys.push(k),
            _ => return false,
        }
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
}

/// Signature checks that remember what they already accepted.
///
/// Verifying an ed25519 signature is a pure function of (key, message,
/// signature), so a triple that passed once passes again: a node that
/// verified a vote when it answered a poll need not verify it again in a
/// block's evidence, and a simulator running many nodes in one process
/// verifies each signature once. It also keeps the keys it has seen
/// decompressed (a committee signs everything; decompressing a key is a
/// third of a verification). [`Verifier::uncached`] remembers nothing (the
/// audit, which recomputes everything, uses it).
pub struct Verifier {
    seen: Option<std::sync::Mutex<foldhash::HashSet<[u8; 32]>>>,
    keys: Option<std::sync::Mutex<foldhash::HashMap<PublicKey, VerifyingKey>>>,
    capacity: usize,
}

/// Decompressed keys a cached [`Verifier`] keeps (then starts over).
const KEYS: usize = 1 << 16;

impl Verifier {
    /// Remembers nothing.
    pub const fn uncached() -> Self {
        Self {
            seen: None,
            keys: None,
            capacity: 0,
        }
    }

    /// Remembers up to `capacity` accepted triples (then starts over).
    pub fn cached(capacity: usize) -> Self {
        Self {
            seen: Some(std::sync::Mutex::new(foldhash::HashSet::default())),
            keys: Some(std::sync::Mutex::new(foldhash::HashMap::default())),
            capacity,
        }
    }

    /// The hash a passed triple is remembered by; `message` is `tag ‖
    /// rest` given in parts (blake3 streams, so the parts' split does not
    /// matter).
    fn fingerprint(key: &PublicKey, message: &[&[u8]], signature: &Signature) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&key.0);
        h.update(&signature.0);
        for part in message {
            h.update(part);
        }
        *h.finalize().as_bytes()
    }

    fn key(&self, key: &PublicKey) -> Option<VerifyingKey> {
        let Some(keys) = &self.keys else {
            return VerifyingKey::from_bytes(&key.0).ok();
        };
        let lock = || {
            keys.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(k) = lock().get(key) {
            return Some(*k);
        }
        let k = VerifyingKey::from_bytes(&key.0).ok()?;
        let mut keys = lock();
        if keys.len() >= KEYS {
            keys.clear();
        }
        keys.insert(*key, k);
        Some(k)
    }

    fn seen(&self, print: &[u8; 32]) -> bool {
        self.seen.as_ref().is_some_and(|s| {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(print)
        })
    }

    fn remember(&self, prints: impl IntoIterator<Item = [u8; 32]>, count: usize) {
        let Some(seen) = &self.seen else {
            return;
        };
        let mut seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() + count > self.capacity {
            seen.clear();
        }
        seen.extend(prints);
    }

    /// [`verify_batch`], skipping triples accepted before.
    pub fn verify_batch(&self, items: &[(PublicKey, Vec<u8>, Signature)]) -> bool {
        if self.seen.is_none() {
            return verify_batch(items);
        }
        let prints: Vec<[u8; 32]> = items
            .iter()
            .map(|(k, m, s)| Self::fingerprint(k, &[m], s))
            .collect();
        let fresh: Vec<(PublicKey, Vec<u8>, Signature)> = items
            .iter()
            .zip(&prints)
            .filter(|(_, p)| !self.seen(p))
            .map(|(i, _)| i.clone())
            .collect();
        let ok = match fresh.as_slice() {
            [(k, m, s)] => self.strict(k, m, s),
            many => batch_with(many, |k| self.key(k)),
        };
        if ok {
            self.remember(prints, items.len());
        }
        ok
    }

    fn strict(&self, key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
        let Some(key) = self.key(key) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).is_ok()
    }

    /// Runs `check` unless a check with the same `fingerprint` passed
    /// before (the fingerprint must cover everything `check` reads).
    pub fn check_once<E>(
        &self,
        fingerprint: impl FnOnce() -> [u8; 32],
        check: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        if self.seen.is_none() {
            return check();
        }
        let print = fingerprint();
        if self.seen(&print) {
            return Ok(());
        }
        check()?;
        self.remember([print], 1);
        Ok(())
    }

    /// One signature over `tag ‖ message`.
    pub fn verify(
        &self,
        key: &PublicKey,
        tag: &[u8],
        message: &[u8],
        signature: &Signature,
    ) -> bool {
        if self.seen.is_none() {
            return key.verify(tag, message, signature);
        }
        let print = Self::fingerprint(key, &[tag, message], signature);
        if self.seen(&print) {
            return true;
        }
        let ok = self.strict(key, &tagged(tag, message), signature);
        if ok {
            self.remember([print], 1);
        }
        ok
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier(cached: {})", self.seen.is_some())
    }
}

/// A signing key.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// From the 32-byte ed25519 secret (a libp2p identity's secret).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&secret))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        getrandom(&mut secret);
        Self::from_secret(secret)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `tag ‖ message`.
    pub fn sign(&self, tag: &[u8], message: &[u8]) -> Signature {
        Signature(self.0.sign(&tagged(tag, message)).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.public())
    }
}

fn getrandom(out: &mut [u8]) {
    use rand::Rng;
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    rng.fill_bytes(out);
}
