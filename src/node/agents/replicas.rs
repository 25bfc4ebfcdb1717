//! Agents on more than one host: the driver of [`orb_ledger::sequencer`].
//!
//! The hosts of an agent module are fixed at deploy (`orb agent deploy
//! --replicas R`) and every agent of the module lives on all of them. A
//! message goes to the agent's first host in the order of its name's
//! hashes with theirs (the next one when that one does not answer); the
//! host it reaches sequences it:
//!
//! 1. Unless it already leads the agent, it takes over: a durable promise
//!    of a new ballot from a strict majority of the hosts, the most recent
//!    of their copies fetched when it is not its own, and a sync of the
//!    hosts to that copy. Whatever a majority held is in it, so nothing
//!    acknowledged under an earlier sequencer is lost.
//! 2. It runs the step, sends it to the other hosts with the hash of the
//!    state it applies to, and each applies it on exactly that state (a
//!    host that is behind or elsewhere first fetches the sequencer's state
//!    and log, checked against their hashes), writes it durably and votes
//!    its result: the state's hash and the reply.
//! 3. With a strict majority of the hosts agreeing, the sequencer writes
//!    the step itself (or, outvoted, fetches the majority's state) and only
//!    then replies: the output gate. Hosts that voted another result are
//!    outvoted, reported, unpaid (the ledger pays the majority's
//!    receipts), and resynchronised by the next step.
//!
//! A message a step sends to another agent leaves a host only once that
//! host knows a majority applied the step (for a host that did not
//! sequence it: once the next step or sync builds on it).

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use orb_functions::{Function, FunctionId};
use orb_ledger::PublicKey;
use orb_ledger::sequencer::{
    Ballot, Counted, Head, Prepared, Recovering, Recovery, Replicated, Round, Standing, Synced,
    majority,
};
use orb_net::{
    AGENT_LOG_BATCH, AgentLogEntry, AgentMessage, AgentState, Applied, PeerId, ReplicaAnswer,
    Replicate, Request, Response, StepVote,
};

use super::store::{AgentModule, Stand};
use super::{AgentError, AgentName, Agents, receipt};
use crate::node::Node;

/// How long the sequencer waits by default for the last hosts' votes
/// once a majority agrees (their receipts are paid, their disagreement is
/// seen); a host slower than that is neither paid nor named outvoted for
/// the step ([`super::Agents::vote_grace`]).
pub(crate) const GRACE: Duration = Duration::from_millis(100);
/// How long a host's request waits for the agent's turn before it is
/// answered as not applied (two hosts that both think they sequence would
/// otherwise wait on each other).
const TURN_WAIT: Duration = Duration::from_secs(1);
/// Bytes of log entries one catch-up answer carries at most.
const CATCH_UP_BYTES: usize = 8 << 20;

/// An agent module's hosts, and this node's place among them.
pub(super) struct Hosts {
    /// The current list, in the order ballots name them.
    pub(super) peers: Vec<PeerId>,
    /// This node's place in it (`None`: it hosted the agents before a
    /// move, or never).
    me: Option<usize>,
    /// While the agents move: the list before.
    previous: Vec<PeerId>,
    /// Which list `peers` is.
    epoch: u32,
}

impl Hosts {
    /// This node's place, for leading: a node the agents moved away from
    /// does not lead them.
    fn place(&self) -> Result<usize, AgentError> {
        self.me.ok_or(AgentError::Moved)
    }

    /// The lists a takeover needs a strict majority of.
    fn quorum(&self) -> Vec<Vec<PeerId>> {
        if self.previous.is_empty() {
            vec![self.peers.clone()]
        } else {
            vec![self.peers.clone(), self.previous.clone()]
        }
    }

    /// Every host of the current list but this node.
    fn others(&self) -> Vec<PeerId> {
        let me = self.me.map(|i| self.peers[i]);
        self.peers
            .iter()
            .filter(|p| Some(**p) != me)
            .copied()
            .collect()
    }

