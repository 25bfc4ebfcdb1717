//! `orb pipeline`: list and run the example pipelines of `orb-pipelines`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use orb_engine::EngineConfig;
use orb_pipelines::{Options, PIPELINES};

use crate::exit::CliError;

#[derive(Subcommand, Debug)]
pub(crate) enum PipelineCommand {
    /// Name the example pipelines and what each one shows.
    List,
    /// Run an example pipeline to completion and print its result.
    #[command(after_help = RUN_HELP)]
    Run(Box<RunArgs>),
}

const RUN_HELP: &str = "\
Cluster mode: run the same command in N processes, each with its own -p:
  orb pipeline run etl -n 2 -p 0 &  orb pipeline run etl -n 2 -p 1
Processes find each other at 127.0.0.1:2101+p unless --hostfile lists one
host:port per line. A timely cluster is fail-stop with fixed membership:
every process must start, and one crash ends them all. Each process prints
the results of its own workers; timely prints connection progress on stdout
first, so with --json the result is the last line.

Network mode: `orb pipeline run etl --remote --node http://127.0.0.1:7420` sends each
line to the `wordcount` function deployed on the network (orb deploy
wordcount.wasm --name wordcount) through that node: the pipeline's call
operator keeps --in-flight calls going, and each call is scheduled,
replicated (--replicas), rerouted and paid like any other.

Topics: `orb pipeline run chat --topic chat/lobby/lines --count 100 --node URL`
reads what the chat room agent publishes as the pipeline's source (as fast as
the pipeline takes it), counts the lines per speaker, and sends each line on as
`inc` to the agent counter/NAME (deploy examples/agents/counter as counter)
under a message id derived from the line's place, so running it twice over the
same lines counts each once.";

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The pipeline (see `orb pipeline list`).
    name: String,
    /// Worker threads in this process.
    #[arg(short = 'w', long, default_value_t = 1)]
    workers: usize,
    /// Processes in the cluster.
    #[arg(short = 'n', long, default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster.
    #[arg(short = 'p', long, default_value_t = 0)]
    process: usize,
    /// File with one host:port per process, in index order.
    #[arg(long, value_name = "FILE")]
    hostfile: Option<PathBuf>,
    /// Input file (each pipeline has a built-in input otherwise).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Directory of the example functions (built by scripts/guests).
    #[arg(
        long,
        env = "ORB_FUNCTIONS_DIR",
        default_value = "target/functions",
        value_name = "DIR"
    )]
    functions: PathBuf,
    /// Call the function deployed on the network through the node at
    /// --node instead of running it here (only `etl` calls a function:
    /// `wordcount`, deployed under that name).
    #[arg(long)]
    remote: bool,
    /// With --remote: executors per call (default: the node's --replicas).
    #[arg(long, value_name = "R", requires = "remote", value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: Option<u32>,
    /// With --remote: calls in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    in_flight: usize,
    /// The topic the `chat` pipeline reads (MODULE/ID/TOPIC), through the
    /// node at --node.
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// With --topic: stop after this many publications (default: follow
    /// the topic until stopped).
    #[arg(long, value_name = "N", requires = "topic")]
    count: Option<u64>,
    /// With --topic: only the publications after this place (SEQ.INDEX).
    #[arg(long, value_name = "SEQ.INDEX", requires = "topic")]
    after: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: PipelineCommand, node: &str) -> Result<(), CliError> {
    match cmd {
        PipelineCommand::List => {
            for p in PIPELINES {
                outln!("{:<10} {}", p.name, p.about);
            }
            Ok(())
        }
        PipelineCommand::Run(args) => run_one(*args, node),
    }
}

