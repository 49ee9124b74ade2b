//! `WriteTable`: write a Table as CSV, TSV or JSON, chosen by the file extension.

use std::path::Path;

use voxflow_engine::{
    node_params, params::require_set, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError,
    NodeSpec, NodeType, ParamError, Params, PortType,
};

node_params! {
    /// Params of `WriteTable`.
    pub struct WriteTableParams {
        /// File to write: `.csv`, `.tsv` or `.json`. Relative paths resolve against the
        /// run's output folder.
        #[param(required)]
        pub path: String = String::new(),
    }
}

const EXTENSIONS: [&str; 3] = ["csv", "tsv", "json"];

fn known_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

struct WriteTableNode {
    path: String,
}

impl Node for WriteTableNode {
    fn output_files(&self) -> Vec<std::path::PathBuf> {
        vec![self.path.clone().into()]
    }

    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let table = ctx.table("table")?;
        let path = ctx.output_path(&self.path);
        table.write(&path)?;
        ctx.file_written(&path);
        Ok(())
    }
}

/// Write a table to a file.
pub struct WriteTable;

impl NodeType for WriteTable {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "WriteTable",
            summary: "Write a Table as CSV, TSV or JSON, chosen by the file extension.",
            doc: concat!(
                "`.csv`: comma-separated with a header row, floats with up to 6 decimals; `.tsv`: ",
                "the same with tabs; `.json`: an array of objects, one per row (Null and ",
                "non-finite numbers as null). The file appears atomically (temporary file, then ",
                "rename). Another extension is an error naming the path, found when the graph is ",
                "validated."
            ),
            category: "stats",
            inputs: vec![InputSpec::required(
                "table",
                &[PortType::Table],
                "The table to write.",
            )],
            outputs: vec![],
            params: WriteTableParams::param_specs(),
            impls: vec![ImplSpec::new("native", "Table::write (atomic).")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Write the phantom's label volumes as CSV and as JSON.",
            graph: r#"Graph(
    name: "write_table_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "stats":   (node: "LabelStats", inputs: (labels: "phantom.truth", image: "phantom.ct")),
        "csv":     (node: "WriteTable", inputs: (table: "stats.table"), params: (path: "volumes.csv")),
        "json":    (node: "WriteTable", inputs: (table: "stats.table"), params: (path: "volumes.json")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = WriteTableParams::from_json(params)?;
        require_set("path", &p.path, "the .csv, .tsv or .json file to write")?;
        if !known_extension(Path::new(&p.path)) {
            return Err(vec![ParamError::field(
                "path",
                format!(
                    "unknown extension in {:?}: expected .csv, .tsv or .json",
                    p.path
                ),
            )]);
        }
        Ok(Box::new(WriteTableNode { path: p.path }))
    }
}
