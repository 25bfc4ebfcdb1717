//! `orb sim`: the whole network in one process, in simulated time.
//!
//! N nodes run the very consensus replica and call agreement a real node
//! runs (`orb_ledger::consensus`, `orb_ledger::Agreement`); only their
//! driver is the simulator's ([`world`]): a discrete-event queue delivers
//! messages after a sampled per-link latency, drops some, partitions the
//! nodes, crashes and restarts them, and plays the Byzantine voters and
//! executors. After the run it checks safety (no two honest nodes commit
//! different blocks at one height), liveness, and the ledger (sample
//! chains re-appended and audited at level 4 from genesis, credits
//! conserved, no lying executor paid), and prints a report with a trace
//! hash that a rerun with the same seed reproduces.

mod agents;
mod spec;
mod world;

use std::time::{Duration, Instant};

use clap::Args;
use orb_ledger::consensus::{Config, Liveness};
use orb_ledger::{AuditOptions, Chain, Genesis, MemStore, Params, audit};
use serde_json::json;

use crate::exit::{CHECK_FAILED, CliError};
use spec::{Churn, Latency, Partition};
use world::{Setup, World};

pub(crate) const AFTER_HELP: &str = "\
Specs:
  --latency fixed:10ms | lognormal:MEDIAN[:SIGMA]   per-link medians spread ±50 %
  --partition FRACTION@START+LENGTH   e.g. 0.3@20s+60s: 30 % of the nodes cut off
  --churn FRACTION/EVERY[,down=D][,late=F][,leave=F]   e.g. 0.1/60s,down=5s

Byzantine nodes (--byzantine F) are split evenly over four voter behaviours
(vote against the asker's preference, split askers between two blocks,
equivocate with two signed votes, stay silent); those among the hosts also
return wrong outputs.

Exit codes: 0 every check passed, 1 a check failed (the report says which, and
the command that reproduces it), 2 a bad flag or spec.

With --agents N the nodes host N replicated agents instead (each on --replicas
of them, running a node's sequencing rules) and clients send --messages to
them while --churn crashes hosts; the check is that every acknowledged message
is, once and at its place, in the copy any strict majority of its hosts holds.

Examples:
  orb sim --nodes 1000 --byzantine 0.2 --loss 0.01 --heights 20 --seed 7
  orb sim --agents 100 --nodes 300 --churn 0.1/2s,down=3s --loss 0.01";

/// `orb sim` flags.
#[derive(Args, Debug, Clone)]
pub(crate) struct SimArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Fraction of the nodes that are Byzantine (0 <= F < 1).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    byzantine: f64,
    /// Give every Byzantine voter this behaviour (default: the four in turn).
    #[arg(long, value_enum)]
    behaviour: Option<world::Behaviour>,
    /// The seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop when every live honest node has committed this many heights.
    #[arg(long, value_name = "H", default_value_t = 10)]
    heights: u64,
    /// Message latency per link.
    #[arg(long, value_name = "DIST", default_value = "lognormal:50ms:0.6")]
    latency: String,
    /// Fraction of messages lost.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    loss: f64,
    /// Split the nodes for a while.
    #[arg(long, value_name = "SPEC")]
    partition: Option<String>,
    /// Crash and restart nodes.
    #[arg(long, value_name = "SPEC")]
    churn: Option<String>,
    /// King-of-the-Hill committee slots.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// Snowball: members sampled per poll.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Snowball: votes that move the preference.
    #[arg(long, value_name = "A", default_value_t = 15)]
    alpha_preference: usize,
    /// Snowball: votes that count towards finality.
    #[arg(long, value_name = "A", default_value_t = 15)]
    alpha_confidence: usize,
    /// Snowball: consecutive confident polls that decide.
    #[arg(long, value_name = "B", default_value_t = 20)]
    beta: usize,
    /// Heights without a vote in evidence after which a claim lapses
    /// (default: the genesis' safe minimum, at least 5).
    #[arg(long, value_name = "HEIGHTS")]
    claim_expiry: Option<u64>,
    /// Invocations per simulated second, through random funded nodes
    /// (with --agents: messages to the agents).
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    calls: f64,
    /// Replicas per call.
    #[arg(long, value_name = "R", default_value_t = 3)]
    replicas: usize,
    /// Nodes hosting the simulated function.
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    /// Funded nodes that make the calls.
    #[arg(long, default_value_t = 100)]
    callers: usize,
    /// Split-vote rule: tie-break (a poll without a majority leans to the
    /// smallest lottery ticket), timeout (an undecided round re-proposes
    /// the smallest ticket after --round-timeout) or snowball (none).
    #[arg(long, value_name = "RULE", default_value = "tie-break")]
    liveness: String,
    /// Round length under --liveness timeout.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    round_timeout: String,
    /// How long each proposer waits for those ranked before it (0s: every
    /// member with settlements proposes at once, so heights have many
    /// candidates).
    #[arg(long, value_name = "DURATION", default_value = "400ms")]
    proposer_step: String,
    /// How long a member gathers candidates before taking a preference.
    #[arg(long, value_name = "DURATION", default_value = "100ms")]
    gather: String,
    /// Least time between a height's first candidate (or the last commit)
    /// and the next proposal; below the finality time, the next height is
    /// proposed while the current one is decided (pipelining).
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    block_interval: String,
    /// Polls a member keeps in flight at once (1: one after another).
    #[arg(long, value_name = "N", default_value_t = Config::default().polls_in_flight)]
    polls_in_flight: usize,
    /// Give up after this much simulated time (default: 30 s a height).
    #[arg(long, value_name = "DURATION")]
    max_time: Option<String>,
    /// Simulate N replicated agents on the nodes instead of the chain:
    /// each on --replicas of them, whose hosts run a node's sequencing
    /// rules while --churn crashes them; checks that no acknowledged
    /// message is lost or applied twice.
    #[arg(long, value_name = "N", default_value_t = 0)]
    agents: usize,
    /// Messages the clients send to the agents in all (with --agents, at
    /// --calls a second).
    #[arg(long, value_name = "M", default_value_t = 2000)]
    messages: usize,
    /// Chains re-appended and audited at level 4 after the run.
    #[arg(long, value_name = "N", default_value_t = 4)]
    audit: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::usage(anyhow::anyhow!("{e}"))
}

