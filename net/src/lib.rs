//! `orb-net` will own Orb's network layer: the libp2p swarm (TCP, QUIC,
//! Noise, yamux), its protocols (identify, ping, Kademlia, request-response,
//! gossipsub, relay, DCUtR, AutoNAT, mDNS), the persistent peer store and NAT
//! traversal, behind one event loop and a cloneable handle.
//!
//! It depends on `orb-functions` and `orb-ledger`, never on `orb-engine`.
//! Nothing is implemented yet: see the network issue.
