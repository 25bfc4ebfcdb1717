//! The floor the transport allows: round trips of a frame on one
//! long-lived bare libp2p stream to another process, on the transport a
//! node uses (TCP with nodelay, Noise, yamux) and with nothing else in
//! either process. The other process is this benchmark's own binary,
//! started again with [`PEER`] set; a benchmark that uses [`round_trips`]
//! calls [`serve_if_peer`] first thing in `main`.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};

/// Set in the environment of the echoing process.
const PEER: &str = "ORB_BENCH_BARE_PEER";

const PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bench/echo/1");

/// How many round trips make a sample, how many samples, and when.
pub(crate) struct Plan {
    /// Samples thrown away first.
    pub(crate) warmup: usize,
    /// Samples kept, at most.
    pub(crate) samples: usize,
    /// Sequential round trips timed as one sample.
    pub(crate) batch: usize,
    /// At least this long from one sample's start to the next's.
    pub(crate) pace: Duration,
    /// Stop when this is set (or at `samples`).
    pub(crate) until: Option<Arc<AtomicBool>>,
}

impl Plan {
    /// `samples` single round trips back to back, after 200 thrown away.
    pub(crate) fn calls(samples: usize) -> Self {
        Self {
            warmup: 200,
            samples,
            batch: 1,
            pace: Duration::ZERO,
            until: None,
        }
    }
}

/// In the echoing process: serves, and never returns. Elsewhere: nothing.
pub(crate) fn serve_if_peer() {
    if std::env::var_os(PEER).is_some() {
        peer();
        std::process::exit(0);
    }
}

fn swarm() -> libp2p::Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Prints its address, then echoes every length-prefixed frame on every
/// stream it accepts.
fn peer() {
    runtime().block_on(async {
        let mut swarm = swarm();
        let mut incoming = swarm
            .behaviour()
            .new_control()
            .accept(PROTOCOL)
            .expect("accept");
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .expect("listen");
        let peer = *swarm.local_peer_id();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                let mut frame = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).await.is_err() {
                        break;
                    }
                    frame.resize(u32::from_be_bytes(len) as usize, 0);
                    if stream.read_exact(&mut frame).await.is_err() {
                        break;
                    }
                    let mut out = len.to_vec();
                    out.extend_from_slice(&frame);
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        break;
                    }
                }
            }
        });
        loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                swarm.select_next_some().await
            {
                println!("{address}/p2p/{peer}");
            }
        }
    });
}

/// Times round trips of `input` (with a 4-byte length) to the echoing
/// process as `plan` says; each sample in microseconds.
pub(crate) fn round_trips(input: &[u8], plan: &Plan) -> Vec<f64> {
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(PEER, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the bare stream peer");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its address");
    let addr: libp2p::Multiaddr = line.trim().parse().expect("address");
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
        panic!("no peer id in {addr}");
    };
    let samples = runtime().block_on(async {
        let mut swarm = swarm();
        let mut control = swarm.behaviour().new_control();
        swarm.dial(addr).expect("dial");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let mut stream = control.open_stream(peer, PROTOCOL).await.expect("open");
        let mut frame = (input.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(input);
        let mut back = vec![0u8; frame.len()];
        let mut samples = Vec::with_capacity(plan.samples.min(1 << 16));
        for i in 0..plan.warmup.saturating_add(plan.samples) {
            if plan
                .until
                .as_ref()
                .is_some_and(|u| u.load(Ordering::Relaxed))
            {
                break;
            }
            let t = Instant::now();
            for _ in 0..plan.batch {
                stream.write_all(&frame).await.expect("write");
                stream.flush().await.expect("flush");
                stream.read_exact(&mut back).await.expect("read");
                assert_eq!(back, frame);
            }
            let took = t.elapsed();
            if i >= plan.warmup {
                samples.push(took.as_secs_f64() * 1e6);
            }
            if let Some(rest) = plan.pace.checked_sub(took) {
                tokio::time::sleep(rest).await;
            }
        }
        samples
    });
    let _ = child.kill();
    let _ = child.wait();
    samples
}
