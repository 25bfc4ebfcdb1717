//! The Kademlia side of the event loop: query results back to the
//! handles that asked, and republishing our provider records.

use libp2p::kad::{self, GetProvidersOk, GetRecordOk, QueryResult, store::RecordStore};
use tracing::{debug, info, warn};

use super::EventLoop;
use crate::{Error, NameRecord};

impl EventLoop {
    /// Peers in the Kademlia routing table.
    pub(super) fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    /// Re-publishes our provider records (after our addresses changed, so
    /// the records carry reachable addresses).
    pub(super) fn republish(&mut self) {
        let keys: Vec<kad::RecordKey> = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .provided()
            .map(|r| r.key.clone())
            .collect();
        for key in keys {
            let _ = self.swarm.behaviour_mut().kad.start_providing(key);
        }
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            if let kad::Event::ModeChanged { new_mode } = event {
                info!(%new_mode, "DHT mode");
            }
            return;
        };
        match result {
            QueryResult::StartProviding(result) => {
                if let Some(reply) = self.pending_provide.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Dht(e.to_string())));
                }
            }
            QueryResult::GetProviders(result) => {
                // Every peer's answer is a step (empty ones too): gather them
                // all, so that one stale provider does not hide the others.
                if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result
                    && let Some((_, found)) = self.pending_providers.get_mut(&id)
                {
                    found.extend(providers);
                }
                if step.last
                    && let Some((reply, found)) = self.pending_providers.remove(&id)
                {
                    let _ = reply.send(Ok(found.into_iter().collect()));
                }
            }
            QueryResult::PutRecord(result) => {
                if let Some(reply) = self.pending_put.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).or_else(|e| match e {
                        // Stored locally and on fewer peers than asked: the
                        // record still resolves; republishing spreads it.
                        kad::PutRecordError::QuorumFailed { .. } => Ok(()),
                        e => Err(Error::Dht(e.to_string())),
                    }));
                }
            }
            QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                match NameRecord::decode(&found.record.value) {
                    Ok(record) => {
                        if let Some(reply) = self.pending_get.remove(&id) {
                            let _ = reply.send(Ok(Some(record)));
                            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                query.finish();
                            }
                        }
                    }
                    Err(e) => warn!(peer = ?found.peer, "invalid name record ignored: {e}"),
                }
            }
            QueryResult::GetRecord(result) => {
                if step.last
                    && let Some(reply) = self.pending_get.remove(&id)
                {
                    // Nobody answered it: a lone node knows the record is
                    // missing; a connected one has not joined the DHT yet.
                    let asked_nobody = matches!(
                        &result,
                        Err(kad::GetRecordError::NotFound { closest_peers, .. })
                            if closest_peers.is_empty()
                    );
                    let _ = reply.send(
                        match asked_nobody && self.swarm.connected_peers().next().is_some() {
                            true => Err(Error::NotJoined),
                            false => Ok(None),
                        },
                    );
                }
            }
            QueryResult::Bootstrap(result) if step.last => {
                debug!(?result, "DHT bootstrap");
            }
            _ => {}
        }
    }
}
