//! The replica on its own: fed inputs by hand, or a handful of replicas
//! wired together in memory with a seeded delivery order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;

use super::*;
use crate::block::Block;
use crate::genesis::Genesis;
use crate::keys::{Keypair, PublicKey, Verifier};
use crate::sim::{Committee, single};
use crate::state::State;
use crate::vote::{Vote, VoteBody};

const TICK: Duration = Duration::from_millis(25);

/// One poll in flight: the tests of a poll's own rules count them one by
/// one (several in flight have tests of their own).
fn config() -> Config {
    Config {
        polls_in_flight: 1,
        block_interval: Duration::ZERO,
        gather: Duration::from_millis(50),
        mine_tries: 0,
        ..Config::default()
    }
}

/// `n` members holding slots on a local genesis (k 5, α 4/4, β 6, 8
/// slots) that funds an invoker; the invoker's key is the last.
fn committee(n: usize) -> (Committee, Keypair) {
    let invoker = Keypair::generate();
    let public = invoker.public();
    let c = Committee::new(
        |_| Genesis::local("consensus-test", vec![(public, 1_000_000)]),
        n,
    );
    (c, invoker)
}

fn replica(c: &Committee, i: usize, config: Config) -> Replica {
    let mut r = Replica::new(
        c.genesis.clone(),
        State::genesis(&c.genesis),
        Vec::new(),
        c.keys[i].clone(),
        config,
        Arc::new(Verifier::cached(1 << 16)),
        Duration::ZERO,
    );
    for claim in &c.claims {
        r.step(Input::Claim(*claim), Duration::ZERO);
    }
    r
}

fn vote(key: &Keypair, q: &Query, asker: PublicKey, block: Digest) -> Vote {
    VoteBody {
        chain: q.chain,
        height: q.height,
        round: q.round,
        asker,
        block,
        voter: key.public(),
    }
    .sign(key)
}

/// One replica, member 0 of `c`, holding a proposal of its own.
fn proposing(c: &Committee, invoker: &Keypair) -> (Replica, Arc<Block>) {
    let mut r = replica(c, 0, config());
    let s = single(&c.keys[1], invoker, 1, 10);
    r.step(
        Input::Settlements {
            settlements: vec![s.clone()],
            local: false,
        },
        Duration::ZERO,
    );
    let block = Arc::new(Block::propose(
        &c.keys[0],
        c.chain(),
        1,
        c.chain(),
        c.claims[0],
        vec![s],
    ));
    r.step(Input::Proposal(block.clone()), Duration::ZERO);
    (r, block)
}

fn queries(ready: &Ready) -> Vec<(Query, Vec<PublicKey>)> {
    ready
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Query { query, peers } => Some((query.clone(), peers.clone())),
            _ => None,
        })
        .collect()
}

/// Ticks `r` and answers each peer of each of its queries with what
/// `answer(query, peer, index among the peers)` says, until it commits or
/// `steps` steps passed; every ready seen.
fn drive(
    r: &mut Replica,
    steps: usize,
    mut answer: impl FnMut(&Query, PublicKey, usize) -> Vec<Vote>,
) -> Vec<Ready> {
    let mut now = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..steps {
        let ready = r.ready();
        let asked = queries(&ready);
        let done = !ready.persist.is_empty();
        seen.push(ready);
        if done {
            break;
        }
        if asked.is_empty() {
            now += TICK;
            r.step(Input::Tick, now);
            continue;
        }
        for (q, peers) in asked {
            for (i, p) in peers.iter().enumerate() {
                let votes = answer(&q, *p, i);
                r.step(
                    Input::Votes {
                        from: *p,
                        round: q.round,
                        votes,
                    },
                    now,
                );
            }
        }
    }
    seen
}

fn key_of<'a>(c: &'a Committee, p: &PublicKey) -> &'a Keypair {
    c.keys.iter().find(|k| k.public() == *p).expect("a member")
}

