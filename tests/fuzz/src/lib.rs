//! Fuzz targets for everything Orb decodes from peers, clients and files.
//!
//! Each target is a function of arbitrary bytes that must never panic and
//! checks a property on whatever decodes:
//!
//! - [`wire`]: a request-stream frame (`(id, Request)` and `(id, Response)`,
//!   4-byte length then postcard) read with the stream's size limit: a
//!   length over the limit is refused before anything is allocated, and a
//!   frame that decodes encodes back to one that decodes to the same value.
//! - [`gossip`]: a gossipsub message (`Announcement`): decode∘encode is
//!   the identity on what decodes.
//! - [`signed`]: a block, settlement, receipt or vote signed by a real
//!   committee, with the input's mutations applied to its bytes: decoding
//!   never panics, and validation never accepts a mutated object (one that
//!   passes is the original, in everything its signatures cover).
//! - [`genesis`]: a genesis file (JSON): validation never panics, a valid
//!   one round-trips to the same chain id.
//! - [`name_record`]: a signed name record: decode, verify, round trip.
//! - [`proof`]: an inclusion or consistency proof file (JSON), as
//!   `orb ledger verify-proof` reads it: verifying never panics.
//! - [`module`]: a WebAssembly module as `orb fn inspect` and deploy read
//!   it: inspection never panics.
//! - [`wasm_smith`]: a valid module wasm-smith builds from the input:
//!   inspecting, compiling and (a command) calling it with a little fuel
//!   never panics, and a call ends within its fuel.
//! - [`http`]: raw bytes sent to a real node's HTTP API (one node per
//!   process, on loopback, hosting a small function): the node never
//!   panics, every connection gets an answer or is closed within seconds,
//!   and no request is answered 500.
//!
//! `scripts/fuzz TARGET [SECONDS]` runs one under libFuzzer (coverage
//! guided, seeded with [`seeds`]); the test suite runs each on its seeds
//! and a few thousand seeded mutations of them (`tests/smoke.rs`).

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::OnceLock;

use futures::executor::block_on;
use orb_functions::{FunctionId, Runtime, RuntimeConfig};
use orb_ledger::sim::{Committee, receipt, single};
use orb_ledger::{
    Block, ConsistencyProof, Genesis, InclusionProof, Keypair, Receipt, Settlement, Vote, VoteBody,
};
use orb_net::{Announcement, Invoke, NameRecord, Request, Response, encode_frame, read_frame_into};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The frame limit the [`wire`] target reads with.
pub const MAX_FRAME: usize = 1 << 20;

/// A fuzz target: arbitrary bytes in, a panic on a broken property.
pub type Target = fn(&[u8]);

/// Every target by name (as `scripts/fuzz` spells it).
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire),
    ("gossip", gossip),
    ("signed", signed),
    ("genesis", genesis),
    ("name-record", name_record),
    ("proof", proof),
    ("module", module),
    ("wasm-smith", wasm_smith),
    ("http", http),
];

/// Decodes, re-encodes and decodes again: the same value.
fn round_trips<M: Serialize + DeserializeOwned + PartialEq + Debug>(m: &M) {
    let bytes = postcard::to_stdvec(m).expect("what decoded encodes");
    let again: M = postcard::from_bytes(&bytes).expect("what was encoded decodes");
    assert_eq!(&again, m, "decode∘encode is not the identity");
}

fn frame<M: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let mut buf = Vec::new();
    let mut input = data;
    let Ok(m) = block_on(read_frame_into::<_, M>(&mut input, &mut buf, MAX_FRAME)) else {
        assert!(buf.len() <= MAX_FRAME, "read past the limit");
        return;
    };
    assert!(buf.len() <= MAX_FRAME, "read past the limit");
    let again = encode_frame(&m, usize::MAX).expect("what decoded encodes");
    let mut buf = Vec::new();
    let back: M = block_on(read_frame_into(&mut again.as_slice(), &mut buf, usize::MAX))
        .expect("a frame just encoded decodes");
    assert_eq!(back, m, "decode∘encode is not the identity");
}

/// A request-stream frame, read both ways.
pub fn wire(data: &[u8]) {
    frame::<(u64, Request)>(data);
    frame::<(u64, Response)>(data);
}

/// A gossip message.
pub fn gossip(data: &[u8]) {
    if let Some(a) = Announcement::decode(data) {
        let again = Announcement::decode(&a.encode()).expect("what was encoded decodes");
        assert_eq!(again, a, "decode∘encode is not the identity");
    }
}

