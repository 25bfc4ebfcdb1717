//! Requests on long-lived streams: one framed, multiplexed stream per peer
//! and direction (`/orb/call/1`) carries every [`Request`] we send that
//! peer and each [`Response`], opened on the first request and kept.
//!
//! - **Frames** are the [`protocol`](crate::protocol) frames (a 4-byte
//!   big-endian length, then postcard) of `(id, body)`: a request's id comes
//!   back with its response, so many requests are in flight on one stream
//!   and are answered in any order.
//! - **Window**: at most `window` of our requests are in flight to one peer.
//!   One more fails at once with [`Error::WindowFull`] (the scheduler takes
//!   it as "busy" and asks another provider); nothing queues without bound.
//!   On the answering side a stream is read only while fewer than `window`
//!   of its requests are unanswered: past that, yamux's flow control holds
//!   the asker back, so a flood costs the answerer at most `window` requests
//!   of memory per stream.
//! - **Drops**: when a stream fails (the connection closed, a bad frame),
//!   every request in flight on it fails with [`Error::Request`] and the
//!   caller reroutes; the next request opens a new stream, over whatever
//!   connection the swarm has (direct or relayed).
//! - **No extra hops**: the caller encodes and writes its own frame, then
//!   waits on a oneshot; one task per stream reads the answers. On the
//!   answering side one task per stream reads requests and writes answers
//!   (every answer queued, in one write); an answer ([`Reply::send`]) is encoded by whoever
//!   has it and goes straight to the stream's writer. A node may answer
//!   some requests where they are read ([`Direct`]: a call is handed to its
//!   executor thread there, and that thread sends the answer). The event
//!   loop is not on the path.
//!
//! The tasks (one per stream, plus the one accepting streams) live in a
//! `JoinSet` the [`Streams`] owns: dropping the last [`Net`](crate::Net)
//! handle aborts them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::future::{Either, select};
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::debug;

use crate::event_loop::Command;
use crate::handle::NetEvent;
use crate::protocol::{BadFrame, encode_frame, read_frame_into};
use crate::{Error, Offence, Request, Response, Result};

/// The protocol of the request streams.
pub(crate) const CALL_PROTOCOL: StreamProtocol = StreamProtocol::new("/orb/call/1");

/// Frames written at once by a stream's writer, at most (bytes).
const BATCH: usize = 256 << 10;

/// Limits of the request streams.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) window: usize,
    pub(crate) max_request: usize,
    pub(crate) max_response: usize,
    pub(crate) timeout: Duration,
    /// Byzantine test mode: send bad frames instead of requests.
    pub(crate) bad_frames: bool,
}

/// Tells the event loop (which keeps peers' scores) that `peer` sent a
/// frame that does not decode or is over the limit.
fn report_frame(offences: &mpsc::Sender<Command>, peer: PeerId, e: &std::io::Error) {
    let offence = match BadFrame::of(e) {
        Some(BadFrame::TooLarge { .. }) => Offence::OversizedFrame,
        Some(BadFrame::Malformed(_)) => Offence::MalformedFrame,
        None => return,
    };
    let _ = offences.try_send(Command::Offence { peer, offence });
}

/// What a node in the bad-frames test mode sends instead of request `id`:
/// by turns a length over any limit and bytes that do not decode.
fn bad_frame(id: u64) -> Vec<u8> {
    if id.is_multiple_of(2) {
        u32::MAX.to_be_bytes().to_vec()
    } else {
        let mut frame = 8u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0xff; 8]);
        frame
    }
}

/// Answers some of a peer's requests where they are read, without a task
/// of their own (it must not block): it gives back, with its reply, a
/// request it leaves to [`NetEvent::Request`].
pub type Direct = dyn Fn(PeerId, Request, Reply) -> Option<(Request, Reply)> + Send + Sync;

/// Where the [`Direct`] answerer is, once the node has set it.
type DirectSlot = Arc<RwLock<Option<Arc<Direct>>>>;

/// Our request streams to peers, and the tasks serving peers' streams.
pub(crate) struct Streams {
    control: libp2p_stream::Control,
    direct: DirectSlot,
    links: Mutex<HashMap<PeerId, Slot>>,
    tasks: Mutex<JoinSet<()>>,
    limits: Limits,
    offences: mpsc::Sender<Command>,
}

