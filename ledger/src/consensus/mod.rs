//! Consensus as a pure state machine: one [`Replica`] per node decides
//! each height's block by Snowball among the King-of-the-Hill committee.
//!
//! raft-rs's shape: the driver feeds [`Replica::step`] with what it heard
//! ([`Input`]: claims, settlements, proposals, committed blocks, votes
//! answering this replica's polls, peers' queries, ticks) and the time;
//! takes [`Replica::ready`] (blocks to persist, [`Message`]s to send,
//! [`Event`]s to report), persists the blocks through a
//! [`LedgerStore`](crate::LedgerStore) (the store is the driver's, never
//! the replica's), then sends the messages and calls
//! [`Replica::advance`] with the height now durable. Nothing here does I/O
//! or reads a clock, so the node, the tests and the simulator run the same
//! code; with the same inputs at the same times it makes the same
//! decisions (its sampling RNG is seeded from its key).
//!
//! Per height: members with settlements propose in lottery order
//! ([`lottery`]); after a short gathering window a member prefers the
//! candidate with the smallest ticket and polls k sampled members at once,
//! with several polls in flight ([`round`]: each poll closes as soon as its
//! outcome is settled, outcomes are recorded in the order the polls went
//! out, and a new poll starts as each one closes); β consecutive polls of
//! α_confidence signed votes decide, and those polls are the block's
//! finality evidence. Members that
//! stop answering are benched, members whose claims lapse are dropped,
//! equivocators are excluded ([`committee`]). Nodes outside the committee
//! do not poll: they take committed blocks (checked in full, evidence
//! included) from gossip and sync.

mod committee;
pub mod lottery;
mod mempool;
mod replica;
mod round;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::keys::{Digest, PublicKey};
use crate::koth::Claim;
use crate::settlement::Settlement;
use crate::state::Effects;
use crate::vote::Vote;

pub use replica::Replica;

/// A Snowball query: "which block do you prefer at this height?"
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The chain id.
    pub chain: Digest,
    /// The height being decided.
    pub height: u64,
    /// The asker's poll number.
    pub round: u64,
    /// The asker's preference (a responder without one adopts it).
    pub block: Digest,
    /// The asker's own proposal, with its first poll at the height: a
    /// responder that has not received it yet by gossip checks it and
    /// votes at once, instead of fetching it first.
    #[serde(default)]
    pub candidate: Option<Arc<Block>>,
}

/// What consensus hears.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Input {
    /// A committee claim (gossip).
    Claim(Claim),
    /// Settlements for the mempool; `local` ones were signed here (this
    /// node invoked) and are gossiped in batches by the replica.
    Settlements {
        /// The settlements.
        settlements: Vec<Settlement>,
        /// Signed by this node.
        local: bool,
    },
    /// A proposal for some height.
    Proposal(Arc<Block>),
    /// A block a peer committed, with evidence (gossip or sync).
    Committed {
        /// The block.
        block: Arc<Block>,
        /// Who sent it.
        from: PublicKey,
    },
    /// `from`'s answer to this replica's poll `round`: its signed vote,
    /// none (refused, no preference, or the request failed), or two (an
    /// equivocation).
    Votes {
        /// The member asked.
        from: PublicKey,
        /// The poll.
        round: u64,
        /// What it signed (unchecked).
        votes: Vec<Vote>,
    },
    /// A peer's query, answered by [`Message::Answer`] with the same id.
    Query {
        /// Reply id.
        id: u64,
        /// The asker.
        from: PublicKey,
        /// The question.
        query: Query,
    },
    /// A peer wants a block by hash ([`Message::AnswerBlock`]).
    FetchBlock {
        /// Reply id.
        id: u64,
        /// The hash.
        hash: Digest,
    },
    /// Evidence of an equivocation a peer caught (gossip).
    Equivocation(Box<(Vote, Vote)>),
    /// Time passes.
    Tick,
}

/// What the replica asks its driver to send.
#[derive(Clone, Debug)]
pub enum Message {
    /// Send `query` to each of `peers`; feed each answer back as
    /// [`Input::Votes`] with the query's round.
    Query {
        /// The query.
        query: Query,
        /// Committee members to ask (never this replica).
        peers: Vec<PublicKey>,
    },
    /// Answer query `id`.
    Answer {
        /// Reply id.
        id: u64,
        /// The vote, if this replica has a preference.
        vote: Option<Vote>,
    },
    /// Answer block request `id`.
    AnswerBlock {
        /// Reply id.
        id: u64,
        /// The block.
        block: Option<Arc<Block>>,
    },
    /// Gossip this to every node.
    Gossip(Gossip),
    /// Get the block `hash` from `peer`; feed it back as a proposal.
    Fetch {
        /// The block hash.
        hash: Digest,
        /// Who has it.
        peer: PublicKey,
    },
    /// Get committed blocks from height `from` on from `peer`; feed them
    /// back as [`Input::Committed`].
    Sync {
        /// First height wanted.
        from: u64,
        /// Who has them.
        peer: PublicKey,
    },
}

