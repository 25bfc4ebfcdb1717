//! `ModuleStore`: functions on disk by id, with their compiled artifacts.
//!
//! Layout under the store's directory:
//! - `modules/<id>.wasm`: the function's bytes (a module or a component),
//!   verified against `<id>` on read;
//! - `compiled/<engine-key>/<id>.cwasm` (a module) or
//!   `compiled/<engine-key>/<id>.component.cwasm` (a component): wasmtime's
//!   serialized compilation, keyed by the engine's compatibility hash so a
//!   wasmtime upgrade or a changed engine setting never loads a stale
//!   artifact, and sealed: its last 32 bytes are a blake3 hash of the
//!   function id, its kind and the rest, so a damaged artifact, another
//!   function's artifact put in its place, or a module's artifact where a
//!   component's belongs, is recompiled instead of run (wasmtime runs an
//!   artifact's machine code as it finds it).
//!
//! Files are written to a temporary name, fsync'd and renamed, so a crash
//! leaves either the old state or the new one, never a torn file. A restart
//! loads the artifact instead of recompiling.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::runtime::Compiled;
use crate::{Error, Function, FunctionId, FunctionKind, Result, Runtime};

/// Functions (modules and components) and compiled artifacts kept on disk by id.
#[derive(Clone, Debug)]
pub struct ModuleStore {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Store {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    // The rename is durable only once the directory entry is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A `Hasher` over blake3, so the engine key is stable across processes.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let hash = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The artifact format: bump when the sealing changes.
const ARTIFACT_FORMAT: u32 = 2;

/// The seal of an artifact of `id`: what its last 32 bytes must be. Each
/// kind has its own key, so one kind's artifact never unseals as the other's
/// (modules keep the key they had before components came).
fn seal(id: FunctionId, kind: FunctionKind, artifact: &[u8]) -> [u8; 32] {
    let key = match kind {
        FunctionKind::Module => "orb module store artifact seal 2",
        FunctionKind::Component => "orb module store component artifact seal 1",
    };
    let mut h = blake3::Hasher::new_derive_key(key);
    h.update(id.as_bytes());
    h.update(artifact);
    *h.finalize().as_bytes()
}

/// The artifact inside a sealed file, if the seal holds.
fn unsealed(id: FunctionId, kind: FunctionKind, file: &[u8]) -> Option<&[u8]> {
    let cut = file.len().checked_sub(32)?;
    let (artifact, tag) = file.split_at(cut);
    (seal(id, kind, artifact) == tag).then_some(artifact)
}

const KINDS: [FunctionKind; 2] = [FunctionKind::Module, FunctionKind::Component];

/// A short stable name for the engine's compilation settings.
fn engine_key(runtime: &Runtime) -> String {
    let mut h = Blake3Hasher(blake3::Hasher::new());
    ARTIFACT_FORMAT.hash(&mut h);
    runtime
        .engine()
        .precompile_compatibility_hash()
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

impl ModuleStore {
    /// Opens (creating if needed) a store rooted at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let modules = dir.join("modules");
        fs::create_dir_all(&modules).map_err(io_err(&modules))?;
        Ok(Self { dir })
    }

    /// The store's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn module_path(&self, id: FunctionId) -> PathBuf {
        self.dir.join("modules").join(format!("{id}.wasm"))
    }

    fn artifact_path(&self, runtime: &Runtime, id: FunctionId, kind: FunctionKind) -> PathBuf {
        let name = match kind {
            FunctionKind::Module => format!("{id}.cwasm"),
            FunctionKind::Component => format!("{id}.component.cwasm"),
        };
        self.dir
            .join("compiled")
            .join(engine_key(runtime))
            .join(name)
    }

    /// Stores a function's bytes under their id (a no-op if already stored).
    pub fn put(&self, bytes: &[u8]) -> Result<FunctionId> {
        let id = FunctionId::of(bytes);
        let path = self.module_path(id);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(id)
    }