    /// Every host of the current and the previous list but this node.
    fn all_others(&self) -> Vec<PeerId> {
        let mut all = self.others();
        let me = self.me.map(|i| self.peers[i]);
        for p in &self.previous {
            if !all.contains(p) && Some(*p) != me {
                all.push(*p);
            }
        }
        all
    }
}

fn peer_ids(list: &[String]) -> Result<Vec<PeerId>, AgentError> {
    list.iter()
        .map(|p| {
            p.parse::<PeerId>()
                .map_err(|e| AgentError::Internal(format!("a stored agent host {p:?}: {e}")))
        })
        .collect()
}

pub(super) fn hosts(node: &Node, module: &AgentModule) -> Result<Hosts, AgentError> {
    Ok(Hosts {
        peers: peer_ids(&module.hosts)?,
        me: module.hosts.iter().position(|p| *p == node.peer_id),
        previous: peer_ids(&module.previous)?,
        epoch: module.epoch,
    })
}

/// A host's standing before it took part in the agent's replication.
fn fresh(before: &AgentState) -> Stand {
    Stand {
        standing: Standing::new(before.hash),
        committed: before.seq,
    }
}

fn reply_hash(reply: &[u8]) -> [u8; 32] {
    *blake3::hash(reply).as_bytes()
}

/// Sends `request` to each of `peers`, answers as they come.
fn ask_all<'a>(
    node: &'a Node,
    peers: Vec<PeerId>,
    request: &'a Request,
) -> FuturesUnordered<impl Future<Output = (PeerId, Result<Response, orb_net::Error>)> + 'a> {
    peers
        .into_iter()
        .map(|peer| async move { (peer, node.net.request(peer, request).await) })
        .collect()
}

impl Agents {
    pub(super) fn lease(&self, name: &str) -> Option<Ballot> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
    }

    /// Forgets leading `name`: the next message to it takes over anew.
    fn forget_lease(&self, name: &str) {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Forgets leading `name` when `ballot` is above this node's.
    fn yield_to(&self, name: &str, ballot: Ballot) {
        let mut leases = self
            .leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if leases.get(name).is_some_and(|mine| *mine < ballot) {
            leases.remove(name);
        }
    }

    fn stand_of(&self, name: &str, before: &AgentState) -> Result<Stand, AgentError> {
        Ok(self
            .store
            .stand(name)
            .map_err(AgentError::Internal)?
            .unwrap_or_else(|| fresh(before)))
    }

    async fn put_stand(&self, name: &str, stand: &Stand) -> Result<(), AgentError> {
        self.store
            .put_stand(name, stand)
            .map_err(AgentError::Internal)?;
        self.durable().await
    }
}

