//! `orb topic`: read what agents publish on their topics, through a
//! node's HTTP API (`--node`), as it comes or one batch at a time.

use std::io::BufRead as _;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{Client, parse};
use crate::exit::CliError;

/// `orb topic` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum TopicCommand {
    /// Print a topic's publications as they come (from the first its
    /// publisher's hosts keep, or after --after), until stopped or --count.
    #[command(after_help = SUBSCRIBE_HELP)]
    Subscribe(SubscribeArgs),
    /// Print the publications a topic has now (one batch, at most 256) and
    /// return.
    Read(ReadArgs),
}

const SUBSCRIBE_HELP: &str = "\
A topic is MODULE/ID/TOPIC: the agent MODULE/ID publishes on it from its steps
(orb_guest Effects::publish), so its publications come in the order the agent
made them, each once. The node you ask need not host the agent: it reads the
topic from the agent's hosts and streams it as server-sent events
(GET /topic/MODULE/ID/TOPIC). Each publication is printed with its place,
SEQ.INDEX (the publishing step and its index in it): --after SEQ.INDEX goes on
from there.";

/// `orb topic subscribe` flags.
#[derive(Args, Debug)]
pub(crate) struct SubscribeArgs {
    /// The topic: MODULE/ID/TOPIC (e.g. chat/lobby/lines).
    topic: String,
    /// Only the publications after this place (SEQ.INDEX, as printed).
    #[arg(long, value_name = "SEQ.INDEX")]
    after: Option<String>,
    /// Stop after this many publications.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Print each publication as a line of JSON.
    #[arg(long)]
    json: bool,
}

/// `orb topic read` flags.
#[derive(Args, Debug)]
pub(crate) struct ReadArgs {
    /// The topic: MODULE/ID/TOPIC.
    topic: String,
    /// Only the publications after this place (SEQ.INDEX).
    #[arg(long, value_name = "SEQ.INDEX")]
    after: Option<String>,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: TopicCommand, node: &str) -> Result<(), CliError> {
    match cmd {
        TopicCommand::Subscribe(args) => subscribe(args, node),
        TopicCommand::Read(args) => read(args, node),
    }
}

/// The topic's URL path with its query, checked for shape here (the node
/// checks the names).
fn topic_path(topic: &str, after: Option<&str>, wait: bool) -> Result<String, CliError> {
    if topic.split('/').count() != 3 || topic.split('/').any(str::is_empty) {
        return Err(CliError::usage(anyhow::anyhow!(
            "topic {topic:?}: a topic is addressed as MODULE/ID/TOPIC, e.g. chat/lobby/lines"
        )));
    }
    let mut path = format!("/topic/{topic}?wait={wait}");
    if let Some(after) = after {
        path.push_str(&format!("&after={after}"));
    }
    Ok(path)
}

fn print(p: &Value, json: bool) {
    if json {
        outln!("{p}");
        return;
    }
    let message = &p["message"];
    let shown = message["text"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| message["hex"].as_str().map(|h| format!("0x{h}")))
        .unwrap_or_default();
    outln!(
        "{}.{}  {}",
        p["seq"].as_u64().unwrap_or(0),
        p["index"].as_u64().unwrap_or(0),
        shown
    );
}

fn read(args: ReadArgs, node: &str) -> Result<(), CliError> {
    let path = topic_path(&args.topic, args.after.as_deref(), false)?;
    let value = Client::new(node, Duration::from_secs(30)).get(&path)?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let found = value["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in &found {
        print(p, false);
    }
    if found.is_empty() {
        eprintln!("nothing published on {} yet", args.topic);
    }
    Ok(())
}

fn subscribe(args: SubscribeArgs, node: &str) -> Result<(), CliError> {
    if args.count == Some(0) {
        return Ok(());
    }
    let mut seen = 0;
    follow(node, &args.topic, args.after.as_deref(), |p| {
        print(&p, args.json);
        seen += 1;
        args.count.is_none_or(|n| seen < n)
    })
}

/// Reads `topic`'s publications through the node at `node` as they come
/// (after `after`), calling `each` with each one (`{topic, seq, index,
/// publisher, message}`) until it answers `false`. A stream the node
/// closes is an error.
pub(crate) fn follow(
    node: &str,
    topic: &str,
    after: Option<&str>,
    mut each: impl FnMut(Value) -> bool,
) -> Result<(), CliError> {
    let path = topic_path(topic, after, true)?;
    // A stream has no end to wait for: only connecting is timed.
    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into(),
        base: node.trim_end_matches('/').to_owned(),
    };
    let response = client
        .agent
        .get(format!("{}{path}", client.base))
        .header("accept", "text/event-stream")
        .call()
        .map_err(|e| client.unreachable(e))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if status >= 300 {
        let bytes = body.read_to_vec().map_err(|e| client.unreachable(e))?;
        return parse(status, &bytes).map(|_| ());
    }
    for line in std::io::BufReader::new(body.into_reader()).lines() {
        let line = line.map_err(|e| CliError::network(anyhow::anyhow!("the stream broke: {e}")))?;
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(p) = serde_json::from_str::<Value>(data.trim_start()) else {
            continue;
        };
        if !each(p) {
            return Ok(());
        }
    }
    Err(CliError::network(anyhow::anyhow!(
        "the node closed the stream (it stopped?); go on with --after and the last place printed"
    )))
}
