//! `orb`: the command line of the Orb network.
//!
//! Reading order for a newcomer: this file (commands and exit codes), then
//! `run.rs` and `function.rs` (the commands), `serve.rs` (`orb node`, over
//! the node library: `lib.rs` and `node/`), `ledger/` (the reward chain,
//! offline), then the crates below: `orb-functions` (the WebAssembly
//! runtime), `orb-ledger`, `orb-net` and `orb-engine`.

/// `println!` that ends the process quietly when stdout is closed (`orb … | head`),
/// as a Unix tool does on SIGPIPE, instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::exit::stdout_failed(e);
        }
    }};
}

mod agent;
mod client;
mod exit;
mod function;
mod ledger;
mod logs;
mod pipeline;
mod remote;
mod run;
mod serve;
mod sim;
mod top;
mod topic;
mod traces;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::CliError;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (a bug or a broken host: please report it); for the checks of
     `orb ledger` (audit, verify-proof, consistency): the chain or the proof is wrong
  2  usage or input error: bad flags, unreadable file, invalid module, unsupported ABI,
     no ledger or an unreadable one (`orb ledger`)
  3  the guest failed: trap, non-zero exit, out of fuel, timeout, memory or output limit
  4  network: the node is unreachable, no provider for the function, or every provider failed";