/// Sequences `message` to a replicated agent: the agent's turn is held.
pub(super) async fn lead(
    agents: &Agents,
    node: &Node,
    function: Function,
    module: &AgentModule,
    agent: &AgentName,
    (sender, invoker): (&str, Option<PublicKey>),
    message: &AgentMessage,
) -> Result<Applied, AgentError> {
    let name = agent.to_string();
    let id = function.id();
    let hosts = hosts(node, module)?;
    let me = hosts.peers[hosts.place()?];
    let ballot = match agents.lease(&name) {
        Some(b) => b,
        None => take_over(agents, node, &hosts, (id, module), &name).await?,
    };
    // Everything this host holds is agreed now, so a retry's reply is.
    if let Some(applied) = agents.duplicate(node, &name, &message.message_id).await? {
        return Ok(applied);
    }
    let before = agents.current(&name, id, module)?;
    let mut stand = agents.stand_of(&name, &before)?;
    let when = super::When::now(node);
    let executed = agents
        .execute(node, function, agent, (sender, when), message, &before)
        .await?;
    let seq = executed.after.seq;
    let request = Request::AgentReplicate(Box::new(Replicate {
        ballot,
        seq,
        before: before.hash,
        committed: stand.committed,
        message: message.clone(),
        sender: sender.to_owned(),
        invoker,
        time: when.ms,
        height: when.height,
    }));
    let mut round = Round::new(hosts.peers.len());
    round.vote(me, (executed.after.hash, reply_hash(&executed.entry.reply)));
    let mut votes: Vec<(PeerId, StepVote)> = Vec::new();
    let mut superseded = None;
    let mut asks = ask_all(node, hosts.others(), &request);
    let mut deadline = None;
    loop {
        match round.decision() {
            Counted::NoMajority => break,
            Counted::Agreed { .. } if round.complete() => break,
            Counted::Agreed { .. } => {
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + agents.vote_grace);
            }
            Counted::Wait => {}
        }
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, asks.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => asks.next().await,
        };
        let Some((i, answer)) = next else { break };
        match answer {
            Ok(Response::Replica(ReplicaAnswer::Vote(v))) if v.seq == seq => {
                round.vote(i, (v.after, reply_hash(&v.reply)));
                votes.push((i, *v));
            }
            Ok(Response::Replica(ReplicaAnswer::Stale(b))) => {
                superseded = Some(b);
                round.failed(i);
            }
            other => {
                tracing::debug!(agent = %name, seq, host = %i, "no vote: {other:?}");
                round.failed(i);
            }
        }
    }
    drop(asks);
    if let Some(b) = superseded {
        agents.yield_to(&name, b);
    }
    let Counted::Agreed {
        result,
        agreed,
        outvoted,
    } = round.decision()
    else {
        // Some hosts may hold this step: its sequence number is never
        // proposed again under this ballot (another message there would
        // rank the same as this one in a recovery), so the next message
        // takes over anew.
        agents.forget_lease(&name);
        if superseded.is_some() {
            return Err(AgentError::Busy(format!(
                "another host of {name} took over as its sequencer: try again"
            )));
        }
        return Err(AgentError::NoMajority {
            agent: name,
            why: format!(
                "{} of {} hosts voted, {} needed alike",
                votes.len() + 1,
                hosts.peers.len(),
                majority(hosts.peers.len())
            ),
        });
    };
    let reply = if agreed.contains(&me) {
        stand.standing.accept(ballot, seq, executed.after.hash);
        stand.committed = seq;
        agents.commit(&name, &executed, Some(&stand)).await?;
        executed.entry.reply.clone()
    } else {
        // Outvoted here: the majority's state replaces this host's result.
        let (i, vote) = votes
            .iter()
            .find(|(i, _)| agreed.contains(i))
            .ok_or_else(|| AgentError::Internal("a majority without a vote".into()))?;
        tracing::warn!(agent = %name, seq, "this host's own step was outvoted: fetching the majority's state");
        catch_up(agents, node, *i, &name, ballot, Some(result.0)).await?;
        vote.reply.clone()
    };
    let mut outvoted_peers = Vec::new();
    for peer in outvoted {
        outvoted_peers.push(peer.to_string());
        if peer != me {
            tracing::warn!(agent = %name, seq, %peer, "a host's step was outvoted");
            node.net.report(peer, orb_net::Offence::Outvoted);
        }
    }
    let receipts = receipt(node, invoker, &executed)
        .into_iter()
        .chain(votes.into_iter().filter_map(|(_, v)| v.receipt))
        .collect();
    Ok(Applied {
        seq,
        reply,
        duplicate: false,
        receipts,
        outvoted: outvoted_peers,
        sequencer: node.peer_id.clone(),
    })
}

