//! The client commands: `orb deploy`, `orb invoke`, `orb peers`, `orb ls`,
//! `orb status`. Each talks to a node's HTTP API (`--node URL`, default
//! http://127.0.0.1:7420, env `ORB_NODE`) and prints what it answered.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use orb_functions::FunctionId;
use orb_net::NameRecord;
use serde_json::Value;

use crate::exit::{CliError, GUEST, INTERNAL, NETWORK, USAGE};

/// `orb deploy` flags.
#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    /// The function (.wasm): a WASI preview-1 command module or a
    /// `wasi:cli/run` component.
    module: PathBuf,
    /// The name to publish it under (a-z, 0-9, '.', '_', '-').
    #[arg(long)]
    name: String,
    /// How many nodes should host it (this node and R-1 others).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    replicas: u32,
    #[command(flatten)]
    token: ApiToken,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// The `--api-token` flag of the commands that deploy through a node.
#[derive(Args, Debug)]
pub(crate) struct ApiToken {
    /// The node's API token, needed when its API is reachable beyond
    /// loopback (the node keeps it in its DATA_DIR/api.token).
    #[arg(
        long,
        env = "ORB_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) api_token: Option<String>,
}

/// `orb invoke` flags.
#[derive(Args, Debug)]
pub(crate) struct InvokeArgs {
    /// The function: a name or a 64-hex-digit id.
    target: String,
    /// The input, as text.
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from a file (`-` for stdin). Without --input or
    /// --input-file the input is empty.
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// Fuel limit for the call.
    #[arg(long)]
    fuel: Option<u64>,
    /// Run the call on R executors; a strict majority of equal outputs is
    /// the answer (default: the node's --replicas).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: Option<u32>,
    /// For a wasi:http function: the request is sent to
    /// `/fn/TARGET/PATH` with this method and these headers (the input is
    /// its body), and the function's response is printed as `orb run`
    /// prints it.
    #[command(flatten)]
    http: crate::run::HttpArgs,
    /// Print output, fuel, executor and timings as JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of the listing commands.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) struct Client {
    pub(crate) agent: ureq::Agent,
    pub(crate) base: String,
}

impl Client {
    pub(crate) fn new(node: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self {
            agent,
            base: node.trim_end_matches('/').to_owned(),
        }
    }

    pub(crate) fn unreachable(&self, e: ureq::Error) -> CliError {
        CliError {
            code: NETWORK,
            error: anyhow::anyhow!(
                "cannot reach the node at {} ({e}); is `orb node` running? (--node URL or ORB_NODE)",
                self.base
            ),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value, CliError> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| self.unreachable(e))?;
        parse(status, &body)
    }
}

/// Decodes a JSON answer; an error status becomes an error with the node's message.
pub(crate) fn parse(status: u16, body: &[u8]) -> Result<Value, CliError> {
    let value: Value = serde_json::from_slice(body).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(body).into_owned() }),
    );
    if status < 300 {
        return Ok(value);
    }
    let message = value["error"]
        .as_str()
        .unwrap_or("the node refused")
        .to_owned();
    let code = match status {
        400 | 401 | 413 => USAGE,
        422 => GUEST,
        404 | 502 | 503 => NETWORK,
        _ => INTERNAL,
    };
    Err(CliError {
        code,
        error: anyhow::anyhow!(message),
    })
}

/// What a deploy sends: the module in `module`, published as `name`.
pub(crate) struct Publish<'a> {
    pub(crate) module: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) replicas: u32,
    pub(crate) api_token: Option<&'a str>,
    /// More query parameters (`&agent=true…`).
    pub(crate) extra: &'a str,
}

/// Signs the name record with the publisher key in `data_dir` and posts
/// the module to the node's `/api/deploy`; returns the node's answer.
pub(crate) fn publish(p: &Publish<'_>, node: &str, data_dir: &Path) -> Result<Value, CliError> {
    let module = std::fs::read(p.module)
        .with_context(|| format!("cannot read {}", p.module.display()))
        .map_err(CliError::usage)?;
    orb_net::check_name(p.name).map_err(CliError::usage)?;
    let key = orb_net::identity::load_or_create(&data_dir.join("publisher.key"))?;
    let record = NameRecord::sign(&key, p.name, FunctionId::of(&module))?;
    let client = Client::new(node, Duration::from_secs(120));
    let url = format!(
        "{}/api/deploy?name={}&replicas={}&publisher={}&signature={}{}",
        client.base,
        p.name,
        p.replicas,
        hex::encode(&record.publisher),
        hex::encode(&record.signature),
        p.extra,
    );
    let mut request = client.agent.post(&url);
    if let Some(token) = p.api_token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // A node refuses a body over its limit before reading it and closes
    // the connection: the upload then fails half way, so ask the node
    // what it takes before calling it unreachable.
    let failed = |e: ureq::Error| {
        over_limit(&client, p.module, module.len() as u64).unwrap_or_else(|| client.unreachable(e))
    };
    let mut response = request.send(&module[..]).map_err(failed)?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_vec().map_err(failed)?;
    parse(status, &body)
}

