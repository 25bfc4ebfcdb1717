//! Example pipelines, each teaching one idea of `orb-engine`, each ending by
//! itself on bounded input. `orb pipeline list` names them and
//! `orb pipeline run NAME [-w N]` runs one.
//!
//! - [`etl`]: lines of text → `call` the `wordcount` WebAssembly function →
//!   word totals merged continuously in a differential collection.
//! - [`windows`]: tumbling and sliding windows over timestamped events.
//! - [`enrich`]: events joined against a live table that changes while the
//!   pipeline runs, with a subscription to the table's changes.
//! - [`chat`]: an agent's topic read as a stream, lines per speaker, each
//!   line sent on to an agent (needs a network: `--node`, `--topic`).

pub mod chat;
pub mod enrich;
pub mod etl;
pub mod windows;

use std::path::PathBuf;

use std::sync::Arc;

use orb_engine::{EngineConfig, Invoker};

/// What every pipeline run takes.
#[derive(Clone, Default)]
pub struct Options {
    /// Workers, cluster processes and pacing.
    pub engine: EngineConfig,
    /// Input file (a pipeline has a built-in input when this is `None`).
    pub input: Option<PathBuf>,
    /// Directory holding the example functions (`wordcount.wasm`, ...).
    pub functions: PathBuf,
    /// Where `call` operators send their calls: `None` runs the functions
    /// from `functions` on this process's executor; `Some` calls the
    /// deployed function through a node (see `orb pipeline run --node`).
    pub invoker: Option<Arc<dyn Invoker>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("engine", &self.engine)
            .field("input", &self.input)
            .field("functions", &self.functions)
            .field("invoker", &self.invoker.as_ref().map(|_| "remote"))
            .finish()
    }
}

/// A pipeline's name and what it shows.
pub struct Pipeline {
    /// The name `orb pipeline run` takes.
    pub name: &'static str,
    /// One line on what it teaches.
    pub about: &'static str,
}

/// Every example pipeline.
pub const PIPELINES: &[Pipeline] = &[
    Pipeline {
        name: "etl",
        about: "lines of text -> call the wordcount function -> continuously merged word totals",
    },
    Pipeline {
        name: "windows",
        about: "tumbling and sliding window aggregates over a timestamped event stream",
    },
    Pipeline {
        name: "enrich",
        about: "events joined against a live table that changes while the pipeline runs; a subscriber prints changes",
    },
    Pipeline {
        name: "chat",
        about: "a chat room's topic read from the network as a stream -> lines per speaker -> each line an inc to counter/NAME (--topic, --count)",
    },
];

/// Errors of the example pipelines.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] orb_engine::Error),
    /// The function runtime failed.
    #[error(transparent)]
    Function(#[from] orb_functions::Error),
    /// An input or function file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No pipeline of that name.
    #[error("no pipeline named `{0}` (see `orb pipeline list`)")]
    Unknown(String),
}

/// Applies one change of a differential aggregate to the latest values:
/// `+1` sets `key` to `value`; `-1` removes it unless a newer value has
/// already replaced it (within an epoch the two arrive in either order).
pub(crate) fn apply_change<K: Ord + Clone, V: PartialEq + Clone>(
    latest: &mut std::collections::BTreeMap<K, V>,
    key: &K,
    value: &V,
    diff: isize,
) {
    if diff > 0 {
        latest.insert(key.clone(), value.clone());
    } else if latest.get(key) == Some(value) {
        latest.remove(key);
    }
}

/// Reads a file, naming it on failure.
pub(crate) fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}