/// Where the stream to one peer is kept (locked while it is opened).
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// One open stream to a peer.
struct Link {
    /// The stream's write half: each caller writes its own frame (no task
    /// in between).
    writer: tokio::sync::Mutex<WriteHalf<Stream>>,
    /// The stream failed (its reader ended, or a write did not finish).
    closed: AtomicBool,
    window: Arc<Semaphore>,
    /// Who waits for which id.
    pending: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    next: AtomicU64,
    /// Why the reader ended, for the waiters it leaves unanswered.
    ended: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Streams {
    /// Accepts peers' streams (their requests go out on `events`) and opens
    /// ours through `control`. Call inside a tokio runtime.
    pub(crate) fn start(
        mut control: libp2p_stream::Control,
        limits: Limits,
        events: mpsc::Sender<NetEvent>,
        offences: mpsc::Sender<Command>,
    ) -> Result<Arc<Self>> {
        let incoming = control
            .accept(CALL_PROTOCOL)
            .map_err(|e| Error::Start(e.to_string()))?;
        let streams = Arc::new(Self {
            control,
            direct: DirectSlot::default(),
            links: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            limits,
            offences,
        });
        streams.spawn(accept(incoming, Arc::downgrade(&streams), events));
        Ok(streams)
    }

    /// Sets the answerer of requests that need no task of their own.
    pub(crate) fn answer_directly(&self, direct: Arc<Direct>) {
        *self.direct.write().unwrap_or_else(PoisonError::into_inner) = Some(direct);
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!("a stream task panicked: {e}");
            }
        }
        tasks.spawn(task);
    }

    /// Sends `request` to `peer` and waits for its answer.
    pub(crate) async fn request(&self, peer: PeerId, request: &Request) -> Result<Response> {
        let failed = |reason: String| Error::Request { peer, reason };
        let link = self.link(peer).await?;
        let Ok(_permit) = link.window.clone().try_acquire_owned() else {
            return Err(Error::WindowFull {
                peer,
                window: self.limits.window,
            });
        };
        let id = link.next.fetch_add(1, Ordering::Relaxed);
        let frame = if self.limits.bad_frames {
            bad_frame(id)
        } else {
            encode_frame(&(id, request), self.limits.max_request)
                .map_err(|e| failed(e.to_string()))?
        };
        let (tx, rx) = oneshot::channel();
        lock(&link.pending).insert(id, tx);
        let _waiting = Waiting { link: &link, id };
        {
            let mut writer = link.writer.lock().await;
            // A write cut off half way (its caller dropped) leaves the
            // stream unreadable: the link counts as closed until the write
            // is whole.
            let unfinished = Unfinished(&link.closed);
            if unfinished.was_closed() {
                return Err(failed("the stream closed".into()));
            }
            if let Err(e) = writer.write_all(&frame).await {
                return Err(failed(e.to_string()));
            }
            if let Err(e) = writer.flush().await {
                return Err(failed(e.to_string()));
            }
            unfinished.done();
        }
        // The reader may have ended meanwhile, after failing the waiters.
        if link.closed.load(Ordering::Acquire) {
            return Err(failed("the stream closed".into()));
        }
        match tokio::time::timeout(self.limits.timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(failed(match lock(&link.ended).as_deref() {
                Some(why) => format!("the stream closed before the answer: {why}"),
                None => "the stream closed before the answer".into(),
            })),
            Err(_) => Err(failed(format!("no answer in {:?}", self.limits.timeout))),
        }
    }

    /// The open stream to `peer`, opened (and the peer dialed) if needed.
    async fn link(&self, peer: PeerId) -> Result<Arc<Link>> {
        let slot = lock(&self.links).entry(peer).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref()
            && !link.closed.load(Ordering::Acquire)
        {
            return Ok(link.clone());
        }
        let mut control = self.control.clone();
        let opened = tokio::time::timeout(
            self.limits.timeout,
            control.open_stream(peer, CALL_PROTOCOL),
        )
        .await;
        let stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(Error::Request {
                    peer,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::Request {
                    peer,
                    reason: format!("no stream opened in {:?}", self.limits.timeout),
                });
            }
        };
        let (reader, writer) = stream.split();
        let link = Arc::new(Link {
            writer: tokio::sync::Mutex::new(writer),
            closed: AtomicBool::new(false),
            window: Arc::new(Semaphore::new(self.limits.window)),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            ended: Mutex::new(None),
        });
        self.spawn(read_answers(
            peer,
            reader,
            link.clone(),
            self.limits.max_response,
            self.offences.clone(),
        ));
        *slot = Some(link.clone());
        Ok(link)
    }
}

/// Forgets a request's waiter when its caller stops waiting (answered,
/// timed out, or dropped).
struct Waiting<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.link.pending).remove(&self.id);
    }
}

/// Marks a link closed unless [`Unfinished::done`] says its write ended.
struct Unfinished<'a>(&'a AtomicBool);

