//! The guest ABI: what a module must import and export to be an Orb function.
//!
//! Orb runs WASI preview-1 *commands*: the module exports `_start` and
//! `memory`, imports nothing but `wasi_snapshot_preview1` functions, reads its
//! input on stdin and writes its output to stdout. Any language that targets
//! WASI produces this shape.

use std::collections::HashSet;

use serde::Serialize;
use wasmtime::{ExternType, Module};

use crate::FunctionId;

/// The only import module a function may use.
pub const WASI_P1: &str = "wasi_snapshot_preview1";

/// One import of a module.
#[derive(Clone, Debug, Serialize)]
pub struct ImportInfo {
    /// Import module (for example `wasi_snapshot_preview1`).
    pub module: String,
    /// Import name (for example `fd_write`).
    pub name: String,
    /// `func`, `memory`, `table`, `global` or `tag`.
    pub kind: &'static str,
    /// Whether Orb's runtime provides it.
    pub provided: bool,
}

/// One export of a module.
#[derive(Clone, Debug, Serialize)]
pub struct ExportInfo {
    /// Export name.
    pub name: String,
    /// `func`, `memory`, `table`, `global` or `tag`.
    pub kind: &'static str,
}

/// What `orb fn inspect` shows: a module's interface and whether Orb can run it.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleInfo {
    /// The module's content address.
    pub id: FunctionId,
    /// Size of the module in bytes.
    pub size: usize,
    /// Its imports.
    pub imports: Vec<ImportInfo>,
    /// Its exports.
    pub exports: Vec<ExportInfo>,
    /// `None` when the module is a runnable WASI preview-1 command, otherwise why not.
    pub unsupported: Option<String>,
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "func",
        ExternType::Memory(_) => "memory",
        ExternType::Table(_) => "table",
        ExternType::Global(_) => "global",
        ExternType::Tag(_) => "tag",
    }
}

/// Describes `module` and checks it against the ABI; `provided` holds the
/// `(module, name)` pairs the runtime's linker defines.
pub(crate) fn inspect(
    id: FunctionId,
    size: usize,
    module: &Module,
    provided: &HashSet<(String, String)>,
) -> ModuleInfo {
    let imports: Vec<ImportInfo> = module
        .imports()
        .map(|i| ImportInfo {
            module: i.module().to_owned(),
            name: i.name().to_owned(),
            kind: kind(&i.ty()),
            provided: provided.contains(&(i.module().to_owned(), i.name().to_owned())),
        })
        .collect();
    let exports: Vec<ExportInfo> = module
        .exports()
        .map(|e| ExportInfo {
            name: e.name().to_owned(),
            kind: kind(&e.ty()),
        })
        .collect();
    let unsupported = verdict(module, &imports);
    ModuleInfo {
        id,
        size,
        imports,
        exports,
        unsupported,
    }
}

fn verdict(module: &Module, imports: &[ImportInfo]) -> Option<String> {
    if let Some(missing) = imports.iter().find(|i| !i.provided) {
        return Some(format!(
            "import `{}::{}` ({}) is not provided: Orb offers only WASI preview-1 functions (`{WASI_P1}`)",
            missing.module, missing.name, missing.kind
        ));
    }
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        Some(_) => {
            return Some(
                "export `_start` is not a function of no parameters and no results".into(),
            );
        }
        None if module.get_export("_initialize").is_some() => {
            return Some(
                "missing export `_start`: this is a WASI reactor (it exports `_initialize`); Orb runs WASI preview-1 commands"
                    .into(),
            );
        }
        None => {
            return Some("missing export `_start`: Orb runs WASI preview-1 commands".into());
        }
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => None,
        _ => Some(
            "missing export `memory`: WASI needs the guest's linear memory exported as `memory`"
                .into(),
        ),
    }
}
