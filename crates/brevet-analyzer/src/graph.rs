//! The principal graph: edges "can become / can act as", and from each principal the shortest
//! path to an admin-equivalent one (breadth-first; every edge costs one step).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::report::{Edge, EscalationPath};

/// What a builder appends to an edge's reason when a policy condition decides it.
pub(crate) const CONDITION: &str = " (when its policy's condition holds)";

/// One sentence per kind of edge (`via`); an edge keeps a reason of its own only when it says
/// something else. Builders settle each edge as they make it, so a million edges do not hold a
/// million copies of the same sentence even for a moment.
#[derive(Default)]
pub(crate) struct EdgeKinds {
    sentences: BTreeMap<String, String>,
}

impl EdgeKinds {
    pub fn from_sentences(sentences: BTreeMap<String, String>) -> EdgeKinds {
        EdgeKinds { sentences }
    }

    /// Marks the edge conditional when the reason says so, and gives it the reason only if it
    /// differs from its kind's sentence (the first reason seen for the kind).
    pub fn settle(&mut self, e: &mut Edge, reason: String) {
        let reason = if reason.contains(CONDITION) {
            e.conditional = true;
            reason.replace(CONDITION, "")
        } else {
            reason
        };
        e.reason = match self.sentences.get(&*e.via) {
            None => {
                self.sentences.insert(e.via.to_string(), reason);
                String::new()
            }
            Some(s) if *s == reason => String::new(),
            Some(_) => reason,
        };
    }

    pub fn into_sentences(self) -> BTreeMap<String, String> {
        self.sentences
    }
}

/// Shortest paths from every principal that is not itself admin to the nearest admin: one
/// breadth-first search backwards from all admins at once (linear in the graph, however many
/// principals), then each principal follows its next hop.
pub fn shortest_paths(
    edges: &[Edge],
    admins: &HashSet<String>,
    principals: &[String],
) -> Vec<EscalationPath> {
    let mut into: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in edges.iter().enumerate() {
        if e.from != e.to {
            into.entry(&*e.to).or_default().push(i);
        }
    }
    // node → (edge to take next, admin reached)
    let mut next: HashMap<&str, (Option<usize>, &str)> = HashMap::new();
    let mut queue: VecDeque<&str> = VecDeque::new();
    let mut sorted_admins: Vec<&String> = admins.iter().collect();
    sorted_admins.sort();
    for a in sorted_admins {
        next.insert(a.as_str(), (None, a.as_str()));
        queue.push_back(a.as_str());
    }
    while let Some(node) = queue.pop_front() {
        let admin = next[node].1;
        for &ei in into.get(node).map(Vec::as_slice).unwrap_or(&[]) {
            let from = &*edges[ei].from;
            if let std::collections::hash_map::Entry::Vacant(v) = next.entry(from) {
                v.insert((Some(ei), admin));
                queue.push_back(from);
            }
        }
    }
    let mut paths = Vec::new();
    for start in principals {
        if admins.contains(start) {
            continue;
        }
        let Some(&(Some(first), admin)) = next.get(start.as_str()) else {
            continue;
        };
        let mut chain = vec![first];
        let mut node = &*edges[first].to;
        while let Some(&(Some(ei), _)) = next.get(node) {
            chain.push(ei);
            node = &*edges[ei].to;
        }
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
            conditional: false,
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