fn setup(a: &SimArgs) -> Result<Setup, CliError> {
    if !(0.0..1.0).contains(&a.byzantine) {
        return Err(usage(format!(
            "--byzantine {}: the Byzantine fraction must be at least 0 and below 1",
            a.byzantine
        )));
    }
    if !(0.0..1.0).contains(&a.loss) {
        return Err(usage(format!(
            "--loss {}: must be at least 0 and below 1",
            a.loss
        )));
    }
    if a.polls_in_flight == 0 {
        return Err(usage("--polls-in-flight 0: at least one poll must go out"));
    }
    if a.nodes < a.slots as usize {
        return Err(usage(format!(
            "--nodes {} is below the committee size (--slots {}): the committee could never fill",
            a.nodes, a.slots
        )));
    }
    if a.replicas == 0 || a.hosts < a.replicas {
        return Err(usage(format!(
            "--replicas {} needs at least that many --hosts (got {})",
            a.replicas, a.hosts
        )));
    }
    let snowball = Params::new(a.k, a.alpha_preference, a.alpha_confidence, a.beta)
        .map_err(|e| usage(format!("bad Snowball parameters: {e}")))?;
    let latency = Latency::parse(&a.latency).map_err(usage)?;
    let partition = a
        .partition
        .as_deref()
        .map(|p| Partition::parse(p, a.nodes))
        .transpose()
        .map_err(usage)?;
    let churn = a
        .churn
        .as_deref()
        .map(Churn::parse)
        .transpose()
        .map_err(usage)?;
    let liveness = match a.liveness.as_str() {
        "tie-break" => Liveness::TieBreak,
        "snowball" => Liveness::Snowball,
        "timeout" => Liveness::Timeout,
        other => {
            return Err(usage(format!(
                "--liveness {other}: tie-break, timeout or snowball"
            )));
        }
    };
    let round_timeout = spec::parse_duration(&a.round_timeout)
        .map_err(|e| usage(format!("--round-timeout: {e}")))?;
    let proposer_step = spec::parse_duration(&a.proposer_step)
        .map_err(|e| usage(format!("--proposer-step: {e}")))?;
    let gather = spec::parse_duration(&a.gather).map_err(|e| usage(format!("--gather: {e}")))?;
    let block_interval = spec::parse_duration(&a.block_interval)
        .map_err(|e| usage(format!("--block-interval: {e}")))?;
    let tick = Duration::from_millis(25);
    let outsider_ticks = 10;
    let config = Config {
        mine_tries: 32,
        claim_every: Duration::from_secs(10),
        liveness,
        round_timeout,
        proposer_step,
        gather,
        polls_in_flight: a.polls_in_flight,
        block_interval,
        ..Config::default()
    };
    // Difficulty so that the whole network finds about one claim per slot
    // a second: the committee fills in seconds, not in one tick.
    let tries_per_sec = a.nodes as f64 * config.mine_tries as f64 * (1.0 / tick.as_secs_f64())
        / f64::from(outsider_ticks);
    let difficulty = (tries_per_sec / f64::from(a.slots)).log2().clamp(1.0, 40.0) as u32;
    let mut genesis = Genesis {
        name: format!("sim-{}", a.seed),
        snowball,
        slots: a.slots,
        difficulty,
        price: 1,
        block_reward: 1000,
        max_receipts: 4096,
        claim_expiry: 0,
        balances: Vec::new(),
    };
    genesis.claim_expiry = a
        .claim_expiry
        .unwrap_or_else(|| genesis.safe_claim_expiry().max(5));
    genesis
        .validate()
        .map_err(|e| usage(format!("bad parameters: {e}")))?;
    let max_time = match &a.max_time {
        Some(t) => spec::parse_duration(t).map_err(usage)?,
        None => {
            let faults = partition
                .as_ref()
                .map_or(Duration::ZERO, |p| p.start + p.length);
            Duration::from_secs(30 * a.heights.max(1)) + faults
        }
    };
    Ok(Setup {
        nodes: a.nodes,
        byzantine: a.byzantine,
        behaviour: a.behaviour,
        seed: a.seed,
        heights: a.heights,
        latency,
        loss: a.loss,
        partition,
        churn,
        genesis,
        config,
        calls_per_sec: a.calls,
        replicas: a.replicas,
        hosts: a.hosts,
        callers: a.callers.max(1),
        tick,
        outsider_ticks,
        max_time,
    })
}

