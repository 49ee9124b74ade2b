//! Pass 3: cycles, each named by its nodes in edge order.

use petgraph::graph::{DiGraph, NodeIndex};

use super::plan::Edge;
use super::Validator;

impl Validator<'_> {
    /// Pass 3: every cycle, named by its nodes, at its first node.
    pub(super) fn cycles(&mut self, ids: &[&str], all_inputs: &[Vec<(String, Vec<Edge>)>]) {
        let mut dag: DiGraph<usize, ()> = DiGraph::new();
        let nidx: Vec<NodeIndex> = (0..ids.len()).map(|i| dag.add_node(i)).collect();
        for (i, inputs) in all_inputs.iter().enumerate() {
            for (_, edges) in inputs {
                for e in edges {
                    dag.add_edge(nidx[e.from], nidx[i], ());
                }
            }
        }
        for scc in petgraph::algo::tarjan_scc(&dag) {
            let self_loop = scc.len() == 1 && dag.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let mut members: Vec<usize> = scc.iter().map(|n| dag[*n]).collect();
                members.sort();
                let path = cycle_path(&dag, &nidx, &members);
                let names: Vec<&str> = path.iter().map(|&i| ids[i]).collect();
                let first = self.graph.nodes[members[0]].loc;
                self.error(
                    first,
                    format!("cycle: {}", names.join(" -> ")),
                    Some("a graph must not feed a node's result back into itself".into()),
                );
            }
        }
    }
}

/// One cycle through the strongly connected component, in edge order.
fn cycle_path(dag: &DiGraph<usize, ()>, nidx: &[NodeIndex], members: &[usize]) -> Vec<usize> {
    let start = members[0];
    let mut path = vec![start];
    let mut cur = start;
    let mut seen = vec![start];
    loop {
        let next = dag
            .neighbors(nidx[cur])
            .map(|n| dag[n])
            .filter(|m| members.contains(m))
            .min_by_key(|m| (seen.contains(m) && *m != start, *m));
        match next {
            Some(m) if m == start => {
                path.push(start);
                return path;
            }
            Some(m) if !seen.contains(&m) => {
                path.push(m);
                seen.push(m);
                cur = m;
            }
            _ => {
                path.push(start);
                return path;
            }
        }
    }
}