/// Orb: a decentralized function-as-a-service network.
///
/// Functions are WebAssembly (WASI preview-1 command modules or WASI 0.2
/// `wasi:cli/run` components: input on stdin, output on stdout), named by
/// the blake3 hash of their bytes, run sandboxed, metered and deterministic.
#[derive(Parser, Debug)]
#[command(name = "orb", version, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    /// Where Orb keeps its state (module store, compiled artifacts, node identity, ledger).
    #[arg(long, global = true, env = "ORB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// The node that client commands (deploy, invoke, agent, topic, peers,
    /// ls, status, pipeline run --remote / --topic) talk to.
    #[arg(
        long,
        global = true,
        env = "ORB_NODE",
        value_name = "URL",
        default_value = "http://127.0.0.1:7420"
    )]
    node: String,

    /// What is logged (on stderr), as `tracing` filter directives, e.g.
    /// `info` or `orb=debug,orb_net=info` (`orb::calls=debug` logs each
    /// call with its invocation id on the node it entered and the one that
    /// ran it). Default: warnings; RUST_LOG is read when ORB_LOG is not set.
    /// With --otlp-endpoint, a filter given also says which spans are
    /// exported (default: `warn,orb=info`, every hop of every call).
    #[arg(long, global = true, env = "ORB_LOG", value_name = "FILTER")]
    log_filter: Option<String>,

    /// How log lines are written: text for people, json (one object a
    /// line, with the spans they are in) for machines.
    #[arg(
        long,
        global = true,
        env = "ORB_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    /// Export spans over OTLP/HTTP (protobuf) to this endpoint, e.g.
    /// `http://127.0.0.1:4318` (Jaeger, an OpenTelemetry collector; the
    /// traces go to URL/v1/traces). Each call is one trace across the
    /// nodes it touched. What is left is exported when the command ends
    /// (a node: on Ctrl-C or SIGTERM), waiting 5 s at most.
    #[arg(
        long,
        global = true,
        env = "ORB_OTLP_ENDPOINT",
        value_name = "URL",
        value_parser = traces::endpoint
    )]
    otlp_endpoint: Option<traces::Endpoint>,

    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a function locally on some input and print its output.
    #[command(after_help = run::AFTER_HELP)]
    Run(run::RunArgs),
    /// Look at a function module without running it.
    #[command(subcommand, name = "fn")]
    Fn(function::FnCommand),
    /// Run the example reactive pipelines (timely and differential dataflow).
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Run a node: host functions, serve the DHT, answer calls.
    #[command(after_help = serve::AFTER_HELP)]
    Node(serve::NodeArgs),
    /// Deploy a function to the network through a node.
    Deploy(client::DeployArgs),
    /// Agents: WebAssembly actors with state on the network (deploy, send,
    /// state, log, ls).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Topics: read what agents publish (subscribe, read).
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Call a function anywhere on the network, by name or id.
    Invoke(client::InvokeArgs),
    /// List the peers a node knows.
    Peers(client::ListArgs),
    /// List the functions a node knows, with their providers.
    Ls(client::ListArgs),
    /// Show the calls of a function (or an agent's steps) on every host
    /// that ran them; --follow keeps showing new ones.
    #[command(after_help = logs::AFTER_HELP)]
    Logs(logs::LogsArgs),
    /// A node's live figures in the terminal: peers, functions, calls/s,
    /// latency (the console's Node and Functions pages, for a server).
    #[command(after_help = top::AFTER_HELP)]
    Top(top::TopArgs),
    /// Show a node's peer id, addresses, NAT status and role.
    Status(client::ListArgs),
    /// Read, audit and prove a node's reward chain, offline from its data dir.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Simulate a whole network in one process (the real consensus and
    /// call agreement, simulated time, faults) and check it.
    #[command(after_help = sim::AFTER_HELP)]
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let export = match &cli.otlp_endpoint {
        None => None,
        Some(endpoint) => match traces::Export::start(endpoint, node_peer_id(&cli, &data_dir)) {
            Ok(export) => Some(export),
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(exit::INTERNAL);
            }
        },
    };
    subscribe(&cli, export.as_ref());
    let result = match cli.command {
        Command::Run(args) => run::run(args, &data_dir),
        Command::Fn(cmd) => function::run(cmd),
        Command::Pipeline(cmd) => pipeline::run(cmd, &cli.node),
        Command::Node(args) => serve::run(args, &data_dir),
        Command::Deploy(args) => client::deploy(args, &cli.node, &data_dir),
        Command::Agent(cmd) => agent::run(cmd, &cli.node, &data_dir),
        Command::Topic(cmd) => topic::run(cmd, &cli.node),
        Command::Invoke(args) => client::invoke(args, &cli.node),
        Command::Peers(args) => client::peers(args, &cli.node),
        Command::Ls(args) => client::ls(args, &cli.node),
        Command::Logs(args) => logs::logs(args, &cli.node),
        Command::Top(args) => top::top(args, &cli.node),
        Command::Status(args) => client::status(args, &cli.node),
        Command::Ledger(cmd) => ledger::run(cmd, &data_dir, &cli.node),
        Command::Sim(args) => sim::run(args),
    };
    if let Some(export) = export {
        export.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// Spans exported when `--otlp-endpoint` is given and no filter is: every
/// hop of every call, and the warnings logged inside them.
const TRACED: &str = "warn,orb=info";

/// Installs the process's `tracing` subscriber: log lines on stderr (text
/// or JSON) and, with `export`, spans over OTLP, each with its own filter.
fn subscribe(cli: &Cli, export: Option<&traces::Export>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};

    // sled's own warnings about a damaged store say nothing `orb ledger`'s
    // error does not (ORB_LOG=sled=debug shows them).
    let quiet = match cli.command {
        Command::Ledger(_) => "warn,sled=off",
        _ => "warn",
    };
    let given = cli
        .log_filter
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok());
    let filter = |default: &str| {
        given
            .as_deref()
            .and_then(|f| EnvFilter::try_new(f).ok())
            .unwrap_or_else(|| default.into())
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(true);
    let logs = match cli.log_format {
        LogFormat::Text => stderr.with_filter(filter(quiet)).boxed(),
        LogFormat::Json => stderr
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter(quiet))
            .boxed(),
    };
    let spans = export.map(|export| {
        // OpenTelemetry's own log lines (targets opentelemetry*: a failed
        // export, a full queue) go to the log only, never into the spans
        // being exported.
        let own = "opentelemetry=off"
            .parse()
            .expect("a directive that parses");
        tracing_opentelemetry::layer()
            .with_tracer(export.tracer())
            .with_filter(filter(TRACED).add_directive(own))
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
}

/// The peer id of the node `orb node` runs (its key, created now when it
/// is the first start), for the spans it exports; `None` for the other
/// commands, or when the key cannot be read (the node says why).
fn node_peer_id(cli: &Cli, data_dir: &std::path::Path) -> Option<String> {
    let Command::Node(_) = cli.command else {
        return None;
    };
    let key = orb_net::identity::load_or_create(&data_dir.join("identity.key")).ok()?;
    Some(key.public().to_peer_id().to_string())
}

/// `$HOME/.orb`, or `.orb` in the working directory when there is no home.
fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".orb")
}

#[cfg(test)]
mod cli_tests {
    use clap::CommandFactory as _;

    #[test]
    fn every_command_and_flag_is_well_formed_and_none_clash() {
        super::Cli::command().debug_assert();
    }
}