fn percentile<T: Copy + PartialOrd>(v: &[T], p: f64) -> Option<T> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied()
}

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The ledger checks over a sample of chains.
struct LedgerCheck {
    audited: usize,
    clean: usize,
    findings: Vec<String>,
    conserved: bool,
    /// Receipts of lying executors on the sampled chains, and how many of
    /// them were paid.
    liars_receipts: u64,
    liars_paid: u64,
}

fn check_ledger(world: &World, n: usize) -> LedgerCheck {
    let genesis: &Genesis = world.genesis();
    let liars = world.liars();
    let mut check = LedgerCheck {
        audited: 0,
        clean: 0,
        findings: Vec::new(),
        conserved: true,
        liars_receipts: 0,
        liars_paid: 0,
    };
    for (node, commits) in world.sample_chains(n) {
        check.audited += 1;
        let mut chain = match Chain::open(MemStore::new(), Some(genesis.clone())) {
            Ok(c) => c,
            Err(e) => {
                check.findings.push(format!("node {node}: {e}"));
                continue;
            }
        };
        // A fresh node taking these blocks from sync checks each in full.
        let appended = commits
            .iter()
            .try_for_each(|c| chain.append((*c.block).clone()).map(drop));
        if let Err(e) = appended {
            check.findings.push(format!("node {node}: {e}"));
            continue;
        }
        match audit(
            chain.store(),
            AuditOptions {
                level: 4,
                ..AuditOptions::default()
            },
            &mut |_| {},
        ) {
            Ok(report) if report.finding.is_none() => check.clean += 1,
            Ok(report) => check
                .findings
                .push(format!("node {node}: {:?}", report.finding)),
            Err(e) => check.findings.push(format!("node {node}: {e}")),
        }
        let faucet: u128 = genesis.balances.iter().map(|(_, b)| u128::from(*b)).sum();
        let total: u128 = chain.state().balances().iter().map(|(_, b)| *b).sum();
        if total != faucet + u128::from(chain.height()) * u128::from(genesis.block_reward) {
            check.conserved = false;
        }
        for c in &commits {
            for s in &c.block.settlements {
                check.liars_receipts += s
                    .body
                    .receipts
                    .iter()
                    .filter(|r| liars.contains(&r.body.executor))
                    .count() as u64;
                for i in s.verdict().agreed {
                    if liars.contains(&s.body.receipts[i].body.executor) {
                        check.liars_paid += 1;
                    }
                }
            }
        }
    }
    check
}