/// Becomes the sequencer of `name`: a promise from a majority, their most
/// recent copy, a majority synced to it.
async fn take_over(
    agents: &Agents,
    node: &Node,
    hosts: &Hosts,
    (id, module): (FunctionId, &AgentModule),
    name: &str,
) -> Result<Ballot, AgentError> {
    let place = hosts.place()?;
    let me = hosts.peers[place];
    let before = agents.current(name, id, module)?;
    let mut stand = agents.stand_of(name, &before)?;
    let ballot = Ballot::after(stand.standing.promised, place as u32, hosts.epoch);
    if ballot.epoch() != hosts.epoch {
        return Err(AgentError::Internal(format!(
            "{name} has no ballots left in host list {}: move its hosts",
            hosts.epoch
        )));
    }
    let Prepared::Promise(mine) = stand.standing.prepare(ballot) else {
        return Err(AgentError::Internal(
            "a new ballot below the promise".into(),
        ));
    };
    agents.put_stand(name, &stand).await?;
    let mut recovery = Recovery::new(hosts.quorum(), me, mine);
    let request = Request::AgentPrepare {
        agent: name.to_owned(),
        function: id,
        ballot,
    };
    let mut asks = ask_all(node, hosts.all_others(), &request);
    let decision = loop {
        match recovery.decision() {
            Recovering::Wait => {}
            decided => break decided,
        }
        let Some((i, answer)) = asks.next().await else {
            break Recovering::NoQuorum;
        };
        match answer {
            Ok(Response::Replica(ReplicaAnswer::Prepared(p))) => recovery.answer(i, p),
            _ => recovery.failed(i),
        }
    };
    drop(asks);
    let no_majority = |why: String| AgentError::NoMajority {
        agent: name.to_owned(),
        why,
    };
    let head = match decision {
        Recovering::Lead { from, head } if from == me || same(&head, &mine) => {
            stand.standing.accept(ballot, mine.seq, mine.hash);
            agents.put_stand(name, &stand).await?;
            head
        }
        Recovering::Lead { from, head } => {
            // Another host holds a later copy: it becomes this one's.
            catch_up(agents, node, from, name, ballot, Some(head.hash)).await?;
            head
        }
        Recovering::Superseded(b) => {
            agents.yield_to(name, b);
            return Err(AgentError::Busy(format!(
                "another host of {name} sequences it: try again"
            )));
        }
        Recovering::NoQuorum | Recovering::Wait => {
            let moving = if hosts.previous.is_empty() {
                String::new()
            } else {
                format!(
                    " (and {} of the {} it is moving from)",
                    majority(hosts.previous.len()),
                    hosts.previous.len()
                )
            };
            return Err(no_majority(format!(
                "fewer than {} of {} hosts answered{moving}",
                majority(hosts.peers.len()),
                hosts.peers.len()
            )));
        }
    };
    let sync = Request::AgentSync {
        agent: name.to_owned(),
        function: id,
        ballot,
        head: Head {
            accepted: ballot,
            ..head
        },
    };
    let mut synced = 1;
    let mut asks = ask_all(node, hosts.others(), &sync);
    while synced < majority(hosts.peers.len()) {
        let Some((_, answer)) = asks.next().await else {
            break;
        };
        if matches!(answer, Ok(Response::Replica(ReplicaAnswer::Synced))) {
            synced += 1;
        }
    }
    drop(asks);
    if synced < majority(hosts.peers.len()) {
        return Err(no_majority(format!(
            "{synced} of {} hosts hold the agreed state",
            hosts.peers.len()
        )));
    }
    let mut stand = agents.stand_of(name, &before)?;
    stand.committed = head.seq;
    agents.put_stand(name, &stand).await?;
    agents
        .leases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_owned(), ballot);
    tracing::info!(agent = %name, round = ballot.round, seq = head.seq, "sequencing the agent");
    Ok(ballot)
}

fn same(a: &Head, b: &Head) -> bool {
    a.seq == b.seq && a.hash == b.hash
}

