//! The event loop's side of [`Conduct`](crate::Conduct): announcements are
//! validated and rate limited before gossipsub forwards them, offences
//! (from here, from the request streams, from the node) are scored, and a
//! peer past the limit is banned: its connections closed and refused, and
//! gossipsub told to ignore it, until the ban ends. Also the network-level
//! Byzantine test modes ([`Misbehaviour`](crate::Misbehaviour)).

use std::time::Duration;

use libp2p::{PeerId, gossipsub};
use tracing::{debug, info, warn};

use super::EventLoop;
use crate::handle::NetEvent;
use crate::{Announcement, Load, Offence};

/// Announcements a flooding test node publishes each second.
const FLOOD: usize = 1_000;
/// Malformed announcements a test node publishes each second.
const MALFORMED: usize = 20;

impl EventLoop {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Scores `offence` against `peer`; says it once per peer and kind,
    /// and bans the peer when its score reaches the limit.
    pub(super) fn offend(&mut self, peer: PeerId, offence: Offence) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let now = self.now();
        let verdict = self.conduct.offence(peer, offence, now);
        if verdict.first_of_kind {
            warn!(%peer, offence = offence.as_str(), "peer misbehaved (said once per peer and kind)");
        }
        if verdict.banned {
            let secs = self.conduct_config.ban_for.as_secs();
            warn!(%peer, secs, last = offence.as_str(), "peer banned: its connections are closed and refused");
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        }
    }

    /// Lifts the bans that ended.
    pub(super) fn expire_bans(&mut self) {
        for peer in self.conduct.expire(self.now()) {
            info!(%peer, "ban ended");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
    }

    /// One announcement from gossipsub: forwarded on (and handed to the
    /// node) only if it decodes, passes the node's screen and its author is
    /// within its rate.
    pub(super) fn on_gossip(
        &mut self,
        from: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let verdict = |this: &mut Self, acceptance| {
            this.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &from, acceptance);
        };
        let Some(author) = message.source else {
            verdict(self, gossipsub::MessageAcceptance::Reject);
            return;
        };
        let now = self.now();
        if self.conduct.is_banned(&author, now) {
            verdict(self, gossipsub::MessageAcceptance::Ignore);
            return;
        }
        if !self.conduct.gossip(author, now) {
            verdict(self, gossipsub::MessageAcceptance::Ignore);
            self.offend(author, Offence::GossipFlood);
            return;
        }
        match Announcement::decode(&message.data) {
            Some(announcement) if !self.screen.passes(&announcement) => {
                verdict(self, gossipsub::MessageAcceptance::Reject);
                self.offend(author, Offence::Forged);
            }
            Some(announcement) => {
                verdict(self, gossipsub::MessageAcceptance::Accept);
                if self
                    .events
                    .try_send(NetEvent::Announcement {
                        peer: author,
                        announcement,
                    })
                    .is_err()
                {
                    debug!("node busy: announcement from {author} dropped");
                }
            }
            None => {
                verdict(self, gossipsub::MessageAcceptance::Reject);
                self.offend(author, Offence::MalformedGossip);
            }
        }
    }

    /// The Byzantine test modes that publish, once a second.
    pub(super) fn misbehave(&mut self) {
        let topic = self.topic.clone();
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        if self.misbehave.flood_gossip {
            for i in 0..FLOOD {
                let load = Announcement::Load(Load {
                    capacity: 1,
                    in_flight: i as u32,
                    busy_permille: 0,
                    functions: Vec::new(),
                });
                if gossip.publish(topic.clone(), load.encode()).is_err() {
                    break;
                }
            }
        }
        if self.misbehave.malformed_gossip {
            for i in 0..MALFORMED {
                let junk = [0xff, 0xfe, i as u8, 0xff, 0xff, 0xff, 0xff, 0xff];
                if gossip.publish(topic.clone(), junk.to_vec()).is_err() {
                    break;
                }
            }
        }
    }
}