#[test]
fn alpha_confident_polls_beta_times_in_a_row_decide_with_them_as_evidence() {
    // (votes for the block in each poll, of the 4 peers asked besides
    // itself; α_confidence 4 counts its own vote) → decided?
    let table: &[(&[usize], bool)] = &[
        (&[3, 3, 3, 3, 3, 3], true),
        (&[4, 4, 4, 4, 4, 4], true),
        (&[3, 3, 3, 3, 3], false),
        // A poll short of α_confidence restarts the run.
        (&[3, 3, 2, 3, 3, 3, 3, 3], false),
        (&[3, 3, 2, 3, 3, 3, 3, 3, 3], true),
    ];
    for (polls, decides) in table {
        let (c, invoker) = committee(5);
        let (mut r, block) = proposing(&c, &invoker);
        let me = c.keys[0].public();
        let mut asked = 0;
        let mut last = None;
        let seen = drive(&mut r, 2000, |q, p, i| {
            if last != Some(q.round) {
                last = Some(q.round);
                asked += 1;
            }
            match polls.get(asked - 1) {
                Some(yes) if i < *yes => vec![vote(key_of(&c, &p), q, me, block.hash())],
                _ => Vec::new(),
            }
        });
        let committed = seen
            .iter()
            .find_map(|r| r.persist.first())
            .map(|c| c.block.clone());
        assert_eq!(committed.is_some(), *decides, "polls {polls:?}");
        if let Some(b) = committed {
            assert_eq!(b.hash(), block.hash());
            assert_eq!(b.evidence.polls.len(), 6, "β polls of evidence");
            b.check_signatures(&c.genesis).expect("the evidence checks");
            assert_eq!(r.height(), 1);
            assert_eq!(asked, polls.len(), "decided at the last poll");
        }
    }
}

#[test]
fn several_polls_in_flight_are_recorded_in_order_and_a_run_counts_one_poll_per_round_trip() {
    let (c, invoker) = committee(5);
    let first = ranked(&c, 0);
    let me = c.keys[first].public();
    let mut r = replica(
        &c,
        first,
        Config {
            polls_in_flight: 3,
            ..config()
        },
    );
    r.step(
        Input::Settlements {
            settlements: vec![single(&c.keys[(first + 1) % 5], &invoker, 3, 10)],
            local: false,
        },
        Duration::ZERO,
    );
    r.step(Input::Tick, Duration::ZERO);
    let mut open: VecDeque<(Query, Vec<PublicKey>)> = queries(&r.ready()).into();
    assert_eq!(open.len(), 3, "three polls go out at once");
    let block = open[0].0.block;
    let confident = |r: &mut Replica, (q, peers): &(Query, Vec<PublicKey>), at: Duration| {
        for p in peers {
            let votes = vec![vote(key_of(&c, p), q, me, block)];
            r.step(
                Input::Votes {
                    from: *p,
                    round: q.round,
                    votes,
                },
                at,
            );
        }
    };
    // The second and third settle first: nothing is recorded, no poll is
    // sent, until the first (sent before them) is in.
    let ms = Duration::from_millis;
    let (a, b, c3) = (open[0].clone(), open[1].clone(), open[2].clone());
    confident(&mut r, &b, ms(1));
    confident(&mut r, &c3, ms(1));
    assert!(queries(&r.ready()).is_empty(), "waits for the oldest");
    confident(&mut r, &a, ms(1));
    let next = queries(&r.ready());
    assert_eq!(next.len(), 3, "three closed, three new");
    assert!(next.iter().all(|(q, _)| q.round > c3.0.round));
    // Three polls that went out together saw one moment of the network:
    // they are one poll of the run, not three. β = 6 takes six round
    // trips, whatever the polls in flight.
    open = next.into();
    let mut trips = 1;
    let committed = loop {
        let at = ms(1 + trips);
        while let Some(p) = open.pop_front() {
            confident(&mut r, &p, at);
        }
        trips += 1;
        let ready = r.ready();
        if let Some(commit) = ready.persist.first() {
            break commit.block.clone();
        }
        assert!(trips < 6, "decided only after six round trips");
        open = queries(&ready).into();
    };
    assert_eq!(trips, 6, "one counted poll per round trip");
    let rounds: Vec<u64> = committed.evidence.polls.iter().map(|p| p.round).collect();
    assert_eq!(rounds.len(), 6);
    assert!(
        rounds.windows(2).all(|w| w[1] >= w[0] + 3),
        "each from its own batch of polls, in order: {rounds:?}"
    );
    committed
        .check_evidence(&c.genesis)
        .expect("the evidence checks");
}

#[test]
fn a_proposer_that_is_not_first_in_the_lottery_waits_its_turn() {
    let (c, invoker) = committee(5);
    let prev = c.chain();
    let members: Vec<PublicKey> = c.keys.iter().map(Keypair::public).collect();
    let step = config().proposer_step;
    for (i, key) in c.keys.iter().enumerate() {
        let rank = lottery::rank(&prev, &members, &key.public());
        let mut r = replica(&c, i, config());
        r.step(
            Input::Settlements {
                settlements: vec![single(&c.keys[0], &invoker, 7, 10)],
                local: false,
            },
            Duration::ZERO,
        );
        let proposed_at = (0..200u32)
            .map(|t| TICK * t)
            .find(|now| {
                r.step(Input::Tick, *now);
                r.ready()
                    .messages
                    .iter()
                    .any(|m| matches!(m, Message::Gossip(Gossip::Proposal(_))))
            })
            .expect("alone, every member proposes in the end");
        assert!(
            proposed_at >= step * rank && proposed_at < step * rank + TICK * 2,
            "rank {rank} proposed at {proposed_at:?}"
        );
    }
}