/// Replaces this host's copy of `name` by `peer`'s (which must have the
/// state hashed `expect`, when given), accepted under `ballot`.
async fn catch_up(
    agents: &Agents,
    node: &Node,
    peer: PeerId,
    name: &str,
    ballot: Ballot,
    expect: Option<[u8; 32]>,
) -> Result<AgentState, AgentError> {
    let old = agents.store.stand(name).map_err(AgentError::Internal)?;
    let from = old.map_or(1, |s| s.committed + 1);
    let bad = |why: String| AgentError::Unreachable {
        agent: name.to_owned(),
        why: format!("catching up from {peer}: {why}"),
    };
    let request = Request::AgentCatchUp {
        agent: name.to_owned(),
        from,
    };
    let (state, entries, side) = match node.net.request(peer, &request).await {
        Ok(Response::AgentCatchUp {
            state: Some(state),
            entries,
            side,
        }) => (state, entries, side),
        Ok(other) => return Err(bad(format!("it answered {other:?}"))),
        Err(e) => return Err(bad(e.to_string())),
    };
    check_copy(&state, &entries, expect).map_err(bad)?;
    let mut stand = old.unwrap_or_else(|| fresh(&state));
    let keep_sends = stand.committed;
    stand.standing.accept(ballot, state.seq, state.hash);
    stand.committed = state.seq;
    agents
        .store
        .adopt(
            name,
            &state,
            &entries,
            &stand,
            from.min(keep_sends + 1),
            &side,
        )
        .map_err(AgentError::Internal)?;
    agents.durable().await?;
    tracing::info!(agent = %name, %peer, seq = state.seq, entries = entries.len(), "caught up");
    Ok(state)
}

/// Whether a fetched copy is whole: the state is what its hash says (and
/// the one expected), the log entries follow each other and end at it.
fn check_copy(
    state: &AgentState,
    entries: &[AgentLogEntry],
    expect: Option<[u8; 32]>,
) -> Result<(), String> {
    if *blake3::hash(&state.state).as_bytes() != state.hash {
        return Err("the state does not match its hash".into());
    }
    if expect.is_some_and(|e| e != state.hash) {
        return Err("the state is not the agreed one".into());
    }
    for pair in entries.windows(2) {
        if pair[1].seq != pair[0].seq + 1 || pair[1].before != pair[0].after {
            return Err(format!(
                "log entries {} and {} do not follow each other",
                pair[0].seq, pair[1].seq
            ));
        }
    }
    if let Some(last) = entries.last()
        && (last.seq != state.seq || last.after != state.hash)
    {
        return Err("the log does not end at the state".into());
    }
    Ok(())
}

/// Runs `f` in `name`'s turn, waiting at most [`TURN_WAIT`] for it.
async fn in_turn<T>(
    agents: &Agents,
    name: &str,
    f: impl AsyncFnOnce() -> Result<T, AgentError>,
) -> Result<T, AgentError> {
    let slot = agents.slot(name);
    let result = match tokio::time::timeout(TURN_WAIT, slot.turn.lock()).await {
        Ok(_turn) => f().await,
        Err(_) => Err(AgentError::Busy(format!(
            "{name} is busy with another step here"
        ))),
    };
    drop(slot);
    agents.release(name);
    result
}

/// Answers another host of a replicated agent.
pub(super) async fn answer(node: &Node, peer: PeerId, request: Request) -> Response {
    let result = match request {
        Request::AgentModule {
            function,
            init,
            hosts,
            replaces,
            epoch,
            previous,
        } => register(
            node,
            peer,
            function,
            AgentModule {
                init,
                hosts,
                replaces,
                epoch,
                previous,
            },
        ),
        Request::AgentNames { functions } => match node.agents.store.agents_of(&functions) {
            Ok(names) => Ok(Response::AgentNames(names)),
            Err(e) => Err(AgentError::Internal(e)),
        },
        Request::AgentPrepare {
            agent,
            function,
            ballot,
        } => prepare(node, peer, &agent, function, ballot).await,
        Request::AgentSync {
            agent,
            function,
            ballot,
            head,
        } => sync(node, peer, &agent, function, ballot, head).await,
        Request::AgentReplicate(r) => replicate(node, peer, *r).await,
        Request::AgentCatchUp { agent, from } => serve_catch_up(node, &agent, from),
        _ => return Response::Refused("not a replicated agent request".into()),
    };
    result.unwrap_or_else(|e| match e {
        AgentError::Busy(why) => Response::Replica(ReplicaAnswer::NotApplied(why)),
        e => e.response(),
    })
}

