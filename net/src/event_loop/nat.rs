//! The NAT side of the event loop: a node that is not confirmed reachable
//! reserves a relay slot (and stays a DHT client); peers are looked for on
//! a tick.

use libp2p::kad;
use libp2p::multiaddr::Protocol;
use tracing::{info, warn};

use super::{EventLoop, RELAY_FALLBACK};
use crate::handle::NatStatus;

impl EventLoop {
    pub(super) fn on_tick(&mut self) {
        self.expire_bans();
        self.misbehave();
        self.maybe_reserve();
        self.redial_lan();
        // Look for peers: often while the routing table is small (a young
        // network, or we just joined), rarely once it is full.
        self.ticks += 1;
        let known = self.routing_table_size();
        let every = if known < 20 { 5 } else { 60 };
        if self.ticks.is_multiple_of(every) && known > 0 {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// Dials the mDNS peers we are not connected to: a first dial that
    /// failed (or was left to the other side) is tried again each second
    /// while the peer is still announced on the LAN.
    fn redial_lan(&mut self) {
        let unconnected: Vec<_> = self
            .lan
            .iter()
            .filter(|peer| !self.swarm.is_connected(peer))
            .copied()
            .collect();
        for peer in unconnected {
            let _ = self.swarm.dial(peer);
        }
    }

    /// A private node (or one AutoNAT has not confirmed for a while)
    /// listens through a relay it knows, once.
    pub(super) fn maybe_reserve(&mut self) {
        let unconfirmed = self.nat == NatStatus::Private
            || (self.nat == NatStatus::Unknown && self.started.elapsed() >= RELAY_FALLBACK);
        if !unconfirmed || self.reservation.is_some() || self.is_public() {
            return;
        }
        let Some((relay, addr)) = self
            .relays
            .iter()
            .find(|(peer, _)| self.swarm.is_connected(peer))
            .map(|(p, a)| (*p, a.clone()))
        else {
            return;
        };
        let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(_) => {
                info!(%circuit, "reserving a relay slot");
                self.reservation = Some(relay);
                // Our relayed address will count as confirmed, but others
                // cannot serve DHT queries through a relay: stay a client.
                self.swarm
                    .behaviour_mut()
                    .kad
                    .set_mode(Some(kad::Mode::Client));
            }
            Err(e) => warn!(%circuit, "cannot listen through relay: {e}"),
        }
    }
}
