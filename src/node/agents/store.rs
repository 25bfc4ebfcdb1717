//! Where the agents hosted here keep their state: four trees of the
//! node's database.
//!
//! - `agent_modules`: the agent modules deployed here, each with the
//!   state a new agent starts from (empty: the module's default) and its
//!   hosts ([`AgentModule`]);
//! - `agent_standing`: agent → this host's [`Stand`] in its replication
//!   (agents with more than one host);
//! - `agent_state`: agent → its [`AgentState`] after the last applied
//!   message;
//! - `agent_log`: agent, sequence number → the applied message
//!   ([`AgentLogEntry`]), the last [`KEEP`] of each agent;
//! - `agent_seen`: agent, message id → its sequence number, for the same
//!   messages: a retry finds its reply here instead of being applied
//!   again.
//!
//! - `agent_outbox`: agent, step, index → a message a step sent to
//!   another agent ([`Pending`]), until it is delivered;
//! - `agent_reminders`: agent, name → a reminder a step set
//!   ([`Reminder`]), until the message it brings is applied or a step
//!   cancels it.
//!
//! One step is one sled transaction over these trees
//! ([`AgentStore::write`]), then a flush and an fdatasync of the database file
//! ([`AgentStore::sync`]): once both have returned, the step survives the
//! process being killed and the machine losing power. One sync makes every
//! write before it durable, so steps of different agents share them
//! (group commit, [`super::Durability`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use orb_functions::FunctionId;
use orb_ledger::sequencer::Standing;
use orb_net::{AgentLogEntry, AgentState, Publication};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Applied messages kept per agent (and deduplicated against).
pub(crate) const KEEP: u64 = 10_000;

/// The agents' trees.
#[derive(Clone)]
pub(crate) struct AgentStore {
    db: sled::Db,
    /// sled's file, kept open for the fsync.
    file: Arc<std::fs::File>,
    modules: sled::Tree,
    states: sled::Tree,
    log: sled::Tree,
    seen: sled::Tree,
    outbox: sled::Tree,
    standing: sled::Tree,
    reminders: sled::Tree,
    /// Publications on agents' topics: publisher\0topic\0seq index.
    topics: sled::Tree,
    /// The topics agents subscribed to: subscriber\0topic (written by
    /// their steps).
    subscriptions: sled::Tree,
    /// The last publication this node delivered to a subscriber, by
    /// subscriber\0topic (this node's own progress, not a step's).
    cursors: sled::Tree,
    /// Which registered module upgrades which (old → new), read from
    /// `modules` at open and at each registration, so that a step finds
    /// its version without a scan.
    upgrades: Arc<RwLock<HashMap<FunctionId, FunctionId>>>,
}

/// An agent module as registered on each of its hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentModule {
    /// The state a new agent starts from (empty: the module's default).
    pub(crate) init: Vec<u8>,
    /// The hosts of every agent of the module (peer ids), in the order
    /// ballots name them; empty: this node alone.
    pub(crate) hosts: Vec<String>,
    /// The module this one upgrades, if it is an upgrade: an agent at that
    /// module moves to this one on its next step.
    pub(crate) replaces: Option<FunctionId>,
    /// Which host list this is: 0 at deploy, one more at each move
    /// (`orb agent move`); ballots carry it.
    pub(crate) epoch: u32,
    /// While the agents move to `hosts`: the list before (a takeover
    /// needs a majority of both); empty once every agent moved.
    pub(crate) previous: Vec<String>,
}

impl AgentModule {
    /// Whether `peer` is one of the hosts.
    pub(crate) fn hosted_by(&self, peer: &str) -> bool {
        self.hosts.iter().any(|h| h == peer)
    }

    /// The request that has a peer keep this registration of `function`.
    pub(crate) fn request(&self, function: FunctionId) -> orb_net::Request {
        orb_net::Request::AgentModule {
            function,
            init: self.init.clone(),
            hosts: self.hosts.clone(),
            replaces: self.replaces,
            epoch: self.epoch,
            previous: self.previous.clone(),
        }
    }
}

/// An agent module as registered before hosts could move.
#[derive(Deserialize)]
struct AgentModuleV1 {
    init: Vec<u8>,
    hosts: Vec<String>,
    replaces: Option<FunctionId>,
}

/// An agent module as registered before upgrades existed.
#[derive(Deserialize)]
struct AgentModuleV0 {
    init: Vec<u8>,
    hosts: Vec<String>,
}

/// This host's part in one agent's replication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stand {
    /// Its promise and head.
    pub(crate) standing: Standing,
    /// Messages it knows a majority of the hosts applied: sends of steps
    /// up to here may leave, later ones wait.
    pub(crate) committed: u64,
}

