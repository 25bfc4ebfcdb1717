//! Components: WASI 0.2 `wasi:cli/run` commands, run with a module's guarantees.
//!
//! A component's `main` reads stdin and writes stdout, as a module's
//! `_start` does, and it sees the same world: the call's context is built
//! once for both kinds ([`crate::determinism::Wasi`]) and handed to
//! wasmtime-wasi's WASI 0.2 host. What this module links, and nothing else:
//!
//! - `wasi:cli`: environment (no variables; one argument, as a module
//!   gets), exit, stdin, stdout, stderr, and the terminal interfaces
//!   (nothing is a terminal);
//! - `wasi:clocks`: the wall clock fixed at the call's timestamp and the
//!   counting monotonic clock; a subscription that would sleep traps, as a
//!   module's `poll_oneoff` is refused (a sleep holds an executor thread
//!   outside of epoch interruption and its length is real time);
//! - `wasi:random`: the generators seeded by the call;
//! - `wasi:io`: error, poll, streams;
//! - `wasi:filesystem`: types and preopens, with no preopened directory,
//!   so the guest sees no file (what a module sees);
//! - `wasi:sockets`: every interface, every use refused (creating a TCP or
//!   UDP socket answers `access-denied`, a name lookup fails): functions
//!   have no network, but a guest whose libc imports sockets (CPython's, as
//!   componentize-py builds it) links and runs.
//!
//! A `wasi:http/proxy` component (it exports `wasi:http/incoming-handler`)
//! also gets `wasi:http/types` and `wasi:http/outgoing-handler`, whose
//! every request is denied ([`crate::http`]); a command may not import
//! them. A component that imports anything else Orb does not provide, or
//! that exports neither entry point, is refused with a reason before it is
//! stored ([`inspect`], [`prepare`]).
//!
//! The runtime calls this module; it never runs a call itself.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::FunctionId;
use crate::abi::{ExportInfo, FunctionKind, ImportInfo, ModuleInfo};
use crate::http::Denied;
use crate::runtime::State;

/// The WASI 0.2 state of one component call: the context and the table of
/// the resources (streams, pollables) the guest holds.
pub(crate) struct WasiP2 {
    ctx: WasiCtx,
    table: ResourceTable,
    /// Used by `wasi:http/proxy` components only.
    http: WasiHttpCtx,
    hooks: Denied,
}

impl WasiP2 {
    pub(crate) fn new(ctx: WasiCtx) -> Self {
        Self {
            ctx,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: Denied,
        }
    }
}

impl WasiHttpView for State<WasiP2> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.wasi.http,
            table: &mut self.wasi.table,
            hooks: &mut self.wasi.hooks,
        }
    }
}

impl WasiView for State<WasiP2> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

/// The store type of a component call.
pub(crate) type ComponentState = State<WasiP2>;

/// The interfaces Orb provides, without their versions: any WASI 0.2
/// version of each resolves to wasmtime-wasi's (semver-compatible names).
const PROVIDED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// What a `wasi:http/proxy` component may import beside [`PROVIDED`]
/// (outbound requests are linked and denied, see [`crate::http`]).
const PROVIDED_HTTP: &[&str] = &["wasi:http/types", "wasi:http/outgoing-handler"];

/// The export a runnable component has, without its version.
const RUN: &str = "wasi:cli/run";
/// The export of a `wasi:http/proxy` component, without its version.
const HTTP_HANDLER: &str = "wasi:http/incoming-handler";

/// A component-model name split at its version: `wasi:cli/run@0.2.0` is
/// `("wasi:cli/run", Some("0.2.0"))`.
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

