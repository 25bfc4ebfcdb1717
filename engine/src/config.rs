//! `EngineConfig`: how a pipeline is spread over threads and processes.

use crate::{Error, Result};

/// Workers, processes and pacing of a pipeline. CLI flags (`-w`, `-n`, `-p`,
/// `--hostfile`) map onto it.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads in this process (`-w`).
    pub workers: usize,
    /// Processes in the cluster (`-n`); 1 means no cluster.
    pub processes: usize,
    /// This process's index in the cluster (`-p`).
    pub process: usize,
    /// `host:port` of every process, in index order; default `127.0.0.1:2101+i`.
    pub addresses: Vec<String>,
    /// Most epochs a source may run ahead of the end of the dataflow.
    pub max_lag: u64,
    /// Most records a source puts in one epoch.
    pub batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
            max_lag: 4,
            batch: 1024,
        }
    }
}

impl EngineConfig {
    /// The timely configuration: threads in one process, or a cluster.
    ///
    /// A timely cluster is fail-stop with fixed membership: every process
    /// must start, none may leave, and one crash ends them all. It is for
    /// pipelines that outgrow a machine; Orb nodes talk over libp2p instead.
    pub fn timely(&self) -> Result<timely::Config> {
        let workers = self.workers.max(1);
        if self.processes <= 1 {
            return Ok(timely::Config::process(workers));
        }
        if self.process >= self.processes {
            return Err(Error::Start(format!(
                "process index {} is not below the process count {}",
                self.process, self.processes
            )));
        }
        let addresses = if self.addresses.is_empty() {
            (0..self.processes)
                .map(|i| format!("127.0.0.1:{}", 2101 + i))
                .collect()
        } else if self.addresses.len() == self.processes {
            self.addresses.clone()
        } else {
            return Err(Error::Start(format!(
                "{} addresses for {} processes",
                self.addresses.len(),
                self.processes
            )));
        };
        Ok(timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        })
    }
}