    /// Bytes the function `id` and its compiled artifact for `runtime`'s
    /// engine take on disk (0 for what is not there).
    pub fn stored_bytes(&self, runtime: &Runtime, id: FunctionId) -> u64 {
        let artifacts = KINDS.map(|kind| self.artifact_path(runtime, id, kind));
        std::iter::once(self.module_path(id))
            .chain(artifacts)
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Whether a module with this id is stored.
    pub fn contains(&self, id: FunctionId) -> bool {
        self.module_path(id).exists()
    }

    /// Reads a stored module, checking that its bytes still hash to `id`.
    pub fn get(&self, id: FunctionId) -> Result<Vec<u8>> {
        let path = self.module_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotStored(id.to_hex()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let actual = FunctionId::of(&bytes);
        if actual != id {
            return Err(Error::HashMismatch {
                expected: id.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(bytes)
    }

    /// The ids of all stored modules.
    pub fn ids(&self) -> Result<Vec<FunctionId>> {
        let dir = self.dir.join("modules");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".wasm"))
                .and_then(|h| h.parse().ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Loads a stored function: from its compiled artifact when one exists for
    /// this engine, otherwise by compiling it and saving the artifact.
    pub fn load(&self, runtime: &Runtime, id: FunctionId) -> Result<Function> {
        if let Some(function) = self.load_artifact(runtime, id) {
            return Ok(function);
        }
        let bytes = self.get(id)?;
        self.compile_and_save(runtime, id, &bytes)
    }

    /// Stores `bytes` and loads them as a function, compiling at most once
    /// per engine. Nothing is written unless the module is valid and runnable.
    pub fn put_and_load(&self, runtime: &Runtime, bytes: &[u8]) -> Result<Function> {
        let id = FunctionId::of(bytes);
        if self.contains(id)
            && let Some(function) = self.load_artifact(runtime, id)
        {
            return Ok(function);
        }
        let function = self.compile_and_save(runtime, id, bytes)?;
        self.put(bytes)?;
        Ok(function)
    }

    /// The function from its artifact, of whichever kind is stored.
    fn load_artifact(&self, runtime: &Runtime, id: FunctionId) -> Option<Function> {
        KINDS
            .into_iter()
            .find_map(|kind| self.load_artifact_of(runtime, id, kind))
    }

    fn load_artifact_of(
        &self,
        runtime: &Runtime,
        id: FunctionId,
        kind: FunctionKind,
    ) -> Option<Function> {
        let artifact = self.artifact_path(runtime, id, kind);
        if !artifact.exists() {
            return None;
        }
        let file = match fs::read(&artifact) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %e, "artifact unreadable; recompiling");
                return None;
            }
        };
        let Some(sealed) = unsealed(id, kind, &file) else {
            tracing::warn!(path = %artifact.display(), "artifact damaged or not this function's (its seal does not match); recompiling");
            return None;
        };
        match deserialize(runtime, kind, sealed).map(|compiled| runtime.prepare(id, &compiled)) {
            Ok(Ok(function)) => Some(function),
            Ok(Err(e)) => {
                tracing::warn!(path = %artifact.display(), error = %e, "stored artifact refused; recompiling");
                None
            }
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %e, "bad artifact; recompiling");
                None
            }
        }
    }

    fn compile_and_save(
        &self,
        runtime: &Runtime,
        id: FunctionId,
        bytes: &[u8],
    ) -> Result<Function> {
        let compiled = runtime.compile(bytes)?;
        let function = runtime.prepare(id, &compiled)?;
        let mut serialized = compiled
            .serialize()
            .map_err(|e| Error::Runtime(format!("serialize {id}: {e:#}")))?;
        let kind = compiled.kind();
        let tag = seal(id, kind, &serialized);
        serialized.extend_from_slice(&tag);
        write_atomic(&self.artifact_path(runtime, id, kind), &serialized)?;
        Ok(function)
    }
}

#[allow(unsafe_code)]
fn deserialize(
    runtime: &Runtime,
    kind: FunctionKind,
    artifact: &[u8],
) -> wasmtime::Result<Compiled> {
    // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output.
    // These are: the store wrote them from its own compilation of this very
    // function (the seal, checked by the caller, covers the id, the kind
    // and every byte), atomically, under this engine's key; wasmtime still
    // checks the header's version and engine settings.
    unsafe { runtime.deserialize(kind, artifact) }
}
