//! Moving an agent module's hosts (`orb agent move`): one host of the
//! module is replaced by another node, and every agent's state and log
//! go to it, without losing a message a majority acknowledged.
//!
//! The node that moves them is one of the hosts that stay. It
//!
//! 1. has the new node host the module (and every version it upgrades),
//! 2. registers the new host list (one epoch later) on the new node and
//!    on the old hosts, marked *moving*: while it is, a takeover needs a
//!    strict majority of the old list and of the new (a host refuses the
//!    ballots of any list but the one it keeps, so a majority of the old
//!    hosts registering it ends every sequencer of the old list),
//! 3. takes over every agent of the module under the new list: the
//!    newest copy among the promises is synced to a majority of the new
//!    hosts (the new node fetches the state and the log and checks them
//!    against the agreed hash),
//! 4. and registers the list again, no longer moving, on the new hosts
//!    and on the host that left (which then answers that it no longer
//!    hosts them).
//!
//! A move cut short (too few hosts up, the node stopped) leaves the
//! module moving: every takeover keeps needing both majorities, which is
//! safe, and running the same move again finishes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orb_functions::FunctionId;
use orb_net::{PeerId, Request, Response};

use super::replicas::migrate;
use super::store::AgentModule;
use super::{AgentError, Node};
use crate::node::invoke::resolve_name;

/// What a move did.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Moved {
    pub(crate) name: String,
    pub(crate) function: FunctionId,
    /// The host list now (epoch `epoch`).
    pub(crate) hosts: Vec<String>,
    pub(crate) epoch: u32,
    /// The host that left (`None`: a host was added).
    pub(crate) from: Option<String>,
    pub(crate) to: String,
    /// Agents brought to the new hosts.
    pub(crate) agents: usize,
    /// Hosts that did not take the final registration (they keep
    /// needing both majorities until they do: run the move again).
    pub(crate) lagging: Vec<String>,
    pub(crate) millis: u64,
}

fn refused(why: String) -> AgentError {
    AgentError::Remote {
        kind: "refused".into(),
        message: why,
    }
}

/// The module `name` points at and every version it upgrades, newest
/// first, with their registrations here.
fn chain(node: &Node, id: FunctionId) -> Result<Vec<(FunctionId, AgentModule)>, AgentError> {
    let mut out = Vec::new();
    let mut next = Some(id);
    while let Some(id) = next {
        let Some(module) = node.agents.store_module(&id)? else {
            break;
        };
        next = module
            .replaces
            .filter(|old| out.iter().all(|(f, _)| f != old));
        out.push((id, module));
        if out.len() > 64 {
            break;
        }
    }
    Ok(out)
}

/// Sends `register` to each of `peers`; the ones that took it.
async fn register_on(node: &Node, peers: &[String], register: &Request) -> Vec<String> {
    let mut took = Vec::new();
    for peer in peers {
        if *peer == node.peer_id {
            continue;
        }
        let Ok(id) = peer.parse::<PeerId>() else {
            continue;
        };
        match node.net.request(id, register).await {
            Ok(Response::Hosting { accepted: true, .. }) => took.push(peer.clone()),
            other => tracing::info!(%peer, "did not take the registration: {other:?}"),
        }
    }
    took
}

/// The registration of every version of the chain under `module`'s
/// host list.
fn versions(
    chain: &[(FunctionId, AgentModule)],
    module: &AgentModule,
) -> Vec<(FunctionId, AgentModule)> {
    chain
        .iter()
        .map(|(id, own)| {
            (
                *id,
                AgentModule {
                    init: own.init.clone(),
                    replaces: own.replaces,
                    ..module.clone()
                },
            )
        })
        .collect()
}

/// Registers `module` for every version of the chain on `peers`: the
/// peers that took every one.
async fn register_chain(
    node: &Node,
    chain: &[(FunctionId, AgentModule)],
    module: &AgentModule,
    peers: &[String],
) -> Vec<String> {
    let mut took: Option<Vec<String>> = None;
    for (id, m) in versions(chain, module) {
        let these = register_on(node, peers, &m.request(id)).await;
        took = Some(match took {
            None => these,
            Some(t) => t.into_iter().filter(|p| these.contains(p)).collect(),
        });
    }
    took.unwrap_or_default()
}