/// Whether `version` is a WASI 0.2 release (`0.2.x`, no pre-release):
/// what wasmtime-wasi's 0.2 host answers to.
fn is_wasi_p2(version: Option<&str>) -> bool {
    version
        .and_then(|v| v.strip_prefix("0.2."))
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether Orb's linker provides the import `name` to a command.
fn provided(name: &str) -> bool {
    let (base, version) = split_version(name);
    PROVIDED.contains(&base) && is_wasi_p2(version)
}

/// Whether Orb's linker provides the import `name` to an http proxy.
fn provided_http(name: &str) -> bool {
    let (base, version) = split_version(name);
    provided(name) || (PROVIDED_HTTP.contains(&base) && is_wasi_p2(version))
}

/// Builds the linker of component calls: the interfaces in [`PROVIDED`].
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentState>> {
    type T = ComponentState;
    let mut linker = Linker::<T>::new(engine);
    let l = &mut linker;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, Sleepless>(l, |t| SleeplessClock(t.clocks()))?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    sync::io::error::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    sync::io::poll::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    sync::io::streams::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sync::sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sync::sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sync::sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(l)?;
    Ok(linker)
}

/// `wasi:io` is implemented on the resource table itself.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// wasmtime-wasi's monotonic clock, except that it never sleeps.
struct Sleepless;

impl HasData for Sleepless {
    type Data<'a> = SleeplessClock<'a>;
}

struct SleeplessClock<'a>(WasiClocksCtxView<'a>);

/// A guest asked to be woken `nanos` from now.
fn sleep_refused(nanos: u64) -> wasmtime::Error {
    wasmtime::format_err!(
        "sleeping is not supported: a function may not wait (it asked the monotonic clock to wake it in {nanos} ns)"
    )
}

impl clocks::monotonic_clock::Host for SleeplessClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        clocks::monotonic_clock::Host::now(&mut self.0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        clocks::monotonic_clock::Host::resolution(&mut self.0)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now = clocks::monotonic_clock::Host::now(&mut self.0)?;
        if when > now {
            return Err(sleep_refused(when - now));
        }
        clocks::monotonic_clock::Host::subscribe_duration(&mut self.0, 0)
    }

    /// A zero duration is a poll that does not wait (wasi-libc's `poll`
    /// with a zero timeout): ready at once. Anything longer would sleep.
    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        if duration > 0 {
            return Err(sleep_refused(duration));
        }
        clocks::monotonic_clock::Host::subscribe_duration(&mut self.0, 0)
    }
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// Describes `component` and checks its world and imports (what can be
/// told from its type; [`prepare`] has the final word).
pub(crate) fn inspect(
    id: FunctionId,
    size: usize,
    component: &Component,
    engine: &Engine,
) -> ModuleInfo {
    let ty = component.component_type();
    let exports: Vec<ExportInfo> = ty
        .exports(engine)
        .map(|(name, item)| ExportInfo {
            name: name.to_owned(),
            kind: kind(&item.ty),
        })
        .collect();
    let world = world(&exports);
    let provides = if world == Some(PROXY) {
        provided_http
    } else {
        provided
    };
    let imports: Vec<ImportInfo> = ty
        .imports(engine)
        .map(|(name, item)| ImportInfo {
            module: String::new(),
            name: name.to_owned(),
            kind: kind(&item.ty),
            provided: provides(name),
        })
        .collect();
    let unsupported = verdict(world, &imports, &exports);
    ModuleInfo {
        id,
        kind: FunctionKind::Component,
        world: world.map(str::to_owned),
        size,
        imports,
        exports,
        unsupported,
    }
}

/// The world Orb recognizes in a component's exports.
fn world(exports: &[ExportInfo]) -> Option<&'static str> {
    let exported = |wanted: &str| exports.iter().any(|e| split_version(&e.name).0 == wanted);
    if exported(RUN) {
        Some("wasi:cli/command")
    } else if exported(HTTP_HANDLER) {
        Some(PROXY)
    } else {
        None
    }
}

/// The world of http components.
pub(crate) const PROXY: &str = "wasi:http/proxy";

const RUNNABLE: &str = "Orb runs components that export `wasi:cli/run` (a `main` that reads stdin and writes stdout) or `wasi:http/incoming-handler` (a `wasi:http/proxy`)";

