//! Every example graph of every node type runs with every implementation of that type;
//! the implementations must agree exactly, and the default's outputs are snapshotted.

use voxflow_tests::{plan, repo_root, run_ok, summarize_outputs};

#[test]
fn every_example_runs_with_every_implementation_and_they_agree() {
    let registry = voxflow::registry();
    let dir = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for (ty, spec) in registry.iter() {
        for (i, ex) in ty.examples().iter().enumerate() {
            let file = dir.path().join(format!("{}_{i}.ron", spec.name));
            std::fs::write(&file, ex.graph).unwrap();
            let graph = voxflow_engine::graph::load_graph(&file, &Default::default())
                .unwrap_or_else(|d| panic!("{} example {i}: {d}", spec.name));
            // Examples on the real data name it `../shared/...` from the repository root.
            let mut set = Vec::new();
            for (name, value) in &graph.params {
                if let Some(rel) = value.as_str().filter(|v| v.starts_with("../shared/")) {
                    let path = repo_root().join(rel);
                    if !path.exists() {
                        voxflow_nodes::testdata::skip(
                            &format!("{} example {i}", spec.name),
                            &format!("{} not found", path.display()),
                        );
                        set.clear();
                        break;
                    }
                    set.push(format!("{name}={}", path.display()));
                }
            }
            if graph
                .params
                .values()
                .any(|v| v.as_str().is_some_and(|v| v.starts_with("../shared/")))
                && set.is_empty()
            {
                continue;
            }
            // Examples needing a saved U-Net name a `.vxmodel` folder: a small random one
            // is written for them (demo weights, see voxflow_unet::write_random_model).
            for (name, value) in &graph.params {
                if let Some(m) = value.as_str().filter(|v| v.ends_with(".vxmodel")) {
                    let path = dir.path().join(m);
                    if !path.exists() {
                        let mut cfg = voxflow_unet::UNetConfig::seed();
                        (cfg.levels, cfg.base_filters) = (3, 4);
                        voxflow_unet::write_random_model(&path, &cfg, 1).unwrap();
                    }
                    set.push(format!("{name}={}", path.display()));
                }
            }
            // Every output of every node is a target, so all results are compared.
            let targets: Vec<String> = graph.nodes.keys().cloned().collect();
            let mut reference: Option<(String, String)> = None;
            for imp in &spec.impls {
                let choice = vec![format!("{}={}", spec.name, imp.name)];
                let p = plan(&file, &set, &choice, &targets);
                let out = dir
                    .path()
                    .join(format!("out_{}_{i}_{}", spec.name, imp.name));
                let report = run_ok(&p, &out);
                let summary = summarize_outputs(&report);
                match &reference {
                    None => {
                        insta::assert_snapshot!(
                            format!("example_{}_{i}", spec.name),
                            summary,
                            ex.description
                        );
                        reference = Some((imp.name.to_string(), summary));
                    }
                    Some((name, expected)) => {
                        assert_eq!(
                            &summary, expected,
                            "{} example {i}: implementation `{}` disagrees with `{name}`",
                            spec.name, imp.name
                        )
                    }
                }
                ran += 1;
            }
        }
    }
    assert!(
        ran >= registry.specs().count(),
        "every node type has at least one example"
    );
}