/// Registers `module` for every version of the chain here.
fn register_here(
    node: &Node,
    chain: &[(FunctionId, AgentModule)],
    module: &AgentModule,
) -> Result<(), AgentError> {
    for (id, m) in versions(chain, module) {
        node.agents.register(id, &m)?;
    }
    Ok(())
}

/// The node that takes `from`'s place when none is named: a connected
/// peer that is not a host, in an order fixed by the module's id (as a
/// deploy picks its replicas), that agrees to host every version.
async fn pick(
    node: &Node,
    chain: &[(FunctionId, AgentModule)],
    taken: &[String],
) -> Result<String, AgentError> {
    let mut declined = Vec::new();
    for peer in node.spread(&chain[0].0).await {
        if taken.contains(&peer) {
            continue;
        }
        match host_chain(node, &peer, chain).await {
            Ok(()) => return Ok(peer),
            Err(why) => declined.push(format!("{peer}: {why}")),
        }
    }
    Err(refused(format!(
        "no connected node that is not a host agreed to host the module{}",
        if declined.is_empty() {
            String::new()
        } else {
            format!(" ({})", declined.join("; "))
        }
    )))
}

/// Asks `peer` to host every version of the chain.
async fn host_chain(
    node: &Node,
    peer: &str,
    chain: &[(FunctionId, AgentModule)],
) -> Result<(), String> {
    let id: PeerId = peer.parse().map_err(|e| format!("not a peer id: {e}"))?;
    for (function, _) in chain {
        match node
            .net
            .request(
                id,
                &Request::Host {
                    function: *function,
                },
            )
            .await
        {
            Ok(Response::Hosting { accepted: true, .. }) => {}
            Ok(Response::Hosting { reason, .. }) => return Err(reason),
            Ok(other) => return Err(format!("{other:?}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Moves the agents of the module `name` from host `from` to `to` (or a
/// node picked here), driven by this node, a host that stays; without
/// `from`, `to` (or a node picked here) becomes one more host.
pub(crate) async fn move_host(
    node: &Node,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Moved, AgentError> {
    let id = resolve_name(node, name).await?;
    move_module(node, id, name, from, to).await
}

/// Moves the agents of the agent module `id` (called `name` in what is
/// said) from host `from` (none: adds a host) to `to` or a node picked
/// here.
async fn move_module(
    node: &Node,
    id: FunctionId,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Moved, AgentError> {
    let started = Instant::now();
    let chain = chain(node, id)?;
    let Some((_, current)) = chain.first().cloned() else {
        return Err(AgentError::NotAgent {
            module: name.to_owned(),
            why: "this node does not host it as an agent module: send the move through one \
                  of its hosts (orb ls shows them)"
                .into(),
        });
    };
    if current.hosts.len() < 2 {
        return Err(refused(format!(
            "{name} has one host, which holds the only copy of its agents: deploy it with \
             --replicas 3 to be able to move hosts"
        )));
    }
    if from == Some(node.peer_id.as_str()) {
        return Err(refused(
            "a host does not move itself away: send the move through another host of the module"
                .into(),
        ));
    }
    if !current.hosted_by(&node.peer_id) {
        return Err(AgentError::Moved);
    }
    // Resuming a move cut short: the list is already the new one.
    let resuming = !current.previous.is_empty();
    let moving = if resuming {
        let left: Vec<&String> = current
            .previous
            .iter()
            .filter(|p| !current.hosted_by(p))
            .collect();
        let joined: Vec<&String> = current
            .hosts
            .iter()
            .filter(|p| !current.previous.contains(p))
            .collect();
        let same_from = left.first().map(|s| s.as_str()) == from && left.len() <= 1;
        if !same_from || to.is_some_and(|t| joined.as_slice() != [t]) {
            let again = match left.first() {
                Some(l) => format!("--from {l}"),
                None => format!("--to {}", joined.first().map_or("?", |s| s.as_str())),
            };
            return Err(refused(format!(
                "{name} is moving from {} to {}: finish that move first (orb agent move {name} \
                 {again})",
                left.first()
                    .map_or("(none: a host is added)", |s| s.as_str()),
                joined.first().map_or("?", |s| s.as_str()),
            )));
        }
        current.clone()
    } else {
        let place =
            match from {
                Some(from) => Some(current.hosts.iter().position(|h| h == from).ok_or_else(
                    || {
                        refused(format!(
                            "{from} is not a host of {name} (its hosts: {})",
                            current.hosts.join(", ")
                        ))
                    },
                )?),
                None if current.hosts.len() >= super::http::MAX_HOSTS => {
                    return Err(refused(format!(
                        "{name} has {} hosts, the most an agent module has",
                        current.hosts.len()
                    )));
                }
                None => None,
            };
        let to = match to {
            Some(t) if current.hosted_by(t) => {
                return Err(refused(format!("{t} already hosts {name}")));
            }
            Some(t) => {
                host_chain(node, t, &chain)
                    .await
                    .map_err(|why| refused(format!("{t} did not agree to host {name}: {why}")))?;
                t.to_owned()
            }
            None => pick(node, &chain, &current.hosts).await?,
        };
        let mut hosts = current.hosts.clone();
        match place {
            Some(place) => hosts[place] = to,
            None => hosts.push(to),
        }
        AgentModule {
            hosts,
            epoch: current.epoch + 1,
            previous: current.hosts.clone(),
            ..current.clone()
        }
    };
    let to = moving
        .hosts
        .iter()
        .find(|p| !moving.previous.contains(p))
        .cloned()
        .unwrap_or_default();
    if resuming {
        host_chain(node, &to, &chain)
            .await
            .map_err(|why| refused(format!("{to} does not host {name}: {why}")))?;
    }
    // 2. Register the moving list: the new host and a majority of the old.
    let mut everyone = moving.previous.clone();
    everyone.push(to.clone());
    // The others first: this node keeps the new list only once it counts
    // (a node that kept a list no majority took would refuse the old
    // list's ballots for nothing).
    let took = register_chain(node, &chain, &moving, &everyone).await;
    let old_took = 1 + moving.previous.iter().filter(|p| took.contains(p)).count();
    let need = orb_ledger::sequencer::majority(moving.previous.len());
    if took.contains(&to) && old_took >= need {
        register_here(node, &chain, &moving)?;
    } else {
        return Err(AgentError::NoMajority {
            agent: name.to_owned(),
            why: format!(
                "{old_took} of the {} old hosts (and {} the new one) took the new host list, \
                 {need} needed and the new one: run the move again when they are up",
                moving.previous.len(),
                if took.contains(&to) { "" } else { "not" },
            ),
        });
    }
    tracing::info!(module = %name, from = from.unwrap_or("-"), %to, epoch = moving.epoch, "moving the agents");
    // 3. Every agent an old majority keeps (any acknowledged agent is on
    // a majority of the old hosts, so the union of a majority's lists
    // has them all).
    let functions: Vec<FunctionId> = chain.iter().map(|(f, _)| *f).collect();
    let mut names = node
        .agents
        .store
        .agents_of(&functions)
        .map_err(AgentError::Internal)?;
    let mut listed = 1;
    for peer in moving.previous.iter().filter(|p| **p != node.peer_id) {
        let Ok(peer) = peer.parse::<PeerId>() else {
            continue;
        };
        let request = Request::AgentNames {
            functions: functions.clone(),
        };
        if let Ok(Response::AgentNames(theirs)) = node.net.request(peer, &request).await {
            listed += 1;
            for n in theirs {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    if listed < need {
        return Err(AgentError::NoMajority {
            agent: name.to_owned(),
            why: format!(
                "{listed} of the {} old hosts listed their agents, {need} needed: run the move \
                 again when they are up",
                moving.previous.len()
            ),
        });
    }
    names.sort();
    let mut moved = 0;
    for agent in &names {
        // Each agent under its module's registration (the version its
        // last step ran, or the newest when it has no state here yet).
        let state = node
            .agents
            .store
            .state(agent)
            .map_err(AgentError::Internal)?;
        let function = state.map_or(id, |s| s.function);
        let module = node
            .agents
            .store_module(&function)?
            .unwrap_or_else(|| moving.clone());
        let mut tries = 0;
        loop {
            match migrate(node, function, &module, agent).await {
                Ok(()) => break,
                // Another sequencer raced this one: take over again.
                Err(AgentError::Busy(why)) if tries < 5 => {
                    tracing::debug!(%agent, "moving again: {why}");
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 << tries)).await;
                }
                Err(e) => {
                    return Err(AgentError::NoMajority {
                        agent: agent.clone(),
                        why: format!(
                            "moved {moved} of {} agents, then: {e} (run the move again)",
                            names.len()
                        ),
                    });
                }
            }
        }
        moved += 1;
        if moved % 100 == 0 {
            tracing::info!(module = %name, moved, of = names.len(), "moving the agents");
        }
    }
    // 4. Done: the new list alone counts, and the host that left knows.
    let done = AgentModule {
        previous: Vec::new(),
        ..moving.clone()
    };
    let mut told = done.hosts.clone();
    told.extend(from.map(str::to_owned));
    register_here(node, &chain, &done)?;
    let took = register_chain(node, &chain, &done, &told).await;
    let lagging = done
        .hosts
        .iter()
        .filter(|p| **p != node.peer_id && !took.contains(p))
        .cloned()
        .collect();
    Ok(Moved {
        name: name.to_owned(),
        function: id,
        hosts: done.hosts,
        epoch: done.epoch,
        from: from.map(str::to_owned),
        to,
        agents: moved,
        lagging,
        millis: started.elapsed().as_millis() as u64,
    })
}

/// Moves the agents off hosts that have been gone for `timeout`, until
/// the node stops: for each agent module whose newest version this node
/// hosts, when a host of its list has not been connected for that long
/// and this node is the first host of the list it is connected to (or
/// itself), it moves the agents from that host to another node; a move
/// cut short is run again the same way.
pub(crate) async fn watch_forever(node: Arc<Node>, timeout: Duration) {
    let every = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(10));
    let mut gone_since: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        let connected = node.connected_peers().await;
        let modules = match node.agents.store.modules() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("agent modules: {e}");
                continue;
            }
        };
        let now = Instant::now();
        gone_since.retain(|p, _| !connected.contains(p));
        for (id, module) in modules {
            if module.hosts.len() < 2
                || !module.hosted_by(&node.peer_id)
                || node.agents.store.upgrade_of(&id).is_some()
            {
                continue;
            }
            let up = |p: &String| *p == node.peer_id || connected.contains(p);
            // The first host up in the list's order moves: one mover.
            if module.hosts.iter().find(|p| up(p)) != Some(&node.peer_id) {
                continue;
            }
            let left: Vec<&String> = module
                .previous
                .iter()
                .filter(|p| !module.hosted_by(p))
                .collect();
            let from = match left.first() {
                // A move cut short: finish it.
                Some(from) => Some((*from).clone()),
                None => module
                    .hosts
                    .iter()
                    .filter(|p| !up(p))
                    .find(|p| {
                        now.duration_since(*gone_since.entry((*p).clone()).or_insert(now))
                            >= timeout
                    })
                    .cloned(),
            };
            let Some(from) = from else { continue };
            let label = node.host.name_of(&id).unwrap_or_else(|| id.to_string());
            tracing::info!(module = %label, %from, "a host of the agents has been gone for {timeout:?}: moving them");
            match move_module(&node, id, &label, Some(&from), None).await {
                Ok(moved) => tracing::info!(
                    module = %label,
                    %from,
                    to = %moved.to,
                    agents = moved.agents,
                    millis = moved.millis,
                    "moved the agents"
                ),
                Err(e) => tracing::warn!(module = %label, %from, "moving the agents: {e}"),
            }
        }
    }
}