/// The member of `c` with lottery rank `rank` after genesis.
fn ranked(c: &Committee, rank: u32) -> usize {
    let members: Vec<PublicKey> = c.keys.iter().map(Keypair::public).collect();
    (0..c.keys.len())
        .find(|&i| lottery::rank(&c.chain(), &members, &c.keys[i].public()) == rank)
        .expect("every rank is held")
}

/// A proposal for height 1 by member `i` of `c`.
fn proposal_of(c: &Committee, i: usize, invoker: &Keypair) -> Arc<Block> {
    Arc::new(Block::propose(
        &c.keys[i],
        c.chain(),
        1,
        c.chain(),
        c.claims[i],
        vec![single(&c.keys[(i + 1) % c.keys.len()], invoker, 3, 10)],
    ))
}

#[test]
fn the_lotterys_first_candidate_is_polled_at_once_a_later_one_after_the_gathering() {
    let (c, invoker) = committee(5);
    let (first, second) = (ranked(&c, 0), ranked(&c, 1));
    let other = (0..5).find(|i| *i != first && *i != second).unwrap();
    // No member can beat the first in the lottery: no gathering window.
    let mut r = replica(&c, other, config());
    r.ready();
    r.step(Input::Proposal(proposal_of(&c, first, &invoker)), TICK);
    let polled = queries(&r.ready());
    assert_eq!(polled.len(), 1, "polled on receiving it, before any tick");
    assert_eq!(polled[0].0.block, proposal_of(&c, first, &invoker).hash());
    // The second in the lottery could still be beaten: wait the window.
    let mut r = replica(&c, other, config());
    r.ready();
    r.step(Input::Proposal(proposal_of(&c, second, &invoker)), TICK);
    assert!(queries(&r.ready()).is_empty());
    r.step(Input::Tick, TICK + config().gather / 2);
    assert!(queries(&r.ready()).is_empty());
    r.step(Input::Tick, TICK + config().gather);
    assert_eq!(queries(&r.ready()).len(), 1);
}

/// A poll short of α_preference only because some asked were silent (a
/// crashed member) is not a split: the replica keeps a preference most of
/// the answers share, even when another candidate has a smaller ticket.
/// (Leaning on the ticket whatever the counts let the members that had
/// voted a block another member already decided move to a rival block
/// while the decider was down: found by the kill -9 soak as two chains.)
/// A real split (a tie on top) still leans to the smaller ticket.
#[test]
fn a_tie_break_leans_on_the_ticket_only_among_the_most_voted() {
    let (c, invoker) = committee(6);
    let (first, second) = (ranked(&c, 0), ranked(&c, 1));
    let me_i = (0..6).find(|i| *i != first && *i != second).unwrap();
    let me = c.keys[me_i].public();
    let (x, y) = (
        proposal_of(&c, second, &invoker),
        proposal_of(&c, first, &invoker),
    );
    for (x_votes, y_votes, preferred) in [(3, 1, x.hash()), (2, 2, y.hash()), (1, 2, y.hash())] {
        let mut r = replica(&c, me_i, config());
        r.ready();
        // x arrives first and, after the gathering window, is preferred;
        // y (the lottery's first) arrives after that.
        r.step(Input::Proposal(x.clone()), TICK);
        r.step(Input::Tick, TICK + config().gather);
        assert_eq!(r.preference(), Some(x.hash()));
        let polled = queries(&r.ready());
        assert_eq!(polled.len(), 1);
        r.step(Input::Proposal(y.clone()), TICK + config().gather);
        let (q, peers) = &polled[0];
        let mut answers: Vec<(PublicKey, Digest)> = Vec::new();
        // The sample is k = 5 of the 6 members; when it holds this
        // replica, its own vote (for x) is in the poll and 4 are asked.
        let others: Vec<PublicKey> = peers.iter().copied().filter(|p| *p != me).collect();
        let mine = usize::from(others.len() < 5);
        for (i, p) in others.iter().enumerate() {
            if i + mine < x_votes {
                answers.push((*p, x.hash()));
            } else if i + mine < x_votes + y_votes {
                answers.push((*p, y.hash()));
            }
        }
        let at = TICK + config().gather;
        for (p, block) in &answers {
            let v = vote(key_of(&c, p), q, me, *block);
            r.step(
                Input::Votes {
                    from: *p,
                    round: q.round,
                    votes: vec![v],
                },
                at,
            );
        }
        // The rest stay silent until the poll times out.
        for p in others.iter().skip(answers.len()) {
            r.step(
                Input::Votes {
                    from: *p,
                    round: q.round,
                    votes: Vec::new(),
                },
                at,
            );
        }
        r.step(Input::Tick, at + Duration::from_secs(10));
        assert_eq!(
            r.preference(),
            Some(preferred),
            "{x_votes} for x (its preference), {y_votes} for y (the smaller ticket)"
        );
    }
}

