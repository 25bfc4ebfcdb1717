//! Topics: an agent publishes on its own topics (`module/id/topic`) as
//! effects of its steps, so a topic's order is its publisher's order and
//! its publications are kept, replicated and durable like the steps that
//! made them. Subscribers read a topic from a position on: agents through
//! a subscription their steps take (each publication comes to them once,
//! in order, as a message), clients through `GET /topic/…` as server-sent
//! events, pipelines through an engine source.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use orb_guest::agent::SubscriptionOp;
use orb_net::{Publication, Request, Response, TOPIC_BATCH};

use super::{AgentError, AgentName, MAX_MESSAGE, derive16, read, remote_error, send};
use crate::node::Node;

/// Most bytes in a topic's name.
const MAX_TOPIC: usize = 64;

/// Most publications one step makes.
pub(crate) const MAX_PUBLICATIONS: usize = 64;

/// Most topics one agent subscribes to.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 64;

/// How often the topics subscribers here follow are read when nothing
/// new came and the reads could not wait at the publishers.
pub(super) const FOLLOW: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a read of a topic waits for a publication at most.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// Reads that may wait for a publication on one node at once (past them a
/// read is answered at once; its reader reads again after [`FOLLOW`]).
pub(crate) const WAITING: usize = 256;

/// Reads of topics on other nodes that may wait there at once, from one
/// node (each holds a place in a peer's request window of 64; past them a
/// stream reads again after [`FOLLOW`]).
pub(crate) const ASKING: usize = 16;

/// How long reading one topic for a subscriber may take in a round.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a host that is not its subscriber's sequencer brings the
/// publications too (milliseconds): when the sequencer is down, its
/// subscriptions go on (sent, like any message, to the agent's first
/// live host, which sequences it); while it is up, what the others bring
/// is a duplicate it answers from its log.
const FOLLOW_AS_SPARE_MS: u64 = 2_000;

/// A topic's address: its publishing agent and its name among the agent's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Topic {
    pub(crate) agent: AgentName,
    pub(crate) name: String,
}