fn run_one(args: RunArgs, node: &str) -> Result<(), CliError> {
    if !PIPELINES.iter().any(|p| p.name == args.name) {
        return Err(CliError::usage(orb_pipelines::Error::Unknown(args.name)));
    }
    let addresses = match &args.hostfile {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hostfile `{}`", path.display()))
            .map_err(CliError::usage)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    if args.process >= args.processes.max(1) {
        return Err(CliError::usage(anyhow::anyhow!(
            "-p {} is not a process index of a {}-process cluster (0..{})",
            args.process,
            args.processes,
            args.processes
        )));
    }
    if !addresses.is_empty() && addresses.len() != args.processes {
        return Err(CliError::usage(anyhow::anyhow!(
            "the hostfile lists {} addresses for {} processes",
            addresses.len(),
            args.processes
        )));
    }
    let options = Options {
        engine: EngineConfig {
            workers: args.workers,
            processes: args.processes,
            process: args.process,
            addresses,
            ..EngineConfig::default()
        },
        input: args.input,
        functions: args.functions,
        invoker: match (args.remote, args.name.as_str()) {
            (true, "etl") => Some(crate::remote::NodeInvoker::start(
                node,
                "wordcount",
                args.replicas,
                args.in_flight.max(1),
            )),
            (true, _) => {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--remote: only the etl pipeline calls a function (wordcount)"
                )));
            }
            (false, _) => None,
        },
    };
    let failed = |e: orb_pipelines::Error| match e {
        orb_pipelines::Error::Read { .. } | orb_pipelines::Error::Unknown(_) => CliError::usage(e),
        other => CliError::from(anyhow::Error::new(other)),
    };
    match args.name.as_str() {
        "etl" => {
            let report = orb_pipelines::etl::run(&options).map_err(failed)?;
            if args.json {
                let v = serde_json::json!({
                    "pipeline": "etl",
                    "totals": report.totals,
                    "failed_lines": report.failed_lines,
                    "updates": report.updates,
                });
                outln!("{v}");
            } else {
                let mut top: Vec<_> = report.totals.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let words: i64 = report.totals.values().sum();
                outln!(
                    "etl: {} distinct words, {words} in all, {} total updates along the way, {} failed lines",
                    report.totals.len(),
                    report.updates,
                    report.failed_lines
                );
                for (word, n) in top.iter().take(10) {
                    outln!("  {n:>6}  {word}");
                }
            }
        }
        "enrich" => {
            let r = orb_pipelines::enrich::run(&options).map_err(failed)?;
            if args.json {
                let v = serde_json::json!({
                    "pipeline": "enrich",
                    "enriched": r.enriched,
                    "changes": r.changes.iter().map(|c| (c.time, &c.key, &c.value, c.diff)).collect::<Vec<_>>(),
                    "unmatched": r.unmatched,
                    "carol": r.carol,
                });
                outln!("{v}");
            } else {
                outln!("subscriber (users a..d):");
                for c in &r.changes {
                    outln!(
                        "  epoch {}  {}{} = {}",
                        c.time,
                        if c.diff > 0 { "+" } else { "-" },
                        c.key,
                        c.value
                    );
                }
                outln!("enriched events:");
                for (t, user, action, country) in &r.enriched {
                    outln!("  epoch {t}  {user:<6} {action:<7} {country}");
                }
                outln!("events with no table entry: {}", r.unmatched);
                outln!("lookup carol at the end: {:?}", r.carol);
            }
        }
        "windows" => {
            let r = orb_pipelines::windows::run(&options).map_err(failed)?;
            if args.json {
                let v = serde_json::json!({
                    "pipeline": "windows",
                    "tumbling": r.tumbling.iter().collect::<Vec<_>>(),
                    "sliding": r.sliding.iter().collect::<Vec<_>>(),
                });
                outln!("{v}");
            } else {
                outln!(
                    "tumbling windows of {} ms (sensor, start): count, sum",
                    orb_pipelines::windows::TUMBLE_MS
                );
                for ((sensor, start), (count, sum)) in &r.tumbling {
                    outln!("  {sensor} @ {start:>6}: {count:>4} events, sum {sum}");
                }
                outln!(
                    "sliding windows of {} ms every {} ms: {} windows, first 5:",
                    orb_pipelines::windows::SLIDE_SIZE_MS,
                    orb_pipelines::windows::SLIDE_EVERY_MS,
                    r.sliding.len()
                );
                for ((sensor, start), (count, sum)) in r.sliding.iter().take(5) {
                    outln!("  {sensor} @ {start:>6}: {count:>4} events, sum {sum}");
                }
            }
        }
        "chat" => {
            let Some(topic) = args.topic.clone() else {
                return Err(CliError::usage(anyhow::anyhow!(
                    "the chat pipeline reads a topic from the network: --topic MODULE/ID/TOPIC (through --node)"
                )));
            };
            let (feed, inlet) = orb_engine::channel(64);
            let sink = crate::remote::NodeInvoker::to_agents(node, args.in_flight.max(1));
            let reader = {
                let (node, topic, after, count) = (
                    node.to_owned(),
                    topic.clone(),
                    args.after.clone(),
                    args.count,
                );
                std::thread::spawn(move || {
                    crate::remote::read_topic(&node, &topic, after.as_deref(), count, feed)
                })
            };
            let report = orb_pipelines::chat::run(&options, &topic, inlet, sink);
            let read = reader
                .join()
                .map_err(|_| CliError::from(anyhow::anyhow!("the topic reader panicked")))?;
            read?;
            let r = report.map_err(failed)?;
            if args.json {
                let v = serde_json::json!({
                    "pipeline": "chat",
                    "topic": topic,
                    "per_speaker": r.per_speaker,
                    "sent": r.sent,
                    "failed": r.failed,
                    "unreadable": r.unreadable,
                });
                outln!("{v}");
            } else {
                outln!(
                    "chat {topic}: {} lines sent on as inc to counter/NAME, {} failed, {} unreadable",
                    r.sent,
                    r.failed,
                    r.unreadable
                );
                for (speaker, n) in &r.per_speaker {
                    outln!("  {n:>6}  {speaker}");
                }
            }
        }
        _ => unreachable!("checked against PIPELINES above"),
    }
    Ok(())
}
