//! Content-addressed result cache (`--cache DIR`).
//!
//! A node's key is the blake3 hash of its type, implementation name and version, canonical
//! params, the keys of the outputs feeding it, and the content hash of the files it reads.
//! Keys chain, so an unchanged node downstream of a changed one gets a new key too, and a
//! node whose inputs are unchanged is reused without loading anything it does not need.
//!
//! Layout: `DIR/objects/<k0k1>/<key>/` holds `meta.json` and one `<port>.bin` per output;
//! an entry is written in a temporary folder and renamed into place, so it is complete or
//! absent. Each output file's blake3 is in `meta.json` and checked when loaded: a corrupt
//! entry is reported and recomputed, never trusted. `DIR/explain/` remembers each node's
//! last key parts so `--explain` can say what changed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::codec;
use crate::value::Value;

/// The cache folder.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// What makes up a node's key (stored for `--explain`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyParts {
    /// Node type.
    pub node_type: String,
    /// Implementation and its version.
    pub implementation: String,
    /// Implementation version.
    pub version: u32,
    /// Canonical params.
    pub params: serde_json::Value,
    /// Input port -> keys of the outputs feeding it (`key.port`), with producer ids.
    pub inputs: BTreeMap<String, Vec<(String, String)>>,
    /// Files read -> content hash.
    pub files: BTreeMap<String, String>,
}

impl KeyParts {
    /// The key: blake3 of the canonical JSON of the parts.
    pub fn key(&self) -> String {
        let mut canon = self.clone();
        for refs in canon.inputs.values_mut() {
            // Producer ids do not change results; only their keys matter.
            refs.iter_mut().for_each(|(id, _)| id.clear());
        }
        blake3::hash(serde_json::to_string(&canon).expect("json").as_bytes())
            .to_hex()
            .to_string()
    }

