//! Example pipelines (see the README).