#[test]
fn the_proposer_sends_its_candidate_with_its_first_poll_and_a_member_without_it_votes_at_once() {
    let (c, invoker) = committee(5);
    let first = ranked(&c, 0);
    let mut proposer = replica(&c, first, config());
    proposer.step(
        Input::Settlements {
            settlements: vec![single(&c.keys[(first + 1) % 5], &invoker, 3, 10)],
            local: false,
        },
        Duration::ZERO,
    );
    proposer.step(Input::Tick, Duration::ZERO);
    let polled = queries(&proposer.ready());
    assert_eq!(
        polled.len(),
        1,
        "the first in the lottery polls as it proposes"
    );
    let (query, peers) = polled[0].clone();
    let candidate = query.candidate.clone().expect("the candidate rides along");
    assert_eq!(candidate.hash(), query.block);
    // A member that never saw the proposal votes for it on the query alone.
    let member = c.keys.iter().position(|k| k.public() == peers[0]).unwrap();
    let mut r = replica(&c, member, config());
    r.ready();
    r.step(
        Input::Query {
            id: 1,
            from: c.keys[first].public(),
            query: query.clone(),
        },
        Duration::ZERO,
    );
    let ready = r.ready();
    let answer = ready.messages.iter().find_map(|m| match m {
        Message::Answer { id: 1, vote } => Some(vote.clone()),
        _ => None,
    });
    assert_eq!(answer.flatten().map(|v| v.body.block), Some(query.block));
    assert!(
        !ready
            .messages
            .iter()
            .any(|m| matches!(m, Message::Fetch { .. })),
        "nothing to fetch"
    );
    // The next poll does not carry the block again.
    let round = query.round;
    for p in &peers {
        let k = key_of(&c, p);
        proposer.step(
            Input::Votes {
                from: *p,
                round,
                votes: vec![vote(k, &query, c.keys[first].public(), query.block)],
            },
            Duration::from_millis(1),
        );
    }
    let next = queries(&proposer.ready());
    assert_eq!(
        next.len(),
        1,
        "the next poll goes out when the answers are in"
    );
    assert!(next[0].0.candidate.is_none());
    // A candidate that does not hash to the block asked about is ignored.
    let mut lying = query;
    lying.block = Digest([9; 32]);
    let mut r = replica(&c, member, config());
    r.step(
        Input::Query {
            id: 2,
            from: c.keys[first].public(),
            query: lying,
        },
        Duration::ZERO,
    );
    let ready = r.ready();
    assert!(
        ready
            .messages
            .iter()
            .any(|m| matches!(m, Message::Answer { id: 2, vote: None }))
    );
}

#[test]
fn an_idle_replica_asks_a_member_for_blocks_past_its_head() {
    let (c, _) = committee(5);
    let mut r = replica(&c, 0, config());
    let syncs = |ready: &Ready| -> Vec<(u64, PublicKey)> {
        ready
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Sync { from, peer } => Some((*from, *peer)),
                _ => None,
            })
            .collect()
    };
    let idle = config().idle_sync;
    r.step(Input::Tick, idle - TICK);
    assert!(syncs(&r.ready()).is_empty());
    r.step(Input::Tick, idle);
    let asked = syncs(&r.ready());
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, 1, "the first height it lacks");
    assert_ne!(asked[0].1, c.keys[0].public(), "another member");
    // Not again until it has been idle that long once more.
    r.step(Input::Tick, idle + TICK);
    assert!(syncs(&r.ready()).is_empty());
    r.step(Input::Tick, idle * 2);
    assert_eq!(syncs(&r.ready()).len(), 1);
}