/// A message a step sent to another agent, kept until it is delivered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The sending agent.
    pub(crate) from: String,
    /// The agent it goes to.
    pub(crate) to: String,
    /// Its id: the same on every delivery attempt.
    pub(crate) message_id: [u8; 16],
    pub(crate) message: Vec<u8>,
}

/// A reminder an agent set: `message` comes back to it once the clock
/// passes `due` and the chain reaches `due_height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reminder {
    /// The agent it belongs to.
    pub(crate) agent: String,
    /// Its name among the agent's reminders.
    pub(crate) name: String,
    /// The step that set it.
    pub(crate) set_at: u64,
    /// When it is due: milliseconds since the Unix epoch.
    pub(crate) due: u64,
    /// The id of the message it brings, the same on every host and every
    /// attempt (the agent applies it once).
    pub(crate) message_id: [u8; 16],
    pub(crate) message: Vec<u8>,
    /// The agent it goes to; `None`: the one that set it.
    pub(crate) to: Option<String>,
    /// A call: the function or agent `message` goes to; its output or
    /// reply goes to the agent that set it.
    pub(crate) call: Option<Callee>,
    /// The reward chain's height it waits for too (0: none).
    pub(crate) due_height: u64,
}

/// Who a call from an agent goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Callee {
    /// A function, by name.
    Function(String),
    /// An agent: `module/id`.
    Agent(String),
}

/// A reminder as kept before reminders after blocks.
#[derive(Deserialize)]
struct ReminderV0 {
    agent: String,
    name: String,
    set_at: u64,
    due: u64,
    message_id: [u8; 16],
    message: Vec<u8>,
    to: Option<String>,
    call: Option<String>,
}

fn decode_reminder(bytes: &[u8]) -> Result<Reminder, String> {
    decode("agent reminder", bytes).or_else(|e| {
        postcard::from_bytes::<ReminderV0>(bytes)
            .map(|r| Reminder {
                agent: r.agent,
                name: r.name,
                set_at: r.set_at,
                due: r.due,
                message_id: r.message_id,
                message: r.message,
                to: r.to,
                call: r.call.map(Callee::Function),
                due_height: 0,
            })
            .map_err(|_| e)
    })
}

/// What a step does to its agent's reminders, in order (first, when the
/// step applies a reminder's message, that reminder is cancelled: it is
/// spent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReminderChange {
    Set(Reminder),
    Cancel(String),
}

/// What a step changes besides its state and log entry, all written in
/// its transaction.
pub(crate) struct StepEffects<'a> {
    pub(crate) sends: &'a [Pending],
    pub(crate) reminders: &'a [ReminderChange],
    /// (topic name, message), in publication order.
    pub(crate) publications: &'a [(String, Vec<u8>)],
    /// (topic `module/id/topic`, subscribed or not), in order.
    pub(crate) subscriptions: &'a [(String, bool)],
}

/// Where a publication is kept: after the topic, its step and index.
fn topic_key(agent: &str, topic: &str, (seq, index): (u64, u32)) -> Vec<u8> {
    let mut tail = Vec::with_capacity(topic.len() + 13);
    tail.extend_from_slice(topic.as_bytes());
    tail.push(0);
    tail.extend_from_slice(&seq.to_be_bytes());
    tail.extend_from_slice(&index.to_be_bytes());
    key(agent, &tail)
}

fn key(agent: &str, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent.len() + 1 + tail.len());
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(tail);
    k
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("a stored {what} does not decode: {e}"))
}

fn io(e: impl std::fmt::Display) -> String {
    format!("agent store: {e}")
}

impl AgentStore {
    /// Opens the trees in `db`, whose directory is `path`.
    pub(crate) fn open(db: &sled::Db, path: &Path) -> Result<Self, sled::Error> {
        let store = Self {
            db: db.clone(),
            file: Arc::new(std::fs::File::open(path.join("db"))?),
            modules: db.open_tree("agent_modules")?,
            states: db.open_tree("agent_state")?,
            log: db.open_tree("agent_log")?,
            seen: db.open_tree("agent_seen")?,
            outbox: db.open_tree("agent_outbox")?,
            standing: db.open_tree("agent_standing")?,
            reminders: db.open_tree("agent_reminders")?,
            topics: db.open_tree("agent_topics")?,
            subscriptions: db.open_tree("agent_subscriptions")?,
            cursors: db.open_tree("agent_cursors")?,
            upgrades: Arc::default(),
        };
        store.read_upgrades()?;
        Ok(store)
    }

