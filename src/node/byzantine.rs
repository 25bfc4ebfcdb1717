//! Byzantine test modes (`orb node --byzantine MODE[,MODE…]`): a node that
//! misbehaves on purpose, one behaviour per mode, so the tests and the demo
//! can check that honest nodes detect each, bound it, and never pay for it.
//! An honest node runs with none of them.

use std::fmt;

/// One way to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// Corrupt every output this node computes (and sign it so).
    WrongOutput,
    /// Compute correctly, but sign receipts for a different fuel.
    WrongReceipt,
    /// Never answer a peer's request (it waits until its timeout).
    Silent,
    /// Answer peers' requests, but only after three seconds.
    Slow,
    /// Publish a thousand announcements a second.
    FloodGossip,
    /// Publish announcements that do not decode.
    MalformedGossip,
    /// Send request-stream frames over the size limit or that do not
    /// decode, instead of requests.
    BadFrames,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// The modes a node runs with (none: an honest node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Byzantine(Vec<Mode>);

impl Byzantine {
    /// A node with these modes.
    pub fn new(modes: impl IntoIterator<Item = Mode>) -> Self {
        let mut v: Vec<Mode> = modes.into_iter().collect();
        v.sort_by_key(|m| *m as u8);
        v.dedup();
        Self(v)
    }

    /// Whether it runs `mode`.
    pub fn has(&self, mode: Mode) -> bool {
        self.0.contains(&mode)
    }

    /// Whether it runs any mode.
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// The network layer's part of it.
    pub(crate) fn network(&self) -> orb_net::Misbehaviour {
        orb_net::Misbehaviour {
            flood_gossip: self.has(Mode::FloodGossip),
            malformed_gossip: self.has(Mode::MalformedGossip),
            bad_frames: self.has(Mode::BadFrames),
        }
    }
}

impl fmt::Display for Byzantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(Mode::to_string).collect();
        f.write_str(&names.join(","))
    }
}