impl Topic {
    /// Reads `module/id/topic`.
    pub(crate) fn parse(s: &str) -> Result<Self, AgentError> {
        let bad = |why: String| AgentError::BadName(format!("topic {s:?}: {why}"));
        let Some((agent, name)) = s.rsplit_once('/') else {
            return Err(bad(
                "a topic is addressed as MODULE/ID/TOPIC, e.g. chat/room/lines".into(),
            ));
        };
        let agent = AgentName::parse(agent).map_err(|e| bad(e.to_string()))?;
        check_name(name).map_err(bad)?;
        Ok(Self {
            agent,
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.agent, self.name)
    }
}

/// A topic's name among its agent's: 1 to 64 of a-z, 0-9, '.', '_', '-'.
fn check_name(name: &str) -> Result<(), String> {
    if !super::plain(name, MAX_TOPIC) {
        return Err(format!(
            "a topic's name is 1 to {MAX_TOPIC} of a-z, 0-9, '.', '_', '-', not {name:?}"
        ));
    }
    Ok(())
}

/// Checks what a step publishes: (topic name, message) in order.
pub(super) fn publishing(
    agent: &str,
    publications: Vec<orb_guest::agent::Publication>,
) -> Result<Vec<(String, Vec<u8>)>, AgentError> {
    let refuse = |message: String| AgentError::Step {
        agent: agent.to_owned(),
        kind: "bad_publication".into(),
        message,
    };
    if publications.len() > MAX_PUBLICATIONS {
        return Err(refuse(format!(
            "{} publications in one step, over the limit of {MAX_PUBLICATIONS}",
            publications.len()
        )));
    }
    publications
        .into_iter()
        .map(|p| {
            check_name(&p.topic).map_err(&refuse)?;
            if p.message.len() > MAX_MESSAGE {
                return Err(refuse(format!(
                    "a publication of {} bytes on {}, over the message limit of {MAX_MESSAGE}",
                    p.message.len(),
                    p.topic
                )));
            }
            Ok((p.topic, p.message))
        })
        .collect()
}

/// Checks the subscriptions a step takes or drops against the topics
/// `subscribed` before it: (topic, subscribed) in order.
pub(super) fn subscribing(
    agent: &str,
    subscribed: &[String],
    ops: Vec<SubscriptionOp>,
) -> Result<Vec<(String, bool)>, AgentError> {
    let refuse = |message: String| AgentError::Step {
        agent: agent.to_owned(),
        kind: "bad_subscription".into(),
        message,
    };
    let mut now = subscribed.to_vec();
    ops.into_iter()
        .map(|op| {
            let (topic, on) = match op {
                SubscriptionOp::Subscribe { topic } => (topic, true),
                SubscriptionOp::Unsubscribe { topic } => (topic, false),
            };
            let parsed = Topic::parse(&topic).map_err(|e| refuse(e.to_string()))?;
            if on && parsed.agent.to_string() == agent {
                return Err(refuse(format!(
                    "{agent} cannot subscribe to its own topic {topic}"
                )));
            }
            if on && !now.contains(&topic) {
                if now.len() >= MAX_SUBSCRIPTIONS {
                    return Err(refuse(format!(
                        "{agent} has {MAX_SUBSCRIPTIONS} subscriptions, the limit: drop one first"
                    )));
                }
                now.push(topic.clone());
            } else if !on {
                now.retain(|t| *t != topic);
            }
            Ok((topic, on))
        })
        .collect()
}

/// Publications on `topic` after `after` (one batch, in order), wherever
/// its agent is hosted. With none yet, the read may wait up to `wait` for
/// one (the host answers as soon as a step publishes one).
pub(crate) async fn publications(
    node: &Node,
    topic: &Topic,
    after: (u64, u32),
    wait: Duration,
) -> Result<Vec<Publication>, AgentError> {
    let agent = topic.agent.to_string();
    let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
    let request = |wait_ms| Request::AgentTopic {
        agent: agent.clone(),
        topic: topic.name.clone(),
        after,
        wait_ms,
    };
    let store = &node.agents.store;
    if store.has(&agent).map_err(AgentError::Internal)? {
        // A host that holds steps it does not know a majority has keeps
        // their publications back; the sequencer may know more.
        if store.unconfirmed(&agent).map_err(AgentError::Internal)?
            && let Ok(Response::AgentTopic(found)) =
                super::ask_other_hosts(node, &topic.agent, &request(0)).await
            && !found.is_empty()
        {
            return Ok(found);
        }
        return kept(node, &agent, &topic.name, after, wait)
            .await
            .map_err(AgentError::Internal);
    }
    read(
        node,
        &topic.agent,
        request(wait_ms),
        || {
            node.agents
                .store
                .publications(&agent, &topic.name, after, TOPIC_BATCH)
        },
        |response| match response {
            Response::AgentTopic(found) => Ok(found),
            other => Err(remote_error(&topic.agent, other)),
        },
    )
    .await
}

/// What this node keeps of `agent`'s topic after `after`; with nothing
/// yet, waits up to `wait` (at most [`MAX_WAIT`], and only while fewer
/// than [`WAITING`] reads wait here) for a step here to publish.
async fn kept(
    node: &Node,
    agent: &str,
    topic: &str,
    after: (u64, u32),
    wait: Duration,
) -> Result<Vec<Publication>, String> {
    let store = &node.agents.store;
    let permit = match wait.is_zero() {
        true => None,
        false => node.agents.waiting.try_acquire().ok(),
    };
    let Some(_permit) = permit else {
        return store.publications(agent, topic, after, TOPIC_BATCH);
    };
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    loop {
        // Registered before the read, so a publication made meanwhile
        // still wakes it.
        let published = node.agents.published.notified();
        let mut published = std::pin::pin!(published);
        published.as_mut().enable();
        let found = store.publications(agent, topic, after, TOPIC_BATCH)?;
        if !found.is_empty() {
            return Ok(found);
        }
        if tokio::time::timeout_at(deadline, published).await.is_err() {
            return Ok(found);
        }
    }
}

/// Answers a peer's [`Request::AgentTopic`] from what this node keeps.
pub(super) async fn answer(
    node: &Node,
    agent: &str,
    topic: &str,
    after: (u64, u32),
    wait_ms: u32,
) -> Response {
    if check_name(topic).is_err() {
        return Response::AgentTopic(Vec::new());
    }
    let wait = Duration::from_millis(u64::from(wait_ms));
    match kept(node, agent, topic, after, wait).await {
        Ok(found) => Response::AgentTopic(found),
        Err(e) => AgentError::Internal(e).response(),
    }
}

/// Follows the topics agents here subscribe to, until cancelled: rounds
/// of [`follow`], the next at once when one brought something or its reads
/// waited at their publishers, after [`FOLLOW`] otherwise.
pub(crate) async fn follow_forever(node: Arc<Node>) {
    loop {
        let started = tokio::time::Instant::now();
        let waited = match follow(&node).await {
            Some(Round { brought: true, .. }) => continue,
            Some(Round { waited, .. }) => waited,
            None => false,
        };
        // Reads that answered at once (a publisher past its waiting reads,
        // one that is down) are not asked again in a loop.
        if !waited || started.elapsed() < FOLLOW / 2 {
            tokio::time::sleep(FOLLOW).await;
        }
    }
}

/// What a round of [`follow`] did.
struct Round {
    /// Some publication came.
    brought: bool,
    /// The reads waited at the publishers for a publication (the
    /// subscriptions were few enough to be read at once).
    waited: bool,
}

/// Brings subscribed agents the publications they do not have yet, each
/// under an id derived from (subscriber, topic, place), so it is applied
/// once however often it is brought; an agent on several hosts is served
/// by its sequencer, and every [`FOLLOW_AS_SPARE_MS`] by its other hosts
/// too. The subscriptions are read [`ASKING`] at a time; when all of them
/// fit, each read waits at its publisher (up to [`MAX_WAIT`]) for the next
/// publication instead of coming back empty, so an idle subscriber costs a
/// read a second and a publication comes as soon as it is made. A
/// subscriber that cannot take a publication now gets it on a later round,
/// in order. `None` when no agent here subscribes to anything.
async fn follow(node: &Arc<Node>) -> Option<Round> {
    use futures::StreamExt as _;
    let store = &node.agents.store;
    let subscriptions = match store.subscriptions(10_000) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("agent subscriptions: {e}");
            return None;
        }
    };
    if subscriptions.is_empty() {
        return None;
    }
    let now = super::now_ms();
    let spare = node
        .agents
        .spares_followed
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            (now.saturating_sub(last) >= FOLLOW_AS_SPARE_MS).then_some(now)
        })
        .is_ok();
    let mine: Vec<(String, String)> = subscriptions
        .into_iter()
        .filter(|(subscriber, _)| spare || super::delivers_for(node, subscriber))
        .collect();
    let wait = match mine.len() <= ASKING {
        true => MAX_WAIT,
        false => Duration::ZERO,
    };
    let brought = futures::stream::iter(mine)
        .map(|(subscriber, name)| follow_one(node, subscriber, name, wait))
        .buffer_unordered(ASKING)
        .fold(false, |any, one| async move { any || one })
        .await;
    Some(Round {
        brought,
        waited: !wait.is_zero(),
    })
}

