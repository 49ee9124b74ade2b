//! The cache policy of a run: before any node runs, compute every needed node's key,
//! decide which nodes are reused (entry complete, files intact, values loadable) and
//! load the values that running nodes or targets read from them; after a node succeeds,
//! store its results.
//!
//! Keys chain (a node's key holds the keys of the outputs feeding it), so deciding what
//! to reuse needs no data; only values that are actually read are loaded and verified.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{RunOptions, Shared, State, Status};
use crate::cache::{hash_path, Cache, Entry, KeyParts};
use crate::validate::Plan;
use crate::value::{PortType, Value};

impl Shared<'_> {
    /// Put a successful node's results in the cache (failures never are). A cache that
    /// cannot be written is logged, not fatal: the run's results are still right.
    pub(super) fn store(
        &self,
        cache: &Cache,
        i: usize,
        parts: &KeyParts,
        outs: &BTreeMap<String, Value>,
        files: &[PathBuf],
    ) {
        let mut hashes = BTreeMap::new();
        for f in files {
            match (f.strip_prefix(&self.out_dir), hash_path(f)) {
                (Ok(rel), Ok(h)) => {
                    hashes.insert(rel.display().to_string(), h);
                }
                // A file outside the output folder cannot be checked on reuse: don't cache.
                _ => return,
            }
        }
        let node = &self.plan.nodes[i];
        let stored = cache
            .store(&parts.key(), &node.type_name, outs, &hashes)
            .and_then(|_| cache.remember(&self.opts.cache_scope, &node.id, parts));
        if let Err(e) = stored {
            tracing::warn!(node = %node.id, error = %e, "could not write the cache entry");
        }
    }
}

/// A value one node's output port produces: (node index, port).
type Slot = (usize, String);

/// Compute every needed node's cache key, mark nodes whose results are cached as
/// `Cached`, and load the cached values that nodes which must run (or the targets) read.
/// A corrupt entry is reported and its node runs again.
pub(super) fn apply_cache(
    plan: &Plan,
    out_dir: &Path,
    cache: &Cache,
    opts: &RunOptions,
    dependants: &[Vec<usize>],
    st: &mut State,
) -> Vec<Option<KeyParts>> {
    let (keys, key_strings) = compute_keys(plan);
    let (entries, mut reused) = find_entries(plan, out_dir, cache, &key_strings, st);
    let loaded = load_reused(plan, cache, &key_strings, &entries, &mut reused, st);
    mark_nodes(plan, cache, opts, dependants, &keys, &reused, &loaded, st);
    release_readers(plan, &reused, st);
    for (k, v) in loaded {
        if st.readers.get(&k).copied().unwrap_or(0) > 0 {
            st.values.insert(k, v);
        }
    }
    keys
}

/// The plan's nodes in dependency order (they are validated acyclic).
fn dependency_order(plan: &Plan) -> Vec<usize> {
    let n = plan.nodes.len();
    let mut order = Vec::with_capacity(n);
    let mut indeg: Vec<usize> = plan
        .nodes
        .iter()
        .map(|p| p.inputs.iter().map(|(_, e)| e.len()).sum())
        .collect();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in plan.nodes.iter().enumerate() {
        for (_, edges) in &p.inputs {
            for e in edges {
                consumers[e.from].push(i);
            }
        }
    }
    let mut stack: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        for &c in &consumers[i] {
            indeg[c] -= 1;
            if indeg[c] == 0 {
                stack.push(c);
            }
        }
    }
    order
}

/// Every needed node's key parts and key; `None` where an input has no key or an input
/// file cannot be hashed (the node will report the missing file itself).
fn compute_keys(plan: &Plan) -> (Vec<Option<KeyParts>>, Vec<Option<String>>) {
    let n = plan.nodes.len();
    let mut keys: Vec<Option<KeyParts>> = vec![None; n];
    let mut key_strings: Vec<Option<String>> = vec![None; n];
    for i in dependency_order(plan) {
        let p = &plan.nodes[i];
        if !p.needed {
            continue;
        }
        let mut inputs = BTreeMap::new();
        let mut complete = true;
        for (port, edges) in &p.inputs {
            let mut refs = Vec::new();
            for e in edges {
                match &key_strings[e.from] {
                    Some(k) => {
                        refs.push((plan.nodes[e.from].id.clone(), format!("{k}.{}", e.port)))
                    }
                    None => complete = false,
                }
            }
            inputs.insert(port.clone(), refs);
        }
        let mut files = BTreeMap::new();
        for f in p.node.input_files() {
            match hash_path(&f) {
                Ok(h) => {
                    files.insert(f.display().to_string(), h);
                }
                Err(_) => complete = false,
            }
        }
        if !complete {
            continue;
        }
        let parts = KeyParts {
            node_type: p.type_name.clone(),
            implementation: p.implementation.clone(),
            version: p.impl_version,
            params: p.params.clone(),
            inputs,
            files,
        };
        key_strings[i] = Some(parts.key());
        keys[i] = Some(parts);
    }
    (keys, key_strings)
}