    /// Reads which module upgrades which from the registrations: for each
    /// module upgraded, the upgrade with the least id (the one a scan in
    /// key order meets first). A registration that does not decode names
    /// no upgrade.
    fn read_upgrades(&self) -> Result<(), sled::Error> {
        let mut upgrades = HashMap::new();
        for kv in self.modules.iter() {
            let (k, _) = kv?;
            let Ok(id) = <[u8; 32]>::try_from(k.as_ref()) else {
                continue;
            };
            let id = FunctionId::from_bytes(id);
            if let Ok(Some(AgentModule {
                replaces: Some(old),
                ..
            })) = self.module(&id)
            {
                upgrades.entry(old).or_insert(id);
            }
        }
        *self
            .upgrades
            .write()
            .unwrap_or_else(PoisonError::into_inner) = upgrades;
        Ok(())
    }

    /// Records `function` as an agent module.
    pub(crate) fn register(
        &self,
        function: FunctionId,
        module: &AgentModule,
    ) -> Result<(), String> {
        let bytes = postcard::to_stdvec(module).map_err(io)?;
        self.modules
            .insert(function.as_bytes(), bytes)
            .map_err(io)?;
        self.read_upgrades().map_err(io)?;
        self.sync()
    }

    /// The registration of `function`, if it is an agent module deployed
    /// here.
    pub(crate) fn module(&self, function: &FunctionId) -> Result<Option<AgentModule>, String> {
        self.modules
            .get(function.as_bytes())
            .map_err(io)?
            .map(|v| {
                decode("agent module", &v).or_else(|e| {
                    postcard::from_bytes::<AgentModuleV1>(&v)
                        .map(|m| AgentModule {
                            init: m.init,
                            hosts: m.hosts,
                            replaces: m.replaces,
                            ..AgentModule::default()
                        })
                        .or_else(|_| {
                            postcard::from_bytes::<AgentModuleV0>(&v).map(|m| AgentModule {
                                init: m.init,
                                hosts: m.hosts,
                                ..AgentModule::default()
                            })
                        })
                        .map_err(|_| e)
                })
            })
            .transpose()
    }

    /// Every agent module registered here.
    pub(crate) fn modules(&self) -> Result<Vec<(FunctionId, AgentModule)>, String> {
        let mut out = Vec::new();
        for kv in self.modules.iter() {
            let (k, _) = kv.map_err(io)?;
            let Ok(id) = <[u8; 32]>::try_from(k.as_ref()) else {
                continue;
            };
            let id = FunctionId::from_bytes(id);
            if let Some(m) = self.module(&id)? {
                out.push((id, m));
            }
        }
        Ok(out)
    }

    /// The agent module registered here as an upgrade of `function`, if
    /// one is.
    pub(crate) fn upgrade_of(&self, function: &FunctionId) -> Option<FunctionId> {
        self.upgrades
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(function)
            .copied()
    }

    /// This host's standing in `agent`'s replication, if it has one.
    pub(crate) fn stand(&self, agent: &str) -> Result<Option<Stand>, String> {
        self.standing
            .get(agent.as_bytes())
            .map_err(io)?
            .map(|v| decode("agent standing", &v))
            .transpose()
    }

    /// Writes this host's standing alone (a promise, a sync). Durable after
    /// the next [`Self::sync`].
    pub(crate) fn put_stand(&self, agent: &str, stand: &Stand) -> Result<(), String> {
        let bytes = postcard::to_stdvec(stand).map_err(io)?;
        self.standing.insert(agent.as_bytes(), bytes).map_err(io)?;
        Ok(())
    }

    /// The applied message number `seq`, if it is kept.
    pub(crate) fn entry(&self, agent: &str, seq: u64) -> Result<Option<AgentLogEntry>, String> {
        self.log
            .get(key(agent, &seq.to_be_bytes()))
            .map_err(io)?
            .map(|v| decode("agent log entry", &v))
            .transpose()
    }