/// Keeps a registration another host sends: at deploy, at an upgrade, at
/// each stage of a move. A registration of an older host list than the
/// one kept is refused (a move never goes back), and so is another list
/// under the same epoch.
fn register(
    node: &Node,
    peer: PeerId,
    function: FunctionId,
    module: AgentModule,
) -> Result<Response, AgentError> {
    if node.host.function(&function).is_none() {
        return Ok(Response::NotHosted);
    }
    let kept = node.agents.store_module(&function)?;
    let sender = peer.to_string();
    if let Some(k) = &kept
        && !k.hosted_by(&sender)
        && !k.previous.contains(&sender)
    {
        return Ok(Response::Refused(format!(
            "{peer} is not a host of {function}: only its hosts change its registration"
        )));
    }
    let member = module.hosted_by(&node.peer_id) || module.previous.contains(&node.peer_id);
    match &kept {
        Some(k) if k.epoch > module.epoch => {
            return Ok(Response::Refused(format!(
                "this node knows a later host list of {function} (move {}, not {})",
                k.epoch, module.epoch
            )));
        }
        Some(k) if k.epoch == module.epoch && k.hosts != module.hosts => {
            return Ok(Response::Refused(format!(
                "another host list of {function} is kept under move {}",
                k.epoch
            )));
        }
        // Leaving: the agents moved to hosts this node is not among.
        Some(k) if !member && k.epoch < module.epoch => {}
        _ if !member => {
            return Ok(Response::Refused("this node is not among the hosts".into()));
        }
        _ => {}
    }
    node.agents.register(function, &module)?;
    Ok(Response::Hosting {
        accepted: true,
        reason: String::new(),
    })
}

/// Makes this node the sequencer of `name` under the module's current
/// host list (in the agent's turn): the step of a move that brings one
/// agent to its new hosts.
pub(super) async fn migrate(
    node: &Node,
    id: FunctionId,
    module: &AgentModule,
    name: &str,
) -> Result<(), AgentError> {
    let agents = &node.agents;
    let hosts = hosts(node, module)?;
    in_turn(agents, name, async || {
        let ballot = take_over(agents, node, &hosts, (id, module), name).await?;
        // The takeover synced a majority; a joining host must hold the
        // agent too before the move counts it as moved.
        let before = agents.current(name, id, module)?;
        let head = agents.stand_of(name, &before)?.standing.head;
        let sync = Request::AgentSync {
            agent: name.to_owned(),
            function: id,
            ballot,
            head,
        };
        for peer in hosts.peers.iter().filter(|p| !hosts.previous.contains(p)) {
            match node.net.request(*peer, &sync).await {
                Ok(Response::Replica(ReplicaAnswer::Synced)) => {}
                other => {
                    return Err(AgentError::Unreachable {
                        agent: name.to_owned(),
                        why: format!("the new host {peer} did not take its copy: {other:?}"),
                    });
                }
            }
        }
        Ok(())
    })
    .await
}

/// The registration of an agent's module and its hosts, checking that
/// `peer` is the host `ballot` names.
fn module_of(
    node: &Node,
    peer: PeerId,
    function: FunctionId,
    ballot: Ballot,
) -> Result<(AgentModule, Hosts), Box<Response>> {
    let module = match node.agents.store.module(&function) {
        Ok(Some(m)) if m.hosts.len() > 1 => m,
        Ok(_) => return Err(Box::new(Response::NotHosted)),
        Err(e) => return Err(Box::new(AgentError::Internal(e).response())),
    };
    let hosts = hosts(node, &module).map_err(|e| Box::new(e.response()))?;
    if ballot.epoch() != module.epoch {
        return Err(Box::new(Response::Refused(format!(
            "the hosts of {function} moved: this node keeps host list {}, the ballot is of list {}",
            module.epoch,
            ballot.epoch()
        ))));
    }
    if hosts.peers.get(ballot.leader as usize) != Some(&peer) {
        return Err(Box::new(Response::Refused(
            "the ballot does not name the host that sent it".into(),
        )));
    }
    Ok((module, hosts))
}

