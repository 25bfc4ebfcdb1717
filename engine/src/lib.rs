//! `orb-engine` will own Orb's dataflow: the reactive pipeline API for
//! pipeline authors and the node dataflow (routing, scheduling, agreement,
//! consensus), built on timely and differential dataflow.
//!
//! Nothing is implemented yet: see the engine issue.