/// The flags that differ from the defaults: the command that reproduces.
fn reproduce(a: &SimArgs) -> String {
    let d = SimArgs {
        nodes: 100,
        byzantine: 0.0,
        behaviour: None,
        seed: 1,
        heights: 10,
        latency: "lognormal:50ms:0.6".into(),
        loss: 0.0,
        partition: None,
        churn: None,
        slots: 64,
        k: 20,
        alpha_preference: 15,
        alpha_confidence: 15,
        beta: 20,
        claim_expiry: None,
        calls: 20.0,
        replicas: 3,
        hosts: 50,
        callers: 100,
        liveness: "tie-break".into(),
        round_timeout: "1s".into(),
        proposer_step: "400ms".into(),
        gather: "100ms".into(),
        polls_in_flight: Config::default().polls_in_flight,
        block_interval: "500ms".into(),
        max_time: None,
        agents: 0,
        messages: 2000,
        audit: 4,
        json: false,
    };
    let mut cmd = format!("orb sim --seed {}", a.seed);
    macro_rules! flag {
        ($f:ident, $name:literal) => {
            if a.$f != d.$f {
                cmd.push_str(&format!(concat!(" --", $name, " {}"), a.$f));
            }
        };
    }
    flag!(nodes, "nodes");
    flag!(byzantine, "byzantine");
    flag!(heights, "heights");
    flag!(latency, "latency");
    flag!(loss, "loss");
    flag!(slots, "slots");
    flag!(k, "k");
    flag!(alpha_preference, "alpha-preference");
    flag!(alpha_confidence, "alpha-confidence");
    flag!(beta, "beta");
    flag!(calls, "calls");
    flag!(replicas, "replicas");
    flag!(hosts, "hosts");
    flag!(callers, "callers");
    flag!(liveness, "liveness");
    flag!(round_timeout, "round-timeout");
    flag!(proposer_step, "proposer-step");
    flag!(gather, "gather");
    flag!(polls_in_flight, "polls-in-flight");
    flag!(block_interval, "block-interval");
    flag!(agents, "agents");
    flag!(messages, "messages");
    if let Some(b) = a.behaviour {
        cmd.push_str(&format!(" --behaviour {}", format!("{b:?}").to_lowercase()));
    }
    for (name, v) in [
        ("partition", &a.partition),
        ("churn", &a.churn),
        ("max-time", &a.max_time),
    ] {
        if let Some(v) = v {
            cmd.push_str(&format!(" --{name} {v}"));
        }
    }
    if let Some(e) = a.claim_expiry {
        cmd.push_str(&format!(" --claim-expiry {e}"));
    }
    cmd
}

fn agent_setup(a: &SimArgs) -> Result<agents::AgentSetup, CliError> {
    if !(1..=7).contains(&a.replicas) || a.replicas > a.nodes {
        return Err(usage(format!(
            "--replicas {}: an agent has 1 to 7 hosts, at most --nodes ({})",
            a.replicas, a.nodes
        )));
    }
    if !(0.0..1.0).contains(&a.loss) {
        return Err(usage(format!(
            "--loss {}: must be at least 0 and below 1",
            a.loss
        )));
    }
    let churn = a
        .churn
        .as_deref()
        .map(Churn::parse)
        .transpose()
        .map_err(usage)?;
    let max_time = match &a.max_time {
        Some(t) => spec::parse_duration(t).map_err(usage)?,
        None => Duration::from_secs_f64(600.0 + 2.0 * a.messages as f64 / a.calls.max(1e-3)),
    };
    Ok(agents::AgentSetup {
        nodes: a.nodes,
        agents: a.agents,
        replicas: a.replicas,
        messages: a.messages,
        rate: a.calls,
        seed: a.seed,
        latency: Latency::parse(&a.latency).map_err(usage)?,
        loss: a.loss,
        churn,
        max_time,
    })
}

fn run_agents(args: &SimArgs) -> Result<(), CliError> {
    let (report, failed) = agents::run(agent_setup(args)?);
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let f = |v: &serde_json::Value| match v.as_f64() {
            Some(x) if x.fract() != 0.0 => format!("{x:.1}"),
            _ => v.to_string(),
        };
        let m = &report["messages"];
        outln!(
            "agents {} on {} nodes, {} hosts each  seed {}  trace {}",
            report["agents"],
            report["nodes"],
            report["replicas"],
            report["seed"],
            report["trace"].as_str().unwrap_or("")
        );
        outln!("safety     violations {}", report["safety"]["violations"]);
        outln!(
            "messages   {} sent, {} acknowledged ({} retries, {} answered as duplicates), latency p50 {} ms, p99 {} ms",
            m["sent"],
            m["acknowledged"],
            m["retries"],
            m["duplicates_answered"],
            f(&report["latency_ms"]["p50"]),
            f(&report["latency_ms"]["p99"]),
        );
        outln!(
            "faults     crashes {}  takeovers {}  steps given up {}",
            report["crashes"],
            report["takeovers"],
            report["failed_steps"]
        );
        outln!(
            "cost       {} events, {} network messages, {} simulated s in {} wall s",
            report["events"],
            report["traffic"]["messages"],
            f(&report["sim_secs"]),
            f(&report["wall_secs"]),
        );
        outln!(
            "result     {}",
            if failed.is_empty() {
                "passed"
            } else {
                "FAILED"
            }
        );
    }
    verdict(&failed, args)
}

