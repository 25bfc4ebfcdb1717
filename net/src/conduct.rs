//! Peer conduct: what each peer did wrong, and who is banned for it.
//!
//! Every offence a peer commits (a malformed or flooding announcement, a
//! bad frame on a request stream, an invalid signed object or receipt the
//! node caught, a request left unanswered) adds its penalty to the peer's
//! score, which halves every [`ConductConfig::half_life`]. A peer whose
//! score reaches [`ConductConfig::ban_at`] is banned for
//! [`ConductConfig::ban_for`]: the event loop closes its connections and
//! refuses new ones (libp2p's block list) and gossipsub blacklists it.
//! Announcements are also rate limited per author (a token bucket):
//! what is over the rate is dropped, and counted as an offence.
//!
//! Each kind of offence is logged once per peer (the verdict says when it
//! is the first), not once per message. A pure core: time comes in as an
//! argument.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

/// What a peer did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offence {
    /// An announcement that does not decode.
    MalformedGossip,
    /// Announcements over the rate limit.
    GossipFlood,
    /// A request-stream frame that does not decode.
    MalformedFrame,
    /// A request-stream frame over the size limit.
    OversizedFrame,
    /// A signed object or receipt the node found invalid.
    Invalid,
    /// An output the other replicas outvoted (it may be the peer's fault
    /// or a minority of honest replicas: it weighs little).
    Outvoted,
    /// A request it never answered.
    Unanswered,
    /// An answer that came much later than its work explains.
    Slow,
    /// An announcement that fails its own checks: a committee claim
    /// without the work it claims, equivocation evidence that is not one.
    Forged,
    /// Two signed votes naming different blocks in answer to one query
    /// (provable: one is enough for a ban).
    Equivocated,
    /// A vote for a block the voter could not produce when asked for it.
    UnknownBlock,
}

impl Offence {
    /// Every kind, in a fixed order.
    pub const ALL: [Offence; 11] = [
        Offence::MalformedGossip,
        Offence::GossipFlood,
        Offence::MalformedFrame,
        Offence::OversizedFrame,
        Offence::Invalid,
        Offence::Outvoted,
        Offence::Unanswered,
        Offence::Slow,
        Offence::Forged,
        Offence::Equivocated,
        Offence::UnknownBlock,
    ];

    /// How much one offence adds to a score (a ban is at 100 by default).
    pub fn penalty(self) -> f64 {
        match self {
            Offence::MalformedGossip => 20.0,
            Offence::GossipFlood => 1.0,
            Offence::MalformedFrame | Offence::OversizedFrame => 50.0,
            Offence::Invalid => 25.0,
            Offence::Outvoted => 2.0,
            Offence::Unanswered | Offence::Slow => 10.0,
            Offence::Forged => 25.0,
            Offence::Equivocated => 100.0,
            Offence::UnknownBlock => 20.0,
        }
    }

    /// Its name in logs and in `orb peers`.
    pub fn as_str(self) -> &'static str {
        match self {
            Offence::MalformedGossip => "malformed announcement",
            Offence::GossipFlood => "announcements over the rate limit",
            Offence::MalformedFrame => "malformed request-stream frame",
            Offence::OversizedFrame => "request-stream frame over the size limit",
            Offence::Invalid => "invalid signed object or receipt",
            Offence::Outvoted => "output outvoted by the other replicas",
            Offence::Unanswered => "request left unanswered",
            Offence::Slow => "answer far slower than its work",
            Offence::Forged => "forged claim or evidence",
            Offence::Equivocated => "two conflicting votes for one query",
            Offence::UnknownBlock => "vote for a block it could not produce",
        }
    }

    fn bit(self) -> u16 {
        1 << Offence::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// The limits of [`Conduct`].
#[derive(Clone, Copy, Debug)]
pub struct ConductConfig {
    /// The score at which a peer is banned.
    pub ban_at: f64,
    /// How long a ban lasts.
    pub ban_for: Duration,
    /// A score halves in this long.
    pub half_life: Duration,
    /// Announcements one author may publish per second, on average.
    pub gossip_per_sec: f64,
    /// ... and at once.
    pub gossip_burst: f64,
}

impl Default for ConductConfig {
    fn default() -> Self {
        Self {
            ban_at: 100.0,
            ban_for: Duration::from_secs(600),
            half_life: Duration::from_secs(60),
            gossip_per_sec: 100.0,
            gossip_burst: 400.0,
        }
    }
}

/// What [`Conduct::offence`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The first offence of this kind by this peer: say it in the log.
    pub first_of_kind: bool,
    /// The peer is banned from now on (it was not before).
    pub banned: bool,
}

/// Peers tracked before the least suspicious are forgotten.
const TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Record {
    score: f64,
    at: Duration,
    said: u16,
    tokens: f64,
    tokens_at: Duration,
}

/// Scores, rate limits and bans of peers.
#[derive(Debug, Default)]
pub struct Conduct {
    config: ConductConfig,
    records: HashMap<PeerId, Record>,
    banned: HashMap<PeerId, Duration>,
}

