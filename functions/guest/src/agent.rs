//! Agents: WebAssembly actors whose state lives on the network.
//!
//! An agent is a module plus state, addressed as `module/id`
//! (`counter/alice`). Each message is one **step**, run by the node that
//! hosts the agent: (state, message, context) → (new state, reply). A step
//! is deterministic (no clock, no randomness but what the context
//! carries), and the node applies an agent's messages one at a time in
//! one order, each exactly once, and keeps the new state durably before
//! it sends the reply.
//!
//! The module stays a WASI preview-1 command: the node writes a
//! [`StepInput`] to stdin and reads a [`StepOutput`] from stdout, both in
//! postcard; a step that exits with an error changes nothing. This module
//! does the plumbing, so an agent is one closure:
//!
//! ```no_run
//! // A counter: `inc` adds one, `get` reads; the reply is the count.
//! orb_guest::agent::<u64, String, _, _>(|count, message, _ctx| {
//!     match message.trim() {
//!         "inc" => *count += 1,
//!         "get" => {}
//!         other => return Err(format!("unknown message {other:?}")),
//!     }
//!     Ok(count.to_string())
//! });
//! ```
//!
//! The state is kept as JSON (what `orb agent state` shows); a new agent
//! starts from the state given at deploy (`--init`) or, without one, from
//! `State::default()`.
//!
//! With [`actor`] a step also gets [`Effects`]: it may send messages to
//! other agents and set reminders (a message to itself some time after
//! the step), each taking effect exactly once after the step is durable.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Who and where a step runs: everything a step may depend on besides its
/// state and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The agent: `module/id`.
    pub agent: String,
    /// Who sent the message (a node's peer id, or `client` for the HTTP
    /// API's callers).
    pub sender: String,
    /// The message's place in the agent's order (1 for the first): the
    /// agent's logical time.
    pub seq: u64,
    /// The message's id: a retry carries the same one and is applied once.
    pub message_id: [u8; 16],
    /// Set when the message answers a call this agent made
    /// ([`Effects::call`], [`Effects::ask`]): the message is the
    /// function's output or the agent's reply, or the error when it failed.
    #[serde(skip)]
    pub answer: Option<Answer>,
    /// Set when the message is a publication on a topic this agent
    /// subscribed to ([`Effects::subscribe`]): the topic
    /// (`module/id/topic`); the sender is the publishing agent.
    #[serde(skip)]
    pub topic: Option<String>,
}

/// The call a message answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The name the step gave the call.
    pub name: String,
    /// Whether the call succeeded.
    pub ok: bool,
}

/// What the node writes to a step's stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepInput {
    /// Version 1: passive agents (a message in, a reply out).
    V1 {
        /// The step's context.
        context: Context,
        /// The state before the step; empty for a new agent without an
        /// initial state.
        state: Vec<u8>,
        /// The message.
        message: Vec<u8>,
    },
    /// Version 2: a message that answers a call the agent made.
    V2 {
        /// The step's context.
        context: Context,
        /// The state before the step.
        state: Vec<u8>,
        /// The function's output (or its error).
        message: Vec<u8>,
        /// The call it answers.
        answer: Answer,
    },
    /// Version 3: a publication on a topic the agent subscribed to.
    V3 {
        /// The step's context (its sender is the publishing agent).
        context: Context,
        /// The state before the step.
        state: Vec<u8>,
        /// The publication.
        message: Vec<u8>,
        /// The topic: `module/id/topic`.
        topic: String,
    },
}

/// What a step writes to stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutput {
    /// Version 1.
    V1 {
        /// The state after the step.
        state: Vec<u8>,
        /// The reply to the sender.
        reply: Vec<u8>,
    },
    /// Version 2: a step that also sends messages to other agents.
    V2 {
        /// The state after the step.
        state: Vec<u8>,
        /// The reply to the sender.
        reply: Vec<u8>,
        /// Messages to other agents, delivered exactly once after the
        /// step is durable, in this order.
        sends: Vec<Outgoing>,
    },
    /// Version 3: a step that may also set and cancel reminders.
    V3 {
        /// The state after the step.
        state: Vec<u8>,
        /// The reply to the sender.
        reply: Vec<u8>,
        /// As in version 2.
        sends: Vec<Outgoing>,
        /// Reminders set or cancelled, in this order.
        reminders: Vec<ReminderOp>,
    },
    /// Version 4: a step that may also publish on topics and subscribe to
    /// them.
    V4 {
        /// The state after the step.
        state: Vec<u8>,
        /// The reply to the sender.
        reply: Vec<u8>,
        /// As in version 2.
        sends: Vec<Outgoing>,
        /// As in version 3.
        reminders: Vec<ReminderOp>,
        /// Messages published on this agent's topics, in this order.
        publications: Vec<Publication>,
        /// Subscriptions taken or dropped, in this order.
        subscriptions: Vec<SubscriptionOp>,
    },
}

