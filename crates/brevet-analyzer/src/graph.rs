//! The principal graph: edges "can become / can act as", and from each principal the shortest
//! path to an admin-equivalent one (breadth-first; every edge costs one step).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::report::{Edge, EscalationPath};

/// Shortest paths from every principal that is not itself admin to the nearest admin.
pub fn shortest_paths(
    edges: &[Edge],
    admins: &HashSet<String>,
    principals: &[String],
) -> Vec<EscalationPath> {
    let mut out_edges: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in edges.iter().enumerate() {
        if e.from != e.to {
            out_edges.entry(e.from.as_str()).or_default().push(i);
        }
    }
    let mut paths = Vec::new();
    for start in principals {
        if admins.contains(start) {
            continue;
        }
        // Parent edge of each reached node.
        let mut via: HashMap<&str, usize> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([start.as_str()]);
        let mut queue = VecDeque::from([start.as_str()]);
        let mut found = None;
        while let Some(node) = queue.pop_front() {
            if admins.contains(node) {
                found = Some(node);
                break;
            }
            for &ei in out_edges.get(node).map(Vec::as_slice).unwrap_or(&[]) {
                let next = edges[ei].to.as_str();
                if seen.insert(next) {
                    via.insert(next, ei);
                    queue.push_back(next);
                }
            }
        }
        let Some(admin) = found else { continue };
        let mut chain = Vec::new();
        let mut node = admin;
        while node != start.as_str() {
            let ei = via[node];
            chain.push(ei);
            node = edges[ei].from.as_str();
        }
        chain.reverse();
        paths.push(EscalationPath {
            principal: start.clone(),
            admin: admin.to_string(),
            edges: chain,
        });
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: &str, b: &str) -> Edge {
        Edge {
            from: a.into(),
            to: b.into(),
            via: "t".into(),
            reason: "t".into(),
        }
    }

    #[test]
    fn finds_the_shortest_of_several_paths() {
        let edges = vec![
            edge("a", "b"),
            edge("b", "c"),
            edge("c", "admin"),
            edge("a", "d"),
            edge("d", "admin"),
            edge("x", "y"),
        ];
        let admins = HashSet::from(["admin".to_string()]);
        let all: Vec<String> = ["a", "b", "x", "admin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let paths = shortest_paths(&edges, &admins, &all);
        let a = paths.iter().find(|p| p.principal == "a").unwrap();
        assert_eq!(a.edges, vec![3, 4]);
        let b = paths.iter().find(|p| p.principal == "b").unwrap();
        assert_eq!(b.edges, vec![1, 2]);
        assert!(paths
            .iter()
            .all(|p| p.principal != "x" && p.principal != "admin"));
    }

    #[test]
    fn cycles_end() {
        let edges = vec![edge("a", "b"), edge("b", "a")];
        let paths = shortest_paths(
            &edges,
            &HashSet::from(["z".to_string()]),
            &["a".to_string()],
        );
        assert!(paths.is_empty());
    }
}
