//! `orb run`: run a function locally, as a node would, and print its output.
//!
//! The function, a module or a component (its bytes say which), goes
//! through the same module store a node uses (compiled once, the artifact
//! kept under the data dir), then one call runs with the given limits.
//! Output bytes go to stdout untouched; `--json` prints them with fuel,
//! duration and function id instead. A `wasi:http/proxy` component takes a
//! request built from `--method`, `--path`, `--header` and the input (its
//! body), and its response is printed as a status line, headers and body.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use orb_functions::{
    CallOptions, Error as FnError, HttpRequest, HttpResponse, Limits, ModuleStore, Runtime,
    RuntimeConfig, Seed,
};
use serde_json::json;

use crate::exit::{CliError, code_of};
use crate::function::read_module;

pub(crate) const AFTER_HELP: &str = "\
Input comes from --input, --input-file, or stdin when neither is given.
The function is a WASI preview-1 command module (wasm32-wasip1) or a WASI 0.2
wasi:cli/run or wasi:http/proxy component (wasm32-wasip2); its bytes say which. The guest sees no
files, sockets or environment; its clocks read the call's time and its random
numbers come from --seed, so the same function, input and seed always give the
same output and fuel.

Examples:
  orb run wordcount.wasm --input 'to be or not to be'
  orb run components/wordcount.wasm --input 'to be or not to be'
  echo 30 | orb run fib.wasm --json
  orb run components/router.wasm --path '/hello?name=orb'
  orb run components/router.wasm --method POST --path /sum --input '[1,2,3]' --json
  orb run spin.wasm --fuel 1000000            # stops: out of fuel
  orb run spin.wasm --fuel 0 --timeout-ms 200 # stops: timeout";

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The function file (.wasm): a WASI preview-1 command module or a
    /// `wasi:cli/run` component.
    module: PathBuf,
    /// The input, as text.
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from this file.
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// Fuel limit (about one unit per WebAssembly instruction); 0 means the
    /// largest allowed.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Wall-clock limit in milliseconds.
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Linear memory limit in MiB.
    #[arg(long, value_name = "N")]
    memory_mb: Option<usize>,
    /// Output limit in KiB.
    #[arg(long, value_name = "N")]
    output_kb: Option<usize>,
    /// Seed for the guest's random numbers (any text; default: derived from
    /// the function id and the input).
    #[arg(long)]
    seed: Option<String>,
    #[command(flatten)]
    http: HttpArgs,
    /// Print a JSON object (output, fuel, duration, function id) instead of raw output.
    #[arg(long, conflicts_with = "stats")]
    json: bool,
    /// After the output, print fuel, duration and function id on stderr.
    #[arg(long)]
    stats: bool,
}

fn read_input(args: &RunArgs) -> Result<Vec<u8>, CliError> {
    if let Some(text) = &args.input {
        return Ok(text.clone().into_bytes());
    }
    if let Some(path) = &args.input_file {
        return std::fs::read(path)
            .with_context(|| format!("cannot read input file `{}`", path.display()))
            .map_err(CliError::usage);
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut buf = Vec::new();
    stdin
        .read_to_end(&mut buf)
        .context("cannot read input from stdin")
        .map_err(CliError::usage)?;
    Ok(buf)
}

fn limits(args: &RunArgs, config: &RuntimeConfig) -> Limits {
    let mut limits = config.default_limits.clone();
    if let Some(fuel) = args.fuel {
        limits.fuel = if fuel == 0 { config.max_fuel } else { fuel };
    }
    if let Some(ms) = args.timeout_ms {
        limits.timeout = Duration::from_millis(ms);
    }
    if let Some(mb) = args.memory_mb {
        limits.memory_bytes = mb.saturating_mul(1 << 20);
    }
    if let Some(kb) = args.output_kb {
        limits.output_bytes = kb.saturating_mul(1 << 10);
    }
    limits
}

pub(crate) fn run(args: RunArgs, data_dir: &Path) -> Result<(), CliError> {
    let bytes = read_module(&args.module)?;
    let input = read_input(&args)?;
    let config = RuntimeConfig {
        executor_threads: 1,
        ..RuntimeConfig::default()
    };
    let limits = limits(&args, &config);
    let runtime = Runtime::new(config)?;
    runtime.check_limits(&limits)?;
    let store = ModuleStore::open(data_dir.join("functions"))?;
    let function = store
        .put_and_load(&runtime, &bytes)
        .map_err(|e| with_path(e, &args.module))?;
    let seed = match &args.seed {
        Some(text) => Seed::derive(text.as_bytes()),
        None => Seed::derive(&[function.id().as_bytes().as_slice(), &input].concat()),
    };
    let opts = CallOptions {
        limits,
        seed,
        ..CallOptions::default()
    };
    if args.http.given() && !function.serves_http() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--method, --path and --header are for wasi:http/proxy components; `{}` takes a raw input",
            args.module.display()
        )));
    }
    let input = if function.serves_http() {
        args.http.request(input)?.encode()
    } else {
        input
    };
    let result = runtime.call(&function, &input, &opts);
    let response = result
        .as_ref()
        .ok()
        .and_then(|o| HttpResponse::decode(&o.output));
    if args.json {
        let value = match (&result, &response) {
            (Ok(o), Some(r)) => json!({
                "function": function.id(),
                "ok": true,
                "status": r.status,
                "headers": headers_json(r),
                "body": String::from_utf8_lossy(&r.body),
                "fuel": o.fuel,
                "duration_us": o.duration.as_micros() as u64,
                "log": String::from_utf8_lossy(&o.log),
            }),
            (Ok(o), None) => json!({
                "function": function.id(),
                "ok": true,
                "output": String::from_utf8_lossy(&o.output),
                "output_bytes": o.output.len(),
                "fuel": o.fuel,
                "duration_us": o.duration.as_micros() as u64,
                "log": String::from_utf8_lossy(&o.log),
            }),
            (Err(e), _) => json!({
                "function": function.id(),
                "ok": false,
                "error": { "kind": e.kind(), "message": e.to_string(), "fuel": e.fuel() },
            }),
        };
        outln!("{value}");
        return match result {
            Ok(_) => Ok(()),
            // The JSON already says what happened; exit with the right code, quietly.
            Err(e) => Err(CliError {
                code: code_of(&e),
                error: anyhow::anyhow!("{}", e.kind()),
            }),
        };
    }
    let outcome = result?;
    let printed = match &response {
        Some(r) => print_response(r),
        None => outcome.output.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(&printed).and_then(|()| stdout.flush()) {
        crate::exit::stdout_failed(e);
    }
    if args.stats {
        eprintln!(
            "fuel={} duration_us={} function={}",
            outcome.fuel,
            outcome.duration.as_micros(),
            function.id()
        );
    }
    Ok(())
}