impl Conduct {
    /// Conduct with these limits.
    pub fn new(config: ConductConfig) -> Self {
        Self {
            config,
            records: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    fn record(&mut self, peer: PeerId, now: Duration) -> &mut Record {
        if self.records.len() >= TRACKED && !self.records.contains_key(&peer) {
            self.forget_least(now);
        }
        let config = self.config;
        let r = self.records.entry(peer).or_insert(Record {
            score: 0.0,
            at: now,
            said: 0,
            tokens: config.gossip_burst,
            tokens_at: now,
        });
        let elapsed = now.saturating_sub(r.at).as_secs_f64();
        r.score *= 0.5f64.powf(elapsed / config.half_life.as_secs_f64().max(1e-9));
        r.at = now.max(r.at);
        r
    }

    fn forget_least(&mut self, now: Duration) {
        let half = self.config.half_life.as_secs_f64().max(1e-9);
        let decayed =
            |r: &Record| r.score * 0.5f64.powf(now.saturating_sub(r.at).as_secs_f64() / half);
        let mut scores: Vec<f64> = self.records.values().map(decayed).collect();
        scores.sort_by(f64::total_cmp);
        let cut = scores[scores.len() / 2];
        self.records.retain(|_, r| decayed(r) > cut);
    }

    /// `peer` committed `offence` at `now`.
    pub fn offence(&mut self, peer: PeerId, offence: Offence, now: Duration) -> Verdict {
        let ban_at = self.config.ban_at;
        let r = self.record(peer, now);
        r.score += offence.penalty();
        let first_of_kind = r.said & offence.bit() == 0;
        r.said |= offence.bit();
        let over = r.score >= ban_at;
        let banned = over && !self.is_banned(&peer, now);
        if banned {
            self.banned.insert(peer, now + self.config.ban_for);
        }
        Verdict {
            first_of_kind,
            banned,
        }
    }

    /// Whether an announcement by `author` at `now` is within its rate;
    /// one that is not should be dropped and counted as
    /// [`Offence::GossipFlood`].
    pub fn gossip(&mut self, author: PeerId, now: Duration) -> bool {
        let (rate, burst) = (self.config.gossip_per_sec, self.config.gossip_burst);
        let r = self.record(author, now);
        let elapsed = now.saturating_sub(r.tokens_at).as_secs_f64();
        r.tokens = (r.tokens + elapsed * rate).min(burst);
        r.tokens_at = now.max(r.tokens_at);
        if r.tokens >= 1.0 {
            r.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &PeerId, now: Duration) -> bool {
        self.banned.get(peer).is_some_and(|until| now < *until)
    }

    /// Bans that ended by `now` (forgotten, with the peer's score).
    pub fn expire(&mut self, now: Duration) -> Vec<PeerId> {
        let ended: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.banned.remove(p);
            self.records.remove(p);
        }
        ended
    }

    /// Peers banned at `now`.
    pub fn banned(&self, now: Duration) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(p, _)| *p)
            .collect();
        v.sort();
        v
    }

    /// `peer`'s score at `now` (0 when it did nothing wrong).
    pub fn score(&mut self, peer: &PeerId, now: Duration) -> f64 {
        if !self.records.contains_key(peer) {
            return 0.0;
        }
        self.record(*peer, now).score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn offences_add_up_to_a_ban_and_each_kind_is_said_once() {
        let mut c = Conduct::new(ConductConfig::default());
        let p = PeerId::random();
        let v = c.offence(p, Offence::MalformedFrame, Duration::ZERO);
        assert_eq!(
            v,
            Verdict {
                first_of_kind: true,
                banned: false
            }
        );
        let v = c.offence(p, Offence::MalformedFrame, Duration::ZERO);
        assert_eq!(
            v,
            Verdict {
                first_of_kind: false,
                banned: true
            }
        );
        assert!(c.is_banned(&p, S));
        // Banned once: more offences do not ban again.
        assert!(!c.offence(p, Offence::Invalid, S).banned);
        assert_eq!(c.banned(S), vec![p]);
        assert!(!c.is_banned(&PeerId::random(), S));
    }

    #[test]
    fn scores_decay_so_rare_mistakes_never_ban() {
        let mut c = Conduct::new(ConductConfig::default());
        let p = PeerId::random();
        // One unanswered request a minute, for an hour: never 100.
        for m in 0..60 {
            assert!(!c.offence(p, Offence::Unanswered, 60 * m * S).banned);
        }
        assert!(c.score(&p, 3_600 * S) < 25.0);
    }

    #[test]
    fn a_ban_ends_and_the_peer_starts_afresh() {
        let config = ConductConfig {
            ban_for: 10 * S,
            ..ConductConfig::default()
        };
        let mut c = Conduct::new(config);
        let p = PeerId::random();
        c.offence(p, Offence::OversizedFrame, Duration::ZERO);
        assert!(c.offence(p, Offence::OversizedFrame, Duration::ZERO).banned);
        assert!(c.expire(9 * S).is_empty());
        assert_eq!(c.expire(10 * S), vec![p]);
        assert!(!c.is_banned(&p, 10 * S));
        assert_eq!(c.score(&p, 10 * S), 0.0);
        assert!(c.offence(p, Offence::OversizedFrame, 10 * S).first_of_kind);
    }

    #[test]
    fn announcements_over_the_rate_are_refused_and_the_rate_refills() {
        let mut c = Conduct::new(ConductConfig {
            gossip_per_sec: 10.0,
            gossip_burst: 20.0,
            ..ConductConfig::default()
        });
        let p = PeerId::random();
        let admitted = (0..100).filter(|_| c.gossip(p, Duration::ZERO)).count();
        assert_eq!(admitted, 20);
        assert!(!c.gossip(p, Duration::from_millis(50)));
        assert!(c.gossip(p, Duration::from_millis(150)));
        // Another author has its own bucket.
        assert!(c.gossip(PeerId::random(), Duration::ZERO));
    }

    #[test]
    fn the_least_suspicious_are_forgotten_past_the_tracked_limit() {
        let mut c = Conduct::new(ConductConfig::default());
        let bad = PeerId::random();
        c.offence(bad, Offence::Invalid, Duration::ZERO);
        for _ in 0..TRACKED {
            c.gossip(PeerId::random(), Duration::ZERO);
        }
        assert!(c.records.len() <= TRACKED);
        assert!(c.score(&bad, Duration::ZERO) > 0.0, "the offender is kept");
    }
}
