//! `NetConfig`: how a node joins the network.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;

use crate::Announcement;
use crate::conduct::ConductConfig;

/// The node's own checks of an announcement's content, past decoding (a
/// ledger node checks that a committee claim has the work it claims and
/// that equivocation evidence is two conflicting signed votes): one that
/// fails is not forwarded, and its author is scored for
/// [`Offence::Forged`](crate::Offence::Forged). Cheap checks only: it runs
/// on the event loop for every announcement.
#[derive(Clone, Default)]
pub struct Screen(Option<Arc<Check>>);

/// A [`Screen`]'s check.
type Check = dyn Fn(&Announcement) -> bool + Send + Sync;

impl Screen {
    /// A screen that passes what `check` accepts.
    pub fn new(check: impl Fn(&Announcement) -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(check)))
    }

    /// Whether `announcement` passes (everything does without a screen).
    pub fn passes(&self, announcement: &Announcement) -> bool {
        self.0.as_ref().is_none_or(|check| check(announcement))
    }
}

impl fmt::Debug for Screen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Screen(..)"
        } else {
            "Screen(none)"
        })
    }
}

/// Ways a node misbehaves on purpose, on the network layer (`orb node
/// --byzantine …`, for tests and the demo): honest peers must detect each,
/// bound it, and ban the node for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Publish hundreds of (valid) announcements a second.
    pub flood_gossip: bool,
    /// Publish announcements that do not decode.
    pub malformed_gossip: bool,
    /// Send request-stream frames that claim more than the size limit, or
    /// do not decode, instead of requests.
    pub bad_frames: bool,
}

/// The network settings of a node; `orb node` flags map onto these fields.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on (TCP and QUIC multiaddrs).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, `/ip4/…/tcp/…/p2p/<peer id>`. Known peers from
    /// the peer store are dialed as well.
    pub bootstrap: Vec<Multiaddr>,
    /// Declare the listen addresses publicly reachable at once: serve the
    /// DHT, relay and AutoNAT without waiting for AutoNAT to confirm.
    pub supernode: bool,
    /// Discover peers on the local network by mDNS.
    pub mdns: bool,
    /// Largest request a peer may send (a module upload travels as a response).
    pub max_request_bytes: usize,
    /// Largest response a peer may send.
    pub max_response_bytes: usize,
    /// How long a request to a peer may take before it fails.
    pub request_timeout: Duration,
    /// Requests in flight to one peer at most (and a peer's requests we
    /// hold unanswered at most, per stream): one more is refused at once.
    pub stream_window: usize,
    /// How often AutoNAT probes our addresses.
    pub autonat_interval: Duration,
    /// Events waiting for the node before peers are answered "busy".
    pub event_queue: usize,
    /// Scores, rate limits and bans of misbehaving peers.
    pub conduct: ConductConfig,
    /// Misbehave on purpose (tests and the demo).
    pub misbehave: Misbehaviour,
    /// The node's checks of announcements' content.
    pub screen: Screen,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            supernode: false,
            mdns: false,
            max_request_bytes: 2 << 20,
            max_response_bytes: 16 << 20,
            request_timeout: Duration::from_secs(30),
            stream_window: 64,
            autonat_interval: Duration::from_secs(2),
            event_queue: 1024,
            conduct: ConductConfig::default(),
            misbehave: Misbehaviour::default(),
            screen: Screen::default(),
        }
    }
}
