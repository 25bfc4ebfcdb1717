//! `orb agent`: deploy agent modules, send agents messages, read their
//! state and log, through a node's HTTP API (`--node`).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{ApiToken, Client, ListArgs, Publish, parse, publish, read_input};
use crate::exit::CliError;

mod audit;

/// `orb agent` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum AgentCommand {
    /// Deploy an agent module through a node, which then hosts its agents.
    #[command(after_help = DEPLOY_HELP)]
    Deploy(DeployArgs),
    /// Move every agent of a module to a new version of it, keeping their
    /// state.
    #[command(after_help = UPGRADE_HELP)]
    Upgrade(UpgradeArgs),
    /// Replace one host of an agent module by another node (--from), or add
    /// a host (--to alone): every agent's state and log go to the new one.
    #[command(after_help = MOVE_HELP)]
    Move(MoveArgs),
    /// Send a message to an agent (MODULE/ID) and print its reply.
    #[command(after_help = SEND_HELP)]
    Send(SendArgs),
    /// Print an agent's state (after its last applied message).
    State(NameArgs),
    /// Print the messages an agent applied, in order.
    Log(LogArgs),
    /// List the agents a node hosts.
    Ls(ListArgs),
    /// Check an agent's log against a node's chain: every step stated by a
    /// receipt, each applying to the state the one before left (offline).
    #[command(after_help = audit::HELP)]
    Audit(audit::AuditArgs),
}