pub(crate) fn run(args: SimArgs) -> Result<(), CliError> {
    if args.agents > 0 {
        return run_agents(&args);
    }
    let setup = setup(&args)?;
    let heights_wanted = setup.heights;
    let nodes = setup.nodes;
    let started = Instant::now();
    let mut world = World::new(setup);
    world.run();
    let wall = started.elapsed().as_secs_f64();
    let ledger = check_ledger(&world, args.audit);
    let o = &world.out;
    let heights = world.heights();
    let reached = !heights.is_empty() && heights.iter().all(|h| *h >= heights_wanted);
    let mut failed = Vec::new();
    if o.violations > 0 {
        failed.push(format!(
            "safety: {} violations ({})",
            o.violations,
            o.first_violation.clone().unwrap_or_default()
        ));
    }
    if !reached {
        failed.push(format!(
            "liveness: live honest nodes reached heights {}..{}, not {heights_wanted}, in {:.0} simulated seconds",
            o.lowest_height, o.heights, o.sim_secs
        ));
    }
    if ledger.clean < ledger.audited {
        failed.push(format!("ledger: {}", ledger.findings.join("; ")));
    }
    if !ledger.conserved {
        failed.push("ledger: credits not conserved".into());
    }
    if ledger.liars_paid > 0 {
        failed.push(format!(
            "ledger: {} receipts of lying executors paid",
            ledger.liars_paid
        ));
    }
    if o.out_of_order > 0 {
        failed.push(format!(
            "order: {} blocks handed out to persist out of height order",
            o.out_of_order
        ));
    }
    if o.lost_blocks > 0 {
        failed.push(format!(
            "durability: {} committed blocks lost on restart",
            o.lost_blocks
        ));
    }
    let per_node_height = |x: u64| x as f64 / nodes as f64 / o.heights.max(1) as f64;
    let report = json!({
        "nodes": nodes,
        "seed": args.seed,
        "safety": { "violations": o.violations },
        "liveness": {
            "heights": o.heights,
            "lowest_height": o.lowest_height,
            "finality_polls_p50": percentile(&o.finality_polls, 0.5),
            "finality_polls_p99": percentile(&o.finality_polls, 0.99),
            "finality_secs_p50": percentile(&o.finality_secs, 0.5),
            "finality_secs_p99": percentile(&o.finality_secs, 0.99),
            "decisions": o.finality_polls.len(),
            "candidates_p50": percentile(&o.candidates, 0.5),
            "candidates_max": o.candidates.iter().max(),
            "pipelined": world.pipelined(),
            "out_of_order": o.out_of_order,
        },
        "ledger": {
            "audited": ledger.audited,
            "clean": ledger.clean,
            "conserved": ledger.conserved,
            "lying_executors": o.lying_executors,
            "lying_receipts": ledger.liars_receipts,
            "lying_receipts_paid": ledger.liars_paid,
        },
        "calls": { "made": o.calls, "ok": o.calls_ok, "wrong": o.calls_wrong, "failed": o.calls_failed },
        "byzantine": o.byzantine_by_kind,
        "equivocators_excluded": o.equivocators_caught,
        "equivocators_on_chain": o.equivocators_on_chain,
        "churn": { "crashes": o.crashes, "lost_blocks": o.lost_blocks },
        "partition": { "heights_during": o.partition_heights, "catch_up_secs": o.catch_up_secs },
        "traffic": {
            "messages_per_node_per_height": per_node_height(o.messages),
            "bytes_per_node_per_height": per_node_height(o.bytes),
            "max_messages_one_node": o.max_node_messages,
        },
        "events": o.events,
        "sim_secs": o.sim_secs,
        "wall_secs": wall,
        "sim_secs_per_wall_sec": o.sim_secs / wall.max(1e-9),
        "peak_rss_bytes": peak_rss(),
        "trace": o.trace,
        "passed": failed.is_empty(),
        "failed": failed,
        "reproduce": (!failed.is_empty()).then(|| reproduce(&args)),
    });
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_report(&report);
    }
    verdict(&failed, &args)
}