async fn prepare(
    node: &Node,
    peer: PeerId,
    name: &str,
    function: FunctionId,
    ballot: Ballot,
) -> Result<Response, AgentError> {
    let (module, _) = match module_of(node, peer, function, ballot) {
        Ok(m) => m,
        Err(r) => {
            tell_moved(node, peer, function, ballot).await;
            return Ok(*r);
        }
    };
    let agents = &node.agents;
    in_turn(agents, name, async || {
        let before = agents.current(name, function, &module)?;
        let mut stand = agents.stand_of(name, &before)?;
        let prepared = stand.standing.prepare(ballot);
        if let Prepared::Promise(_) = prepared {
            agents.put_stand(name, &stand).await?;
            agents.yield_to(name, ballot);
        }
        Ok(Response::Replica(ReplicaAnswer::Prepared(prepared)))
    })
    .await
}

/// A host that missed a move (it was down) and tries to lead under an
/// older host list is sent the list this node keeps, so that it stops
/// leading and sends its messages to the hosts the agents moved to.
async fn tell_moved(node: &Node, peer: PeerId, function: FunctionId, ballot: Ballot) {
    let Ok(Some(m)) = node.agents.store.module(&function) else {
        return;
    };
    if ballot.epoch() >= m.epoch {
        return;
    }
    if let Err(e) = node.net.request(peer, &m.request(function)).await {
        tracing::debug!(%peer, "could not tell it the agents moved: {e}");
    }
}

async fn sync(
    node: &Node,
    peer: PeerId,
    name: &str,
    function: FunctionId,
    ballot: Ballot,
    head: Head,
) -> Result<Response, AgentError> {
    let (module, _) = match module_of(node, peer, function, ballot) {
        Ok(m) => m,
        Err(r) => return Ok(*r),
    };
    let agents = &node.agents;
    in_turn(agents, name, async || {
        let before = agents.current(name, function, &module)?;
        let mut stand = agents.stand_of(name, &before)?;
        match stand.standing.sync(ballot, &head) {
            Synced::Stale { promised } => {
                return Ok(Response::Replica(ReplicaAnswer::Stale(promised)));
            }
            Synced::Same => {
                stand.standing.accept(ballot, head.seq, head.hash);
                let released = head.seq > stand.committed;
                stand.committed = stand.committed.max(head.seq);
                agents.put_stand(name, &stand).await?;
                if released {
                    agents.released();
                }
            }
            // Late: steps of this ballot that build on it came first.
            Synced::Past => {}
            Synced::CatchUp => {
                catch_up(agents, node, peer, name, ballot, Some(head.hash)).await?;
            }
        }
        agents.yield_to(name, ballot);
        agents.outbox.notify_one();
        Ok(Response::Replica(ReplicaAnswer::Synced))
    })
    .await
}

