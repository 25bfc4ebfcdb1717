//! Where the agents hosted here keep their state: four trees of the
//! node's database.
//!
//! - `agent_modules`: the agent modules deployed here, each with the
//!   state a new agent starts from (empty: the module's default);
//! - `agent_state`: agent → its [`AgentState`] after the last applied
//!   message;
//! - `agent_log`: agent, sequence number → the applied message
//!   ([`AgentLogEntry`]), the last [`KEEP`] of each agent;
//! - `agent_seen`: agent, message id → its sequence number, for the same
//!   messages: a retry finds its reply here instead of being applied
//!   again.
//!
//! One step is one sled transaction over the last three
//! ([`AgentStore::write`]), then a flush and an fsync of the database file
//! ([`AgentStore::sync`]): once both have returned, the step survives the
//! process being killed and the machine losing power. One sync makes every
//! write before it durable, so steps of different agents share them
//! (group commit, [`super::Durability`]).

use std::path::Path;
use std::sync::Arc;

use orb_functions::FunctionId;
use orb_net::{AgentLogEntry, AgentState};
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
        Ok(Self {
            db: db.clone(),
            file: Arc::new(std::fs::File::open(path.join("db"))?),
            modules: db.open_tree("agent_modules")?,
            states: db.open_tree("agent_state")?,
            log: db.open_tree("agent_log")?,
            seen: db.open_tree("agent_seen")?,
            outbox: db.open_tree("agent_outbox")?,
        })
    }

    /// Records `function` as an agent module, new agents starting from
    /// `init`.
    pub(crate) fn register(&self, function: FunctionId, init: &[u8]) -> Result<(), String> {
        self.modules.insert(function.as_bytes(), init).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    /// The state a new agent of `function` starts from, if it is an agent
    /// module deployed here.
    pub(crate) fn init(&self, function: &FunctionId) -> Result<Option<Vec<u8>>, String> {
        Ok(self
            .modules
            .get(function.as_bytes())
            .map_err(io)?
            .map(|v| v.to_vec()))
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
        sends: &[Pending],
    ) -> Result<(), String> {
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
        let entry_bytes = postcard::to_stdvec(entry).map_err(io)?;
        let seq = entry.seq.to_be_bytes();
        let old = entry
            .seq
            .checked_sub(KEEP)
            .filter(|s| *s > 0)
            .map(|s| key(agent, &s.to_be_bytes()));
        let result: Result<(), TransactionError<String>> =
            (&self.states, &self.log, &self.seen, &self.outbox).transaction(
                |(states, log, seen, outbox)| {
                    for (k, v) in &sends {
                        outbox.insert(k.as_slice(), v.as_slice())?;
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
        })
    }

    /// Up to `max` undelivered messages, oldest first (by sender, then
    /// its step and place in it).
    pub(crate) fn pending(&self, max: usize) -> Result<Vec<(Vec<u8>, Pending)>, String> {
        self.outbox
            .iter()
            .take(max)
            .map(|kv| {
                let (k, v) = kv.map_err(io)?;
                Ok((k.to_vec(), decode("outgoing agent message", &v)?))
            })
            .collect()
    }

    /// Forgets a delivered message (delivering it again would be harmless:
    /// its id makes the receiver apply it once).
    pub(crate) fn delivered(&self, key: &[u8]) -> Result<(), String> {
        self.outbox.remove(key).map_err(io)?;
        Ok(())
    }

    /// Makes every write so far durable: sled's flush, then an fsync of
    /// its file (the flush alone does not reach the disk's cache). Blocks.
    pub(crate) fn sync(&self) -> Result<(), String> {
        self.db.flush().map_err(io)?;
        self.file.sync_all().map_err(io)
    }
}
