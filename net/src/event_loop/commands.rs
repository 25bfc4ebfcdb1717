//! The command side of the event loop: what `Net` handles ask, and the
//! status and peer list they read.

use std::collections::HashSet;

use libp2p::PeerId;
use libp2p::kad;
use tracing::debug;

use super::{Command, EventLoop, peer_of};
use crate::handle::{NetStatus, PeerInfo};
use crate::{Error, NameRecord};

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_list());
            }
            Command::Dial { addr, reply } => {
                let Some(peer) = peer_of(&addr) else {
                    let _ = reply.send(Err(Error::Dial {
                        addr: addr.to_string(),
                        reason: "the address must end with /p2p/<peer id>".into(),
                    }));
                    return;
                };
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                self.swarm.add_peer_address(peer, addr.clone());
                match self.swarm.dial(addr.clone()) {
                    Ok(()) => self.pending_dial.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dial {
                            addr: addr.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Provide { function, reply } => {
                let key = kad::RecordKey::new(function.as_bytes());
                match self.swarm.behaviour_mut().kad.start_providing(key) {
                    Ok(id) => {
                        if let Some(reply) = reply {
                            self.pending_provide.insert(id, reply);
                        }
                    }
                    Err(e) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(Error::Dht(e.to_string())));
                        }
                    }
                }
            }
            Command::StopProviding { function } => {
                let key = kad::RecordKey::new(function.as_bytes());
                self.swarm.behaviour_mut().kad.stop_providing(&key);
            }
            Command::GetProviders { function, reply } => {
                let key = kad::RecordKey::new(function.as_bytes());
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(id, (reply, HashSet::new()));
            }
            Command::PutName { record, reply } => {
                let record = kad::Record::new(NameRecord::key(&record.name), record.encode());
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(id) => {
                        self.pending_put.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dht(e.to_string())));
                    }
                }
            }
            Command::GetName { name, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(NameRecord::key(&name));
                self.pending_get.insert(id, reply);
            }
            Command::Announce { announcement } => {
                let topic = self.topic.clone();
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, announcement.encode())
                {
                    debug!("announcement not published: {e}");
                }
            }
            Command::AddAddresses { peer, addrs } => {
                for addr in addrs {
                    self.swarm.add_peer_address(peer, addr);
                }
            }
            Command::Offence { peer, offence } => self.offend(peer, offence),
        }
    }

    pub(super) fn status(&mut self) -> NetStatus {
        let external: Vec<String> = self
            .swarm
            .external_addresses()
            .map(|a| a.to_string())
            .collect();
        let public = self.is_public();
        let routing_table = self.routing_table_size();
        NetStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external,
            nat: self.nat,
            supernode: public,
            dht_server: self.swarm.behaviour_mut().kad.mode() == kad::Mode::Server,
            relays: self
                .reservation
                .iter()
                .filter(|p| self.swarm.is_connected(p))
                .map(|p| p.to_string())
                .collect(),
            connected: self.swarm.connected_peers().count(),
            routing_table,
            known_peers: self.peers.len(),
            banned: self.conduct.banned(self.started.elapsed()).len(),
        }
    }

    pub(super) fn peer_list(&mut self) -> Vec<PeerInfo> {
        let now = self.started.elapsed();
        let mut ids: HashSet<PeerId> = self.known.keys().copied().collect();
        ids.extend(self.connections.keys().copied());
        ids.extend(self.conduct.banned(now));
        let scores: std::collections::HashMap<PeerId, f64> = ids
            .iter()
            .map(|p| (*p, self.conduct.score(p, now)))
            .collect();
        let mut list: Vec<PeerInfo> = ids
            .into_iter()
            .map(|peer| {
                let known = self.known.get(&peer);
                let (direct, relayed) = self.connections.get(&peer).copied().unwrap_or_default();
                PeerInfo {
                    peer_id: peer.to_string(),
                    addrs: known
                        .map(|k| k.addrs.iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                    connected: direct + relayed > 0,
                    relayed: direct == 0 && relayed > 0,
                    agent: known.map(|k| k.agent.clone()).unwrap_or_default(),
                    banned: self.conduct.is_banned(&peer, now),
                    score: scores.get(&peer).copied().unwrap_or(0.0),
                    supernode: self.relays.contains_key(&peer),
                    rtt_us: self.rtt.get(&peer).map(|d| d.as_micros() as u64),
                }
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        list
    }
}