    /// Why a node with these parts ran, compared with the parts of its previous run.
    pub fn explain_change(&self, before: Option<&KeyParts>) -> String {
        let Some(b) = before else {
            return "ran: no earlier run in the cache".into();
        };
        if b.implementation != self.implementation || b.version != self.version {
            return format!(
                "ran: implementation changed ({} v{} -> {} v{})",
                b.implementation, b.version, self.implementation, self.version
            );
        }
        let mut why = Vec::new();
        if let (Some(now), Some(was)) = (self.params.as_object(), b.params.as_object()) {
            let names: std::collections::BTreeSet<&String> = now.keys().chain(was.keys()).collect();
            for n in names {
                if now.get(n) != was.get(n) {
                    why.push(format!("param {n} changed"));
                }
            }
        } else if self.params != b.params {
            why.push("params changed".into());
        }
        for (port, refs) in &self.inputs {
            let was: Vec<&String> = b
                .inputs
                .get(port)
                .map(|r| r.iter().map(|(_, k)| k).collect())
                .unwrap_or_default();
            let now: Vec<&String> = refs.iter().map(|(_, k)| k).collect();
            if was != now {
                let from: Vec<&str> = refs.iter().map(|(id, _)| id.as_str()).collect();
                why.push(format!("input {port} changed (from {})", from.join(", ")));
            }
        }
        for (f, h) in &self.files {
            if b.files.get(f) != Some(h) {
                why.push(format!("input file {f} changed"));
            }
        }
        if why.is_empty() {
            "ran: result not in the cache".into()
        } else {
            format!("ran: {}", why.join("; "))
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    node_type: String,
    outputs: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
}

/// A cache entry's description, read without loading values.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Output port -> blake3 of its stored file.
    pub outputs: BTreeMap<String, String>,
    /// Files the node wrote (relative to the output folder) -> blake3.
    pub files: BTreeMap<String, String>,
}

/// Errors loading a cached value.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The stored bytes do not match their recorded hash, or do not decode.
    #[error("corrupt cache entry {0}")]
    Corrupt(String),
    /// I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Cache {
    /// Open (create) a cache folder.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("objects"))?;
        std::fs::create_dir_all(dir.join("explain"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.dir.join("objects").join(&key[..2]).join(key)
    }

    /// The entry for a key, if one is complete.
    pub fn entry(&self, key: &str) -> Option<Entry> {
        let meta = std::fs::read(self.entry_dir(key).join("meta.json")).ok()?;
        let meta: Meta = serde_json::from_slice(&meta).ok()?;
        Some(Entry {
            outputs: meta.outputs,
            files: meta.files,
        })
    }

    /// Load one output of an entry, checking its hash.
    pub fn load(&self, key: &str, port: &str, expected_hash: &str) -> Result<Value, CacheError> {
        let path = self.entry_dir(key).join(format!("{port}.bin"));
        let mut bytes = Vec::new();
        std::fs::File::open(&path)?.read_to_end(&mut bytes)?;
        if blake3::hash(&bytes).to_hex().as_str() != expected_hash {
            return Err(CacheError::Corrupt(path.display().to_string()));
        }
        codec::decode(&mut bytes.as_slice())
            .map_err(|e| CacheError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Store a node's outputs and the files it wrote. Values that cannot be stored make
    /// the whole entry skipped (returns `Ok(false)`).
    pub fn store(
        &self,
        key: &str,
        node_type: &str,
        outputs: &BTreeMap<String, Value>,
        files: &BTreeMap<String, String>,
    ) -> std::io::Result<bool> {
        if outputs.values().any(|v| !codec::storable(v)) {
            return Ok(false);
        }
        let final_dir = self.entry_dir(key);
        if final_dir.join("meta.json").exists() {
            return Ok(true);
        }
        let tmp = tempfile::Builder::new()
            .prefix("entry.")
            .tempdir_in(self.dir.join("tmp"))?;
        let mut hashes = BTreeMap::new();
        for (port, v) in outputs {
            let mut buf = Vec::new();
            codec::encode(v, &mut buf).map_err(std::io::Error::other)?;
            hashes.insert(port.clone(), blake3::hash(&buf).to_hex().to_string());
            std::fs::write(tmp.path().join(format!("{port}.bin")), &buf)?;
        }
        let meta = Meta {
            node_type: node_type.into(),
            outputs: hashes,
            files: files.clone(),
        };
        std::fs::write(
            tmp.path().join("meta.json"),
            serde_json::to_vec_pretty(&meta).expect("json"),
        )?;
        std::fs::create_dir_all(final_dir.parent().expect("objects/xx"))?;
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &final_dir) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            if !final_dir.join("meta.json").exists() {
                return Err(e);
            }
        }
        Ok(true)
    }

    fn explain_path(&self, scope: &str, node_id: &str) -> PathBuf {
        let h = blake3::hash(format!("{scope}\0{node_id}").as_bytes()).to_hex();
        self.dir.join("explain").join(format!("{}.json", &h[..32]))
    }

    /// The key parts recorded the last time this node of this graph ran.
    pub fn previous(&self, scope: &str, node_id: &str) -> Option<KeyParts> {
        serde_json::from_slice(&std::fs::read(self.explain_path(scope, node_id)).ok()?).ok()
    }

    /// Remember a node's key parts for the next `--explain`.
    pub fn remember(&self, scope: &str, node_id: &str, parts: &KeyParts) -> std::io::Result<()> {
        let text = serde_json::to_vec(parts).expect("json");
        crate::fsutil::write_atomic(&self.explain_path(scope, node_id), |w| w.write_all(&text))
            .map_err(std::io::Error::other)
    }
}

/// blake3 of a file's content, or of every regular file in a folder (sorted by name).
pub fn hash_path(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for e in entries {
            hasher.update(e.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update_reader(std::fs::File::open(&e)?)?;
        }
    } else if std::fs::metadata(path)?.is_file() {
        hasher.update_reader(std::fs::File::open(path)?)?;
    } else {
        // A FIFO would block the open (and a device never end); not cached, the node
        // itself then says what is wrong with its file.
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(hasher.finalize().to_hex().to_string())
}
