//! Byzantine test modes (`orb node --byzantine MODE[,MODE…]`): a node that
//! misbehaves on purpose, one behaviour per mode, so the tests and the demo
//! can check that honest nodes detect each, bound it, and never pay for it.
//! An honest node runs with none of them.

use std::fmt;

/// One way to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// Corrupt every output this node computes (and sign it so).
    WrongOutput,
    /// Compute correctly, but sign receipts for a different fuel.
    WrongReceipt,
    /// Never answer a peer's request (it waits until its timeout).
    Silent,
    /// Answer peers' requests, but only after three seconds.
    Slow,
    /// Publish a thousand announcements a second.
    FloodGossip,
    /// Publish announcements that do not decode.
    MalformedGossip,
    /// Send request-stream frames over the size limit or that do not
    /// decode, instead of requests.
    BadFrames,
    /// Answer each Snowball query with two signed votes naming different
    /// blocks (an equivocation).
    Equivocate,
    /// Answer each Snowball query with a signed vote for a block that does
    /// not exist.
    UnknownVotes,
    /// Publish ten committee claims a second without the work they claim.
    ForgedClaims,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// The modes a node runs with (none: an honest node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Byzantine(Vec<Mode>);

impl Byzantine {
    /// A node with these modes.
    pub fn new(modes: impl IntoIterator<Item = Mode>) -> Self {
        let mut v: Vec<Mode> = modes.into_iter().collect();
        v.sort_by_key(|m| *m as u8);
        v.dedup();
        Self(v)
    }

    /// Whether it runs `mode`.
    pub fn has(&self, mode: Mode) -> bool {
        self.0.contains(&mode)
    }

    /// Whether it runs any mode.
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// The network layer's part of it.
    pub(crate) fn network(&self) -> orb_net::Misbehaviour {
        orb_net::Misbehaviour {
            flood_gossip: self.has(Mode::FloodGossip),
            malformed_gossip: self.has(Mode::MalformedGossip),
            bad_frames: self.has(Mode::BadFrames),
        }
    }
}

impl fmt::Display for Byzantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(Mode::to_string).collect();
        f.write_str(&names.join(","))
    }
}

/// What a Byzantine voter answers a Snowball query with, in place of its
/// honest `vote` ([`Mode::Equivocate`], [`Mode::UnknownVotes`]); the
/// honest answer when it runs neither.
pub(crate) fn vote_answer(
    byzantine: &Byzantine,
    key: &orb_ledger::Keypair,
    vote: Option<orb_ledger::Vote>,
) -> orb_net::Response {
    use orb_ledger::Digest;
    let equivocate = byzantine.has(Mode::Equivocate);
    let unknown = byzantine.has(Mode::UnknownVotes);
    let vote = match vote {
        Some(vote) if equivocate || unknown => vote,
        honest => return orb_net::Response::Vote(honest),
    };
    let other = |salt: &[u8]| {
        let mut body = vote.body.clone();
        let round = vote.body.round.to_be_bytes();
        body.block = Digest::of(
            b"orb/byzantine/1\0",
            &[&vote.body.block.0[..], &round, salt].concat(),
        );
        body.sign(key)
    };
    let first = if unknown {
        other(b"unknown")
    } else {
        vote.clone()
    };
    if equivocate {
        orb_net::Response::Votes(vec![first, other(b"equivocate")])
    } else {
        orb_net::Response::Vote(Some(first))
    }
}

/// A committee claim for a random key that lacks the chain's minimum work
/// ([`Mode::ForgedClaims`]): its nonce is the first whose work falls short.
pub(crate) fn forged_claim(chain: &orb_ledger::Digest, difficulty: u32) -> orb_ledger::Claim {
    let key = orb_ledger::Keypair::generate().public();
    let mut claim = orb_ledger::Claim { key, nonce: 0 };
    while difficulty > 0 && claim.is_valid(chain, difficulty) {
        claim.nonce += 1;
    }
    claim
}
