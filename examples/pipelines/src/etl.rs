//! ETL: lines of text → `call` the `wordcount` function on each line →
//! word totals, merged continuously.
//!
//! Each worker reads its share of the lines (line `i` goes to worker
//! `i % peers`, also across cluster processes) through an [`iter_source`],
//! so the source is paced by the dataflow. The `call` operator runs the
//! WebAssembly function on the executor pool, or, with
//! [`Options::invoker`], calls `wordcount` deployed on the network through
//! a node (replicated, rerouted and paid like any call). Its JSON output becomes a
//! differential collection whose multiplicities are the counts, and
//! `count` keeps the totals: each epoch changes only the words it saw.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use orb_engine::{CallConfig, Called, Flow, Invoker, call_with, execute, iter_source, weighted};
use orb_functions::{Executor, Runtime, RuntimeConfig};
use timely::dataflow::operators::vec::Map;

use crate::{Error, Options, apply_change, read};

/// A few lines to count when no input file is given.
pub const SAMPLE: &str = include_str!("sample.txt");

/// What the ETL pipeline found (this process's share of the words).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Word → total.
    pub totals: BTreeMap<String, i64>,
    /// Lines whose call failed.
    pub failed_lines: u64,
    /// Updates the totals went through before settling.
    pub updates: u64,
}

/// Runs the pipeline.
pub fn run(options: &Options) -> Result<Report, Error> {
    let text = match &options.input {
        Some(path) => String::from_utf8_lossy(&read(path)?).into_owned(),
        None => SAMPLE.to_owned(),
    };
    let lines: Arc<Vec<String>> = Arc::new(text.lines().map(str::to_owned).collect());
    let invoker: Arc<dyn Invoker> = match &options.invoker {
        Some(remote) => remote.clone(),
        None => {
            let wasm = read(&options.functions.join("wordcount.wasm"))?;
            let runtime = Runtime::new(RuntimeConfig::default())?;
            let function = runtime.load(&wasm)?;
            let executor = Arc::new(Executor::for_runtime(runtime)?);
            orb_engine::local_invoker(executor, function, CallConfig::default().options)
        }
    };
    let engine = options.engine.clone();

    let per_worker = execute(&options.engine, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mine: Vec<String> = lines.iter().skip(index).step_by(peers).cloned().collect();
        // A few lines per epoch, so the totals visibly change as lines arrive.
        let flow = Flow::new(engine.max_lag, engine.batch.min(2));
        let report = Rc::new(RefCell::new(Report::default()));
        let (r1, r2) = (report.clone(), report.clone());
        let invoker = invoker.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let lines = iter_source(scope, "lines", &flow, mine);
            let counted = call_with(lines, invoker, CallConfig::default(), |l: &String| {
                l.clone().into_bytes()
            });
            let words = counted.flat_map(move |c: Called<String>| {
                let words: Vec<(String, isize)> = match c.result {
                    Ok((out, _fuel)) => serde_json::from_slice::<BTreeMap<String, isize>>(&out)
                        .map(|m| m.into_iter().collect())
                        .unwrap_or_default(),
                    Err(_) => {
                        r1.borrow_mut().failed_lines += 1;
                        Vec::new()
                    }
                };
                words
            });
            weighted(words)
                .count()
                .inspect(move |((word, total), _time, diff)| {
                    let mut r = r2.borrow_mut();
                    r.updates += 1;
                    apply_change(&mut r.totals, word, &(*total as i64), *diff);
                })
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        report.take()
    })?;
    let mut all = Report::default();
    for r in per_worker {
        all.totals.extend(r.totals);
        all.failed_lines += r.failed_lines;
        all.updates += r.updates;
    }
    Ok(all)
}