    /// Replaces this host's copy of `agent` by one fetched from another
    /// host: its state, the log entries that lead to it, the standing, and
    /// its side (reminders and subscriptions instead of this host's, and
    /// its publications from the first fetched entry on);
    /// this host's own log above the first fetched entry, and what its
    /// steps above `keep_sends` were to send, are dropped (they were never
    /// agreed). Durable after the next [`Self::sync`].
    pub(crate) fn adopt(
        &self,
        agent: &str,
        state: &AgentState,
        entries: &[AgentLogEntry],
        stand: &Stand,
        keep_sends: u64,
        side: &orb_net::AgentSide,
    ) -> Result<(), String> {
        let first = entries.first().map_or(state.seq + 1, |e| e.seq);
        let prefix = key(agent, b"");
        let keys = |tree: &sled::Tree| -> Result<Vec<Vec<u8>>, String> {
            tree.scan_prefix(&prefix)
                .keys()
                .map(|k| k.map(|k| k.to_vec()).map_err(io))
                .collect()
        };
        // The copy's reminders and subscriptions replace this host's; its
        // publications replace those from its first log entry on.
        let old_subscriptions = keys(&self.subscriptions)?;
        let old_publications: Vec<Vec<u8>> = keys(&self.topics)?
            .into_iter()
            .filter(|k| {
                k.len() >= 12
                    && u64::from_be_bytes(k[k.len() - 12..k.len() - 4].try_into().unwrap_or([0; 8]))
                        >= first
            })
            .collect();
        let mut new_reminders = Vec::new();
        for bytes in &side.reminders {
            let r = decode_reminder(bytes)?;
            if r.agent != agent {
                return Err(format!("a copied reminder belongs to {}", r.agent));
            }
            new_reminders.push((key(agent, r.name.as_bytes()), bytes.clone()));
        }
        let new_publications: Vec<(Vec<u8>, &[u8])> = side
            .publications
            .iter()
            .map(|(topic, p)| {
                (
                    topic_key(agent, topic, (p.seq, p.index)),
                    p.message.as_slice(),
                )
            })
            .collect();
        let end = key(agent, &u64::MAX.to_be_bytes());
        let stale_log: Vec<(Vec<u8>, AgentLogEntry)> = self
            .log
            .range(key(agent, &first.to_be_bytes())..=end.clone())
            .map(|kv| {
                let (k, v) = kv.map_err(io)?;
                Ok((k.to_vec(), decode("agent log entry", &v)?))
            })
            .collect::<Result<_, String>>()?;
        let stale_sends: Vec<Vec<u8>> = self
            .outbox
            .range(key(agent, &(keep_sends + 1).to_be_bytes())..=end)
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(io))
            .collect::<Result<_, String>>()?;
        let stale_reminders = keys(&self.reminders)?;
        let entries: Vec<(u64, [u8; 16], Vec<u8>)> = entries
            .iter()
            .map(|e| postcard::to_stdvec(e).map(|v| (e.seq, e.message_id, v)))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let state_bytes = postcard::to_stdvec(state).map_err(io)?;
        let stand_bytes = postcard::to_stdvec(stand).map_err(io)?;
        let result: Result<(), TransactionError<String>> = (
            &self.states,
            &self.log,
            &self.seen,
            &self.outbox,
            &self.standing,
            &self.reminders,
            &self.topics,
            &self.subscriptions,
        )
            .transaction(
                |(states, log, seen, outbox, standing, reminders, topics, subscribed)| {
                    for k in &stale_reminders {
                        reminders.remove(k.as_slice())?;
                    }
                    for (k, v) in &new_reminders {
                        reminders.insert(k.as_slice(), v.as_slice())?;
                    }
                    for k in &old_subscriptions {
                        subscribed.remove(k.as_slice())?;
                    }
                    for topic in &side.subscriptions {
                        subscribed.insert(key(agent, topic.as_bytes()), &[])?;
                    }
                    for k in &old_publications {
                        topics.remove(k.as_slice())?;
                    }
                    for (k, v) in &new_publications {
                        topics.insert(k.as_slice(), *v)?;
                    }
                    for (k, gone) in &stale_log {
                        log.remove(k.as_slice())?;
                        seen.remove(key(agent, &gone.message_id))?;
                    }
                    for k in &stale_sends {
                        outbox.remove(k.as_slice())?;
                    }
                    for (seq, id, bytes) in &entries {
                        let seq = seq.to_be_bytes();
                        log.insert(key(agent, &seq), bytes.as_slice())?;
                        seen.insert(key(agent, id), &seq)?;
                    }
                    states.insert(agent.as_bytes(), state_bytes.as_slice())?;
                    standing.insert(agent.as_bytes(), stand_bytes.as_slice())?;
                    Ok(())
                },
            );
        result.map_err(|e| match e {
            TransactionError::Abort(why) => why,
            TransactionError::Storage(e) => io(e),
        })
    }

    /// Publications on `agent`'s topic `topic` after `after`, at most
    /// `max`, in order. Of a replicated agent, only those of steps this
    /// host knows a majority of the hosts applied: a publication leaves
    /// through the output gate like a reply or a send.
    pub(crate) fn publications(
        &self,
        agent: &str,
        topic: &str,
        after: (u64, u32),
        max: usize,
    ) -> Result<Vec<Publication>, String> {
        let start = match after.1.checked_add(1) {
            Some(index) => (after.0, index),
            None => (after.0.saturating_add(1), 0),
        };
        let last = self.stand(agent)?.map_or(u64::MAX, |s| s.committed);
        if start.0 > last {
            return Ok(Vec::new());
        }
        let end = topic_key(agent, topic, (last, u32::MAX));
        self.topics
            .range(topic_key(agent, topic, start)..=end)
            .take(max)
            .map(|kv| {
                let (k, v) = kv.map_err(io)?;
                let place = &k[k.len() - 12..];
                Ok(Publication {
                    seq: u64::from_be_bytes(place[..8].try_into().map_err(io)?),
                    index: u32::from_be_bytes(place[8..].try_into().map_err(io)?),
                    message: v.to_vec(),
                })
            })
            .collect()
    }

    /// Whether this host holds steps of `agent` it does not know a
    /// majority applied (their publications wait).
    pub(crate) fn unconfirmed(&self, agent: &str) -> Result<bool, String> {
        Ok(self
            .stand(agent)?
            .is_some_and(|s| s.committed < s.standing.head.seq))
    }

    /// The topics `agent` subscribed to.
    pub(crate) fn subscriptions_of(&self, agent: &str) -> Result<Vec<String>, String> {
        let prefix = key(agent, b"");
        self.subscriptions
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, _) = kv.map_err(io)?;
                String::from_utf8(k[prefix.len()..].to_vec()).map_err(io)
            })
            .collect()
    }

    /// Every subscription kept here (at most `max`): (subscriber, topic).
    pub(crate) fn subscriptions(&self, max: usize) -> Result<Vec<(String, String)>, String> {
        self.subscriptions
            .iter()
            .take(max)
            .map(|kv| {
                let (k, _) = kv.map_err(io)?;
                let at = k
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or_else(|| io("a subscription key without its topic"))?;
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(io);
                Ok((text(&k[..at])?, text(&k[at + 1..])?))
            })
            .collect()
    }

    /// The last publication of `topic` this node delivered to `agent`
    /// (`(0, 0)`: none).
    pub(crate) fn cursor(&self, agent: &str, topic: &str) -> Result<(u64, u32), String> {
        Ok(self
            .cursors
            .get(key(agent, topic.as_bytes()))
            .map_err(io)?
            .and_then(|v| postcard::from_bytes(&v).ok())
            .unwrap_or((0, 0)))
    }

    /// Records that `agent` has the publications of `topic` up to `to`.
    pub(crate) fn advance(&self, agent: &str, topic: &str, to: (u64, u32)) -> Result<(), String> {
        let bytes = postcard::to_stdvec(&to).map_err(io)?;
        self.cursors
            .insert(key(agent, topic.as_bytes()), bytes)
            .map_err(io)?;
        Ok(())
    }

    /// An agent's state.
    pub(crate) fn state(&self, agent: &str) -> Result<Option<AgentState>, String> {
        self.states
            .get(agent.as_bytes())
            .map_err(io)?
            .map(|v| decode("agent state", &v))
            .transpose()
    }

    /// Whether this node keeps a state for `agent`.
    pub(crate) fn has(&self, agent: &str) -> Result<bool, String> {
        self.states.contains_key(agent.as_bytes()).map_err(io)
    }

    /// The applied message with this id, if it is among the kept ones.
    pub(crate) fn seen(
        &self,
        agent: &str,
        message_id: &[u8; 16],
    ) -> Result<Option<AgentLogEntry>, String> {
        let Some(seq) = self.seen.get(key(agent, message_id)).map_err(io)? else {
            return Ok(None);
        };
        self.log
            .get(key(agent, &seq))
            .map_err(io)?
            .map(|v| decode("agent log entry", &v))
            .transpose()
    }

    /// Up to `max` applied messages from sequence number `from` on.
    pub(crate) fn log(
        &self,
        agent: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<AgentLogEntry>, String> {
        let start = key(agent, &from.to_be_bytes());
        let end = key(agent, &u64::MAX.to_be_bytes());
        self.log
            .range(start..=end)
            .take(max)
            .map(|kv| {
                let (_, v) = kv.map_err(io)?;
                decode("agent log entry", &v)
            })
            .collect()
    }

    /// What this host keeps of `agent` besides its state and log: its
    /// reminders, subscriptions and its publications from step `from` on.
    pub(crate) fn side(&self, agent: &str, from: u64) -> Result<orb_net::AgentSide, String> {
        let prefix = key(agent, b"");
        let reminders = self
            .reminders
            .scan_prefix(&prefix)
            .values()
            .map(|v| v.map(|v| v.to_vec()).map_err(io))
            .collect::<Result<_, _>>()?;
        let mut publications = Vec::new();
        for kv in self.topics.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(io)?;
            let tail = &k[prefix.len()..];
            let Some(cut) = tail.len().checked_sub(13) else {
                continue;
            };
            let place = &tail[cut + 1..];
            let seq = u64::from_be_bytes(place[..8].try_into().map_err(io)?);
            if seq < from {
                continue;
            }
            publications.push((
                String::from_utf8(tail[..cut].to_vec()).map_err(io)?,
                Publication {
                    seq,
                    index: u32::from_be_bytes(place[8..].try_into().map_err(io)?),
                    message: v.to_vec(),
                },
            ));
        }
        publications.sort_by_key(|(_, p)| (p.seq, p.index));
        Ok(orb_net::AgentSide {
            reminders,
            subscriptions: self.subscriptions_of(agent)?,
            publications,
        })
    }

    /// The names of the agents kept here whose last step ran one of
    /// `functions`.
    pub(crate) fn agents_of(&self, functions: &[FunctionId]) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for kv in self.states.iter() {
            let (k, v) = kv.map_err(io)?;
            let state: AgentState = decode("agent state", &v)?;
            if functions.contains(&state.function) {
                names.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        Ok(names)
    }

    /// How many agents are kept here.
    pub(crate) fn count(&self) -> usize {
        self.states.len()
    }

    /// The agents kept here (at most `max`), by name.
    pub(crate) fn list(&self, max: usize) -> Result<Vec<(String, AgentState)>, String> {
        self.states
            .iter()
            .take(max)
            .map(|kv| {
                let (k, v) = kv.map_err(io)?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("agent state", &v)?,
                ))
            })
            .collect()
    }

    /// Writes one applied step: the new state, its log entry and its id,
    /// dropping the entry [`KEEP`] messages back. Durable after the next
    /// [`Self::sync`].
    pub(crate) fn write(
        &self,
        agent: &str,
        state: &AgentState,
        entry: &AgentLogEntry,
        effects: &StepEffects<'_>,
        stand: Option<&Stand>,
    ) -> Result<(), String> {
        let StepEffects {
            sends,
            reminders,
            publications,
            subscriptions,
        } = effects;
        let publications: Vec<(Vec<u8>, &[u8])> = publications
            .iter()
            .enumerate()
            .map(|(i, (topic, message))| {
                (
                    topic_key(agent, topic, (entry.seq, i as u32)),
                    message.as_slice(),
                )
            })
            .collect();
        let subscriptions: Vec<(Vec<u8>, bool)> = subscriptions
            .iter()
            .map(|(topic, on)| (key(agent, topic.as_bytes()), *on))
            .collect();
        let reminders: Vec<(Vec<u8>, Option<Vec<u8>>)> = reminders
            .iter()
            .map(|change| match change {
                ReminderChange::Set(r) => postcard::to_stdvec(r)
                    .map(|v| (key(agent, r.name.as_bytes()), Some(v)))
                    .map_err(io),
                ReminderChange::Cancel(name) => Ok((key(agent, name.as_bytes()), None)),
            })
            .collect::<Result<_, _>>()?;
        let sends: Vec<(Vec<u8>, Vec<u8>)> = sends
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut tail = entry.seq.to_be_bytes().to_vec();
                tail.extend_from_slice(&(i as u32).to_be_bytes());
                postcard::to_stdvec(p).map(|v| (key(agent, &tail), v))
            })
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let state_bytes = postcard::to_stdvec(state).map_err(io)?;
        let stand_bytes = stand.map(postcard::to_stdvec).transpose().map_err(io)?;
        let entry_bytes = postcard::to_stdvec(entry).map_err(io)?;
        let seq = entry.seq.to_be_bytes();
        let old = entry
            .seq
            .checked_sub(KEEP)
            .filter(|s| *s > 0)
            .map(|s| key(agent, &s.to_be_bytes()));
        let result: Result<(), TransactionError<String>> = (
            &self.states,
            &self.log,
            &self.seen,
            &self.outbox,
            &self.standing,
            &self.reminders,
            &self.topics,
            &self.subscriptions,
        )
            .transaction(
                |(states, log, seen, outbox, standing, tree, topics, subscribed)| {
                    for (k, v) in &publications {
                        topics.insert(k.as_slice(), *v)?;
                    }
                    for (k, on) in &subscriptions {
                        if *on {
                            subscribed.insert(k.as_slice(), &[])?;
                        } else {
                            subscribed.remove(k.as_slice())?;
                        }
                    }
                    for (k, v) in &reminders {
                        match v {
                            Some(v) => tree.insert(k.as_slice(), v.as_slice())?,
                            None => tree.remove(k.as_slice())?,
                        };
                    }
                    for (k, v) in &sends {
                        outbox.insert(k.as_slice(), v.as_slice())?;
                    }
                    if let Some(bytes) = &stand_bytes {
                        standing.insert(agent.as_bytes(), bytes.as_slice())?;
                    }
                    states.insert(agent.as_bytes(), state_bytes.as_slice())?;
                    log.insert(key(agent, &seq), entry_bytes.as_slice())?;
                    seen.insert(key(agent, &entry.message_id), &seq)?;
                    if let Some(old) = &old
                        && let Some(gone) = log.remove(old.as_slice())?
                    {
                        let gone: AgentLogEntry = decode("agent log entry", &gone)
                            .map_err(ConflictableTransactionError::Abort)?;
                        seen.remove(key(agent, &gone.message_id))?;
                    }
                    Ok(())
                },
            );
        result.map_err(|e| match e {
            TransactionError::Abort(why) => why,
            TransactionError::Storage(e) => io(e),
        })?;
        // Publications are kept for as many steps as the log; what is
        // older goes (after the step: a crash in between leaves it to the
        // next publication).
        if let Some(old) = entry.seq.checked_sub(KEEP) {
            let mut trimmed: Vec<&str> = Vec::new();
            for (topic, _) in effects.publications {
                if trimmed.contains(&topic.as_str()) {
                    continue;
                }
                trimmed.push(topic);
                let range = topic_key(agent, topic, (0, 0))..topic_key(agent, topic, (old + 1, 0));
                for kv in self.topics.range(range) {
                    let (k, _) = kv.map_err(io)?;
                    self.topics.remove(k).map_err(io)?;
                }
            }
        }
        Ok(())
    }

    /// Up to `max` undelivered messages, oldest first (by sender, then
    /// its step and place in it).
    pub(crate) fn pending(&self, max: usize) -> Result<Vec<(Vec<u8>, u64, Pending)>, String> {
        self.outbox
            .iter()
            .take(max)
            .map(|kv| {
                let (k, v) = kv.map_err(io)?;
                let p: Pending = decode("outgoing agent message", &v)?;
                let at = p.from.len() + 1;
                let seq = k
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| io("an outbox key without its step"))?;
                Ok((k.to_vec(), seq, p))
            })
            .collect()
    }

    /// The reminders `agent` has set, by name.
    pub(crate) fn reminders_of(&self, agent: &str) -> Result<Vec<Reminder>, String> {
        self.reminders
            .scan_prefix(key(agent, b""))
            .map(|kv| {
                let (_, v) = kv.map_err(io)?;
                decode_reminder(&v)
            })
            .collect()
    }

    /// Every reminder kept here (at most `max`), by agent and name.
    pub(crate) fn reminders(&self, max: usize) -> Result<Vec<Reminder>, String> {
        self.reminders
            .iter()
            .take(max)
            .map(|kv| {
                let (_, v) = kv.map_err(io)?;
                decode_reminder(&v)
            })
            .collect()
    }

    /// Forgets a reminder whose message was applied, unless a step set it
    /// again since.
    pub(crate) fn spent(&self, reminder: &Reminder) -> Result<(), String> {
        let k = key(&reminder.agent, reminder.name.as_bytes());
        let Some(kept) = self.reminders.get(&k).map_err(io)? else {
            return Ok(());
        };
        if decode_reminder(&kept)?.message_id == reminder.message_id {
            // Fails harmlessly if a step replaced it meanwhile.
            let _ = self
                .reminders
                .compare_and_swap(&k, Some(kept), None::<&[u8]>)
                .map_err(io)?;
        }
        Ok(())
    }

    /// Forgets a delivered message (delivering it again would be harmless:
    /// its id makes the receiver apply it once).
    pub(crate) fn delivered(&self, key: &[u8]) -> Result<(), String> {
        self.outbox.remove(key).map_err(io)?;
        Ok(())
    }

    /// Makes every write so far durable: sled's flush, then an fdatasync
    /// of its file (the flush alone does not reach the disk's cache; the
    /// data and the file's size are what a restart reads, so its other
    /// metadata need not wait). Blocks.
    pub(crate) fn sync(&self) -> Result<(), String> {
        self.db.flush().map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> AgentStore {
        let db = sled::open(dir).expect("sled");
        AgentStore::open(&db, dir).expect("store")
    }

    fn state(seq: u64, bytes: &[u8]) -> AgentState {
        AgentState {
            function: FunctionId::of(b"m"),
            seq,
            state: bytes.to_vec(),
            hash: *blake3::hash(bytes).as_bytes(),
        }
    }

    fn entry(seq: u64) -> AgentLogEntry {
        AgentLogEntry {
            seq,
            message_id: [seq as u8; 16],
            sender: "client".into(),
            message: b"inc".to_vec(),
            reply: seq.to_string().into_bytes(),
            function: FunctionId::of(b"m"),
            before: *blake3::hash((seq - 1).to_string().as_bytes()).as_bytes(),
            after: *blake3::hash(seq.to_string().as_bytes()).as_bytes(),
        }
    }

    fn reminder(agent: &str, name: &str, set_at: u64) -> Reminder {
        Reminder {
            agent: agent.into(),
            name: name.into(),
            set_at,
            due: 1_000,
            message_id: [9; 16],
            message: b"tick".to_vec(),
            to: None,
            call: None,
            due_height: 0,
        }
    }

    #[test]
    fn a_replicated_agents_publications_wait_until_a_majority_has_their_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let agent = "chat/room";
        let mut stand = Stand::default();
        for seq in 1..=2u64 {
            let publications = [("lines".to_string(), format!("line {seq}").into_bytes())];
            let effects = StepEffects {
                sends: &[],
                reminders: &[],
                publications: &publications,
                subscriptions: &[],
            };
            // Applied here; a majority known to have only the step before.
            stand.standing.head.seq = seq;
            stand.committed = seq - 1;
            store
                .write(
                    agent,
                    &state(seq, seq.to_string().as_bytes()),
                    &entry(seq),
                    &effects,
                    Some(&stand),
                )
                .unwrap();
        }
        let read = |after| -> Vec<u64> {
            store
                .publications(agent, "lines", after, 10)
                .unwrap()
                .into_iter()
                .map(|p| p.seq)
                .collect()
        };
        assert_eq!(read((0, 0)), vec![1]);
        assert!(read((1, 0)).is_empty());
        assert!(store.unconfirmed(agent).unwrap());
        stand.committed = 2;
        store.put_stand(agent, &stand).unwrap();
        assert_eq!(read((0, 0)), vec![1, 2]);
        assert_eq!(read((1, 0)), vec![2]);
        assert!(!store.unconfirmed(agent).unwrap());
    }

    #[test]
    fn a_copy_brings_the_agents_reminders_subscriptions_and_publications_and_nothing_else() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (store(a.path()), store(b.path()));
        let agent = "chat/room";
        for seq in 1..=3u64 {
            let set = [ReminderChange::Set(reminder(
                agent,
                &format!("r{seq}"),
                seq,
            ))];
            let cancel = [ReminderChange::Cancel("r1".into())];
            let publications = [("lines".to_string(), format!("line {seq}").into_bytes())];
            let subscriptions = [("chat/other/lines".to_string(), seq != 3)];
            let effects = StepEffects {
                sends: &[],
                reminders: if seq == 3 { &cancel } else { &set },
                publications: &publications,
                subscriptions: if seq == 1 { &subscriptions } else { &[] },
            };
            from.write(
                agent,
                &state(seq, seq.to_string().as_bytes()),
                &entry(seq),
                &effects,
                None,
            )
            .unwrap();
        }
        // Another agent's things stay where they are.
        let other = StepEffects {
            sends: &[],
            reminders: &[ReminderChange::Set(reminder("chat/room2", "x", 1))],
            publications: &[("lines".to_string(), b"elsewhere".to_vec())],
            subscriptions: &[("chat/room/lines".to_string(), true)],
        };
        from.write("chat/room2", &state(1, b"1"), &entry(1), &other, None)
            .unwrap();

        // The receiving host had its own (never agreed) reminder and
        // subscription: the copy's replace them.
        let own = StepEffects {
            sends: &[],
            reminders: &[ReminderChange::Set(reminder(agent, "stale", 1))],
            publications: &[("lines".to_string(), b"stale".to_vec())],
            subscriptions: &[("chat/stale/lines".to_string(), true)],
        };
        to.write(agent, &state(1, b"x"), &entry(1), &own, None)
            .unwrap();

        let side = from.side(agent, 2).unwrap();
        assert_eq!(side.subscriptions, vec!["chat/other/lines".to_string()]);
        assert_eq!(
            side.publications
                .iter()
                .map(|(t, p)| (t.as_str(), p.seq, p.message.as_slice()))
                .collect::<Vec<_>>(),
            vec![
                ("lines", 2, b"line 2".as_slice()),
                ("lines", 3, b"line 3".as_slice())
            ]
        );
        let entries: Vec<AgentLogEntry> = (2..=3).map(entry).collect();
        let stand = Stand {
            committed: 3,
            ..Stand::default()
        };
        to.adopt(agent, &state(3, b"3"), &entries, &stand, 1, &side)
            .unwrap();
        let mut names: Vec<String> = to
            .reminders_of(agent)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, vec!["r2".to_string()]);
        assert_eq!(to.subscriptions_of(agent).unwrap(), side.subscriptions);
        let kept: Vec<Vec<u8>> = to
            .publications(agent, "lines", (0, 0), 10)
            .unwrap()
            .into_iter()
            .map(|p| p.message)
            .collect();
        // Below the copied entries the receiver keeps its own (a catch-up
        // asks from its last agreed step on).
        assert_eq!(
            kept,
            vec![b"stale".to_vec(), b"line 2".to_vec(), b"line 3".to_vec()]
        );
        assert!(to.reminders_of("chat/room2").unwrap().is_empty());
        assert_eq!(to.state(agent).unwrap().unwrap().seq, 3);
    }
}
