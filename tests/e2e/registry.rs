//! Invariants of the node registry: documentation complete and consistent, defaults valid,
//! every port type exercised, docs/nodes.md up to date.

use std::collections::BTreeSet;

use voxflow_engine::PortType;

#[test]
fn node_specs_are_complete() {
    let registry = voxflow::registry();
    let mut problems = Vec::new();
    for (ty, s) in registry.iter() {
        if !(s.summary.ends_with('.') && s.summary.len() <= 79 && !s.summary.contains('\n')) {
            problems.push(format!(
                "{}: summary must be one line of at most 79 characters ending with a period",
                s.name
            ));
        }
        for p in &s.inputs {
            if p.doc.is_empty() || p.types.is_empty() {
                problems.push(format!(
                    "{}: input `{}` needs a doc and a type",
                    s.name, p.name
                ));
            }
        }
        for p in &s.outputs {
            if p.doc.is_empty() {
                problems.push(format!("{}: output `{}` needs a doc", s.name, p.name));
            }
        }
        for p in &s.params {
            if p.doc.is_empty() || p.ty.is_empty() {
                problems.push(format!(
                    "{}: param `{}` needs a doc and a type",
                    s.name, p.name
                ));
            }
        }
        if s.impls.is_empty() || s.impls.iter().any(|i| i.doc.is_empty()) {
            problems.push(format!("{}: every implementation needs a doc", s.name));
        }
        if ty.examples().is_empty() {
            problems.push(format!("{}: needs at least one example", s.name));
        }
        let names: BTreeSet<&str> = s.params.iter().map(|p| p.name).collect();
        if names.len() != s.params.len() {
            problems.push(format!("{}: duplicate param names", s.name));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Each documented default, written explicitly, must be accepted by the node's params
/// parser, and omitting it must build too (the default applies). Unknown names are
/// rejected by validation, so every documented param must also really exist.
#[test]
fn documented_defaults_are_accepted_by_the_params_parser() {
    let registry = voxflow::registry();
    for (ty, s) in registry.iter() {
        let required: Vec<&str> = s
            .params
            .iter()
            .filter(|p| p.default.is_none())
            .map(|p| p.name)
            .collect();
        if !required.is_empty() {
            continue; // needs values we cannot invent; the examples cover these types
        }
        let impl_name = s.impls[0].name;
        assert!(
            ty.build(&serde_json::json!({}), impl_name).is_ok(),
            "{}: building with no params must work",
            s.name
        );
        for p in &s.params {
            let src = p.default.as_deref().unwrap();
            let v = voxflow_engine::ron_spanned::parse(src).unwrap_or_else(|e| {
                panic!("{}.{}: default `{src}` is not RON: {e}", s.name, p.name)
            });
            let params = serde_json::json!({ p.name: v.to_json() });
            if let Err(e) = ty.build(&params, impl_name) {
                panic!(
                    "{}: documented default {}: {src} is rejected: {e:?}",
                    s.name, p.name
                );
            }
        }
        let bogus = serde_json::json!({ "no_such_param_xyz": 1 });
        assert!(
            ty.build(&bogus, impl_name).is_err(),
            "{}: params must reject unknown fields",
            s.name
        );
    }
}

/// Every documented default is the params struct's `Default`: the spec carries the
/// serialized `Default` (`default_value`) and the rendered text (`default`), and the
/// text read back by the graph reader must be that same value, for every node type.
#[test]
fn spec_defaults_equal_params_default() {
    let registry = voxflow::registry();
    let mut problems = Vec::new();
    for s in registry.specs() {
        for p in &s.params {
            let Some(value) = &p.default_value else {
                problems.push(format!(
                    "{}.{}: no default_value (declare the params with node_params!)",
                    s.name, p.name
                ));
                continue;
            };
            let Some(text) = &p.default else {
                continue; // required: the field's default only marks "not given"
            };
            match voxflow_engine::ron_spanned::parse(text) {
                Ok(v) if &v.to_json() == value => {}
                Ok(v) => problems.push(format!(
                    "{}.{}: documented `{text}` reads as {}, but Default is {value}",
                    s.name,
                    p.name,
                    v.to_json()
                )),
                Err(e) => problems.push(format!(
                    "{}.{}: documented `{text}` is not RON: {e}",
                    s.name, p.name
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_port_type_with_a_node_is_produced_and_consumed() {
    let registry = voxflow::registry();
    let produced: BTreeSet<PortType> = registry
        .specs()
        .flat_map(|s| s.outputs.iter().map(|o| o.ty))
        .collect();
    let consumed: BTreeSet<PortType> = registry
        .specs()
        .flat_map(|s| s.inputs.iter().flat_map(|i| i.types.iter().copied()))
        .collect();
    for t in [
        PortType::Image,
        PortType::Mask,
        PortType::Labels,
        PortType::Table,
    ] {
        assert!(produced.contains(&t), "no node produces {t}");
        assert!(consumed.contains(&t), "no node consumes {t}");
    }
}

#[test]
fn docs_nodes_md_is_up_to_date() {
    let registry = voxflow::registry();
    let expected = voxflow_nodes::docs::markdown(&registry);
    let path = voxflow_tests::repo_root().join("docs/nodes.md");
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("VOXFLOW_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    assert!(actual == expected, "docs/nodes.md is stale: regenerate with `VOXFLOW_BLESS=1 cargo test -p voxflow-tests docs_nodes` or `voxflow nodes --markdown > docs/nodes.md`");
}
