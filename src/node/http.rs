//! The HTTP server of the node's API: an accept loop and one task per
//! connection, all in the node's [`Tasks`](super::tasks::Tasks), serving
//! the [`api`](super::api) router over hyper's HTTP/1.
//!
//! It is axum's `serve` with the tasks owned by the node: at most
//! [`MAX_CONNECTIONS`] connections are open at once (more wait in the
//! listen backlog); on cancellation the loop stops accepting and each
//! connection finishes the request it is answering, then closes (an idle
//! keep-alive connection closes at once). The shutdown's drain waits for
//! them, and aborts them past its deadline.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::throttle::Throttle;
use super::{Node, api};

/// Most API connections open at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// How long the loop waits after a failed accept (out of file descriptors,
/// say) before trying again, so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the API on `listener` until the node is cancelled.
pub(crate) async fn serve(node: Arc<Node>, listener: TcpListener, limits: Limits) {
    let Limits {
        header_timeout,
        per_client,
    } = limits;
    let clients = Clients::new(per_client);
    let mut refused_said = Throttle::default();
    let router = api::router(node.clone());
    let cancel = node.tasks.token().clone();
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut full_said = Throttle::default();
    let mut accept_said = Throttle::default();
    loop {
        let permit = match open.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: new connections wait in the listen backlog until
                // one closes. Said at most once a minute.
                if full_said.due() {
                    warn!(
                        limit = MAX_CONNECTIONS,
                        "API: connection limit reached; new connections wait until one closes"
                    );
                }
                let Some(Ok(permit)) = cancel
                    .run_until_cancelled(open.clone().acquire_owned())
                    .await
                else {
                    break;
                };
                permit
            }
        };
        if cancel.is_cancelled() {
            break;
        }
        let Some(accepted) = cancel.run_until_cancelled(listener.accept()).await else {
            break;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: said once a minute, not
                // at every retry.
                if accept_said.due() {
                    warn!(
                        "API: cannot accept a connection: {e} (retrying; idle connections are cut after the header timeout)"
                    );
                }
                if cancel
                    .run_until_cancelled(tokio::time::sleep(ACCEPT_BACKOFF))
                    .await
                    .is_none()
                {
                    break;
                }
                continue;
            }
        };
        // An answer leaves as soon as it is written, not after the
        // client's delayed ack (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "API connection: no TCP_NODELAY: {e}");
        }
        let Some(client) = clients.enter(peer.ip()) else {
            // Closed at once: one client does not take every slot.
            if refused_said.due() {
                warn!(
                    client = %peer.ip(),
                    limit = per_client,
                    "API: a client is at its connection limit; its new connections are closed"
                );
            }
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let cancel = cancel.clone();
        node.tasks.spawn(async move {
            let _client = client;
            let mut builder = http1::Builder::new();
            // The timer makes hyper's header read timeout apply: a client
            // that never finishes its headers does not hold a slot.
            builder.timer(TokioTimer::new());
            builder.header_read_timeout(header_timeout);
            let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let mut closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            debug!(%peer, "API connection: {e}");
                        }
                        break;
                    }
                    () = cancel.cancelled(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(permit);
        });
    }
}

/// The API's limits on its clients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// A request's headers must arrive within this long.
    pub(crate) header_timeout: Duration,
    /// Connections one client address may hold at once.
    pub(crate) per_client: usize,
}

/// Open connections per client address.
#[derive(Clone)]
struct Clients {
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    limit: usize,
}

/// One open connection of a client; closing it frees its place.
struct ClientSlot {
    clients: Clients,
    ip: std::net::IpAddr,
}

impl Clients {
    fn new(limit: usize) -> Self {
        Self {
            open: Arc::default(),
            limit,
        }
    }

    /// A place for one more connection of `ip`, unless it holds its limit.
    fn enter(&self, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .clients
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
