//! A pipeline's `call` operator calling a function deployed on the network:
//! each record becomes `POST /fn/{name}?replicas=R` on a node, which
//! schedules, replicates, reroutes and settles it like any other call.
//!
//! The operator must never block its worker, so the HTTP requests run on a
//! few threads of their own behind a bounded queue; a full queue answers
//! "saturated" and the operator asks again a moment later (backpressure).

use std::sync::Arc;
use std::time::Duration;

use orb_engine::{CallFailure, CallResult, Invoker, OnDone, Saturated};

struct Job {
    input: Vec<u8>,
    done: OnDone,
}

/// Calls `function` through the node at `base`.
pub(crate) struct NodeInvoker {
    queue: flume::Sender<Job>,
}

impl NodeInvoker {
    /// `threads` requests in flight at most; `replicas` per call (`None`:
    /// the node's default).
    pub(crate) fn start(
        base: &str,
        function: &str,
        replicas: Option<u32>,
        threads: usize,
    ) -> Arc<dyn Invoker> {
        let (queue, jobs) = flume::bounded::<Job>(threads);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut url = format!("{}/fn/{function}", base.trim_end_matches('/'));
        if let Some(r) = replicas {
            url.push_str(&format!("?replicas={r}"));
        }
        for i in 0..threads.max(1) {
            let (jobs, agent, url) = (jobs.clone(), agent.clone(), url.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("orb-remote-call-{i}"))
                .spawn(move || {
                    // Ends when the invoker (the only sender) is dropped.
                    while let Ok(job) = jobs.recv() {
                        (job.done)(post(&agent, &url, &job.input));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start a remote-call thread: {e}");
            }
        }
        Arc::new(Self { queue })
    }
}

impl Invoker for NodeInvoker {
    fn invoke(&self, input: Vec<u8>, done: OnDone) -> Result<(), Saturated> {
        self.queue
            .try_send(Job { input, done })
            .map_err(|_| Saturated)
    }
}

/// One call: the output and fuel, or the node's error as a failure record.
fn post(agent: &ureq::Agent, url: &str, input: &[u8]) -> CallResult {
    let failure = |kind: &str, message: String, fuel: Option<u64>| CallFailure {
        kind: kind.to_owned(),
        message,
        fuel,
    };
    let mut response = agent
        .post(url)
        .send(input)
        .map_err(|e| failure("network", format!("cannot reach {url}: {e}"), None))?;
    let status = response.status().as_u16();
    let fuel = response
        .headers()
        .get("x-orb-fuel")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| failure("network", format!("reading the answer: {e}"), None))?;
    if status < 300 {
        return Ok((body, fuel.unwrap_or(0)));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let message = value["error"].as_str().map_or_else(
        || String::from_utf8_lossy(&body).into_owned(),
        str::to_owned,
    );
    let kind = match status {
        422 => value["kind"].as_str().unwrap_or("guest").to_owned(),
        _ => format!("http_{status}"),
    };
    Err(failure(&kind, message, value["fuel"].as_u64()))
}