async fn replicate(node: &Node, peer: PeerId, r: Replicate) -> Result<Response, AgentError> {
    let id = r.message.function;
    let (module, _) = match module_of(node, peer, id, r.ballot) {
        Ok(m) => m,
        Err(resp) => return Ok(*resp),
    };
    let Some(function) = node.host.function(&id) else {
        return Ok(Response::NotHosted);
    };
    let agent = AgentName::parse(&r.message.agent)?;
    let name = r.message.agent.clone();
    let agents = &node.agents;
    in_turn(agents, &name, async || {
        for attempt in 0..2 {
            let before = agents.current(&name, id, &module)?;
            let mut stand = agents.stand_of(&name, &before)?;
            match stand.standing.replicate(r.ballot, r.seq, r.before) {
                Replicated::Stale { promised } => {
                    return Ok(Response::Replica(ReplicaAnswer::Stale(promised)));
                }
                Replicated::Apply => {
                    agents.yield_to(&name, r.ballot);
                    let executed = match agents
                        .execute(
                            node,
                            function,
                            &agent,
                            (
                                &r.sender,
                                super::When {
                                    ms: r.time,
                                    height: r.height,
                                },
                            ),
                            &r.message,
                            &before,
                        )
                        .await
                    {
                        Ok(e) => e,
                        Err(e) => {
                            return Ok(Response::Replica(ReplicaAnswer::NotApplied(e.to_string())));
                        }
                    };
                    let released = r.committed > stand.committed;
                    stand.standing.accept(r.ballot, r.seq, executed.after.hash);
                    stand.committed = stand.committed.max(r.committed.min(before.seq));
                    agents.commit(&name, &executed, Some(&stand)).await?;
                    if released {
                        agents.released();
                    }
                    return Ok(Response::Replica(ReplicaAnswer::Vote(Box::new(StepVote {
                        seq: r.seq,
                        after: executed.after.hash,
                        reply: executed.entry.reply.clone(),
                        receipt: receipt(node, r.invoker, &executed),
                    }))));
                }
                Replicated::Late | Replicated::Holds => {
                    if let Some(e) = agents
                        .store
                        .entry(&name, r.seq)
                        .map_err(AgentError::Internal)?
                        && e.message_id == r.message.message_id
                        && e.before == r.before
                    {
                        if r.seq == stand.standing.head.seq
                            && stand.standing.head.accepted < r.ballot
                        {
                            // The vote stands for the step accepted under
                            // this ballot.
                            stand.standing.accept(r.ballot, r.seq, e.after);
                            agents.put_stand(&name, &stand).await?;
                            agents.yield_to(&name, r.ballot);
                        }
                        return Ok(Response::Replica(ReplicaAnswer::Vote(Box::new(StepVote {
                            seq: r.seq,
                            after: e.after,
                            reply: e.reply,
                            receipt: None,
                        }))));
                    }
                    if stand.standing.head.accepted == r.ballot {
                        return Ok(Response::Replica(ReplicaAnswer::NotApplied(
                            "a late step of this ballot that this host holds otherwise".into(),
                        )));
                    }
                }
                Replicated::CatchUp => {}
            }
            if attempt == 0 {
                catch_up(agents, node, peer, &name, r.ballot, Some(r.before)).await?;
            }
        }
        Ok(Response::Replica(ReplicaAnswer::NotApplied(
            "not at the sequencer's state after catching up".into(),
        )))
    })
    .await
}

/// This host's copy of an agent and its log from `from` on (the latest
/// entries, within [`AGENT_LOG_BATCH`] and [`CATCH_UP_BYTES`]).
fn serve_catch_up(node: &Node, name: &str, from: u64) -> Result<Response, AgentError> {
    let store = &node.agents.store;
    let Some(state) = store.state(name).map_err(AgentError::Internal)? else {
        return Ok(Response::AgentCatchUp {
            state: None,
            entries: Vec::new(),
            side: orb_net::AgentSide::default(),
        });
    };
    let start = from.max((state.seq + 1).saturating_sub(AGENT_LOG_BATCH as u64));
    let mut entries: Vec<AgentLogEntry> = store
        .log(name, start, AGENT_LOG_BATCH)
        .map_err(AgentError::Internal)?
        .into_iter()
        .filter(|e| e.seq <= state.seq)
        .collect();
    let mut bytes: usize = entries
        .iter()
        .map(|e| e.message.len() + e.reply.len() + 128)
        .sum();
    let mut drop_first = 0;
    while bytes > CATCH_UP_BYTES && drop_first < entries.len() {
        bytes -= entries[drop_first].message.len() + entries[drop_first].reply.len() + 128;
        drop_first += 1;
    }
    entries.drain(..drop_first);
    let first = entries.first().map_or(state.seq + 1, |e| e.seq);
    let side = store.side(name, first).map_err(AgentError::Internal)?;
    Ok(Response::AgentCatchUp {
        state: Some(state),
        entries,
        side,
    })
}