fn verdict(world: Option<&str>, imports: &[ImportInfo], exports: &[ExportInfo]) -> Option<String> {
    let entry = match world {
        Some("wasi:cli/command") => RUN,
        Some(PROXY) => HTTP_HANDLER,
        _ => {
            let names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
            let exported = if names.is_empty() {
                "nothing".to_owned()
            } else {
                names.join(", ")
            };
            return Some(format!(
                "unknown world: {RUNNABLE}; this one exports {exported}"
            ));
        }
    };
    if let Some(export) = exports
        .iter()
        .find(|e| split_version(&e.name).0 == entry)
        .filter(|e| !is_wasi_p2(split_version(&e.name).1))
    {
        return Some(format!(
            "export `{}` is not WASI 0.2's: Orb runs `{entry}@0.2.x` components",
            export.name
        ));
    }
    let missing = imports.iter().find(|i| !i.provided)?;
    let name = &missing.name;
    let (base, _) = split_version(name);
    let why = if base.starts_with("wasi:http/") {
        "a command may not use wasi:http (a `wasi:http/proxy` component serves requests; outbound ones are denied)".to_owned()
    } else if PROVIDED.contains(&base) {
        "Orb offers the WASI 0.2 (`@0.2.x`) version of this interface".to_owned()
    } else {
        "Orb offers only WASI 0.2's cli, clocks, random, io, filesystem (with no files) and sockets (every use refused) interfaces"
            .to_owned()
    };
    Some(format!(
        "import `{name}` ({}) is not provided: {why}",
        missing.kind
    ))
}

/// A component, pre-instantiated for its world.
#[derive(Clone)]
pub(crate) enum Prepared {
    Command(CommandPre<ComponentState>),
    Proxy(ProxyPre<ComponentState>),
}

/// Resolves a component's imports against `linker` and finds its entry
/// point (`wasi:cli/run`, or `wasi:http/incoming-handler` when `proxy`):
/// the pre-instantiated component, or why not.
pub(crate) fn prepare(
    linker: &Linker<ComponentState>,
    component: &Component,
    proxy: bool,
) -> Result<Prepared, String> {
    let one_line = |e: wasmtime::Error| {
        format!("{e:#}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pre = linker.instantiate_pre(component).map_err(one_line)?;
    if proxy {
        ProxyPre::new(pre).map(Prepared::Proxy).map_err(one_line)
    } else {
        CommandPre::new(pre)
            .map(Prepared::Command)
            .map_err(one_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_wasi_0_2_are_provided_others_are_not() {
        assert!(provided("wasi:cli/stdin@0.2.0"));
        assert!(provided("wasi:io/streams@0.2.12"));
        assert!(!provided("wasi:io/streams@0.3.0"));
        assert!(!provided("wasi:io/streams@0.2.0-rc-2023-11-10"));
        assert!(!provided("wasi:io/streams"));
        assert!(provided("wasi:sockets/tcp@0.2.0"));
        assert!(!provided("wasi:sockets/tcp@0.3.0"));
        assert!(!provided("wasi:http/outgoing-handler@0.2.0"));
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let export = |name: &str| ExportInfo {
            name: name.into(),
            kind: "instance",
        };
        let import = |name: &str| ImportInfo {
            module: String::new(),
            name: name.into(),
            kind: "instance",
            provided: provided(name),
        };
        let http = [export("wasi:http/incoming-handler@0.2.0")];
        let outbound = ImportInfo {
            provided: provided_http("wasi:http/outgoing-handler@0.2.4"),
            ..import("wasi:http/outgoing-handler@0.2.4")
        };
        assert_eq!(verdict(world(&http), &[outbound], &http), None);
        let old = [export("wasi:http/incoming-handler@0.3.0")];
        let why = verdict(world(&old), &[], &old).unwrap_or_default();
        assert!(why.contains("not WASI 0.2's"), "{why}");

        let why = verdict(world(&[]), &[], &[]).unwrap_or_default();
        assert!(
            why.contains("unknown world") && why.contains("exports nothing"),
            "{why}"
        );

        let run = [export("wasi:cli/run@0.2.0")];
        assert_eq!(
            verdict(world(&run), &[import("wasi:cli/stdin@0.2.6")], &run),
            None
        );
        assert_eq!(
            verdict(world(&run), &[import("wasi:sockets/tcp@0.2.0")], &run),
            None
        );
        let why =
            verdict(world(&run), &[import("wasi:http/types@0.2.0")], &run).unwrap_or_default();
        assert!(why.contains("a command may not use wasi:http"), "{why}");
        let why = verdict(world(&run), &[import("acme:db/query@1.0.0")], &run).unwrap_or_default();
        assert!(why.contains("`acme:db/query@1.0.0`"), "{why}");

        let p3 = [export("wasi:cli/run@0.3.0")];
        let why = verdict(world(&p3), &[], &p3).unwrap_or_default();
        assert!(why.contains("not WASI 0.2's"), "{why}");
    }
}