/// Real signed objects to mutate: a committee, a finalized block with
/// settlements, one of its settlements, a receipt and a vote.
struct Signed {
    genesis: Genesis,
    block: Block,
    settlement: Settlement,
    receipt: Receipt,
    vote: Vote,
}

fn fixture() -> &'static Signed {
    static FIXTURE: OnceLock<Signed> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let invoker = Keypair::from_secret([7; 32]);
        let payer = invoker.public();
        let c = Committee::new(|_| Genesis::local("fuzz", vec![(payer, 1 << 40)]), 5);
        let settlements: Vec<Settlement> = (0..3)
            .map(|i| single(&c.keys[i], &invoker, i as u128 + 1, 10 + i as u64))
            .collect();
        let block = c.block(1, c.chain(), settlements.clone());
        let vote = VoteBody {
            chain: c.chain(),
            height: 1,
            round: 3,
            asker: c.keys[0].public(),
            block: block.hash(),
            voter: c.keys[1].public(),
        }
        .sign(&c.keys[1]);
        Signed {
            receipt: receipt(&c.keys[2], payer, 9, 99),
            settlement: settlements[0].clone(),
            genesis: c.genesis.clone(),
            block,
            vote,
        }
    })
}

/// `bytes` with `mutations` applied: each 3 bytes are a position (2
/// bytes, modulo the length) and a byte to xor there; a trailing 1 or 2
/// bytes cut the encoding to that many 256ths of its length.
fn mutate(bytes: &[u8], mutations: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut chunks = mutations.chunks_exact(3);
    for m in chunks.by_ref() {
        if out.is_empty() {
            break;
        }
        let at = usize::from(u16::from_be_bytes([m[0], m[1]])) % out.len();
        out[at] ^= m[2];
    }
    if let [cut, ..] = chunks.remainder() {
        out.truncate(out.len() * usize::from(*cut) / 256);
    }
    out
}

/// One signed object (the first byte picks which), mutated by the rest.
pub fn signed(data: &[u8]) {
    let Some((&kind, mutations)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match kind % 4 {
        0 => {
            let bytes = mutate(&orb_ledger::encode(&f.block), mutations);
            let Ok(b) = orb_ledger::decode::<Block>(&bytes) else {
                return;
            };
            round_trips(&b);
            let linked = b.check_links(&f.genesis.id(), 1, &f.genesis.id());
            let proposal = b.check_proposal(&f.genesis);
            let evidence = b.check_evidence(&f.genesis);
            if linked.is_ok() && proposal.is_ok() {
                // Everything the proposer signed is the original's.
                assert_eq!(b.header, f.block.header, "a mutated header was accepted");
                assert_eq!(
                    b.settlements, f.block.settlements,
                    "mutated settlements accepted"
                );
                assert_eq!(b.equivocations, f.block.equivocations);
                assert_eq!(b.voted, f.block.voted);
            }
            if evidence.is_ok() {
                // The evidence is not hashed, but every vote in it is signed
                // for this block: a block whose evidence checks is this one.
                assert_eq!(
                    b.hash(),
                    f.block.hash(),
                    "evidence of another block accepted"
                );
            }
        }
        1 => {
            let bytes = mutate(&orb_ledger::encode(&f.settlement), mutations);
            if let Ok(s) = orb_ledger::decode::<Settlement>(&bytes) {
                round_trips(&s);
                let _ = s.check();
                if s.verify() {
                    assert_eq!(s, f.settlement, "a mutated settlement verified");
                }
            }
        }
        2 => {
            let bytes = mutate(&orb_ledger::encode(&f.receipt), mutations);
            if let Ok(r) = orb_ledger::decode::<Receipt>(&bytes) {
                round_trips(&r);
                if r.verify() {
                    assert_eq!(r, f.receipt, "a mutated receipt verified");
                }
            }
        }
        _ => {
            let bytes = mutate(&orb_ledger::encode(&f.vote), mutations);
            if let Ok(v) = orb_ledger::decode::<Vote>(&bytes) {
                round_trips(&v);
                if v.verify() {
                    assert_eq!(v, f.vote, "a mutated vote verified");
                }
            }
        }
    }
}

/// A genesis file.
pub fn genesis(data: &[u8]) {
    let Ok(g) = serde_json::from_slice::<Genesis>(data) else {
        return;
    };
    if g.validate().is_ok() {
        let text = serde_json::to_string(&g).expect("a genesis serializes");
        let again: Genesis = serde_json::from_str(&text).expect("and parses back");
        assert_eq!(again.id(), g.id(), "the chain id changed on a round trip");
    }
}

/// A name record.
pub fn name_record(data: &[u8]) {
    if let Ok(r) = NameRecord::decode(data) {
        let _ = r.verify();
        let again = NameRecord::decode(&r.encode()).expect("what was encoded decodes");
        assert_eq!(again, r, "decode∘encode is not the identity");
    }
}

/// A proof file, either kind.
pub fn proof(data: &[u8]) {
    if let Ok(p) = serde_json::from_slice::<InclusionProof>(data) {
        let _ = p.verify();
        let _ = p.receipt();
    }
    if let Ok(p) = serde_json::from_slice::<ConsistencyProof>(data) {
        let _ = p.verify();
    }
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("a runtime"))
}

