//! Integration tests of orb-ledger: one binary, a module per behaviour.

mod chain;
mod fault;
mod snowball;
