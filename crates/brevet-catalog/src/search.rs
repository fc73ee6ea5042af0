//! Search over every permission and role name: words are cut out of the names
//! (`s3:GetObjectVersion` → `s3 get object version getobjectversion`, camelCase and separators),
//! plurals folded (`objects` = `object`), and each word of the query matches a name word exactly,
//! as its prefix, or within one or two typos (an `fst` Levenshtein automaton over the word list).
//! Every query word must match; exact beats prefix beats typo, then shorter names first.

use fst::automaton::{Automaton, Levenshtein, Str};
use fst::{IntoStreamer, Map, Streamer};

use crate::model::{Access, Cloud};
use crate::Snapshot;

/// The most words a query may have.
pub const MAX_WORDS: usize = 12;

/// What to look for.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub cloud: Option<Cloud>,
    pub access: Option<Access>,
    /// Only permissions (roles left out).
    pub permissions_only: bool,
    pub limit: usize,
}

impl Query {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            cloud: None,
            access: None,
            permissions_only: false,
            limit: 20,
        }
    }
}

/// One result: a permission or a role, by index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hit {
    Permission(u32),
    Role(u32),
}

/// The index as stored in a snapshot (built by `catalog refresh`, so a start does not pay for it).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IndexData {
    fst: Vec<u8>,
    /// Word `w`'s entries are `entries[starts[w]..starts[w + 1]]` (flat, so decoding allocates
    /// twice, not once per word).
    starts: Vec<u32>,
    entries: Vec<u32>,
    name_len: Vec<u16>,
}

#[derive(Debug)]
pub(crate) struct Index {
    /// Every word of every name, to its number.
    words: Map<Vec<u8>>,
    /// Per word (in `words` order), the entries holding it: permissions first, then roles
    /// (`permissions.len() + role index`), as in [`IndexData`].
    starts: Vec<u32>,
    entries: Vec<u32>,
    /// Length of each entry's name, for the tie-break.
    name_len: Vec<u16>,
}

/// Cuts a name (or query) into search words.
fn words(text: &str, out: &mut Vec<String>) {
    for part in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        if part.is_empty() {
            continue;
        }
        let whole = fold(&part.to_ascii_lowercase());
        let mut start = 0;
        let bytes = part.as_bytes();
        let mut pieces = 0;
        for i in 1..=bytes.len() {
            let boundary = i == bytes.len()
                || (bytes[i].is_ascii_uppercase()
                    && (bytes[i - 1].is_ascii_lowercase()
                        || bytes[i - 1].is_ascii_digit()
                        || (i + 1 < bytes.len() && bytes[i + 1].is_ascii_lowercase())));
            if boundary {
                out.push(fold(&part[start..i].to_ascii_lowercase()));
                start = i;
                pieces += 1;
            }
        }
        if pieces > 1 {
            out.push(whole);
        }
    }
}

/// Folds a plural to its singular the simple way (`objects` → `object`, `policies` → `policy`),
/// the same for names and queries.
fn fold(w: &str) -> String {
    if w.len() > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        w[..w.len() - 1].to_owned()
    } else {
        w.to_owned()
    }
}

impl Index {
    pub(crate) fn to_data(&self) -> IndexData {
        IndexData {
            fst: self.words.as_fst().as_bytes().to_vec(),
            starts: self.starts.clone(),
            entries: self.entries.clone(),
            name_len: self.name_len.clone(),
        }
    }

    /// The stored index, if it fits the snapshot it came with.
    pub(crate) fn from_data(data: IndexData, snap: &Snapshot) -> Option<Index> {
        let total = snap.permissions.len() + snap.roles.len();
        let words = Map::new(data.fst).ok()?;
        let fits = data.name_len.len() == total
            && data.starts.len() == words.len() + 1
            && data.starts.last().copied() == Some(data.entries.len() as u32)
            && data.starts.windows(2).all(|w| w[0] <= w[1])
            && data.entries.iter().all(|&e| (e as usize) < total);
        fits.then_some(Index {
            words,
            starts: data.starts,
            entries: data.entries,
            name_len: data.name_len,
        })
    }

    fn postings(&self, word: u64) -> &[u32] {
        let w = word as usize;
        &self.entries[self.starts[w] as usize..self.starts[w + 1] as usize]
    }

    pub(crate) fn build(snap: &Snapshot) -> Index {
        let mut pairs: Vec<(String, u32)> = Vec::new();
        let mut name_len = Vec::new();
        let mut buf = Vec::new();
        let names = snap
            .permissions
            .iter()
            .map(|p| (p.name.as_str(), ""))
            .chain(
                snap.roles
                    .iter()
                    .map(|r| (r.name.as_str(), r.title.as_str())),
            );
        for (entry, (name, title)) in names.enumerate() {
            buf.clear();
            words(name, &mut buf);
            words(title, &mut buf);
            buf.sort();
            buf.dedup();
            pairs.extend(buf.drain(..).map(|w| (w, entry as u32)));
            name_len.push(name.len().min(u16::MAX as usize) as u16);
        }
        pairs.sort_unstable();
        let mut list: Vec<&str> = Vec::new();
        let mut starts: Vec<u32> = Vec::new();
        let mut entries: Vec<u32> = Vec::with_capacity(pairs.len());
        for (w, e) in &pairs {
            if list.last() != Some(&w.as_str()) {
                list.push(w);
                starts.push(entries.len() as u32);
            }
            entries.push(*e);
        }
        starts.push(entries.len() as u32);
        let words =
            Map::from_iter(list.into_iter().zip(0u64..)).expect("words are sorted and unique");
        Index {
            words,
            starts,
            entries,
            name_len,
        }
    }