/// The usage error for a module of `len` bytes past the node's
/// `--max-module-bytes`, if it is.
fn over_limit(client: &Client, module: &Path, len: u64) -> Option<CliError> {
    let status = client.get("/api/status").ok()?;
    let max = status["store_limits"]["max_module"].as_u64()?;
    (len > max).then(|| {
        CliError::usage(anyhow::anyhow!(
            "{} is {len} bytes: the node takes modules of at most {max} bytes (orb node --max-module-bytes)",
            module.display()
        ))
    })
}

pub(crate) fn deploy(args: DeployArgs, node: &str, data_dir: &Path) -> Result<(), CliError> {
    let publish_args = Publish {
        module: &args.module,
        name: &args.name,
        replicas: args.replicas,
        api_token: args.token.api_token.as_deref(),
        extra: "",
    };
    let value = publish(&publish_args, node, data_dir)?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let providers = value["providers"].as_array().cloned().unwrap_or_default();
    outln!(
        "deployed {} as {}",
        value["function"].as_str().unwrap_or("?"),
        args.name
    );
    outln!(
        "hosted by {} of {} replicas:",
        providers.len(),
        args.replicas
    );
    for p in &providers {
        outln!("  {}", p.as_str().unwrap_or("?"));
    }
    for d in value["declined"].as_array().into_iter().flatten() {
        outln!("  declined: {}", d.as_str().unwrap_or("?"));
    }
    Ok(())
}