/// What consensus gossips.
#[derive(Clone, Debug)]
pub enum Gossip {
    /// This replica's committee claim.
    Claim(Claim),
    /// Settlements signed here.
    Settlements(Vec<Settlement>),
    /// This replica's proposal.
    Proposal(Arc<Block>),
    /// A block decided here, with its evidence.
    Committed(Arc<Block>),
    /// Two conflicting votes of one voter.
    Equivocation(Box<(Vote, Vote)>),
}

impl Gossip {
    /// What a node that received this gossip from `from` feeds its replica.
    pub fn to_input(&self, from: PublicKey) -> Input {
        match self {
            Gossip::Claim(c) => Input::Claim(*c),
            Gossip::Settlements(s) => Input::Settlements {
                settlements: s.clone(),
                local: false,
            },
            Gossip::Proposal(b) => Input::Proposal(b.clone()),
            Gossip::Committed(b) => Input::Committed {
                block: b.clone(),
                from,
            },
            Gossip::Equivocation(p) => Input::Equivocation(p.clone()),
        }
    }
}

/// A decided block to make durable, with its balance effects.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The block, evidence included.
    pub block: Arc<Block>,
    /// Its effects, computed when it was checked.
    pub effects: Effects,
}

/// What happened, for the driver's logs, metrics and reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A block was committed (durable once the driver persisted it).
    Committed {
        /// Its height.
        height: u64,
        /// Its hash.
        hash: Digest,
        /// Receipts in it.
        receipts: usize,
        /// From the first candidate seen to the commit, if one was seen.
        finality: Option<Duration>,
        /// Polls this replica recorded at this height.
        polls: usize,
        /// Candidates this replica held for the height.
        candidates: usize,
        /// Decided here (false: taken from a peer with its evidence).
        decided_here: bool,
    },
    /// A voter was caught equivocating and is excluded.
    Equivocation {
        /// The voter.
        voter: PublicKey,
    },
    /// A block was refused (a peer's, or a decision whose evidence
    /// failed its checks).
    Refused {
        /// Its height.
        height: u64,
        /// Why.
        reason: String,
    },
}

/// What [`Replica::ready`] hands the driver. Persist `persist` in order,
/// durably, before sending `messages` (they may announce those blocks).
#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// Blocks to persist, in height order.
    pub persist: Vec<Commit>,
    /// Messages to send.
    pub messages: Vec<Message>,
    /// What happened.
    pub events: Vec<Event>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty() && self.messages.is_empty() && self.events.is_empty()
    }
}

/// How a split vote is broken when no block reaches α_preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Liveness {
    /// Plain Snowball: nothing; the sampling noise alone breaks the split.
    Snowball,
    /// A poll in which no block reaches α_preference restarts this
    /// replica's Snowball on the smallest-ticket candidate among the
    /// answers and its own preference (accumulated wins are dropped).
    TieBreak,
    /// A round timeout: a height undecided `round_timeout` after this
    /// replica took a preference (or last moved on) starts a new round,
    /// unless its last poll was a success: the replica re-proposes the
    /// smallest-ticket candidate it knows (gossips it again, so every member
    /// holds it) and restarts its Snowball on it.
    Timeout,
}

/// Timing and limits of consensus.
#[derive(Clone, Debug)]
pub struct Config {
    /// At least this long between a commit and this node's next proposal.
    pub block_interval: Duration,
    /// How long to gather candidates before picking a preference.
    pub gather: Duration,
    /// A poll is closed with the answers it has after this long.
    pub poll_timeout: Duration,
    /// Polls a member keeps in flight at once. Their outcomes are recorded
    /// in the order they went out, and a poll sent before the last
    /// recorded one closed is not recorded at all (it saw the network
    /// before that outcome): a decision takes β round trips however many
    /// are in flight, and more than one only makes the network busier.
    /// 1, the default, sends the next poll as the last one closes.
    pub polls_in_flight: usize,
    /// How long each proposer waits for the ones ranked before it.
    pub proposer_step: Duration,
    /// Most settlements waiting in the mempool.
    pub max_mempool: usize,
    /// Nonces tried per tick while mining for an empty slot.
    pub mine_tries: u64,
    /// How often a member gossips its claim again (for late joiners).
    pub claim_every: Duration,
    /// How long a member that left polls unanswered is not asked.
    pub bench_for: Duration,
    /// A block fetch or sync without an answer is retried after this.
    pub retry: Duration,
    /// The split-vote rule.
    pub liveness: Liveness,
    /// How long a round lasts under [`Liveness::Timeout`].
    pub round_timeout: Duration,
    /// With no commit and no sync for this long, a replica asks a member
    /// for blocks past its head (a node back from a crash after the last
    /// block learns it this way when nothing else happens).
    pub idle_sync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            block_interval: Duration::from_millis(500),
            gather: Duration::from_millis(100),
            poll_timeout: Duration::from_secs(2),
            polls_in_flight: 1,
            proposer_step: Duration::from_millis(400),
            max_mempool: 200_000,
            mine_tries: 8 << 12,
            claim_every: Duration::from_secs(3),
            bench_for: Duration::from_secs(10),
            retry: Duration::from_secs(1),
            idle_sync: Duration::from_secs(5),
            liveness: Liveness::TieBreak,
            round_timeout: Duration::from_secs(1),
        }
    }
}