/// A message a step publishes on one of its agent's topics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The topic's name among the agent's (its address is
    /// `module/id/topic`).
    pub topic: String,
    /// The message.
    pub message: Vec<u8>,
}

/// A subscription a step takes or drops (see [`Effects::subscribe`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionOp {
    /// Every publication on `topic` (`module/id/topic`) comes to this
    /// agent as a message, once, in publication order, from the first
    /// the publisher's hosts keep.
    Subscribe {
        /// The topic: `module/id/topic`.
        topic: String,
    },
    /// No more publications of `topic`.
    Unsubscribe {
        /// The topic: `module/id/topic`.
        topic: String,
    },
}

/// A reminder a step sets or cancels (see [`Effects::remind`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReminderOp {
    /// Sets the reminder `name` (replacing one of that name): `message`
    /// goes to `to` (the agent itself when `None`) `after_ms` milliseconds
    /// after this step.
    Set {
        /// Names the reminder among the agent's.
        name: String,
        /// Milliseconds after this step (the step's time is its
        /// sequencer's clock when it put the message in order).
        after_ms: u64,
        /// The message it brings.
        message: Vec<u8>,
        /// The agent it goes to (`module/id`); `None`: this agent.
        to: Option<String>,
    },
    /// Cancels the reminder `name`, if it is set.
    Cancel {
        /// See [`ReminderOp::Set`].
        name: String,
    },
    /// Calls the function `function` with `input` once the step is
    /// durable; its output comes back to the agent as a message whose
    /// context names the call.
    Call {
        /// Names the call (among the agent's reminders).
        name: String,
        /// The function's name.
        function: String,
        /// Its input.
        input: Vec<u8>,
    },
    /// Sets the reminder `name` (replacing one of that name): `message`
    /// goes to `to` (the agent itself when `None`) once the network's
    /// reward chain has finalized `blocks` more blocks than it had when
    /// this step was put in order. Refused on a network without a chain.
    SetAfterBlocks {
        /// Names the reminder among the agent's.
        name: String,
        /// Blocks after this step's (the chain's height when its
        /// sequencer put the message in order).
        blocks: u64,
        /// The message it brings.
        message: Vec<u8>,
        /// The agent it goes to (`module/id`); `None`: this agent.
        to: Option<String>,
    },
    /// Sends `message` to the agent `agent` once the step is durable; its
    /// reply (or the error) comes back to this agent as a message whose
    /// context names the ask.
    Ask {
        /// Names the ask (among the agent's reminders).
        name: String,
        /// The agent asked: `module/id`.
        agent: String,
        /// The message.
        message: Vec<u8>,
    },
    /// A scheduled call: calls the function `function` with `input`
    /// `after_ms` milliseconds after this step (as [`ReminderOp::Set`]
    /// is due), unless a later step cancels `name` first; its output comes
    /// back to the agent as a message whose context names the call.
    CallAfter {
        /// Names the call (among the agent's reminders).
        name: String,
        /// Milliseconds after this step.
        after_ms: u64,
        /// The function's name.
        function: String,
        /// Its input.
        input: Vec<u8>,
    },
}

/// A message a step sends to another agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The agent: `module/id`.
    pub to: String,
    /// The message.
    pub message: Vec<u8>,
}

/// What a step does besides its new state and reply (see [`actor`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    sends: Vec<Outgoing>,
    reminders: Vec<ReminderOp>,
    publications: Vec<Publication>,
    subscriptions: Vec<SubscriptionOp>,
}

impl Effects {
    /// Sends `message` to the agent `to` (`module/id`) once this step is
    /// durable: fire and forget, exactly once, in the order sent. Its
    /// reply is not seen by this agent.
    pub fn send(&mut self, to: impl Into<String>, message: impl Into<Vec<u8>>) {
        self.sends.push(Outgoing {
            to: to.into(),
            message: message.into(),
        });
    }