impl Unfinished<'_> {
    /// Whether the link was closed before this write.
    fn was_closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn done(self) {
        std::mem::forget(self);
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Hands each answer from `peer` to its waiter until the stream fails;
/// then the link is closed and every waiter left learns it.
async fn read_answers(
    peer: PeerId,
    mut reader: ReadHalf<Stream>,
    link: Arc<Link>,
    max_response: usize,
    offences: mpsc::Sender<Command>,
) {
    let mut buf = Vec::new();
    let ended = loop {
        let (id, response): (u64, Response) =
            match read_frame_into(&mut reader, &mut buf, max_response).await {
                Ok(frame) => frame,
                Err(e) => break e,
            };
        if let Some(waiter) = lock(&link.pending).remove(&id) {
            let _ = waiter.send(response);
        }
    };
    // An answer over this node's limit is not the answerer's offence: it
    // answered what was asked (a module larger than this node takes).
    if !matches!(BadFrame::of(&ended), Some(BadFrame::TooLarge { .. })) {
        report_frame(&offences, peer, &ended);
    }
    debug!(%peer, "request stream ended: {ended}");
    *lock(&link.ended) = Some(ended.to_string());
    // Closed first, so that a request written from now on sees it.
    link.closed.store(true, Ordering::Release);
    lock(&link.pending).clear();
}

/// Writes every queued answer in one write, then flushes; returns the
/// error that ends the stream. An answer's window slot is released once
/// it is written.
async fn write_answers(
    mut writer: impl AsyncWrite + Unpin,
    mut frames: mpsc::Receiver<Answer>,
) -> std::io::Error {
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    while let Some(frame) = frames.recv().await {
        batch.push(frame);
        let mut len = batch[0].frame.len();
        while len < BATCH
            && let Ok(frame) = frames.try_recv()
        {
            len += frame.frame.len();
            batch.push(frame);
        }
        buf.clear();
        for frame in &batch {
            buf.extend_from_slice(&frame.frame);
        }
        if let Err(e) = writer.write_all(&buf).await {
            return e;
        }
        if let Err(e) = writer.flush().await {
            return e;
        }
        batch.clear();
    }
    std::io::Error::other("no more frames")
}

/// An answer's frame and the window slot its request held.
struct Answer {
    frame: Vec<u8>,
    _slot: OwnedSemaphorePermit,
}

/// Serves each stream a peer opens to us, on its own task.
async fn accept(
    mut incoming: libp2p_stream::IncomingStreams,
    streams: Weak<Streams>,
    events: mpsc::Sender<NetEvent>,
) {
    while let Some((peer, stream)) = incoming.next().await {
        let Some(streams) = streams.upgrade() else {
            return;
        };
        let limits = streams.limits;
        let direct = streams.direct.clone();
        let offences = streams.offences.clone();
        streams.spawn(serve(
            peer,
            stream,
            events.clone(),
            direct,
            limits,
            offences,
        ));
    }
}

/// Reads a peer's requests (while fewer than the window are unanswered),
/// hands each to the node with a [`Reply`], and writes the answers back.
async fn serve(
    peer: PeerId,
    stream: Stream,
    events: mpsc::Sender<NetEvent>,
    direct: DirectSlot,
    limits: Limits,
    offences: mpsc::Sender<Command>,
) {
    let (mut reader, writer) = stream.split();
    // Each queued answer holds its window slot: at most `window` queue.
    let (out, frames) = mpsc::channel(limits.window);
    let window = Arc::new(Semaphore::new(limits.window));
    let requests = async {
        let mut buf = Vec::new();
        loop {
            let Ok(permit) = window.clone().acquire_owned().await else {
                return std::io::Error::other("closed");
            };
            let (id, request): (u64, Request) =
                match read_frame_into(&mut reader, &mut buf, limits.max_request).await {
                    Ok(frame) => frame,
                    Err(e) => return e,
                };
            let reply = Reply {
                id,
                out: out.clone(),
                max: limits.max_response,
                permit: Some(permit),
            };
            let answerer = direct
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let left = match answerer {
                Some(answer) => answer(peer, request, reply),
                None => Some((request, reply)),
            };
            let Some((request, reply)) = left else {
                continue;
            };
            if let Err(e) = events.try_send(NetEvent::Request {
                peer,
                request,
                reply,
            }) {
                let (reply, answer) = match e {
                    mpsc::error::TrySendError::Full(NetEvent::Request { reply, .. }) => {
                        (reply, Response::Busy)
                    }
                    mpsc::error::TrySendError::Closed(NetEvent::Request { reply, .. }) => {
                        (reply, Response::NotHosted)
                    }
                    _ => continue,
                };
                reply.send(answer);
            }
        }
    };
    let ended = match select(Box::pin(requests), Box::pin(write_answers(writer, frames))).await {
        Either::Left((e, _)) | Either::Right((e, _)) => e,
    };
    report_frame(&offences, peer, &ended);
    debug!(%peer, "peer's request stream ended: {ended}");
}

/// The way back to a peer that asked: [`Reply::send`] answers, once. A
/// reply dropped unanswered answers [`Response::Refused`], so the asker
/// never waits for nothing. It holds one of the stream's window slots
/// until then.
#[derive(Debug)]
pub struct Reply {
    id: u64,
    out: mpsc::Sender<Answer>,
    max: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Reply {
    /// Answers the request; `false` if the asker's stream is gone.
    pub fn send(mut self, response: Response) -> bool {
        self.answer(&response)
    }

    fn answer(&mut self, response: &Response) -> bool {
        let Some(permit) = self.permit.take() else {
            return false;
        };
        let frame = encode_frame(&(self.id, response), self.max).or_else(|e| {
            let refused = Response::Refused(format!("the answer cannot be sent: {e}"));
            encode_frame(&(self.id, &refused), self.max)
        });
        frame.is_ok_and(|frame| {
            self.out
                .try_send(Answer {
                    frame,
                    _slot: permit,
                })
                .is_ok()
        })
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.answer(&Response::Refused(
                "the request was dropped unanswered".into(),
            ));
        }
    }
}