    /// The word numbers matching `q`, best first: exact, then prefixes, then typos.
    fn matches(&self, q: &str) -> Vec<(u64, f32)> {
        let mut out: Vec<(u64, f32)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let map = &self.words;
        // A word the names use as typed is no typo: no need to look for near misses.
        let exact = map.get(q);
        if let Some(n) = exact {
            out.push((n, 3.0));
            seen.insert(n);
        }
        let mut push = |stream: &mut dyn FnMut() -> Option<u64>, weight: f32| {
            while let Some(n) = stream() {
                if seen.insert(n) {
                    out.push((n, weight));
                }
            }
        };
        // A short word typed whole (`s3`, `get`) would be the prefix of thousands of words, most
        // of them camelCase names already found through their parts.
        if exact.is_none() || q.len() > 3 {
            let mut s = map.search(Str::new(q).starts_with()).into_stream();
            push(&mut || s.next().map(|(_, n)| n), 2.0);
        }
        let distance = match q.len() {
            _ if exact.is_some() => 0,
            0..=3 => 0,
            4..=8 => 1,
            _ => 2,
        };
        if distance > 0 {
            if let Ok(lev) = Levenshtein::new(q, distance) {
                let mut s = map.search(lev).into_stream();
                push(&mut || s.next().map(|(_, n)| n), 1.0);
            }
        }
        out
    }

    pub(crate) fn search(&self, snap: &Snapshot, query: &Query) -> Vec<Hit> {
        let mut qwords = Vec::new();
        words(&query.text, &mut qwords);
        // The whole-part words a camelCase query adds are not required to match on their own.
        let required: Vec<String> = {
            let mut w = Vec::new();
            for part in query.text.split(|c: char| !c.is_ascii_alphanumeric()) {
                let mut parts = Vec::new();
                words(part, &mut parts);
                if parts.len() > 1 {
                    parts.pop();
                }
                w.extend(parts);
            }
            w.sort();
            w.dedup();
            w
        };
        // Names have a handful of words; a longer query is refused rather than scanned.
        if required.is_empty() || required.len() > MAX_WORDS {
            return Vec::new();
        }
        let n_perm = snap.permissions.len();
        let total = self.name_len.len();
        let mut score = vec![0f32; total];
        let mut hits = vec![0u8; total];
        let mut mark = vec![0u8; total];
        let mut touched: Vec<u32> = Vec::new();
        for (k, q) in required.iter().enumerate() {
            let tag = (k + 1) as u8;
            for (word, weight) in self.matches(q) {
                for &e in self.postings(word) {
                    let i = e as usize;
                    if mark[i] == tag {
                        continue;
                    }
                    if hits[i] == 0 {
                        touched.push(e);
                    }
                    mark[i] = tag;
                    hits[i] += 1;
                    score[i] += weight;
                }
            }
        }
        // A query typed as the name itself (`s3:GetObject`, `getobject`) ranks that name first.
        let squashed: String = query
            .text
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let need = required.len() as u8;
        let mut ranked: Vec<(f32, u16, u32)> = touched
            .into_iter()
            .filter(|&e| hits[e as usize] == need)
            .filter(|&e| {
                let e = e as usize;
                if e < n_perm {
                    let p = &snap.permissions[e];
                    query.cloud.is_none_or(|c| c == p.cloud)
                        && query.access.is_none_or(|a| a == p.access)
                } else {
                    let r = &snap.roles[e - n_perm];
                    !query.permissions_only
                        && query.access.is_none()
                        && query.cloud.is_none_or(|c| c == r.cloud)
                }
            })
            .map(|e| {
                let i = e as usize;
                let name = if i < n_perm {
                    &snap.permissions[i].name
                } else {
                    &snap.roles[i - n_perm].name
                };
                let exact = same_letters(name, &squashed);
                let s = score[i] + if exact { 100.0 } else { 0.0 };
                (s, self.name_len[i], e)
            })
            .collect();
        let order = |a: &(f32, u16, u32), b: &(f32, u16, u32)| {
            b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        let limit = query.limit.max(1);
        if ranked.len() > limit {
            ranked.select_nth_unstable_by(limit - 1, order);
            ranked.truncate(limit);
        }
        ranked.sort_by(order);
        ranked
            .into_iter()
            .map(|(_, _, e)| {
                if (e as usize) < n_perm {
                    Hit::Permission(e)
                } else {
                    Hit::Role(e - n_perm as u32)
                }
            })
            .collect()
    }
}

/// Whether `name`'s letters and digits, case aside, are `squashed` (lower case, no separators).
fn same_letters(name: &str, squashed: &str) -> bool {
    let mut a = name
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_lowercase());
    let mut b = squashed.bytes();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_into_words() {
        let mut w = Vec::new();
        words("s3:GetObjectVersion", &mut w);
        assert_eq!(w, ["s3", "get", "object", "version", "getobjectversion"]);
        let mut w = Vec::new();
        words("storage.objects.get", &mut w);
        assert_eq!(w, ["storage", "object", "get"]);
        let mut w = Vec::new();
        words("Microsoft.KeyVault/vaults/secrets/getSecret/action", &mut w);
        assert!(w.contains(&"keyvault".to_string()) && w.contains(&"secret".to_string()));
        let mut w = Vec::new();
        words("iam:ListMFADevices", &mut w);
        assert_eq!(w, ["iam", "list", "mfa", "device", "listmfadevice"]);
    }
}