/// A WebAssembly module.
pub fn module(data: &[u8]) {
    let _ = runtime().inspect(data);
}

/// A module wasm-smith builds from `data`.
pub fn wasm_smith(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let config = wasm_smith::Config {
        max_memory32_bytes: 16 << 20,
        max_type_size: 1_000,
        ..wasm_smith::Config::default()
    };
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return;
    };
    let bytes = module.to_bytes();
    let runtime = runtime();
    let inspected = runtime.inspect(&bytes);
    let Ok(function) = runtime.load(&bytes) else {
        return;
    };
    // Loading checks what inspection reports: a loaded module inspects.
    assert!(inspected.is_ok(), "loaded but not inspected: {inspected:?}");
    let mut opts = orb_functions::CallOptions::default();
    opts.limits.fuel = 100_000;
    if let Ok(outcome) = runtime.call(&function, b"fuzz", &opts) {
        assert!(
            outcome.fuel <= opts.limits.fuel,
            "{} fuel over the limit",
            outcome.fuel
        );
    }
}

/// The API of the process's node (started on first use, never stopped:
/// it lives as long as the fuzzer), and the id of the function it hosts.
fn node_api() -> &'static (SocketAddr, FunctionId) {
    static API: OnceLock<(SocketAddr, FunctionId)> = OnceLock::new();
    API.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // The node's runtime runs on this thread for the process's life.
        let _process_long = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let dir = tempfile::tempdir().expect("a data dir");
                let config = orb::NodeConfig {
                    api: SocketAddr::from(([127, 0, 0, 1], 0)),
                    listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr")],
                    autoscale: false,
                    ..orb::NodeConfig::new(dir.path())
                };
                let node = orb::Node::start(config).await.expect("a node");
                let id = node.host(TINY_MODULE).await.expect("hosts the tiny module");
                tx.send((node.api_addr(), id)).expect("the fuzzer waits");
                std::future::pending::<()>().await;
            });
        });
        PANICKED_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
                previous(info);
            }));
        });
        rx.recv().expect("the node started")
    })
}

static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PANICKED_HOOK: std::sync::Once = std::sync::Once::new();