    /// Sets the reminder `name`: once this step is durable, `message`
    /// comes back to this agent `after` this step, exactly once, even if
    /// every host restarts in between; its sender is the agent itself.
    /// Setting a name again replaces the reminder of that name.
    pub fn remind(
        &mut self,
        name: impl Into<String>,
        after: std::time::Duration,
        message: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::Set {
            name: name.into(),
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            message: message.into(),
            to: None,
        });
    }

    /// A scheduled send: `message` goes to the agent `to` (`module/id`)
    /// `after` this step, exactly once, unless a later step cancels `name`
    /// first ([`Effects::cancel`]); reminders and scheduled sends share
    /// their names.
    pub fn send_after(
        &mut self,
        name: impl Into<String>,
        after: std::time::Duration,
        to: impl Into<String>,
        message: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::Set {
            name: name.into(),
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            message: message.into(),
            to: Some(to.into()),
        });
    }

    /// Sets the reminder `name` to come back after `blocks` blocks: once
    /// the network's reward chain is `blocks` blocks past its height when
    /// this step was put in order, `message` comes back to this agent,
    /// exactly once, even if every host restarts in between. Blocks are
    /// finalized as calls are settled, so it waits for the network's
    /// traffic; on a network without a chain the step is refused.
    pub fn remind_after_blocks(
        &mut self,
        name: impl Into<String>,
        blocks: u64,
        message: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::SetAfterBlocks {
            name: name.into(),
            blocks,
            message: message.into(),
            to: None,
        });
    }

    /// A scheduled send after `blocks` blocks (see
    /// [`Effects::remind_after_blocks`] and [`Effects::send_after`]).
    pub fn send_after_blocks(
        &mut self,
        name: impl Into<String>,
        blocks: u64,
        to: impl Into<String>,
        message: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::SetAfterBlocks {
            name: name.into(),
            blocks,
            message: message.into(),
            to: Some(to.into()),
        });
    }

    /// Calls the function `function` (as deployed, by name) with `input`
    /// once this step is durable, exactly once; its output (or error)
    /// comes back to this agent as a later message whose
    /// [`Context::answer`] names the call. The agent goes on with other
    /// messages meanwhile.
    pub fn call(
        &mut self,
        name: impl Into<String>,
        function: impl Into<String>,
        input: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::Call {
            name: name.into(),
            function: function.into(),
            input: input.into(),
        });
    }

    /// A scheduled call: calls the function `function` with `input`
    /// `after` this step, exactly once, unless a later step cancels `name`
    /// first ([`Effects::cancel`]); its output (or error) comes back as a
    /// later message naming the call, as for [`Effects::call`]. Setting the
    /// call again from the step its answer brings makes a periodic
    /// trigger (a cron job) for the function.
    pub fn call_after(
        &mut self,
        name: impl Into<String>,
        after: std::time::Duration,
        function: impl Into<String>,
        input: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::CallAfter {
            name: name.into(),
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            function: function.into(),
            input: input.into(),
        });
    }

    /// Publishes `message` on this agent's topic `topic` once this step
    /// is durable. Subscribers (other agents, `orb topic subscribe`, the
    /// `GET /topic/…` event stream, pipelines) get each publication once,
    /// in the order this agent published them.
    pub fn publish(&mut self, topic: impl Into<String>, message: impl Into<Vec<u8>>) {
        self.publications.push(Publication {
            topic: topic.into(),
            message: message.into(),
        });
    }

    /// Subscribes this agent to `topic` (`module/id/topic`): from the first
    /// publication its publisher's hosts keep (after the last one it had,
    /// when it subscribed before), each comes to this agent
    /// as a message, once, in publication order, with the publisher as its
    /// sender and [`Context::topic`] naming the topic.
    pub fn subscribe(&mut self, topic: impl Into<String>) {
        self.subscriptions.push(SubscriptionOp::Subscribe {
            topic: topic.into(),
        });
    }

    /// Drops this agent's subscription to `topic`, if it has one.
    pub fn unsubscribe(&mut self, topic: impl Into<String>) {
        self.subscriptions.push(SubscriptionOp::Unsubscribe {
            topic: topic.into(),
        });
    }

    /// Asks the agent `agent` (`module/id`): `message` goes to it once this
    /// step is durable, exactly once, and its reply (or, when the message
    /// fails there, the error) comes back to this agent as a later message
    /// whose [`Context::answer`] names the ask. The agent goes on with
    /// other messages meanwhile.
    pub fn ask(
        &mut self,
        name: impl Into<String>,
        agent: impl Into<String>,
        message: impl Into<Vec<u8>>,
    ) {
        self.reminders.push(ReminderOp::Ask {
            name: name.into(),
            agent: agent.into(),
            message: message.into(),
        });
    }

    /// Cancels the reminder or scheduled send `name` if it is set and has
    /// not fired.
    pub fn cancel(&mut self, name: impl Into<String>) {
        self.reminders
            .push(ReminderOp::Cancel { name: name.into() });
    }
}

impl StepInput {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads the canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("not a step input: {e}"))
    }
}

impl StepOutput {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads the canonical bytes; anything after them is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        match postcard::take_from_bytes(bytes) {
            Ok((out, [])) => Ok(out),
            Ok((_, rest)) => Err(format!(
                "{} bytes after the step output (an agent writes nothing else to stdout)",
                rest.len()
            )),
            Err(e) => Err(format!("not a step output: {e}")),
        }
    }
}

