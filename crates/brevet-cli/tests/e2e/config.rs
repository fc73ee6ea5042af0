//! The server config a test starts with, built as a TOML table instead of spliced text: a test
//! sets, removes or renames a key by its path, or merges a fragment (a provider's tables, more
//! principals), and a later value replaces an earlier one — so a test never depends on how the
//! default config happens to be laid out.
#![allow(dead_code)]

use toml::{Table, Value};

/// A server config under construction. Paths are dotted keys as TOML writes them
/// (`server.tick`, `resources."postgres:orders".database`); a number indexes an array of tables
/// (`principals.3.roles`).
#[derive(Debug, Clone, Default)]
pub struct Config(Table);

impl Config {
    /// Parses a whole config; panics on TOML the test itself got wrong.
    pub fn parse(text: &str) -> Self {
        Self(
            text.parse()
                .unwrap_or_else(|e| panic!("test config: {e}\n{text}")),
        )
    }

    /// The config as the server reads it.
    pub fn text(&self) -> String {
        toml::to_string(&self.0).expect("a TOML table serializes")
    }

    /// Sets the value at `path`, making the tables on the way.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        let (parent, key) = split_last(path);
        let table = self.table_mut(&parent, true);
        table.insert(key, value.into());
        self
    }

    /// The value at `path`, if there is one.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let segs = segments(path);
        let mut v = self.0.get(&segs[0])?;
        for seg in &segs[1..] {
            v = match v {
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                Value::Table(t) => t.get(seg)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// Removes the key at `path`; panics if it is not there (the test would test nothing).
    pub fn remove(mut self, path: &str) -> Self {
        let (parent, key) = split_last(path);
        self.table_mut(&parent, false)
            .remove(&key)
            .unwrap_or_else(|| panic!("test config has no `{path}`"));
        self
    }

    /// Moves the value at `path` to the key `to` in the same table (a misspelt field, a resource
    /// under another provider's name).
    pub fn rename(mut self, path: &str, to: &str) -> Self {
        let (parent, key) = split_last(path);
        let table = self.table_mut(&parent, false);
        let v = table
            .remove(&key)
            .unwrap_or_else(|| panic!("test config has no `{path}`"));
        table.insert(to.to_owned(), v);
        self
    }

    /// Merges a TOML fragment: tables merge key by key, arrays of tables (`[[principals]]`) are
    /// appended to, any other value replaces the one there.
    pub fn merge(mut self, fragment: &str) -> Self {
        let other: Table = fragment
            .parse()
            .unwrap_or_else(|e| panic!("test config fragment: {e}\n{fragment}"));
        merge_into(&mut self.0, other);
        self
    }

    fn table_mut(&mut self, path: &[String], create: bool) -> &mut Table {
        let mut table = &mut self.0;
        let mut i = 0;
        while i < path.len() {
            let seg = &path[i];
            if !table.contains_key(seg) {
                assert!(create, "test config has no table `{seg}`");
                table.insert(seg.clone(), Value::Table(Table::new()));
            }
            let v = match table.get_mut(seg).expect("present") {
                Value::Array(a) => {
                    let n: usize = path
                        .get(i + 1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("`{seg}` is an array: index it"));
                    i += 1;
                    let len = a.len();
                    a.get_mut(n)
                        .unwrap_or_else(|| panic!("`{seg}` has {len} items, no {n}"))
                }
                v => v,
            };
            table = match v {
                Value::Table(t) => t,
                other => panic!("`{seg}` is {other}, not a table"),
            };
            i += 1;
        }
        table
    }
}

/// `a."b.c".d` → `["a", "b.c", "d"]`; a numeric segment after an array name indexes it.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in path.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Splits off the last key: the table path and the key in it.
fn split_last(path: &str) -> (Vec<String>, String) {
    let mut segs = segments(path);
    let key = segs.pop().expect("a non-empty path");
    (segs, key)
}

fn merge_into(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge_into(a, b),
            (Some(Value::Array(a)), Value::Array(b))
                if a.iter().chain(&b).all(|x| matches!(x, Value::Table(_))) =>
            {
                a.extend(b)
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_merge_rename_and_remove_by_path() {
        let c = Config::parse(
            "[server]\ntick = \"200ms\"\n[[principals]]\nid = \"a\"\n[resources.\"pg:x\"]\ndb = \"d\"\n",
        )
        .set("server.tick", "soon")
        .merge("[[principals]]\nid = \"b\"\n[server]\nlease = \"6s\"")
        .rename("resources.\"pg:x\"", "other:x")
        .remove("server.lease")
        .set("principals.0.roles", Value::Array(vec!["admin".into()]));
        let back: Table = c.text().parse().unwrap();
        assert_eq!(back["server"]["tick"].as_str(), Some("soon"));
        assert!(back["server"].get("lease").is_none());
        assert_eq!(back["principals"].as_array().unwrap().len(), 2);
        assert_eq!(back["resources"]["other:x"]["db"].as_str(), Some("d"));
        assert_eq!(back["principals"][0]["roles"][0].as_str(), Some("admin"));
        assert_eq!(c.get("principals.1.id").and_then(Value::as_str), Some("b"));
    }
}