#[test]
fn a_proposer_ranked_later_stays_silent_once_a_candidate_exists() {
    let (c, invoker) = committee(5);
    let prev = c.chain();
    let members: Vec<PublicKey> = c.keys.iter().map(Keypair::public).collect();
    let second = (0..5)
        .find(|i| lottery::rank(&prev, &members, &c.keys[*i].public()) == 1)
        .expect("someone is second");
    let first = (0..5)
        .find(|i| lottery::rank(&prev, &members, &c.keys[*i].public()) == 0)
        .expect("someone is first");
    let mut r = replica(&c, second, config());
    let s = single(&c.keys[0], &invoker, 7, 10);
    r.step(
        Input::Settlements {
            settlements: vec![s.clone()],
            local: false,
        },
        Duration::ZERO,
    );
    let theirs = Block::propose(&c.keys[first], c.chain(), 1, prev, c.claims[first], vec![s]);
    r.step(Input::Proposal(Arc::new(theirs)), Duration::ZERO);
    for t in 0..100 {
        r.step(Input::Tick, TICK * t);
        let ready = r.ready();
        assert!(
            !ready
                .messages
                .iter()
                .any(|m| matches!(m, Message::Gossip(Gossip::Proposal(_)))),
            "a second candidate was proposed"
        );
    }
}

#[test]
fn votes_with_bad_signatures_are_not_counted() {
    // (peers of the 4 asked that sign with a key not theirs) → decided?
    // α_confidence 4 counts this replica's own vote.
    for (forged, decides) in [(0, true), (1, true), (2, false), (4, false)] {
        let (c, invoker) = committee(5);
        let (mut r, block) = proposing(&c, &invoker);
        let me = c.keys[0].public();
        let forger = Keypair::generate();
        let seen = drive(&mut r, 600, |q, p, i| {
            if i < forged {
                let mut v = vote(&forger, q, me, block.hash());
                v.body.voter = p;
                vec![v]
            } else {
                vec![vote(key_of(&c, &p), q, me, block.hash())]
            }
        });
        let committed = seen.iter().find_map(|r| r.persist.first());
        assert_eq!(committed.is_some(), decides, "{forged} forged");
        if let Some(c) = committed {
            assert!(c.block.check_evidence(&r.genesis().clone()).is_ok());
        }
    }
}

#[test]
fn a_vote_for_a_block_not_held_here_asks_the_voter_for_it_once_per_retry() {
    let (c, invoker) = committee(5);
    let (mut r, block) = proposing(&c, &invoker);
    let me = c.keys[0].public();
    let unknown = Digest::of(b"test\0", b"a block nobody proposed");
    let mut fetches = Vec::new();
    drive(&mut r, 60, |q, p, i| {
        if i == 0 {
            vec![vote(key_of(&c, &p), q, me, unknown)]
        } else {
            vec![vote(key_of(&c, &p), q, me, block.hash())]
        }
    })
    .iter()
    .flat_map(|ready| ready.messages.iter())
    .for_each(|m| {
        if let Message::Fetch { hash, peer } = m {
            fetches.push((*hash, *peer));
        }
    });
    // Asked of a voter that named it, and not again within the retry
    // (every step here is within one second); the held block never.
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(fetches[0].0, unknown);
    assert!(c.keys.iter().any(|k| k.public() == fetches[0].1));
}