/// Raw bytes to the node's HTTP API, as a client could send them.
pub fn http(data: &[u8]) {
    use std::io::{Read, Write};
    let (api, _) = node_api();
    let mut stream = std::net::TcpStream::connect(api).expect("the API accepts");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a timeout");
    // The node may close early (a refused request); what is not sent then
    // is not a failure.
    let _ = stream.write_all(data);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no answer and no close within 10 s: {e}"),
    }
    assert!(
        !PANICKED.load(std::sync::atomic::Ordering::SeqCst),
        "the node panicked"
    );
    for response in answer
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"HTTP/1."))
    {
        assert!(
            !response.starts_with(b"HTTP/1.1 500") && !response.starts_with(b"HTTP/1.0 500"),
            "answered 500: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

fn http_seeds() -> Vec<Vec<u8>> {
    let (_, id) = node_api();
    let id = id.to_hex();
    let mut deploy = format!(
        "POST /api/deploy?name=tiny&replicas=1&publisher=0801&signature=00 HTTP/1.1\r\n\
         Host: orb\r\nContent-Length: {}\r\n\r\n",
        TINY_MODULE.len()
    )
    .into_bytes();
    deploy.extend_from_slice(TINY_MODULE);
    vec![
        format!("POST /fn/{id} HTTP/1.1\r\nHost: orb\r\nContent-Length: 5\r\n\r\nhello")
            .into_bytes(),
        format!(
            "POST /fn/{id}?fuel=100000&replicas=1 HTTP/1.1\r\nHost: orb\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "POST /fn/{id}?replicas=17 HTTP/1.1\r\nHost: orb\r\nContent-Length: 0\r\n\r\n\
             GET /api/status HTTP/1.1\r\nHost: orb\r\n\r\n"
        )
        .into_bytes(),
        b"GET /api/status HTTP/1.1\r\nHost: orb\r\n\r\n".to_vec(),
        b"GET /api/peers HTTP/1.1\r\nHost: orb\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /api/functions HTTP/1.0\r\n\r\n".to_vec(),
        b"GET /api/ledger HTTP/1.1\r\nHost: orb\r\n\r\n".to_vec(),
        b"POST /fn/no-such-name HTTP/1.1\r\nHost: orb\r\nContent-Length: 99999999999\r\n\r\n"
            .to_vec(),
        deploy,
    ]
}

/// A small valid module: imports nothing, exports `_start` and memory.
const TINY_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
    0x03, 0x02, 0x01, 0x00, // function 0 of type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1 page
    0x07, 0x13, 0x02, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, 0x06, b'm', b'e', b'm',
    b'o', b'r', b'y', 0x02, 0x00, // exports
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
];

fn frame_bytes<M: Serialize>(m: &M) -> Vec<u8> {
    encode_frame(m, usize::MAX).expect("a seed encodes")
}

/// Seed inputs for `target`: real messages of each kind the target reads.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let f = fixture();
    match target {
        "wire" => {
            let invoke = Request::Invoke(Invoke {
                invocation: 42,
                function: FunctionId::of(TINY_MODULE),
                input: b"hello network".to_vec(),
                fuel: Some(1_000_000),
                trace: Some(orb_net::TraceContext::W3c {
                    trace_id: [7; 16],
                    parent_id: [9; 8],
                    flags: 1,
                }),
            });
            let ballot = orb_ledger::sequencer::Ballot {
                round: 2,
                leader: 1,
            };
            let answers = [
                Response::Output {
                    output: b"hello network".to_vec(),
                    fuel: 2468,
                    execution_us: 7,
                    receipt: Some(f.receipt.clone()),
                },
                Response::Failed {
                    kind: "out-of-fuel".into(),
                    message: "ran out of fuel".into(),
                    fuel: Some(10),
                },
                Response::Busy,
                Response::NotHosted,
                Response::Module(TINY_MODULE.to_vec()),
                Response::Hosting {
                    accepted: true,
                    reason: String::new(),
                },
                Response::Refused("not a ledger request".into()),
                Response::Vote(Some(f.vote.clone())),
                Response::Block(Some(Box::new(f.block.clone()))),
                Response::Blocks(vec![f.block.clone()]),
                Response::Votes(vec![f.vote.clone(), f.vote.clone()]),
                Response::Applied(orb_net::Applied {
                    seq: 7,
                    reply: b"8".to_vec(),
                    duplicate: false,
                    receipts: vec![f.receipt.clone()],
                    outvoted: vec!["12D3KooWpeer".into()],
                    sequencer: "12D3KooWseq".into(),
                }),
                Response::Replica(orb_net::ReplicaAnswer::Vote(Box::new(orb_net::StepVote {
                    seq: 7,
                    after: [4; 32],
                    reply: b"8".to_vec(),
                    receipt: Some(f.receipt.clone()),
                }))),
                Response::Replica(orb_net::ReplicaAnswer::Prepared(
                    orb_ledger::sequencer::Prepared::Promise(orb_ledger::sequencer::Head {
                        seq: 7,
                        hash: [4; 32],
                        accepted: ballot,
                    }),
                )),
                Response::Replica(orb_net::ReplicaAnswer::Stale(ballot)),
                Response::AgentCatchUp {
                    state: None,
                    entries: Vec::new(),
                    side: orb_net::AgentSide {
                        reminders: vec![vec![1, 2, 3]],
                        subscriptions: vec!["chat/room/lines".into()],
                        publications: vec![(
                            "lines".into(),
                            orb_net::Publication {
                                seq: 3,
                                index: 0,
                                message: b"hi".to_vec(),
                            },
                        )],
                    },
                },
                Response::AgentState(Some(orb_net::AgentState {
                    function: FunctionId::of(TINY_MODULE),
                    seq: 7,
                    state: b"8".to_vec(),
                    hash: [1; 32],
                })),
                Response::AgentLog(vec![orb_net::AgentLogEntry {
                    seq: 7,
                    message_id: [2; 16],
                    sender: "client".into(),
                    message: b"inc".to_vec(),
                    reply: b"8".to_vec(),
                    function: FunctionId::of(TINY_MODULE),
                    before: [3; 32],
                    after: [4; 32],
                }]),
            ];
            let asks = [
                Request::Agent(orb_net::AgentMessage {
                    agent: "counter/alice".into(),
                    function: FunctionId::of(TINY_MODULE),
                    message_id: [2; 16],
                    message: b"inc".to_vec(),
                    from_agent: Some("relay/r".into()),
                    answer: Some(orb_net::Answer {
                        name: "count".into(),
                        ok: true,
                    }),
                    topic: Some("chat/room/lines".into()),
                }),
                Request::AgentState {
                    agent: "counter/alice".into(),
                },
                Request::AgentLog {
                    agent: "counter/alice".into(),
                    from: 1,
                },
                Request::AgentTopic {
                    agent: "chat/room".into(),
                    topic: "lines".into(),
                    after: (3, 1),
                    wait_ms: 500,
                },
                Request::AgentModule {
                    function: FunctionId::of(TINY_MODULE),
                    init: b"0".to_vec(),
                    hosts: vec!["12D3KooWa".into(), "12D3KooWb".into()],
                    replaces: Some(FunctionId::of(b"old")),
                    epoch: 1,
                    previous: vec!["12D3KooWa".into(), "12D3KooWc".into()],
                },
                Request::AgentNames {
                    functions: vec![FunctionId::of(TINY_MODULE)],
                },
                Request::AgentPrepare {
                    agent: "counter/alice".into(),
                    function: FunctionId::of(TINY_MODULE),
                    ballot,
                },
                Request::AgentReplicate(Box::new(orb_net::Replicate {
                    ballot,
                    seq: 8,
                    before: [4; 32],
                    committed: 7,
                    message: orb_net::AgentMessage {
                        agent: "counter/alice".into(),
                        function: FunctionId::of(TINY_MODULE),
                        message_id: [2; 16],
                        message: b"inc".to_vec(),
                        from_agent: None,
                        answer: None,
                        topic: None,
                    },
                    sender: "client".into(),
                    invoker: None,
                    time: 1_800_000_000_000,
                    height: Some(12),
                })),
                Request::AgentCatchUp {
                    agent: "counter/alice".into(),
                    from: 1,
                },
            ];
            let mut out = vec![frame_bytes(&(1u64, invoke))];
            out.extend(asks.into_iter().map(|a| frame_bytes(&(1u64, a))));
            out.extend(answers.into_iter().map(|a| frame_bytes(&(2u64, a))));
            out
        }
        "gossip" => [
            Announcement::Proposal(Box::new(f.block.clone())),
            Announcement::Committed(Box::new(f.block.clone())),
            Announcement::Settlements(vec![f.settlement.clone()]),
            Announcement::Claim(f.block.header.proposer),
        ]
        .iter()
        .map(Announcement::encode)
        .collect(),
        "signed" => {
            let mut out: Vec<Vec<u8>> = (0..4u8).map(|k| vec![k]).collect();
            out.extend((0..4u8).map(|k| vec![k, 0, 40, 1]));
            out
        }
        "genesis" => vec![serde_json::to_vec_pretty(&f.genesis).expect("json")],
        "name-record" => {
            let key = libp2p::identity::Keypair::ed25519_from_bytes([3u8; 32]).expect("a key");
            let record =
                NameRecord::sign(&key, "echo", FunctionId::of(TINY_MODULE)).expect("a record");
            vec![record.encode()]
        }
        "proof" => {
            let chain = chain_with_receipts(f);
            let signer = Keypair::from_secret([5; 32]);
            let id = f.block.settlements[0].body.receipts[0].id();
            let inclusion = chain
                .prove(&id, &signer)
                .expect("prove")
                .expect("the receipt is in the chain");
            vec![serde_json::to_vec(&inclusion).expect("json")]
        }
        "module" => vec![TINY_MODULE.to_vec()],
        "wasm-smith" => vec![vec![0; 64], (0..=255).collect(), TINY_MODULE.to_vec()],
        "http" => http_seeds(),
        _ => Vec::new(),
    }
}

fn chain_with_receipts(f: &Signed) -> orb_ledger::Chain<orb_ledger::MemStore> {
    let mut chain = orb_ledger::Chain::open(orb_ledger::MemStore::new(), Some(f.genesis.clone()))
        .expect("a chain");
    chain
        .append(f.block.clone())
        .expect("the fixture's block appends");
    chain
}

/// Whether the unmutated object of `kind` (as [`signed`] numbers them)
/// passes its checks: the property "validation never accepts a mutated
/// object" means something only if the original is accepted.
pub fn accepts_unmutated(kind: u8) -> bool {
    let f = fixture();
    match kind % 4 {
        0 => {
            f.block.check_proposal(&f.genesis).is_ok() && f.block.check_evidence(&f.genesis).is_ok()
        }
        1 => f.settlement.verify() && f.settlement.check().is_ok(),
        2 => f.receipt.verify(),
        _ => f.vote.verify(),
    }
}
