//! A pipeline's `call` operator calling a function deployed on the network:
//! each record becomes `POST /fn/{name}?replicas=R` on a node, which
//! schedules, replicates, reroutes and settles it like any other call; or,
//! as a pipeline's sink, a message to an agent (`POST /agent/{module}/{id}`
//! with the record's message id, so that it is applied once); and a topic
//! read into a pipeline's source.
//!
//! The operator must never block its worker, so the HTTP requests run on a
//! few threads of their own behind a bounded queue; a full queue answers
//! "saturated" and the operator asks again a moment later (backpressure).

use std::sync::Arc;
use std::time::Duration;

use orb_engine::{CallFailure, CallResult, Invoker, OnDone, Saturated, SourceHandle};
use orb_pipelines::chat::{Line, ToAgent};

use crate::exit::CliError;

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
        let mut url = format!("{}/fn/{function}", base.trim_end_matches('/'));
        if let Some(r) = replicas {
            url.push_str(&format!("?replicas={r}"));
        }
        Self::with(threads, move |agent, input| post(agent, &url, input))
    }

    /// Sends each record, a [`ToAgent`] as JSON, to its agent through the
    /// node at `base`: the reply is the output. A busy or unreachable
    /// agent is asked again with the same message id (5 times at most).
    pub(crate) fn to_agents(base: &str, threads: usize) -> Arc<dyn Invoker> {
        let base = base.trim_end_matches('/').to_owned();
        Self::with(threads, move |agent, input| {
            let m: ToAgent = serde_json::from_slice(input).map_err(|e| CallFailure {
                kind: "bad_record".into(),
                message: format!("not a message for an agent: {e}"),
                fuel: None,
            })?;
            let url = format!("{base}/agent/{}?message_id={}", m.agent, m.id);
            let mut last = None;
            for attempt in 0..5u32 {
                match post(agent, &url, m.message.as_bytes()) {
                    Err(f) if matches!(f.kind.as_str(), "network" | "http_502" | "http_503") => {
                        last = Some(f);
                        std::thread::sleep(Duration::from_millis(100 << attempt));
                    }
                    done => return done,
                }
            }
            Err(last.unwrap_or_else(|| CallFailure {
                kind: "network".into(),
                message: format!("{url}: no answer"),
                fuel: None,
            }))
        })
    }

    /// `threads` threads each taking a job and answering it with `call`.
    fn with(
        threads: usize,
        call: impl Fn(&ureq::Agent, &[u8]) -> CallResult + Send + Sync + 'static,
    ) -> Arc<dyn Invoker> {
        let (queue, jobs) = flume::bounded::<Job>(threads);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let call = Arc::new(call);
        for i in 0..threads.max(1) {
            let (jobs, agent, call) = (jobs.clone(), agent.clone(), call.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("orb-remote-call-{i}"))
                .spawn(move || {
                    // Ends when the invoker (the only sender) is dropped.
                    while let Ok(job) = jobs.recv() {
                        (job.done)(call(&agent, &job.input));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start a remote-call thread: {e}");
            }
        }
        Arc::new(Self { queue })
    }
}

/// Feeds `feed` with `topic`'s publications read through the node at
/// `base` (after `after`), `count` of them at most, then closes it by
/// dropping it. Blocks while the pipeline lags (its channel is full), so
/// the topic is read only as fast as the pipeline takes it.
pub(crate) fn read_topic(
    base: &str,
    topic: &str,
    after: Option<&str>,
    count: Option<u64>,
    feed: SourceHandle<Line>,
) -> Result<(), CliError> {
    if count == Some(0) {
        return Ok(());
    }
    let mut seen = 0;
    crate::topic::follow(base, topic, after, |p| {
        let line = Line {
            seq: p["seq"].as_u64().unwrap_or(0),
            index: p["index"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(0),
            text: p["message"]["text"].as_str().unwrap_or_default().to_owned(),
        };
        seen += 1;
        feed.send(line).is_ok() && count.is_none_or(|n| seen < n)
    })
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
