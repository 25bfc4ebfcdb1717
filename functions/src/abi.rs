//! The guest ABI: what a function must import and export to be an Orb function.
//!
//! A function comes in one of two kinds ([`FunctionKind`]), told apart by
//! the header of its bytes:
//! - a WASI preview-1 *command* module: it exports `_start` and `memory`,
//!   imports nothing but `wasi_snapshot_preview1` functions (checked here);
//! - a `wasi:cli/run` *component* (WASI 0.2): it exports `wasi:cli/run` and
//!   imports only the WASI 0.2 interfaces Orb provides (checked in
//!   [`crate::component`]).
//!
//! Either way it reads its input on stdin and writes its output to stdout.
//! Any language that targets WASI produces one of these shapes.

use std::collections::HashSet;

use serde::Serialize;
use wasmtime::{ExternType, Module};

use crate::FunctionId;

/// The only import module a function may use.
pub const WASI_P1: &str = "wasi_snapshot_preview1";

/// What a function's bytes are: a core module or a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// A core WebAssembly module (a WASI preview-1 command).
    Module,
    /// A WebAssembly component (a WASI 0.2 `wasi:cli/run` command).
    Component,
}

impl FunctionKind {
    /// The kind of `bytes`, from their header: a component's header says
    /// so; anything else is taken for a module (and fails to compile as one
    /// if it is not).
    pub fn of(bytes: &[u8]) -> Self {
        if wasmparser::Parser::is_component(bytes) {
            FunctionKind::Component
        } else {
            FunctionKind::Module
        }
    }

    /// `module` or `component`.
    pub fn name(self) -> &'static str {
        match self {
            FunctionKind::Module => "module",
            FunctionKind::Component => "component",
        }
    }
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One import of a module or a component.
#[derive(Clone, Debug, Serialize)]
pub struct ImportInfo {
    /// Import module (for example `wasi_snapshot_preview1`); empty for a
    /// component, whose imports have one name.
    pub module: String,
    /// Import name (for example `fd_write`, or `wasi:cli/stdin@0.2.0` for a
    /// component).
    pub name: String,
    /// `func`, `memory`, `table`, `global` or `tag` for a module; `instance`
    /// (an interface), `func`, `type`, `resource`, `module` or `component`
    /// for a component.
    pub kind: &'static str,
    /// Whether Orb's runtime provides it.
    pub provided: bool,
}

impl ImportInfo {
    /// `module::name`, or the name alone for a component's import.
    pub fn path(&self) -> String {
        if self.module.is_empty() {
            self.name.clone()
        } else {
            format!("{}::{}", self.module, self.name)
        }
    }
}

/// One export of a module or a component.
#[derive(Clone, Debug, Serialize)]
pub struct ExportInfo {
    /// Export name (for example `_start`, or `wasi:cli/run@0.2.0`).
    pub name: String,
    /// As [`ImportInfo::kind`].
    pub kind: &'static str,
}

/// What `orb fn inspect` shows: a function's interface and whether Orb can run it.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleInfo {
    /// The function's content address.
    pub id: FunctionId,
    /// A core module or a component.
    pub kind: FunctionKind,
    /// The component's world as Orb recognizes it from its exports
    /// (`wasi:cli/command`, `wasi:http/proxy`); `None` for a module, or for
    /// a component of no world Orb knows.
    pub world: Option<String>,
    /// Size in bytes.
    pub size: usize,
    /// Its imports.
    pub imports: Vec<ImportInfo>,
    /// Its exports.
    pub exports: Vec<ExportInfo>,
    /// `None` when Orb can run it (a WASI preview-1 command, a
    /// `wasi:cli/run` component), otherwise why not.
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
        kind: FunctionKind::Module,
        world: None,
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