const DEPLOY_HELP: &str = "\
An agent module is built with orb_guest::agent (examples/agents). Its agents are
MODULE/ID for any ID: each is created by its first message, from --init (or the
module's default state). The node you deploy through hosts them, with
--replicas R-1 more nodes it asks: every agent of the module lives on all R
hosts, which apply its messages in one order (one host sequences them, the
next takes over when it is down); a reply leaves once a strict majority of the
hosts have the step on disk and agree on it, so an agent with R = 3 keeps
answering while one host is down.";

const UPGRADE_HELP: &str = "\
Send it through one of the module's hosts (orb ls shows them): the new module
is hosted and registered on every host of the old one, and only then does NAME
point at it. Each agent moves to the new module on its next message, at the
same sequence number on every host, and the new module gets the old state; a
message sent to the old version after that runs on the new one. The new
module must read the state the old one wrote.";

const MOVE_HELP: &str = "\
With --to alone the node given becomes one more host (at most 7): each agent
is then on one more disk, and each step waits for a majority of more hosts.
Send it through a host of the module that stays (orb ls on a node shows what it
hosts). The host that leaves may be down: that is what a move is for. The new
host is --to, or a connected node that is not a host and agrees to host the
module. Each agent goes to it with its state and log, checked against the
hash a majority of the hosts agreed on; while the agents move, a sequencer
needs a strict majority of the old hosts and of the new, so no message a
majority acknowledged is lost. Messages keep being applied during the move.
A move cut short (too few hosts up) is finished by running it again.";

const SEND_HELP: &str = "\
Each message carries an id (--id, or one drawn here). If the node cannot be
reached or answers busy, the message is sent again with the same id, up to 5
times: the agent applies it once, and a retry gets the reply the first one got.";

/// `orb agent deploy` flags.
#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    /// The agent module (WebAssembly, built with orb_guest::agent).
    module: PathBuf,
    /// The module's name (a-z, 0-9, '.', '_', '-'): its agents are NAME/ID.
    #[arg(long)]
    name: String,
    /// The state a new agent starts from, as JSON (default: the module's
    /// default state).
    #[arg(long, value_name = "JSON")]
    init: Option<String>,
    /// Hosts of every agent of the module (1 to 7): each message is applied
    /// by all of them, and counts once a strict majority agree.
    #[arg(long, default_value_t = 1, value_name = "R")]
    replicas: u32,
    #[command(flatten)]
    token: ApiToken,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// `orb agent upgrade` flags.
#[derive(Args, Debug)]
pub(crate) struct UpgradeArgs {
    /// The agent module's name (as deployed with --name).
    name: String,
    /// The new version of the module (WebAssembly).
    module: PathBuf,
    #[command(flatten)]
    token: ApiToken,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// `orb agent move` flags.
#[derive(Args, Debug)]
pub(crate) struct MoveArgs {
    /// The agent module's name (as deployed with --name).
    name: String,
    /// The host to replace (its peer id); without it, --to is added.
    #[arg(long, value_name = "PEER", required_unless_present = "to")]
    from: Option<String>,
    /// The node to take its place, or to add (default with --from: one
    /// picked by the node).
    #[arg(long, value_name = "PEER")]
    to: Option<String>,
    #[command(flatten)]
    token: ApiToken,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// `orb agent send` flags.
#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// The agent: MODULE/ID (e.g. counter/alice).
    agent: String,
    /// The message, as text (or --message-file).
    #[arg(required_unless_present = "message_file")]
    message: Option<String>,
    /// Read the message from a file (`-` for stdin).
    #[arg(long, value_name = "PATH", conflicts_with = "message")]
    message_file: Option<PathBuf>,
    /// The message's id (32 hex digits): sending again with the same id
    /// applies it once.
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
    /// Print reply, sequence number and message id as JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of the commands that name one agent.
#[derive(Args, Debug)]
pub(crate) struct NameArgs {
    /// The agent: MODULE/ID.
    agent: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `orb agent log` flags.
#[derive(Args, Debug)]
pub(crate) struct LogArgs {
    /// The agent: MODULE/ID.
    agent: String,
    /// The first sequence number to print.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: AgentCommand, node: &str, data_dir: &Path) -> Result<(), CliError> {
    match cmd {
        AgentCommand::Deploy(args) => deploy(args, node, data_dir),
        AgentCommand::Upgrade(args) => upgrade(args, node, data_dir),
        AgentCommand::Move(args) => move_hosts(args, node),
        AgentCommand::Send(args) => send(args, node),
        AgentCommand::State(args) => state(args, node),
        AgentCommand::Log(args) => log(args, node),
        AgentCommand::Ls(args) => ls(args, node),
        AgentCommand::Audit(args) => audit::run(args, data_dir),
    }
}

/// `MODULE/ID` as a URL path, checked the way the node checks it.
fn agent_path(agent: &str) -> Result<String, CliError> {
    let Some((module, id)) = agent.split_once('/') else {
        return Err(CliError::usage(anyhow::anyhow!(
            "agent {agent:?}: an agent is addressed as MODULE/ID, e.g. counter/alice"
        )));
    };
    orb_net::check_name(module).map_err(CliError::usage)?;
    Ok(format!("/agent/{module}/{id}"))
}

fn deploy(args: DeployArgs, node: &str, data_dir: &Path) -> Result<(), CliError> {
    let mut extra = "&agent=true".to_owned();
    if let Some(init) = &args.init {
        serde_json::from_str::<Value>(init)
            .context("--init is not JSON")
            .map_err(CliError::usage)?;
        extra.push_str("&init=");
        extra.push_str(&urlencode(init));
    }
    let value = publish(
        &Publish {
            module: &args.module,
            name: &args.name,
            replicas: args.replicas,
            api_token: args.token.api_token.as_deref(),
            extra: &extra,
        },
        node,
        data_dir,
    )?;
    if args.json {
        outln!("{value}");
    } else {
        outln!(
            "deployed agent module {} as {}: send to {}/ID",
            value["function"].as_str().unwrap_or("?"),
            args.name,
            args.name
        );
        hosted_by(&value);
    }
    Ok(())
}

fn upgrade(args: UpgradeArgs, node: &str, data_dir: &Path) -> Result<(), CliError> {
    let value = publish(
        &Publish {
            module: &args.module,
            name: &args.name,
            replicas: 1,
            api_token: args.token.api_token.as_deref(),
            extra: "&agent=true&upgrade=true",
        },
        node,
        data_dir,
    )?;
    if args.json {
        outln!("{value}");
    } else {
        outln!(
            "upgraded agent module {} from {} to {}: its agents move on their next message",
            args.name,
            value["replaces"].as_str().unwrap_or("?"),
            value["function"].as_str().unwrap_or("?"),
        );
        hosted_by(&value);
    }
    Ok(())
}

fn move_hosts(args: MoveArgs, node: &str) -> Result<(), CliError> {
    orb_net::check_name(&args.name).map_err(CliError::usage)?;
    for peer in args.from.iter().chain(args.to.as_ref()) {
        peer.parse::<orb_net::PeerId>()
            .map_err(|e| CliError::usage(anyhow::anyhow!("{peer:?} is not a peer id: {e}")))?;
    }
    let client = Client::new(node, Duration::from_secs(600));
    let mut url = format!("{}/api/agents/move?name={}", client.base, args.name);
    for (key, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(v) = value {
            url.push_str(&format!("&{key}={v}"));
        }
    }
    let what = match &args.from {
        Some(from) => format!("moving the agents of {} off {from}", args.name),
        None => format!("bringing the agents of {} to one more host", args.name),
    };
    let spinner = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(what);
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mut request = client.agent.post(&url);
    if let Some(token) = &args.token.api_token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let result = request.send_empty();
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let mut response = result.map_err(|e| client.unreachable(e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| client.unreachable(e))?;
    let value = parse(status, &body)?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let agents = match value["agents"].as_u64() {
        Some(1) => "1 agent".to_owned(),
        Some(n) => format!("{n} agents"),
        None => "the agents".to_owned(),
    };
    let to = value["to"].as_str().unwrap_or("?");
    match &args.from {
        Some(from) => outln!(
            "moved {agents} of {} from {from} to {to} in {} ms",
            args.name,
            value["millis"]
        ),
        None => outln!(
            "{to} now hosts {agents} of {} too ({} ms)",
            args.name,
            value["millis"]
        ),
    }
    for p in value["hosts"].as_array().into_iter().flatten() {
        outln!("  hosted by {}", p.as_str().unwrap_or("?"));
    }
    for p in value["lagging"].as_array().into_iter().flatten() {
        outln!(
            "  {} did not hear the move is done yet: run it again",
            p.as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// The hosts a deploy or upgrade answer names, a line each.
fn hosted_by(value: &Value) {
    for p in value["providers"].as_array().into_iter().flatten() {
        outln!("  hosted by {}", p.as_str().unwrap_or("?"));
    }
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How many times a message is sent before giving up.
const TRIES: u32 = 5;

fn send(args: SendArgs, node: &str) -> Result<(), CliError> {
    let path = agent_path(&args.agent)?;
    let message = read_input(args.message.as_deref(), args.message_file.as_deref())?;
    let id = match &args.id {
        Some(id) if id.len() == 32 && hex::decode(id).is_ok() => id.to_lowercase(),
        Some(id) => {
            return Err(CliError::usage(anyhow::anyhow!(
                "--id {id:?}: a message id is 32 hex digits"
            )));
        }
        None => hex::encode(rand::random::<[u8; 16]>()),
    };
    let client = Client::new(node, Duration::from_secs(120));
    let url = format!("{}{path}?message_id={id}", client.base);
    let mut tries = 0;
    let (status, headers, body) = loop {
        tries += 1;
        let again = |why: String| {
            eprintln!("{why}; sending again with the same id ({tries}/{TRIES})");
            std::thread::sleep(Duration::from_millis(200 << tries));
        };
        match client.agent.post(&url).send(&message[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let headers = (
                    header("x-orb-seq"),
                    header("x-orb-duplicate"),
                    header("x-orb-outvoted"),
                    header("x-orb-sequencer"),
                );
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .map_err(|e| client.unreachable(e))?;
                if matches!(status, 502 | 503) && tries < TRIES {
                    again(format!("the node answered {status}"));
                    continue;
                }
                break (status, headers, body);
            }
            Err(e) if tries < TRIES => {
                again(format!("cannot reach the node at {}: {e}", client.base))
            }
            Err(e) => return Err(client.unreachable(e)),
        }
    };
    if status >= 300 {
        return parse(status, &body).map(|_| ());
    }
    let (seq, duplicate, outvoted, sequencer) = headers;
    let duplicate = duplicate == "true";
    let outvoted: Vec<&str> = outvoted.split(',').filter(|p| !p.is_empty()).collect();
    for peer in &outvoted {
        eprintln!("outvoted: host {peer} gave another result than the majority");
    }
    if args.json {
        let value = serde_json::json!({
            "agent": args.agent,
            "reply": String::from_utf8_lossy(&body),
            "seq": seq.parse::<u64>().unwrap_or(0),
            "message_id": id,
            "duplicate": duplicate,
            "outvoted": outvoted,
            "sequencer": sequencer,
        });
        outln!("{value}");
        return Ok(());
    }
    let mut out = std::io::stdout();
    let newline = std::str::from_utf8(&body).is_ok() && !body.ends_with(b"\n");
    if let Err(e) = out
        .write_all(&body)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush())
    {
        crate::exit::stdout_failed(e);
    }
    let by = if sequencer.is_empty() {
        String::new()
    } else {
        format!(" · sequencer {sequencer}")
    };
    eprintln!(
        "seq {seq} · message {id}{by}{}",
        if duplicate {
            " · applied before: this is the reply it got then"
        } else {
            ""
        }
    );
    Ok(())
}

fn state(args: NameArgs, node: &str) -> Result<(), CliError> {
    let path = agent_path(&args.agent)?;
    let client = Client::new(node, Duration::from_secs(30));
    let value = client.get(&format!("{path}/state"))?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    match value.get("state") {
        Some(state) => outln!("{state}"),
        None => outln!("{}", value["state_hex"].as_str().unwrap_or("")),
    }
    eprintln!(
        "seq {} · hash {} · module {}",
        value["seq"],
        value["hash"].as_str().unwrap_or("?"),
        value["function"].as_str().unwrap_or("?")
    );
    Ok(())
}

fn show(v: &Value) -> String {
    v["text"]
        .as_str()
        .map(|t| format!("{t:?}"))
        .or_else(|| v["hex"].as_str().map(|h| format!("0x{h}")))
        .unwrap_or_default()
}

fn log(args: LogArgs, node: &str) -> Result<(), CliError> {
    let path = agent_path(&args.agent)?;
    let client = Client::new(node, Duration::from_secs(30));
    let mut from = args.from;
    let mut all = Vec::new();
    // The node answers a batch at a time.
    loop {
        let value = client.get(&format!("{path}/log?from={from}"))?;
        let entries = value["entries"].as_array().cloned().unwrap_or_default();
        let Some(last) = entries.last().and_then(|e| e["seq"].as_u64()) else {
            break;
        };
        all.extend(entries);
        from = last + 1;
    }
    if args.json {
        outln!("{}", Value::Array(all));
        return Ok(());
    }
    for e in &all {
        outln!(
            "{:>6}  {}  {} → {}",
            e["seq"].as_u64().unwrap_or(0),
            e["message_id"].as_str().unwrap_or("?"),
            show(&e["message"]),
            show(&e["reply"])
        );
    }
    if all.is_empty() {
        eprintln!("no messages applied from {} on", args.from);
    }
    Ok(())
}

fn ls(args: ListArgs, node: &str) -> Result<(), CliError> {
    let client = Client::new(node, Duration::from_secs(30));
    let value = client.get("/api/agents")?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let agents = value.as_array().cloned().unwrap_or_default();
    if agents.is_empty() {
        outln!("no agents hosted on this node");
    }
    for a in &agents {
        outln!(
            "{:<40} seq {:>8}  hash {}",
            a["agent"].as_str().unwrap_or("?"),
            a["seq"].as_u64().unwrap_or(0),
            &a["hash"].as_str().unwrap_or("?")[..16.min(a["hash"].as_str().unwrap_or("").len())]
        );
    }
    Ok(())
}