/// A run's exit: 0 when nothing failed, else what failed and the command
/// that reproduces it.
fn verdict(failed: &[String], args: &SimArgs) -> Result<(), CliError> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError {
        code: CHECK_FAILED,
        error: anyhow::anyhow!(
            "the simulation failed: {}\nreproduce with: {}",
            failed.join("; "),
            reproduce(args)
        ),
    })
}

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|x| x.fract() != 0.0)
            .map_or_else(|| n.to_string(), |x| format!("{x:.3}")),
        other => other.to_string(),
    };
    let l = &r["liveness"];
    let g = &r["ledger"];
    let c = &r["calls"];
    let t = &r["traffic"];
    outln!(
        "nodes {}  seed {}  trace {}",
        r["nodes"],
        r["seed"],
        r["trace"].as_str().unwrap_or("")
    );
    outln!("safety     violations {}", r["safety"]["violations"]);
    outln!(
        "liveness   heights {}..{}  finality p50 {} polls / {} s, p99 {} polls / {} s ({} decisions; candidates a height p50 {}, max {}; {} proposals pipelined)",
        f(&l["lowest_height"]),
        f(&l["heights"]),
        f(&l["finality_polls_p50"]),
        f(&l["finality_secs_p50"]),
        f(&l["finality_polls_p99"]),
        f(&l["finality_secs_p99"]),
        f(&l["decisions"]),
        f(&l["candidates_p50"]),
        f(&l["candidates_max"]),
        f(&l["pipelined"]),
    );
    outln!(
        "ledger     {} of {} sampled chains audit clean at level 4, credits conserved {}, lying executors {}: {} receipts settled, {} paid",
        g["clean"],
        g["audited"],
        g["conserved"],
        g["lying_executors"],
        g["lying_receipts"],
        g["lying_receipts_paid"]
    );
    outln!(
        "calls      {} made, {} right, {} wrong, {} without a majority",
        c["made"],
        c["ok"],
        c["wrong"],
        c["failed"]
    );
    outln!(
        "faults     byzantine {}  equivocators excluded {} ({} on chain)  crashes {}  lost blocks {}  partition {}",
        r["byzantine"],
        r["equivocators_excluded"],
        r["equivocators_on_chain"],
        r["churn"]["crashes"],
        r["churn"]["lost_blocks"],
        r["partition"]
    );
    outln!(
        "traffic    {} messages, {} bytes per node per height (busiest node {} messages)",
        f(&t["messages_per_node_per_height"]),
        f(&t["bytes_per_node_per_height"]),
        t["max_messages_one_node"]
    );
    outln!(
        "cost       {} events, {} simulated s in {} wall s ({} sim-s per wall-s), peak RSS {} MiB",
        r["events"],
        f(&r["sim_secs"]),
        f(&r["wall_secs"]),
        f(&r["sim_secs_per_wall_sec"]),
        r["peak_rss_bytes"].as_u64().map_or(0, |b| b / (1 << 20))
    );
    outln!(
        "result     {}",
        if r["passed"] == true {
            "passed"
        } else {
            "FAILED"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn args(line: &str) -> SimArgs {
        Cli::parse_from(std::iter::once("sim").chain(line.split_whitespace())).sim
    }

    #[test]
    fn bad_specs_are_usage_errors() {
        for line in [
            "--byzantine 1",
            "--byzantine 1.5",
            "--nodes 10 --slots 64",
            "--partition 0.0001@1s+1s",
            "--latency gauss:1ms",
            "--churn 2/1s",
            "--alpha-preference 5",
            "--liveness fast",
        ] {
            let e = setup(&args(line))
                .err()
                .unwrap_or_else(|| panic!("{line} was taken"));
            assert_eq!(e.code, crate::exit::USAGE, "{line}");
        }
        assert!(setup(&args("--nodes 64")).is_ok());
    }

    #[test]
    fn the_reproducing_command_names_only_what_differs() {
        assert_eq!(
            reproduce(&args("--seed 9 --nodes 500 --partition 0.3@5s+10s")),
            "orb sim --seed 9 --nodes 500 --partition 0.3@5s+10s"
        );
    }
}