#[test]
fn equivocating_votes_are_rejected_kept_as_evidence_and_the_voter_is_not_asked_again() {
    let (c, invoker) = committee(5);
    let (mut r, block) = proposing(&c, &invoker);
    let me = c.keys[0].public();
    let mut liar: Option<PublicKey> = None;
    let seen = drive(&mut r, 400, |q, p, _| {
        assert_ne!(Some(p), liar, "an equivocator was asked again");
        let key = key_of(&c, &p);
        let mut votes = vec![vote(key, q, me, block.hash())];
        if liar.is_none() {
            liar = Some(p);
            votes.push(vote(key, q, me, Digest([7; 32])));
        }
        votes
    });
    let caught = seen.iter().flat_map(|r| &r.messages).find_map(|m| match m {
        Message::Gossip(Gossip::Equivocation(pair)) => Some(pair.clone()),
        _ => None,
    });
    let now = Duration::from_secs(1);
    let liar = liar.expect("someone was asked");
    let pair = caught.expect("the equivocation was gossiped");
    assert_eq!(pair.0.body.voter, liar);
    assert!(pair.0.equivocates(&pair.1, &Verifier::uncached()));
    assert_eq!(r.equivocators(), vec![liar]);
    assert!(!r.committee().contains(&liar), "its slot is free");
    // Another replica told of it excludes the voter too; a forged pair
    // (the same vote twice) is ignored.
    let mut other = replica(&c, 2, config());
    other.step(
        Input::Equivocation(Box::new((pair.0.clone(), pair.0.clone()))),
        now,
    );
    assert!(other.equivocators().is_empty());
    other.step(Input::Equivocation(pair.clone()), now);
    assert_eq!(other.equivocators(), vec![liar]);

    // The next proposal records it on the chain (with no settlement to
    // carry); a state that applied it refuses the voter from then on.
    let mut t = now;
    let proposal = loop {
        t += TICK;
        assert!(
            t < Duration::from_secs(10),
            "nothing recorded the equivocation"
        );
        r.step(Input::Tick, t);
        let found = r.ready().messages.iter().find_map(|m| match m {
            Message::Gossip(Gossip::Proposal(b)) => Some(b.clone()),
            _ => None,
        });
        if let Some(b) = found {
            break b;
        }
    };
    assert_eq!(proposal.header.height, 2);
    assert!(proposal.settlements.is_empty());
    assert_eq!(
        proposal.equivocations,
        vec![(pair.0.clone(), pair.1.clone())]
    );
    proposal.check_proposal(&c.genesis).unwrap();
    let mut state = r.state().clone();
    let effects = state.effects(&c.genesis, &proposal).unwrap();
    state.apply(&proposal, &effects);
    assert_eq!(state.excluded(), vec![liar]);
    let later = c.block(
        3,
        proposal.hash(),
        vec![single(&c.keys[1], &invoker, 2, 10)],
    );
    let refused = state.effects(&c.genesis, &later).unwrap_err();
    assert!(refused.contains("recorded equivocating"), "{refused}");
    let twice = Block::propose_with(
        &c.keys[0],
        c.chain(),
        3,
        proposal.hash(),
        c.claims[0],
        Vec::new(),
        crate::block::Records {
            equivocations: proposal.equivocations.clone(),
            voted: Vec::new(),
        },
    );
    let refused = state.effects(&c.genesis, &twice).unwrap_err();
    assert!(refused.contains("a second time"), "{refused}");
    // A forged pair (one vote twice) does not pass the proposal's checks.
    let forged = Block::propose_with(
        &c.keys[0],
        c.chain(),
        2,
        proposal.header.prev,
        c.claims[0],
        Vec::new(),
        crate::block::Records {
            equivocations: vec![(pair.0.clone(), pair.0.clone())],
            voted: Vec::new(),
        },
    );
    let refused = forged.check_proposal(&c.genesis).unwrap_err();
    assert!(refused.contains("equivocation 0"), "{refused}");
    // A replica restarted from that state still excludes the voter.
    let restarted = Replica::new(
        c.genesis.clone(),
        state,
        Vec::new(),
        c.keys[3].clone(),
        config(),
        Arc::new(Verifier::uncached()),
        t,
    );
    assert_eq!(restarted.equivocators(), vec![liar]);
}

#[test]
fn a_node_outside_the_committee_does_not_poll_and_takes_committed_blocks_checked() {
    let (c, invoker) = committee(5);
    let outsider = Keypair::generate();
    let mut r = Replica::new(
        c.genesis.clone(),
        State::genesis(&c.genesis),
        Vec::new(),
        outsider,
        config(),
        Arc::new(Verifier::uncached()),
        Duration::ZERO,
    );
    for claim in &c.claims {
        r.step(Input::Claim(*claim), Duration::ZERO);
    }
    let good = c.block(1, c.chain(), vec![single(&c.keys[1], &invoker, 1, 10)]);
    r.step(Input::Proposal(Arc::new(good.clone())), Duration::ZERO);
    for t in 1..40 {
        r.step(Input::Tick, TICK * t);
        assert!(queries(&r.ready()).is_empty(), "an outsider polled");
    }
    let mut forged = good.clone();
    forged.evidence.polls.pop();
    let from = c.keys[1].public();
    r.step(
        Input::Committed {
            block: Arc::new(forged),
            from,
        },
        Duration::ZERO,
    );
    let ready = r.ready();
    assert!(
        ready.persist.is_empty(),
        "a block short of evidence was taken"
    );
    assert!(matches!(
        ready.events[..],
        [Event::Refused { height: 1, .. }]
    ));
    r.step(
        Input::Committed {
            block: Arc::new(good.clone()),
            from,
        },
        Duration::ZERO,
    );
    let ready = r.ready();
    assert_eq!(ready.persist.len(), 1);
    assert_eq!(ready.persist[0].block.hash(), good.hash());
    assert_eq!(r.height(), 1);
    assert_eq!(r.durable(), 0, "not durable until the driver says so");
    r.advance(1);
    assert_eq!(r.durable(), 1);
    // A block above the next height means this node is behind: it syncs.
    let later = c.block(3, Digest([1; 32]), Vec::new());
    r.step(
        Input::Committed {
            block: Arc::new(later),
            from,
        },
        Duration::ZERO,
    );
    r.step(Input::Tick, Duration::from_secs(5));
    assert!(
        r.ready()
            .messages
            .iter()
            .any(|m| matches!(m, Message::Sync { from: 2, peer } if *peer == from))
    );
}

