//! A set of catalog permissions (indices into `Catalog::permissions`), as a bitset: a policy
//! with `*` holds 22,000 AWS actions, and unions/differences over thousands of principals must
//! stay cheap.

use fixedbitset::FixedBitSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermSet(FixedBitSet);

impl PermSet {
    pub fn new(universe: usize) -> PermSet {
        PermSet(FixedBitSet::with_capacity(universe))
    }
    pub fn insert(&mut self, i: u32) {
        self.0.insert(i as usize);
    }
    pub fn contains(&self, i: u32) -> bool {
        self.0.contains(i as usize)
    }
    pub fn union_with(&mut self, other: &PermSet) {
        self.0.union_with(&other.0);
    }
    pub fn difference_with(&mut self, other: &PermSet) {
        self.0.difference_with(&other.0);
    }
    pub fn intersect_with(&mut self, other: &PermSet) {
        self.0.intersect_with(&other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_clear()
    }
    pub fn len(&self) -> usize {
        self.0.count_ones(..)
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.ones().map(|i| i as u32)
    }
}
