//! `orb ledger genesis`: the parameters and initial balances a new chain
//! starts from. Its hash is the chain id, so every node of one network
//! must start from the same file. Defaults are `Genesis::local`'s (a
//! laptop-sized chain); nothing here reads or writes a ledger.

use std::path::{Path, PathBuf};

use clap::Args;
use orb_ledger::{Genesis, Params, PublicKey};

use super::{parse_key, peer_id, write_json};
use crate::exit::CliError;

pub(crate) const AFTER_HELP: &str = "\
A faucet KEY is a 64-hex public key, a peer id (12D3KooW…), or the path of a
node's data dir: its identity.key is used, and created if missing, so a
script can make node identities before the nodes first start.

The parameters are checked as a node checks them: k/2 < alpha-preference <=
alpha-confidence <= k, beta > 0, slots >= alpha-confidence, one balance per
key. The chain id goes to stderr; the genesis (pretty JSON) to --out or stdout.
Exit codes: 0 written, 2 bad parameters, a bad KEY or an unwritable file.

Example:
  orb ledger genesis --name demo --faucet /tmp/a=1000000 --faucet 12D3KooW…=5000 --out genesis.json";

fn defaults() -> Genesis {
    Genesis::local("", Vec::new())
}

/// `orb ledger genesis` flags.
#[derive(Args, Debug)]
pub(crate) struct GenesisArgs {
    /// The chain's name (part of its id).
    #[arg(long)]
    name: String,
    /// An initial balance, KEY=AMOUNT (repeatable; see below for KEY).
    #[arg(long, value_name = "KEY=AMOUNT")]
    faucet: Vec<String>,
    /// King-of-the-Hill committee slots.
    #[arg(long, default_value_t = defaults().slots)]
    slots: u32,
    /// Leading zero bits a committee claim's work hash needs.
    #[arg(long, value_name = "BITS", default_value_t = defaults().difficulty)]
    difficulty: u32,
    /// Snowball: committee members sampled per poll.
    #[arg(long, default_value_t = defaults().snowball.k())]
    k: usize,
    /// Snowball: votes a poll needs to move the preference.
    #[arg(long, value_name = "A", default_value_t = defaults().snowball.alpha_preference())]
    alpha_preference: usize,
    /// Snowball: votes a poll needs to count towards finality.
    #[arg(long, value_name = "A", default_value_t = defaults().snowball.alpha_confidence())]
    alpha_confidence: usize,
    /// Snowball: consecutive confident polls that decide a block.
    #[arg(long, value_name = "B", default_value_t = defaults().snowball.beta())]
    beta: usize,
    /// Credits per unit of fuel an executor earns (and the invoker pays).
    #[arg(long, value_name = "P", default_value_t = defaults().price)]
    price: u64,
    /// Credits a block's proposer earns.
    #[arg(long, value_name = "R", default_value_t = defaults().block_reward)]
    block_reward: u64,
    /// Most receipts one block may hold.
    #[arg(long, value_name = "N", default_value_t = defaults().max_receipts)]
    max_receipts: u32,
    /// Heights without a vote in finality evidence after which a committee
    /// claim expires (0: never).
    #[arg(long, value_name = "HEIGHTS", default_value_t = defaults().claim_expiry)]
    claim_expiry: u64,
    /// Write the genesis to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: GenesisArgs) -> Result<(), CliError> {
    let bad = |e: String| CliError::usage(anyhow::anyhow!(e));
    let snowball = Params::new(
        args.k,
        args.alpha_preference,
        args.alpha_confidence,
        args.beta,
    )
    .map_err(|e| bad(format!("bad Snowball parameters: {e}")))?;
    let balances = args
        .faucet
        .iter()
        .map(|f| faucet(f).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let genesis = Genesis {
        name: args.name,
        snowball,
        slots: args.slots,
        difficulty: args.difficulty,
        price: args.price,
        block_reward: args.block_reward,
        max_receipts: args.max_receipts,
        claim_expiry: args.claim_expiry,
        balances,
    };
    genesis
        .validate()
        .map_err(|e| bad(format!("bad genesis: {e}")))?;
    write_json(args.out.as_deref(), &genesis)?;
    for (key, amount) in &genesis.balances {
        eprintln!("faucet {} ({key}): {amount}", peer_id(key));
    }
    eprintln!("chain id: {}", genesis.id());
    Ok(())
}

/// `KEY=AMOUNT`, KEY a public key, a peer id or a data dir.
fn faucet(spec: &str) -> Result<(PublicKey, u64), String> {
    let (key, amount) = spec
        .rsplit_once('=')
        .ok_or_else(|| format!("--faucet {spec}: expected KEY=AMOUNT"))?;
    let amount = amount
        .parse()
        .map_err(|e| format!("--faucet {spec}: bad amount `{amount}` ({e})"))?;
    Ok((account(key)?, amount))
}

fn account(key: &str) -> Result<PublicKey, String> {
    let looks_like_key = key.starts_with("12D3Koo")
        || key.parse::<orb_net::PeerId>().is_ok()
        || key.chars().all(|c| c.is_ascii_hexdigit());
    if looks_like_key {
        return parse_key(key);
    }
    // Not a key: a data dir, whose node identity is made if it is new.
    let path = Path::new(key).join("identity.key");
    let node = orb_net::identity::load_or_create(&path).map_err(|e| e.to_string())?;
    let public = orb_net::identity::ed25519_public(&node.public().to_peer_id())
        .ok_or_else(|| format!("{} is not an Ed25519 key", path.display()))?;
    Ok(PublicKey(public))
}
