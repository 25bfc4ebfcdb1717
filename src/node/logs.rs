//! `orb logs NAME`: the calls of a function, or the steps of an agent
//! module's agents, gathered from every host that ran them
//! ([`Request::Calls`] to each, this node's own records directly), merged
//! in the order they ended. A [`Cursor`] says, per host, the last record
//! already shown, so `--follow` asks each host only for what is new.

use std::collections::BTreeMap;

use orb_functions::FunctionId;
use orb_net::{CallRecord, Request, Response};
use serde::Serialize;

use super::Node;
use super::invoke::{InvokeError, providers, resolve_name};

/// Per host (peer id): the last record number shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor(pub(crate) BTreeMap<String, u64>);

impl Cursor {
    /// `peer:seq,peer:seq` (what the API takes and gives back).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (peer, seq) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("a cursor is peer:seq,…, not {part:?}"))?;
            let seq = seq
                .parse::<u64>()
                .map_err(|_| format!("{seq:?} in the cursor is not a record number"))?;
            map.insert(peer.to_owned(), seq);
        }
        Ok(Self(map))
    }

    pub(crate) fn render(&self) -> String {
        self.0
            .iter()
            .map(|(p, s)| format!("{p}:{s}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One call as `GET /api/logs` lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Line {
    /// The host that ran it.
    pub(crate) host: String,
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
    /// 32 hex digits.
    pub(crate) invocation: String,
    pub(crate) function: String,
    pub(crate) agent: Option<String>,
    pub(crate) outcome: String,
    pub(crate) fuel: u64,
    pub(crate) duration_us: u64,
    pub(crate) log: String,
}

/// What one gathering found.
#[derive(Debug, Serialize)]
pub(crate) struct Gathered {
    pub(crate) function: String,
    /// Oldest first.
    pub(crate) calls: Vec<Line>,
    /// To ask for what is newer.
    pub(crate) cursor: String,
    /// Hosts that did not answer, with why.
    pub(crate) unreachable: Vec<String>,
}

/// `target` as `orb logs` takes it: a function name or id, or an agent
/// `module/id` (its steps only).
fn split(target: &str) -> (&str, Option<&str>) {
    match target.split_once('/') {
        Some((module, id)) => (module, Some(id)),
        None => (target, None),
    }
}

/// The hosts that may have run `function`: its providers, the agent
/// module's hosts, and this node.
async fn hosts(node: &Node, function: FunctionId) -> Vec<String> {
    let mut hosts = vec![node.peer_id.clone()];
    if let Ok(found) = providers(node, function).await {
        hosts.extend(found.into_iter().map(|p| p.peer.to_string()));
    }
    if let Ok(modules) = node.agents.modules() {
        for (id, module) in modules {
            if id == function {
                hosts.extend(module.hosts.iter().cloned());
                hosts.extend(module.previous.iter().cloned());
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The calls of `target` after `cursor`, from every host.
pub(crate) async fn gather(
    node: &Node,
    target: &str,
    cursor: &Cursor,
) -> Result<Gathered, InvokeError> {
    let (name, agent) = split(target);
    let function = resolve_name(node, name).await?;
    let hosts = hosts(node, function).await;
    let asked = hosts.iter().map(|host| {
        let after = cursor.0.get(host).copied().unwrap_or(0);
        async move {
            let answer = if *host == node.peer_id {
                let (records, last) = node.ran.after(&function, after);
                Ok((records, last))
            } else {
                match host.parse() {
                    Err(e) => Err(format!("{e}")),
                    Ok(peer) => match node
                        .net
                        .request(peer, &Request::Calls { function, after })
                        .await
                    {
                        Ok(Response::Calls { records, last }) => Ok((records, last)),
                        Ok(other) => Err(format!("answered {other:?}")),
                        Err(e) => Err(e.to_string()),
                    },
                }
            };
            (host.clone(), after, answer)
        }
    });
    let answers = futures::future::join_all(asked).await;
    let mut next = cursor.clone();
    let mut calls = Vec::new();
    let mut unreachable = Vec::new();
    for (host, after, answer) in answers {
        match answer {
            Ok((records, last)) => {
                // Up to the last record read: a full batch leaves the rest
                // for the next ask; a host that restarted counts from 1.
                let upto = records.last().map_or(last, |r: &CallRecord| r.seq);
                next.0
                    .insert(host.clone(), if last < after { 0 } else { upto });
                calls.extend(
                    records
                        .into_iter()
                        .filter(|r| {
                            agent.is_none_or(|id| {
                                r.agent
                                    .as_deref()
                                    .and_then(|a| a.split_once('/'))
                                    .is_some_and(|(_, a)| a == id)
                            })
                        })
                        .map(|r| Line {
                            host: host.clone(),
                            seq: r.seq,
                            at_ms: r.at_ms,
                            invocation: format!("{:032x}", r.invocation),
                            function: r.function.to_hex(),
                            agent: r.agent,
                            outcome: r.outcome,
                            fuel: r.fuel,
                            duration_us: r.duration_us,
                            log: r.log,
                        }),
                );
            }
            Err(why) => unreachable.push(format!("{host}: {why}")),
        }
    }
    calls.sort_by(|a, b| (a.at_ms, &a.host, a.seq).cmp(&(b.at_ms, &b.host, b.seq)));
    Ok(Gathered {
        function: function.to_hex(),
        calls,
        cursor: next.render(),
        unreachable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_renders_and_refuses_garbage() {
        let c = Cursor::parse("12D3KooWa:5,12D3KooWb:0").unwrap();
        assert_eq!(c.0.get("12D3KooWa"), Some(&5));
        assert_eq!(Cursor::parse(&c.render()).unwrap(), c);
        assert_eq!(Cursor::parse("").unwrap(), Cursor::default());
        assert!(Cursor::parse("nocolon").is_err());
        assert!(Cursor::parse("p:x").is_err());
    }

    #[test]
    fn an_agent_target_names_its_module() {
        assert_eq!(split("counter/alice"), ("counter", Some("alice")));
        assert_eq!(split("echo"), ("echo", None));
    }
}