/// The bytes to send: `text`, else the file `file` (`-`: stdin), else
/// nothing.
pub(crate) fn read_input(text: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, CliError> {
    match (text, file) {
        (Some(text), _) => Ok(text.as_bytes().to_vec()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read stdin")
                .map_err(CliError::usage)?;
            Ok(buf)
        }
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(CliError::usage),
        (None, None) => Ok(Vec::new()),
    }
}

pub(crate) fn invoke(args: InvokeArgs, node: &str) -> Result<(), CliError> {
    if args.target.parse::<FunctionId>().is_err() {
        orb_net::check_name(&args.target).map_err(CliError::usage)?;
    }
    let input = read_input(args.input.as_deref(), args.input_file.as_deref())?;
    let client = Client::new(node, Duration::from_secs(120));
    let started = std::time::Instant::now();
    let http = args.http.given();
    let mut response = if http {
        // The gateway's path form: the function's own path and query
        // (Orb's ?fuel and ?replicas are not read from it).
        if args.fuel.is_some() || args.replicas.is_some() {
            return Err(CliError::usage(anyhow::anyhow!(
                "--fuel and --replicas cannot go with --method, --path or --header (the request's query is the function's)"
            )));
        }
        let request = args.http.request(input)?;
        let url = format!(
            "{}/fn/{}{}",
            client.base, args.target, request.path_and_query
        );
        let mut call = ureq::http::Request::builder()
            .method(request.method.as_str())
            .uri(&url);
        for (name, value) in &request.headers {
            call = call.header(name.as_str(), value.as_slice());
        }
        let call = call
            .body(request.body)
            .map_err(|e| CliError::usage(anyhow::anyhow!("bad request: {e}")))?;
        client.agent.run(call).map_err(|e| client.unreachable(e))?
    } else {
        let mut url = format!("{}/fn/{}", client.base, args.target);
        let mut query = Vec::new();
        if let Some(fuel) = args.fuel {
            query.push(format!("fuel={fuel}"));
        }
        if let Some(r) = args.replicas {
            query.push(format!("replicas={r}"));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        client
            .agent
            .post(&url)
            .send(&input[..])
            .map_err(|e| client.unreachable(e))?
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (fuel, executor, invocation, function) = (
        header("x-orb-fuel"),
        header("x-orb-executor"),
        header("x-orb-invocation"),
        header("x-orb-function"),
    );
    let (replicas, disputed) = (header("x-orb-replicas"), header("x-orb-disputed"));
    // The function's headers, in the order the node sent them (canonical),
    // without the node's own.
    let own_headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .iter()
        .filter(|(n, _)| !n.as_str().starts_with("x-orb-"))
        .filter(|(n, _)| !matches!(n.as_str(), "content-length" | "date" | "transfer-encoding"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let disputed: Vec<&str> = disputed.split(',').filter(|d| !d.is_empty()).collect();
    let timing = |name: &str| header(name).parse::<u64>().unwrap_or(0);
    let (resolve_us, network_us, execution_us) = (
        timing("x-orb-resolve-us"),
        timing("x-orb-network-us"),
        timing("x-orb-execution-us"),
    );
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| client.unreachable(e))?;
    // The node's own errors carry no x-orb-function; a wasi:http
    // function's response does, whatever its status.
    if status >= 300 && function.is_empty() {
        return parse(status, &body).map(|_| ());
    }
    let total_us = started.elapsed().as_micros() as u64;
    if http {
        let response = orb_functions::HttpResponse {
            status,
            headers: own_headers,
            body,
        };
        if args.json {
            let value = serde_json::json!({
                "status": response.status,
                "headers": crate::run::headers_json(&response),
                "body": String::from_utf8_lossy(&response.body),
                "function": function,
                "invocation": invocation,
                "fuel": fuel.parse::<u64>().unwrap_or(0),
                "executor": executor,
            });
            outln!("{value}");
        } else {
            use std::io::Write as _;
            let mut out = std::io::stdout();
            let text = crate::run::print_response(&response);
            if let Err(e) = out.write_all(&text).and_then(|()| out.flush()) {
                crate::exit::stdout_failed(e);
            }
            eprintln!("fuel {fuel} · executor {executor}");
        }
        return Ok(());
    }
    if args.json {
        let value = serde_json::json!({
            "output": String::from_utf8_lossy(&body),
            "function": function,
            "invocation": invocation,
            "fuel": fuel.parse::<u64>().unwrap_or(0),
            "executor": executor,
            "replicas": replicas.parse::<u64>().unwrap_or(1),
            "disputed": disputed,
            "timings_us": {
                "resolve": resolve_us,
                "network": network_us,
                "execution": execution_us,
                "total": total_us,
            },
        });
        outln!("{value}");
    } else {
        use std::io::Write as _;
        let mut out = std::io::stdout();
        if let Err(e) = out.write_all(&body).and_then(|()| out.flush()) {
            crate::exit::stdout_failed(e);
        }
        eprintln!(
            "fuel {fuel} · executor {executor} · replicas {replicas} · resolve {resolve_us} µs · network {network_us} µs · execution {execution_us} µs"
        );
        if !disputed.is_empty() {
            eprintln!("outvoted (paid nothing): {}", disputed.join(", "));
        }
    }
    Ok(())
}

pub(crate) fn peers(args: ListArgs, node: &str) -> Result<(), CliError> {
    let value = Client::new(node, Duration::from_secs(10)).get("/api/peers")?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let peers = value.as_array().cloned().unwrap_or_default();
    outln!("{} peers", peers.len());
    for p in peers {
        let state = match (
            p["banned"].as_bool(),
            p["connected"].as_bool(),
            p["relayed"].as_bool(),
        ) {
            (Some(true), _, _) => "banned",
            (_, Some(true), Some(true)) => "relayed",
            (_, Some(true), _) => "connected",
            _ => "known",
        };
        let addr = p["addrs"].get(0).and_then(Value::as_str).unwrap_or("");
        // A misbehaviour score (a ban is at 100; it halves each minute).
        let score = p["score"].as_f64().filter(|s| *s >= 1.0);
        let score = score.map_or(String::new(), |s| format!("  score {s:.0}"));
        outln!(
            "  {}  {state:9}  {addr}{score}",
            p["peer_id"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) fn ls(args: ListArgs, node: &str) -> Result<(), CliError> {
    let value = Client::new(node, Duration::from_secs(10)).get("/api/functions")?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let functions = value.as_array().cloned().unwrap_or_default();
    outln!("{} functions", functions.len());
    for f in functions {
        let names: Vec<&str> = f["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        outln!(
            "  {}  {}",
            f["function"].as_str().unwrap_or("?"),
            names.join(",")
        );
        for p in f["providers"].as_array().into_iter().flatten() {
            outln!(
                "    {}  load {}/{}",
                p["peer"].as_str().unwrap_or("?"),
                p["load"],
                p["capacity"]
            );
        }
    }
    Ok(())
}

pub(crate) fn status(args: ListArgs, node: &str) -> Result<(), CliError> {
    let value = Client::new(node, Duration::from_secs(10)).get("/api/status")?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    outln!("peer id:    {}", value["peer_id"].as_str().unwrap_or("?"));
    outln!(
        "role:       {}",
        if value["supernode"].as_bool() == Some(true) {
            "supernode (DHT server, relay)"
        } else {
            "node"
        }
    );
    outln!("NAT:        {}", value["nat"].as_str().unwrap_or("?"));
    for a in value["listen"].as_array().into_iter().flatten() {
        outln!("listen:     {}", a.as_str().unwrap_or("?"));
    }
    for a in value["external"].as_array().into_iter().flatten() {
        outln!("external:   {}", a.as_str().unwrap_or("?"));
    }
    for r in value["relays"].as_array().into_iter().flatten() {
        outln!("relay:      {}", r.as_str().unwrap_or("?"));
    }
    outln!(
        "peers:      {} connected, {} known, {} in the DHT routing table",
        value["connected"],
        value["known_peers"],
        value["routing_table"]
    );
    outln!(
        "hosting:    {} functions, load {}/{}",
        value["hosted"],
        value["load"],
        value["capacity"]
    );
    let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / f64::from(1u32 << 20);
    outln!(
        "storage:    {:.1} of {:.0} MiB stored for publishers (at most {:.0} MiB each, modules up to {:.1} MiB)",
        mib(&value["stored_bytes"]),
        mib(&value["store_limits"]["total"]),
        mib(&value["store_limits"]["per_publisher"]),
        mib(&value["store_limits"]["max_module"])
    );
    outln!(
        "names:      {} resolved and {} missing kept",
        value["names"]["resolved"],
        value["names"]["missing"]
    );
    Ok(())
}

/// A JSON array of microseconds, sorted.
fn sorted_us(value: &serde_json::Value) -> Vec<f64> {
    let mut us: Vec<f64> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    us.sort_by(f64::total_cmp);
    us
}

/// `orb ledger status`: a running node's view of the ledger (its API).
pub(crate) fn ledger_status(args: ListArgs, node: &str) -> Result<(), CliError> {
    let value = Client::new(node, Duration::from_secs(10)).get("/api/ledger")?;
    if args.json {
        outln!("{value}");
        return Ok(());
    }
    let finality = sorted_us(&value["finality_us"]);
    outln!("chain:      {}", value["chain"].as_str().unwrap_or("?"));
    outln!(
        "height:     {} (head {})",
        value["height"],
        value["head"].as_str().unwrap_or("?")
    );
    outln!(
        "committee:  {} members{}",
        value["committee"].as_array().map_or(0, Vec::len),
        if value["member"] == true {
            ", this node among them"
        } else {
            ""
        }
    );
    outln!("mempool:    {} settlements waiting", value["mempool"]);
    if let Some(n) = value["pipelined"].as_u64().filter(|n| *n > 0) {
        outln!("pipelined:  {n} proposals made while the height before was being decided");
    }
    if let Some(e) = value["equivocators"].as_array().filter(|e| !e.is_empty()) {
        let keys: Vec<&str> = e.iter().filter_map(|k| k.as_str()).collect();
        outln!(
            "excluded:   {} equivocating voters: {}",
            keys.len(),
            keys.join(", ")
        );
    }
    if let Some(why) = value["poisoned"].as_str() {
        outln!(
            "STOPPED:    the ledger stopped writing after a failed write ({why}); restart the node"
        );
    }
    if let Some(p50) = finality.get(finality.len() / 2) {
        outln!(
            "finality:   p50 {:.1} ms over the last {} blocks",
            p50 / 1e3,
            finality.len()
        );
    }
    let (waits, polls) = (sorted_us(&value["wait_us"]), sorted_us(&value["poll_us"]));
    if let (Some(wait), Some(poll)) = (waits.get(waits.len() / 2), polls.get(polls.len() / 2)) {
        outln!(
            "polls:      p50 {:.1} ms sent to closed over the last {}; the first went out p50 {:.1} ms after the first candidate",
            poll / 1e3,
            polls.len(),
            wait / 1e3
        );
    }
    outln!("balances (live, from the dataflow's reduce over committed blocks):");
    let mut balances: Vec<(&String, &serde_json::Value)> = value["balances"]
        .as_object()
        .into_iter()
        .flatten()
        .collect();
    balances.sort_by_key(|(_, b)| std::cmp::Reverse(b.as_i64().unwrap_or(0)));
    for (who, b) in balances {
        outln!("  {who}  {b}");
    }
    Ok(())
}