/// Reads one subscription's topic from its cursor on (waiting up to
/// `wait` for a publication) and brings what came to the subscriber, in
/// order. Whether anything came.
async fn follow_one(node: &Arc<Node>, subscriber: String, name: String, wait: Duration) -> bool {
    let store = &node.agents.store;
    let (Ok(topic), Ok(to)) = (Topic::parse(&name), AgentName::parse(&subscriber)) else {
        return false;
    };
    let Ok(mut cursor) = store.cursor(&subscriber, &name) else {
        return false;
    };
    // A publisher that does not answer holds up no one for long.
    let read = publications(node, &topic, cursor, wait);
    let found = match tokio::time::timeout(READ_WAIT, read).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::debug!(%subscriber, topic = %name, "topic not read: {e}");
            return false;
        }
        Err(_) => {
            tracing::debug!(%subscriber, topic = %name, "topic not read in {READ_WAIT:?}");
            return false;
        }
    };
    let publisher = topic.agent.to_string();
    let mut brought = false;
    for p in found {
        let id = derive16(
            b"orb/agent-topic/v1\0",
            &[
                subscriber.as_bytes(),
                &[0],
                name.as_bytes(),
                &[0],
                &p.seq.to_be_bytes(),
                &p.index.to_be_bytes(),
            ],
        );
        let origin = (Some(publisher.as_str()), None, Some(name.clone()));
        match send(node, &to, id, p.message, origin).await {
            Ok(_) => {}
            Err(e) if e.kind() == "step_failed" => {
                // The subscriber refused it for good: it is passed.
                tracing::warn!(%subscriber, topic = %name, "a publication was refused: {e}");
            }
            Err(e) => {
                tracing::debug!(%subscriber, topic = %name, "to be brought again: {e}");
                break;
            }
        }
        cursor = (p.seq, p.index);
        brought = true;
        if let Err(e) = store.advance(&subscriber, &name, cursor) {
            tracing::warn!("agent cursor: {e}");
            break;
        }
    }
    brought
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_module_slash_id_slash_name() {
        let t = Topic::parse("chat/room/lines").unwrap();
        assert_eq!(
            (t.agent.to_string(), t.name.as_str()),
            ("chat/room".into(), "lines")
        );
        assert_eq!(t.to_string(), "chat/room/lines");
        for bad in [
            "chat/room",
            "chat/room/",
            "chat/room/Lines",
            "/room/lines",
            "lines",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_step_subscribes_within_its_limits_and_not_to_itself() {
        let sub = |t: &str| SubscriptionOp::Subscribe { topic: t.into() };
        let unsub = |t: &str| SubscriptionOp::Unsubscribe { topic: t.into() };
        let ops = vec![
            sub("chat/room/lines"),
            sub("chat/room/lines"),
            unsub("chat/hall/x"),
        ];
        assert_eq!(
            subscribing("member/ann", &[], ops).unwrap(),
            [
                ("chat/room/lines".to_owned(), true),
                ("chat/room/lines".to_owned(), true),
                ("chat/hall/x".to_owned(), false),
            ]
        );
        let own = subscribing("chat/room", &[], vec![sub("chat/room/lines")]).unwrap_err();
        assert!(own.to_string().contains("its own topic"), "{own}");
        let bad = subscribing("member/ann", &[], vec![sub("chat/room")]).unwrap_err();
        assert!(bad.to_string().contains("(bad_subscription)"), "{bad}");
        // At the limit a new one is refused, one held already is not, and
        // one dropped in the same step makes room.
        let full: Vec<String> = (0..MAX_SUBSCRIPTIONS)
            .map(|i| format!("chat/r{i}/x"))
            .collect();
        assert!(subscribing("member/ann", &full, vec![sub("chat/new/x")]).is_err());
        assert!(subscribing("member/ann", &full, vec![sub("chat/r3/x")]).is_ok());
        assert!(
            subscribing(
                "member/ann",
                &full,
                vec![unsub("chat/r3/x"), sub("chat/new/x")]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_step_publishes_within_its_limits() {
        let p = |topic: &str, n: usize| orb_guest::agent::Publication {
            topic: topic.into(),
            message: vec![b'x'; n],
        };
        assert_eq!(
            publishing("chat/room", vec![p("lines", 3), p("joins", 0)]).unwrap(),
            [
                ("lines".to_owned(), b"xxx".to_vec()),
                ("joins".to_owned(), Vec::new())
            ]
        );
        for bad in [
            vec![p("Lines", 1)],
            vec![p("lines", MAX_MESSAGE + 1)],
            (0..=MAX_PUBLICATIONS).map(|_| p("lines", 1)).collect(),
        ] {
            let e = publishing("chat/room", bad).unwrap_err();
            assert!(e.to_string().contains("(bad_publication)"), "{e}");
        }
    }
}
