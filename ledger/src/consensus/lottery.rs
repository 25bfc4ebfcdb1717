//! The proposer lottery: after block `prev`, each committee member's
//! ticket is `blake3(prev ‖ key)`; smaller tickets propose first, and a
//! node's initial preference is the candidate with the smallest ticket.

use std::sync::Arc;

use crate::block::Block;
use crate::keys::{Digest, PublicKey};

/// The lottery ticket of `proposer` after `prev`: smaller wins.
pub fn ticket(prev: &Digest, proposer: &PublicKey) -> Digest {
    let mut m = [0u8; 64];
    m[..32].copy_from_slice(&prev.0);
    m[32..].copy_from_slice(&proposer.0);
    Digest::of(b"orb/lottery/1\0", &m)
}

/// Of `candidates`, the one whose proposer has the smallest ticket after
/// `prev`.
pub(crate) fn first<'a>(
    prev: &Digest,
    candidates: impl IntoIterator<Item = &'a Arc<Block>>,
) -> Option<&'a Arc<Block>> {
    candidates
        .into_iter()
        .min_by_key(|b| ticket(prev, &b.header.proposer.key))
}

/// `me`'s place among `members` after `prev` (0: proposes first).
pub fn rank(prev: &Digest, members: &[PublicKey], me: &PublicKey) -> u32 {
    let mine = ticket(prev, me);
    members.iter().filter(|m| ticket(prev, m) < mine).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_a_permutation_that_changes_with_the_previous_block() {
        let members: Vec<PublicKey> = (0..8u8).map(|i| PublicKey([i; 32])).collect();
        let ranks = |prev: &Digest| -> Vec<u32> {
            members.iter().map(|m| rank(prev, &members, m)).collect()
        };
        let mut a = ranks(&Digest([1; 32]));
        let b = ranks(&Digest([2; 32]));
        assert_ne!(a, b, "another block, another order");
        a.sort();
        assert_eq!(a, (0..8).collect::<Vec<_>>());
    }
}
