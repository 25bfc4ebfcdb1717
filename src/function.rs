//! `orb fn`: look at a function without running it (its id, its kind, its
//! interface, whether Orb can run it), a module or a component alike.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use orb_functions::{FunctionId, FunctionKind, Runtime, RuntimeConfig};

use crate::exit::CliError;

#[derive(Subcommand, Debug)]
pub(crate) enum FnCommand {
    /// Print a function's id: the blake3 hash of its bytes, in hex.
    Id {
        /// The module or component file (.wasm).
        module: PathBuf,
    },
    /// Show a function's kind, imports and exports and whether Orb can run it.
    ///
    /// Orb runs WASI preview-1 command modules (they export `_start` and
    /// `memory` and import only from `wasi_snapshot_preview1`) and WASI 0.2
    /// components of the `wasi:cli/command` world (they export
    /// `wasi:cli/run` and import only the WASI 0.2 interfaces Orb provides).
    Inspect {
        /// The module or component file (.wasm).
        module: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Reads a module file, or explains in one line why it cannot.
pub(crate) fn read_module(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .with_context(|| format!("cannot read module `{}`", path.display()))
        .map_err(CliError::usage)
}

pub(crate) fn run(cmd: FnCommand) -> Result<(), CliError> {
    match cmd {
        FnCommand::Id { module } => {
            let bytes = read_module(&module)?;
            outln!("{}", FunctionId::of(&bytes));
            Ok(())
        }
        FnCommand::Inspect { module, json } => {
            let bytes = read_module(&module)?;
            let runtime = Runtime::new(RuntimeConfig::default())?;
            let info = runtime.inspect(&bytes).map_err(|e| {
                CliError::usage(anyhow::Error::new(e).context(module.display().to_string()))
            })?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&info).context("JSON")?);
                return Ok(());
            }
            outln!("function  {}", info.id);
            outln!("kind      {}", info.kind);
            if info.kind == FunctionKind::Component {
                outln!(
                    "world     {}",
                    info.world.as_deref().unwrap_or("(none Orb knows)")
                );
            }
            outln!("size      {} bytes", info.size);
            outln!("imports   {}", info.imports.len());
            for i in &info.imports {
                let mark = if i.provided {
                    ""
                } else {
                    "   <- not provided by Orb"
                };
                outln!("  {} ({}){mark}", i.path(), i.kind);
            }
            outln!("exports   {}", info.exports.len());
            for e in &info.exports {
                outln!("  {} ({})", e.name, e.kind);
            }
            match (&info.unsupported, info.kind) {
                (None, FunctionKind::Module) => {
                    outln!("abi       ok: WASI preview-1 command, runnable by Orb")
                }
                (None, FunctionKind::Component)
                    if info.world.as_deref() == Some("wasi:http/proxy") =>
                {
                    outln!(
                        "abi       ok: wasi:http/proxy component, served by Orb at /fn/NAME/PATH"
                    )
                }
                (None, FunctionKind::Component) => {
                    outln!("abi       ok: wasi:cli/run component, runnable by Orb")
                }
                (Some(why), _) => outln!("abi       unsupported: {why}"),
            }
            Ok(())
        }
    }
}