/// A message an agent can read: text ([`String`]), bytes (`Vec<u8>`), or
/// JSON ([`Json`]).
pub trait Message: Sized {
    /// Reads the message's bytes.
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String>;
}

/// A reply an agent can give.
pub trait Reply {
    /// The reply's bytes.
    fn into_bytes(self) -> Vec<u8>;
}

/// A message or reply carried as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl Message for String {
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        String::from_utf8(bytes).map_err(|e| format!("the message is not UTF-8: {e}"))
    }
}

impl Message for Vec<u8> {
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        Ok(bytes)
    }
}

impl<T: DeserializeOwned> Message for Json<T> {
    fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| format!("the message is not the JSON this agent reads: {e}"))
    }
}

impl Reply for String {
    fn into_bytes(self) -> Vec<u8> {
        String::into_bytes(self)
    }
}

impl Reply for Vec<u8> {
    fn into_bytes(self) -> Vec<u8> {
        self
    }
}

impl<T: Serialize> Reply for Json<T> {
    fn into_bytes(self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }
}

/// Runs one step of an agent with state `S` (kept as JSON) reading
/// messages `M`: reads the step input from stdin, calls `f`, writes the
/// step output to stdout. An `Err` (from `f`, or a state or message that
/// does not decode) goes to stderr and the step fails: the state stays
/// as it was.
pub fn agent<S, M, R, E>(f: impl FnOnce(&mut S, M, &Context) -> Result<R, E>)
where
    S: Serialize + DeserializeOwned + Default,
    M: Message,
    R: Reply,
    E: Display,
{
    actor::<S, M, R, E>(|state, message, ctx, _| f(state, message, ctx));
}

/// [`agent()`] for a step that may also send messages to other agents,
/// through its [`Effects`].
pub fn actor<S, M, R, E>(f: impl FnOnce(&mut S, M, &Context, &mut Effects) -> Result<R, E>)
where
    S: Serialize + DeserializeOwned + Default,
    M: Message,
    R: Reply,
    E: Display,
{
    let (context, state, message) =
        match StepInput::decode(&crate::input()).unwrap_or_else(|e| crate::fail(e)) {
            StepInput::V1 {
                context,
                state,
                message,
            } => (context, state, message),
            StepInput::V2 {
                mut context,
                state,
                message,
                answer,
            } => {
                context.answer = Some(answer);
                (context, state, message)
            }
            StepInput::V3 {
                mut context,
                state,
                message,
                topic,
            } => {
                context.topic = Some(topic);
                (context, state, message)
            }
        };
    let mut s: S = if state.is_empty() {
        S::default()
    } else {
        serde_json::from_slice(&state)
            .unwrap_or_else(|e| crate::fail(format!("the state does not decode: {e}")))
    };
    let message = M::from_bytes(message).unwrap_or_else(|e| crate::fail(e));
    let mut effects = Effects::default();
    match f(&mut s, message, &context, &mut effects) {
        Ok(reply) => {
            let state = serde_json::to_vec(&s)
                .unwrap_or_else(|e| crate::fail(format!("the state does not encode: {e}")));
            let reply = reply.into_bytes();
            let topics = !effects.publications.is_empty() || !effects.subscriptions.is_empty();
            let out = match (effects.sends.is_empty(), effects.reminders.is_empty()) {
                _ if topics => StepOutput::V4 {
                    state,
                    reply,
                    sends: effects.sends,
                    reminders: effects.reminders,
                    publications: effects.publications,
                    subscriptions: effects.subscriptions,
                },
                (true, true) => StepOutput::V1 { state, reply },
                (false, true) => StepOutput::V2 {
                    state,
                    reply,
                    sends: effects.sends,
                },
                _ => StepOutput::V3 {
                    state,
                    reply,
                    sends: effects.sends,
                    reminders: effects.reminders,
                },
            };
            crate::output(&out.encode());
        }
        Err(e) => crate::fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_envelopes_round_trip_and_trailing_bytes_are_refused() {
        let input = StepInput::V1 {
            context: Context {
                agent: "counter/alice".into(),
                sender: "client".into(),
                seq: 7,
                message_id: [3; 16],
                answer: None,
                topic: None,
            },
            state: b"41".to_vec(),
            message: b"inc".to_vec(),
        };
        assert_eq!(StepInput::decode(&input.encode()), Ok(input));
        let out = StepOutput::V1 {
            state: b"42".to_vec(),
            reply: b"42".to_vec(),
        };
        let mut bytes = out.encode();
        assert_eq!(StepOutput::decode(&bytes), Ok(out));
        bytes.push(0);
        assert!(
            StepOutput::decode(&bytes)
                .unwrap_err()
                .contains("1 bytes after")
        );
        assert!(StepOutput::decode(b"hello").is_err());
    }
}
