//! What peers send the node: requests and announcements, from `orb-net`'s
//! bounded event channel. (A peer's call does not come this way: it goes
//! to the executor from where its stream is read, see
//! [`host::answer_invoke_now`]; the executor's bounded queue answers
//! "busy" when full.)
//!
//! One task reads the channel until the node is cancelled. Announcements
//! are fed in order, on that task, to the routing dataflow, the scaler or
//! the ledger ([`host::learn`]). Each request runs on its own task in the
//! node's set, at most [`NodeConfig::max_inbound_requests`] at once: past
//! that a peer is answered "busy" at once, as `orb-net` answers when the
//! channel itself is full, and its scheduler moves on to another provider
//! instead of queueing here without bound. Requests in flight when the node
//! is cancelled finish (the shutdown's drain waits for them); those still
//! in the channel are dropped, and their peers see the request fail.
//!
//! [`NodeConfig::max_inbound_requests`]: super::NodeConfig::max_inbound_requests

use std::sync::Arc;

use orb_net::{NetEvent, PeerId, Reply, Request, Response};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use super::{Node, host};

/// Reads peers' requests and announcements until the node is cancelled;
/// `limit` requests run at once.
pub(crate) async fn serve(node: Arc<Node>, mut events: mpsc::Receiver<NetEvent>, limit: usize) {
    let permits = Arc::new(Semaphore::new(limit));
    let cancel = node.tasks.token().clone();
    while let Some(Some(event)) = cancel.run_until_cancelled(events.recv()).await {
        match event {
            NetEvent::Request {
                peer,
                request,
                reply: channel,
            } => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let task_node = node.clone();
                    node.tasks.spawn(async move {
                        answer(&task_node, peer, request, channel).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    debug!(%peer, limit, "requests in flight at the limit: busy");
                    channel.send(Response::Busy);
                }
            },
            NetEvent::Announcement { peer, announcement } => {
                let learnt = host::learn(&node, peer, announcement);
                if cancel.run_until_cancelled(learnt).await.is_none() {
                    break;
                }
            }
        }
    }
}

/// Answers one request: the ledger's go to consensus, the rest to hosting.
async fn answer(node: &Node, peer: PeerId, request: Request, channel: Reply) {
    if request.is_ledger() {
        match &node.ledger {
            Some(l) => l.request(peer, request, channel).await,
            None => {
                let no = Response::Refused("this node keeps no ledger".into());
                channel.send(no);
            }
        }
        return;
    }
    let response = match request {
        Request::Calls { function, after } => {
            let (records, last) = node.ran.after(&function, after);
            Response::Calls { records, last }
        }
        request if request.is_agent() => super::agents::answer(node, peer, request).await,
        request => node.host.answer(node, peer, request).await,
    };
    node.host.deliver(channel, response);
}