/// The request flags of a wasi:http function (`orb run`, `orb invoke`).
#[derive(Args, Debug, Default)]
pub(crate) struct HttpArgs {
    /// The HTTP method of a wasi:http function's request (default: GET, or
    /// POST when there is an input).
    #[arg(long)]
    pub(crate) method: Option<String>,
    /// The path and query of a wasi:http function's request (default: `/`).
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// A header of a wasi:http function's request, `NAME:VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub(crate) headers: Vec<String>,
}

impl HttpArgs {
    /// Whether any was given.
    pub(crate) fn given(&self) -> bool {
        self.method.is_some() || self.path.is_some() || !self.headers.is_empty()
    }

    /// The request they describe, `body` its body.
    pub(crate) fn request(&self, body: Vec<u8>) -> Result<HttpRequest, CliError> {
        let mut headers = Vec::new();
        for header in &self.headers {
            let Some((name, value)) = header.split_once(':') else {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--header `{header}`: expected NAME:VALUE"
                )));
            };
            let name = name.trim();
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--header `{header}`: `{name}` is not a header name"
                )));
            }
            headers.push((name.to_owned(), value.trim().as_bytes().to_vec()));
        }
        let method = match &self.method {
            Some(m) => m.to_uppercase(),
            None if body.is_empty() => "GET".into(),
            None => "POST".into(),
        };
        if axum::http::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(CliError::usage(anyhow::anyhow!(
                "--method `{method}` is not an HTTP method"
            )));
        }
        let path_and_query = self.path.clone().unwrap_or_else(|| "/".into());
        if !path_and_query.starts_with('/') {
            return Err(CliError::usage(anyhow::anyhow!(
                "--path `{path_and_query}`: a path starts with `/`"
            )));
        }
        Ok(HttpRequest {
            method,
            path_and_query,
            headers,
            body,
        })
    }
}

/// A response's headers as `orb run --json` and `orb invoke --json` print
/// them: `[name, value]` pairs in the response's order.
pub(crate) fn headers_json(r: &HttpResponse) -> Vec<(String, String)> {
    r.headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// A response as `orb run` and `orb invoke` print it: the status line,
/// the headers, a blank line and the body.
pub(crate) fn print_response(r: &HttpResponse) -> Vec<u8> {
    let mut text = format!("HTTP {}\n", r.status).into_bytes();
    for (name, value) in &r.headers {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value);
        text.push(b'\n');
    }
    text.push(b'\n');
    text.extend_from_slice(&r.body);
    text
}

fn with_path(e: FnError, path: &Path) -> CliError {
    let code = code_of(&e);
    CliError {
        code,
        error: anyhow::Error::new(e).context(format!("`{}`", path.display())),
    }
}