/// Replicas wired in memory: every message is delivered, in an order a
/// seeded RNG picks, one tick apart at most.
struct Wired {
    replicas: Vec<Replica>,
    index: BTreeMap<PublicKey, usize>,
    queue: Vec<(usize, Input)>,
    asks: BTreeMap<u64, (usize, u64)>,
    next_id: u64,
    committed: Vec<BTreeMap<u64, Digest>>,
    /// Messages delivered per tick (the rest wait): a network slower than
    /// the ticks. `None`: everything sent is delivered within the tick.
    per_tick: Option<usize>,
}

impl Wired {
    fn new(c: &Committee, config: &Config) -> Self {
        let replicas: Vec<Replica> = (0..c.keys.len())
            .map(|i| replica(c, i, config.clone()))
            .collect();
        let index = c
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.public(), i))
            .collect();
        Self {
            committed: vec![BTreeMap::new(); replicas.len()],
            replicas,
            index,
            queue: Vec::new(),
            asks: BTreeMap::new(),
            next_id: 0,
            per_tick: None,
        }
    }

    fn drain(&mut self, i: usize) {
        let ready = self.replicas[i].ready();
        for c in &ready.persist {
            let h = c.block.header.height;
            let last = self.committed[i].last_key_value().map_or(0, |(h, _)| *h);
            assert_eq!(h, last + 1, "replica {i} committed out of order");
            self.committed[i].insert(h, c.block.hash());
        }
        let h = self.replicas[i].height();
        self.replicas[i].advance(h);
        let me = self.replicas[i].key();
        for m in ready.messages {
            match m {
                Message::Query { query, peers } => {
                    for p in peers {
                        self.next_id += 1;
                        self.asks.insert(self.next_id, (i, query.round));
                        let to = self.index[&p];
                        self.queue.push((
                            to,
                            Input::Query {
                                id: self.next_id,
                                from: me,
                                query: query.clone(),
                            },
                        ));
                    }
                }
                Message::Answer { id, vote } => {
                    if let Some((asker, round)) = self.asks.remove(&id) {
                        let votes = vote.into_iter().collect();
                        self.queue.push((
                            asker,
                            Input::Votes {
                                from: me,
                                round,
                                votes,
                            },
                        ));
                    }
                }
                Message::Gossip(g) => {
                    for to in 0..self.replicas.len() {
                        if to == i {
                            continue;
                        }
                        let input = g.to_input(me);
                        self.queue.push((to, input));
                    }
                }
                Message::Fetch { hash, peer } => {
                    let owner = self.index[&peer];
                    let block = self.replicas[owner].candidate(&hash);
                    if let Some(b) = block {
                        self.queue.push((i, Input::Proposal(b)));
                    }
                }
                Message::AnswerBlock { .. } | Message::Sync { .. } => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// However messages interleave, and with one poll or several in
    /// flight, replicas that receive settlements at different members
    /// commit the same block at every height.
    #[test]
    fn replicas_agree_at_every_height_whatever_the_delivery_order(
        seed in any::<u64>(),
        in_flight in 1usize..=4,
    ) {
        let (c, invoker) = committee(5);
        let mut w = Wired::new(&c, &Config { polls_in_flight: in_flight, ..config() });
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut now = Duration::ZERO;
        for inv in 0..4u128 {
            let at = rng.random_range(0..5);
            let s = single(&c.keys[(inv as usize) % 5], &invoker, inv, 10);
            w.replicas[at].step(Input::Settlements { settlements: vec![s], local: true }, now);
        }
        for _ in 0..4000 {
            if w.committed.iter().all(|m| m.values().count() >= 1)
                && w.replicas.iter().all(|r| r.mempool_len() == 0)
            {
                break;
            }
            now += TICK;
            w.run_tick(&mut rng, now);
        }
        let top = w.committed.iter().map(|m| m.len()).max().unwrap_or(0);
        prop_assert!(top >= 1, "nothing was committed");
        for h in 1..=top as u64 {
            let hashes: Vec<_> = w.committed.iter().filter_map(|m| m.get(&h)).collect();
            prop_assert!(hashes.windows(2).all(|p| p[0] == p[1]), "height {} forked", h);
        }
        prop_assert!(w.replicas.iter().all(|r| r.mempool_len() == 0), "settlements left behind");
    }
}

impl Wired {
    /// Ticks every replica and delivers what they send, in a seeded order.
    fn run_tick(&mut self, rng: &mut rand::rngs::StdRng, now: Duration) {
        for i in 0..self.replicas.len() {
            self.replicas[i].step(Input::Tick, now);
            self.drain(i);
        }
        let mut queue = VecDeque::from(std::mem::take(&mut self.queue));
        let mut budget = self.per_tick.unwrap_or(usize::MAX);
        while budget > 0
            && let Some(first) = queue.pop_front()
        {
            budget -= 1;
            let (to, input) = if !queue.is_empty() && rng.random_bool(0.5) {
                queue.push_back(first);
                let j = rng.random_range(0..queue.len());
                queue.remove(j).expect("in range")
            } else {
                first
            };
            self.replicas[to].step(input, now);
            self.drain(to);
            queue.extend(std::mem::take(&mut self.queue));
        }
        // What was not delivered waits for the next tick.
        queue.extend(std::mem::take(&mut self.queue));
        self.queue = queue.into();
    }
}

#[test]
fn pipelined_proposals_are_committed_after_their_parent_never_out_of_order() {
    // Settlements keep arriving while heights are decided: the member
    // first in the lottery on top of a preferred candidate proposes the
    // next height on it before it commits. Every replica commits each
    // height once, in order (Wired::drain asserts it), and they agree.
    let (c, invoker) = committee(5);
    let mut w = Wired::new(
        &c,
        &Config {
            polls_in_flight: 2,
            ..config()
        },
    );
    w.per_tick = Some(40);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut now = Duration::ZERO;
    let mut invocation = 0u128;
    for step in 0..3000 {
        if step < 600 {
            invocation += 1;
            let at = rng.random_range(0..5);
            let s = single(&c.keys[(invocation as usize) % 5], &invoker, invocation, 10);
            w.replicas[at].step(
                Input::Settlements {
                    settlements: vec![s],
                    local: true,
                },
                now,
            );
        } else if w.replicas.iter().all(|r| r.mempool_len() == 0) {
            break;
        }
        now += TICK;
        w.run_tick(&mut rng, now);
    }
    let pipelined: u64 = w.replicas.iter().map(Replica::pipelined).sum();
    assert!(pipelined > 0, "no proposal went out ahead of its parent");
    let top = w.committed.iter().map(BTreeMap::len).min().unwrap_or(0);
    assert!(top >= 3, "only {top} heights");
    for h in 1..=top as u64 {
        let hashes: Vec<_> = w.committed.iter().map(|m| m[&h]).collect();
        assert!(hashes.windows(2).all(|p| p[0] == p[1]), "height {h} forked");
    }
    assert!(w.replicas.iter().all(|r| r.mempool_len() == 0));
}

#[test]
fn claims_stay_alive_by_what_the_next_block_records_not_by_a_copy_of_the_evidence() {
    // Two nodes hold block 1 with different evidence (each copy is the
    // decider's own); their states must still agree on who was active.
    let (c, invoker) = committee(5);
    let full = c.block(1, c.chain(), vec![single(&c.keys[1], &invoker, 1, 10)]);
    let mut thin = full.clone();
    thin.evidence
        .polls
        .iter_mut()
        .for_each(|p| p.votes.truncate(1));
    let voted = full.voters_claims();
    assert_eq!(voted.len(), 5, "every member voted in the full copy");
    let next = Block::propose_with(
        &c.keys[2],
        c.chain(),
        2,
        full.hash(),
        c.claims[2],
        vec![single(&c.keys[1], &invoker, 2, 10)],
        crate::block::Records {
            equivocations: Vec::new(),
            voted: voted.clone(),
        },
    );
    next.check_proposal(&c.genesis).unwrap();
    let states: Vec<State> = [&full, &thin]
        .into_iter()
        .map(|copy| {
            let mut s = State::genesis(&c.genesis);
            for b in [copy, &next] {
                let e = s.effects(&c.genesis, b).unwrap();
                s.apply(b, &e);
            }
            s
        })
        .collect();
    for k in &c.keys {
        let key = k.public();
        assert_eq!(states[0].last_active(&key), states[1].last_active(&key));
        assert!(states[0].last_active(&key).is_some(), "recorded by block 2");
    }
    // A voted claim below the chain's difficulty, or one listed twice, is
    // refused.
    let mut weak = voted[0];
    while weak.is_valid(&c.chain(), c.genesis.difficulty) {
        weak.nonce = weak.nonce.wrapping_add(1);
    }
    for voted in [vec![weak], vec![voted[0], voted[0]]] {
        let bad = Block::propose_with(
            &c.keys[2],
            c.chain(),
            2,
            full.hash(),
            c.claims[2],
            Vec::new(),
            crate::block::Records {
                equivocations: Vec::new(),
                voted,
            },
        );
        let refused = bad.check_proposal(&c.genesis).unwrap_err();
        assert!(refused.contains("voted claim"), "{refused}");
    }
}
