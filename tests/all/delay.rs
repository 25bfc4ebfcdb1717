//! A slow link without the kernel's netem: a delaying TCP proxy inside a
//! network namespace.
//!
//! nftables redirects every TCP connection the namespace opens towards the
//! other nodes to [`Delay`]'s port there; the proxy reads the original
//! destination (`SO_ORIGINAL_DST`), connects to it with a socket mark the
//! redirect rule lets pass, and forwards both ways, delivering every chunk
//! it reads `base ± jitter` (uniform) after it arrived, in order (a chunk is
//! never delivered before the one read before it). The nodes see a TCP
//! link whose one-way delay is what netem's `delay base jitter` would give
//! each direction; loss stays with nftables.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use socket2::{Domain, SockAddr, Socket, Type};

/// The mark on the proxy's own connections, which the redirect rule passes.
pub(crate) const MARK: u32 = 0x0b0d;
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// One namespace's delaying proxy; dropping it stops and joins every
/// thread it started.
pub(crate) struct Delay {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    /// Connections proxied so far.
    pub(crate) connections: Arc<AtomicU64>,
}

/// The shape of the delay.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) base: Duration,
    pub(crate) jitter: Duration,
}

impl Delay {
    /// Starts the proxy inside namespace `netns` (a name under
    /// `/var/run/netns`), listening on `port` on every address there.
    pub(crate) fn start(netns: &str, port: u16, shape: Shape, seed: u64) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let (ready, started) = sync_channel(1);
        let path = format!("/var/run/netns/{netns}");
        let acceptor = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::spawn(move || {
                // This thread alone moves into the namespace; the sockets it
                // makes stay there whichever thread uses them.
                let listener = std::fs::File::open(&path)
                    .and_then(|ns| {
                        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(io::Error::from)
                    })
                    .and_then(|()| TcpListener::bind(("0.0.0.0", port)))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l));
                let listener = match listener {
                    Ok(l) => {
                        let _ = ready.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                accept_loop(&listener, shape, seed, stop, &connections);
            })
        };
        started
            .recv()
            .map_err(|_| io::Error::other("the proxy thread ended before it listened"))??;
        Ok(Self {
            stop,
            acceptor: Some(acceptor),
            connections,
        })
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Accepts redirected connections until `stop`, then joins their threads
/// (which stop on the same flag).
fn accept_loop(
    listener: &TcpListener,
    shape: Shape,
    seed: u64,
    stop: Arc<AtomicBool>,
    connections: &AtomicU64,
) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((inbound, _)) => {
                n += 1;
                match connect_onward(&inbound) {
                    Ok(outbound) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed ^ n)));
                        for (from, to) in [
                            (inbound.try_clone(), outbound.try_clone()),
                            (outbound.try_clone(), inbound.try_clone()),
                        ] {
                            if let (Ok(from), Ok(to)) = (from, to) {
                                pumps.extend(direction(from, to, shape, rng.clone(), stop.clone()));
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("delay proxy: onward connection failed: {e}");
                        let _ = inbound.shutdown(Shutdown::Both);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 5),
            Err(e) => eprintln!("delay proxy: accept: {e}"),
        }
        pumps.retain(|p| !p.is_finished());
    }
    for p in pumps {
        let _ = p.join();
    }
}

/// Connects, marked, to where `inbound` was going before the redirect.
fn connect_onward(inbound: &TcpStream) -> io::Result<TcpStream> {
    inbound.set_nonblocking(false)?;
    let socket = Socket::from(inbound.try_clone()?);
    let original = socket
        .original_dst_v4()?
        .as_socket()
        .ok_or_else(|| io::Error::other("no IPv4 original destination"))?;
    let onward = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    onward.set_mark(MARK)?;
    onward.set_tcp_nodelay(true)?;
    onward.connect_timeout(&SockAddr::from(original), Duration::from_secs(5))?;
    inbound.set_nodelay(true)?;
    let onward: TcpStream = onward.into();
    // A far side that stops reading ends the connection rather than
    // holding a writer past its stop.
    for s in [inbound, &onward] {
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
    }
    Ok(onward)
}

/// A chunk to deliver at a time; an empty one is the end of the stream.
type Chunk = (Instant, Vec<u8>);

/// One direction of a connection: a reader stamps each chunk with its
/// delivery time, a writer delivers it then.
fn direction(
    mut from: TcpStream,
    mut to: TcpStream,
    shape: Shape,
    rng: Arc<Mutex<StdRng>>,
    stop: Arc<AtomicBool>,
) -> [JoinHandle<()>; 2] {
    // Bounded: a slow reader on the far side holds this side back, as TCP
    // would.
    let (tx, rx) = sync_channel::<Chunk>(256);
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || read_side(&mut from, &tx, shape, &rng, &stop))
    };
    let writer = std::thread::spawn(move || {
        loop {
            let (at, bytes) = match rx.recv_timeout(POLL) {
                Ok(chunk) => chunk,
                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => break,
            };
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if bytes.is_empty() || to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    [reader, writer]
}

fn read_side(
    from: &mut TcpStream,
    tx: &SyncSender<Chunk>,
    shape: Shape,
    rng: &Mutex<StdRng>,
    stop: &AtomicBool,
) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut last = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(_) => 0,
        };
        let jitter = shape.jitter.as_micros() as u64;
        let spread = rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random_range(0..=2 * jitter);
        let delay = (shape.base + Duration::from_micros(spread)).saturating_sub(shape.jitter);
        last = last.max(Instant::now() + delay);
        if tx.send((last, buf[..n].to_vec())).is_err() || n == 0 {
            return;
        }
    }
}
