//! `ConcatTables`: stack tables row-wise with a column saying where each row came from.

use voxflow_engine::{
    node_params, Cell, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Table, Value,
};

node_params! {
    /// Params of `ConcatTables`.
    pub struct ConcatTablesParams {
        /// One name per input table, written in the source column.
        #[param(required)]
        pub names: Vec<String> = Vec::new(),
        /// Name of the source column; None = "source".
        pub column: Option<String> = None,
    }
}

struct ConcatTablesNode {
    names: Vec<String>,
    column: String,
}

impl Node for ConcatTablesNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let tables = ctx.input_list("tables");
        if tables.len() != self.names.len() {
            return Err(NodeError::Input {
                port: "tables".into(),
                message: format!(
                    "{} tables connected but {} names given",
                    tables.len(),
                    self.names.len()
                ),
            });
        }
        // Columns: the source column, then the union of all columns in first-seen order.
        let mut columns = vec![self.column.clone()];
        for t in &tables {
            if let Value::Table(t) = t {
                for c in &t.columns {
                    if !columns.contains(c) {
                        columns.push(c.clone());
                    }
                }
            }
        }
        let mut out = Table::new(columns.clone());
        for (name, t) in self.names.iter().zip(&tables) {
            let Value::Table(t) = t else { continue };
            for row in &t.rows {
                let mut r = vec![Cell::Null; columns.len()];
                r[0] = Cell::Text(name.clone());
                for (c, v) in t.columns.iter().zip(row) {
                    let i = columns
                        .iter()
                        .position(|x| x == c)
                        .expect("column collected");
                    r[i] = v.clone();
                }
                out.push(r);
            }
        }
        ctx.set_output("table", Value::Table(std::sync::Arc::new(out)));
        Ok(())
    }
}

/// Stack tables row-wise.
pub struct ConcatTables;

impl NodeType for ConcatTables {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "ConcatTables",
            summary: "Stack tables row-wise, with a column naming each row's source table.",
            doc:
                "Rows of the first table come first. Columns are the source column followed by \
                  the union of the inputs' columns in first-seen order; a table lacking a column \
                  leaves its cells empty. Used to put metrics before and after a step side by side.",
            category: "stats",
            inputs: vec![InputSpec::list(
                "tables",
                &[PortType::Table],
                "Tables to stack, in order.",
            )],
            outputs: vec![OutputSpec::new(
                "table",
                PortType::Table,
                "The stacked table.",
            )],
            params: ConcatTablesParams::param_specs(),
            impls: vec![ImplSpec::new("native", "Copies rows into one table.")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Per-label statistics of the phantom's truth and prediction in one table.",
            graph: r#"Graph(
    name: "concat_tables_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "truth":   (node: "LabelStats", inputs: (labels: "phantom.truth", image: "phantom.ct")),
        "pred":    (node: "LabelStats", inputs: (labels: "phantom.prediction", image: "phantom.ct")),
        "both":    (node: "ConcatTables", inputs: (tables: ["truth.table", "pred.table"]),
                    params: (names: ["truth", "prediction"])),
    },
    outputs: { "slices_truth": "truth.slices", "slices_pred": "pred.slices" },
)
"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = ConcatTablesParams::from_json(params)?;
        if p.names.is_empty() {
            return Err(vec![ParamError::field(
                "names",
                "give one name per input table",
            )]);
        }
        Ok(Box::new(ConcatTablesNode {
            names: p.names,
            column: p.column.unwrap_or_else(|| "source".into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stacks_rows_with_the_union_of_columns() {
        let mut a = Table::new(["label", "dice"]);
        a.push(vec![Cell::Int(1), Cell::Float(0.5)]);
        let mut b = Table::new(["label", "hd"]);
        b.push(vec![Cell::Int(2), Cell::Float(3.0)]);
        let node = ConcatTables
            .build(&serde_json::json!({"names": ["x", "y"]}), "native")
            .unwrap();
        let dir = std::env::temp_dir();
        let mut ctx = NodeContext::standalone("ConcatTables", &dir)
            .with_input("tables", Value::Table(Arc::new(a)))
            .with_input("tables", Value::Table(Arc::new(b)));
        node.run(&mut ctx).unwrap();
        let Value::Table(t) = &ctx.take_outputs()["table"] else {
            panic!()
        };
        assert_eq!(t.to_csv(), "source,label,dice,hd\nx,1,0.5,\ny,2,,3\n");
        let err = ConcatTables
            .build(&serde_json::json!({}), "native")
            .err()
            .unwrap();
        assert_eq!(err[0].path, ["names"]);
    }
}
