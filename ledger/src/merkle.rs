//! Merkle trees in the shape of RFC 9162 (Certificate Transparency 2.0),
//! with blake3: domain-separated leaf (`0x00 ‖ data`) and node
//! (`0x01 ‖ left ‖ right`) hashes, the left subtree the largest power of two
//! below the size. Inclusion proofs show a leaf is in a tree of a given
//! root; consistency proofs show a tree extends an earlier one. Both are
//! checked with the RFC's verification algorithms (§2.1.3.2, §2.1.4.2).

/// A 32-byte blake3 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(data);
    *h.finalize().as_bytes()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root over leaf hashes (the hash of nothing for an empty tree).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` (RFC 9162 `PATH`), leaf to root.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    (index < leaves.len()).then(|| path(index, leaves))
}

fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Checks that `leaf` is leaf `index` of a tree of `size` leaves with `root`.
pub fn verify_inclusion(
    index: usize,
    size: usize,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// A proof that the first `old_size` leaves form a prefix of `leaves`
/// (RFC 9162 `PROOF`); empty when the sizes are equal.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    Some(subproof(old_size, leaves, true))
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Checks that a tree of `new_size` leaves with `new_root` extends one of
/// `old_size` leaves with `old_root`.
pub fn verify_consistency(
    old_size: usize,
    new_size: usize,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_have_the_rfc_shape() {
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_ne!(
            leaf_hash(b"x"),
            *blake3::hash(b"x").as_bytes(),
            "leaves are domain-separated"
        );
    }

    proptest! {
        #[test]
        fn every_leaf_proves_its_inclusion(n in 1usize..70, pick in 0usize..70, flip in 0usize..32) {
            let l = leaves(n);
            let r = root(&l);
            let index = pick % n;
            let proof = inclusion_proof(&l, index).unwrap();
            prop_assert!(verify_inclusion(index, n, &l[index], &proof, &r));
            // Another leaf, another index or a changed proof does not verify.
            prop_assert!(!verify_inclusion(index, n, &leaf_hash(b"forged"), &proof, &r));
            if n > 1 {
                prop_assert!(!verify_inclusion((index + 1) % n, n, &l[index], &proof, &r));
                let mut bad = proof.clone();
                bad[0][flip] ^= 1;
                prop_assert!(!verify_inclusion(index, n, &l[index], &bad, &r));
            }
        }

        #[test]
        fn every_prefix_is_consistent_with_the_tree(n in 1usize..70, pick in 0usize..70) {
            let l = leaves(n);
            let m = pick % n + 1;
            let proof = consistency_proof(&l, m).unwrap();
            prop_assert!(verify_consistency(m, n, &root(&l[..m]), &root(&l), &proof));
            // A different old tree is not consistent.
            let mut other = l[..m].to_vec();
            other[0] = leaf_hash(b"rewritten history");
            prop_assert!(!verify_consistency(m, n, &root(&other), &root(&l), &proof));
        }
    }
}
