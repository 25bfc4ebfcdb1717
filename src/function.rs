//! `orb fn`: look at a module without running it (its id, its interface,
//! whether Orb can run it).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use orb_functions::{FunctionId, Runtime, RuntimeConfig};

use crate::exit::CliError;

#[derive(Subcommand, Debug)]
pub(crate) enum FnCommand {
    /// Print a module's function id: the blake3 hash of its bytes, in hex.
    Id {
        /// The module file (.wasm).
        module: PathBuf,
    },
    /// Show a module's imports and exports and whether Orb can run it.
    ///
    /// Orb runs WASI preview-1 commands: the module must export `_start` and
    /// `memory` and import only from `wasi_snapshot_preview1`.
    Inspect {
        /// The module file (.wasm).
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
            outln!("size      {} bytes", info.size);
            outln!("imports   {}", info.imports.len());
            for i in &info.imports {
                let mark = if i.provided {
                    ""
                } else {
                    "   <- not provided by Orb"
                };
                outln!("  {}::{} ({}){mark}", i.module, i.name, i.kind);
            }
            outln!("exports   {}", info.exports.len());
            for e in &info.exports {
                outln!("  {} ({})", e.name, e.kind);
            }
            match &info.unsupported {
                None => outln!("abi       ok: WASI preview-1 command, runnable by Orb"),
                Some(why) => outln!("abi       unsupported: {why}"),
            }
            Ok(())
        }
    }
}