/// Which entries exist and which nodes they let us reuse (every output stored and, for
/// file writers, the files they wrote intact).
fn find_entries(
    plan: &Plan,
    out_dir: &Path,
    cache: &Cache,
    key_strings: &[Option<String>],
    st: &mut State,
) -> (Vec<Option<Entry>>, Vec<bool>) {
    let n = plan.nodes.len();
    let mut entries: Vec<Option<Entry>> = vec![None; n];
    let mut reused = vec![false; n];
    for i in 0..n {
        let (Some(k), true) = (&key_strings[i], plan.nodes[i].needed) else {
            continue;
        };
        let Some(e) = cache.entry(k) else { continue };
        let outputs_ok = plan.nodes[i]
            .outputs
            .iter()
            .all(|(o, _)| e.outputs.contains_key(o));
        let files_ok = e
            .files
            .iter()
            .all(|(rel, h)| hash_path(&out_dir.join(rel)).is_ok_and(|x| &x == h));
        reused[i] = outputs_ok && files_ok;
        if outputs_ok && !files_ok {
            st.records[i].cache = Some("ran: files it wrote are missing or changed".into());
        }
        entries[i] = Some(e);
    }
    (entries, reused)
}

/// The values that running nodes and targets read from reused nodes.
fn wanted_slots(plan: &Plan, reused: &[bool]) -> Vec<Slot> {
    let mut wanted: Vec<Slot> = Vec::new();
    for (i, p) in plan.nodes.iter().enumerate() {
        if p.needed && !reused[i] {
            for (_, edges) in &p.inputs {
                wanted.extend(
                    edges
                        .iter()
                        .filter(|e| reused[e.from])
                        .map(|e| (e.from, e.port.clone())),
                );
            }
        }
    }
    wanted.extend(
        plan.targets
            .iter()
            .filter(|(t, p)| reused[*t] && !p.is_empty())
            .cloned(),
    );
    wanted
}

/// Load what running nodes and targets read from reused nodes; a corrupt value
/// un-reuses its node, which may need loads of its own: repeat until stable.
fn load_reused(
    plan: &Plan,
    cache: &Cache,
    key_strings: &[Option<String>],
    entries: &[Option<Entry>],
    reused: &mut [bool],
    st: &mut State,
) -> HashMap<Slot, Value> {
    let mut loaded: HashMap<Slot, Value> = HashMap::new();
    loop {
        let mut changed = false;
        for w in wanted_slots(plan, reused) {
            if loaded.contains_key(&w) || !reused[w.0] {
                continue;
            }
            let key = key_strings[w.0].as_deref().expect("reused nodes have keys");
            let hash = &entries[w.0]
                .as_ref()
                .expect("reused nodes have entries")
                .outputs[&w.1];
            match cache.load(key, &w.1, hash) {
                Ok(v) => {
                    loaded.insert(w, v);
                }
                Err(e) => {
                    tracing::warn!(node = %plan.nodes[w.0].id, error = %e, "cache entry unusable; recomputing");
                    reused[w.0] = false;
                    st.records[w.0].cache = Some("ran: cache entry corrupt".into());
                    changed = true;
                }
            }
        }
        if !changed {
            return loaded;
        }
    }
}

/// Mark reused nodes `Cached` (their dependants one input closer to ready, their
/// collected tables and targets in the outputs) and say why every other needed node runs.
#[allow(clippy::too_many_arguments)]
fn mark_nodes(
    plan: &Plan,
    cache: &Cache,
    opts: &RunOptions,
    dependants: &[Vec<usize>],
    keys: &[Option<KeyParts>],
    reused: &[bool],
    loaded: &HashMap<Slot, Value>,
    st: &mut State,
) {
    for i in 0..plan.nodes.len() {
        if !plan.nodes[i].needed {
            continue;
        }
        if reused[i] {
            st.records[i].status = Status::Cached;
            st.records[i].cache = Some("reused".into());
            for &d in &dependants[i] {
                st.pending[d] -= 1;
            }
            for (port, ty) in &plan.nodes[i].outputs {
                let collect = opts.collect_tables && *ty == PortType::Table;
                if collect || plan.targets.iter().any(|(t, p)| *t == i && p == port) {
                    if let Some(v) = loaded.get(&(i, port.clone())) {
                        st.outputs
                            .insert(format!("{}.{port}", plan.nodes[i].id), v.clone());
                    }
                }
            }
        } else if st.records[i].cache.is_none() {
            let why = match &keys[i] {
                Some(parts) => parts.explain_change(
                    cache
                        .previous(&opts.cache_scope, &plan.nodes[i].id)
                        .as_ref(),
                ),
                None => "ran: an input file is missing or an input did not run".into(),
            };
            st.records[i].cache = Some(why);
        }
    }
}

/// Reused nodes never read their inputs: release those reader counts.
fn release_readers(plan: &Plan, reused: &[bool], st: &mut State) {
    for (i, p) in plan.nodes.iter().enumerate() {
        if p.needed && reused[i] {
            for (_, edges) in &p.inputs {
                for e in edges {
                    if let Some(r) = st.readers.get_mut(&(e.from, e.port.clone())) {
                        *r -= 1;
                    }
                }
            }
        }
    }
}
