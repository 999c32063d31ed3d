//! [`ActionSet`]: a set of catalog actions as a fixed-size bitset over [`Catalog::actions`]
//! indices.
//!
//! Planning asks the same questions of every role: what its policies grant, what it used,
//! what goes. With ~22,000 catalog actions, a set of them is 2.8 KB of bits whatever it
//! holds, and union, intersection and difference are a pass over ~350 words, where sets of
//! action names cost an allocation and a string comparison per action. A set is only
//! meaningful with the catalog it was made from (the same length and order).
//!
//! [`Catalog::actions`]: super::Catalog::actions

use std::sync::Arc;

use super::ActionId;

/// A set of [`ActionId`]s of one catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ActionSet {
    words: Vec<u64>,
}

impl ActionSet {
    /// The empty set over a catalog of `actions` actions.
    pub fn empty(actions: usize) -> ActionSet {
        ActionSet {
            words: vec![0; actions.div_ceil(64)],
        }
    }

    /// Every action of a catalog of `actions` actions.
    pub fn full(actions: usize) -> ActionSet {
        let mut set = ActionSet {
            words: vec![u64::MAX; actions.div_ceil(64)],
        };
        if let Some(last) = set.words.last_mut()
            && !actions.is_multiple_of(64)
        {
            *last = (1u64 << (actions % 64)) - 1;
        }
        set
    }

    pub fn insert(&mut self, id: ActionId) {
        let i = id.0 as usize;
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub fn remove(&mut self, id: ActionId) {
        let i = id.0 as usize;
        self.words[i / 64] &= !(1 << (i % 64));
    }

    pub fn contains(&self, id: ActionId) -> bool {
        let i = id.0 as usize;
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds every action of `other`.
    pub fn union_with(&mut self, other: &ActionSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Keeps only the actions also in `other`.
    pub fn intersect_with(&mut self, other: &ActionSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// Drops the actions in `other`.
    pub fn difference_with(&mut self, other: &ActionSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    /// How many actions the set holds.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The actions, in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = ActionId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                Some(ActionId(i as u32 * 64 + bit))
            })
        })
    }

    /// How many actions of the id range `lo..hi` the set holds.
    pub fn count_range(&self, lo: u32, hi: u32) -> usize {
        let (lo, hi) = (lo as usize, hi as usize);
        if lo >= hi {
            return 0;
        }
        let (first, last) = (lo / 64, (hi - 1) / 64);
        let mut count = 0;
        for w in first..=last {
            let mut word = self.words.get(w).copied().unwrap_or(0);
            if w == first {
                word &= u64::MAX << (lo % 64);
            }
            if w == last && hi % 64 != 0 {
                word &= (1u64 << (hi % 64)) - 1;
            }
            count += word.count_ones() as usize;
        }
        count
    }

    /// The raw words, little-endian bit order (action `i` is bit `i % 64` of word `i / 64`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// A set from [`ActionSet::words`].
    pub fn from_words(words: Vec<u64>) -> ActionSet {
        ActionSet { words }
    }
}

/// A shared set less a few of its actions: what a role loses is what its policies grant (a
/// set shared by every role with the same documents) less the few actions it keeps, held in
/// a few bytes per role rather than a set of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMinus {
    pub base: Arc<ActionSet>,
    /// Sorted, each in `base`.
    except: Vec<ActionId>,
}

impl SetMinus {
    /// `base` less `except` (ids not in `base` are ignored).
    pub fn new(base: Arc<ActionSet>, mut except: Vec<ActionId>) -> SetMinus {
        except.retain(|id| base.contains(*id));
        except.sort_unstable();
        except.dedup();
        SetMinus { base, except }
    }

    /// The ids taken out of `base`, sorted.
    pub fn except(&self) -> &[ActionId] {
        &self.except
    }

    pub fn contains(&self, id: ActionId) -> bool {
        self.base.contains(id) && self.except.binary_search(&id).is_err()
    }

    fn excepted_in(&self, lo: u32, hi: u32) -> &[ActionId] {
        let from = self.except.partition_point(|id| id.0 < lo);
        let to = self.except.partition_point(|id| id.0 < hi);
        &self.except[from..to]
    }

    /// How many actions of the id range `lo..hi` the set holds.
    pub fn count_range(&self, lo: u32, hi: u32) -> usize {
        self.base.count_range(lo, hi) - self.excepted_in(lo, hi).len()
    }

    /// How many actions of the id range `lo..hi` the set holds that `filter` holds too, with
    /// `base_filtered` the base intersected with `filter`.
    pub fn count_range_filtered(
        &self,
        base_filtered: &ActionSet,
        filter: &ActionSet,
        lo: u32,
        hi: u32,
    ) -> usize {
        base_filtered.count_range(lo, hi)
            - self
                .excepted_in(lo, hi)
                .iter()
                .filter(|id| filter.contains(**id))
                .count()
    }

    pub fn len(&self) -> usize {
        self.base.len() - self.except.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<ActionId> for ActionSet {
    /// Collects ids into a set just large enough for the largest; prefer
    /// [`ActionSet::empty`] + [`ActionSet::insert`] with the catalog's size.
    fn from_iter<I: IntoIterator<Item = ActionId>>(ids: I) -> ActionSet {
        let mut set = ActionSet::default();
        for id in ids {
            let word = id.0 as usize / 64;
            if set.words.len() <= word {
                set.words.resize(word + 1, 0);
            }
            set.insert(id);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(set: &ActionSet) -> Vec<u32> {
        set.iter().map(|id| id.0).collect()
    }

    #[test]
    fn set_operations_agree_with_ordinary_sets() {
        let mut a = ActionSet::empty(200);
        let mut b = ActionSet::empty(200);
        for i in [0, 5, 63, 64, 130, 199] {
            a.insert(ActionId(i));
        }
        for i in [5, 64, 65, 199] {
            b.insert(ActionId(i));
        }
        let mut union = a.clone();
        union.union_with(&b);
        assert_eq!(ids(&union), [0, 5, 63, 64, 65, 130, 199]);
        let mut both = a.clone();
        both.intersect_with(&b);
        assert_eq!(ids(&both), [5, 64, 199]);
        let mut only_a = a.clone();
        only_a.difference_with(&b);
        assert_eq!(ids(&only_a), [0, 63, 130]);
        assert_eq!(only_a.len(), 3);
        assert!(only_a.contains(ActionId(63)) && !only_a.contains(ActionId(64)));
        only_a.remove(ActionId(63));
        assert_eq!(ids(&only_a), [0, 130]);
        assert!(ActionSet::empty(200).is_empty());
        assert_eq!(a.count_range(0, 200), 6);
        assert_eq!(a.count_range(5, 64), 2);
        assert_eq!(a.count_range(6, 64), 1);
        assert_eq!(a.count_range(63, 131), 3);
        assert_eq!(a.count_range(131, 199), 0);
        assert_eq!(a.count_range(7, 7), 0);
    }

    #[test]
    fn a_set_minus_a_few_counts_and_finds_like_the_difference() {
        let mut base = ActionSet::empty(300);
        for i in (0..300).step_by(3) {
            base.insert(ActionId(i));
        }
        let minus = SetMinus::new(
            Arc::new(base.clone()),
            vec![ActionId(99), ActionId(3), ActionId(4), ActionId(3)],
        );
        let mut difference = base.clone();
        difference.remove(ActionId(3));
        difference.remove(ActionId(99));
        assert_eq!(minus.except(), [ActionId(3), ActionId(99)]);
        assert_eq!(minus.len(), difference.len());
        for (lo, hi) in [(0, 300), (3, 4), (4, 99), (90, 100), (100, 300)] {
            assert_eq!(
                minus.count_range(lo, hi),
                difference.count_range(lo, hi),
                "{lo}..{hi}"
            );
        }
        for i in 0..300 {
            assert_eq!(
                minus.contains(ActionId(i)),
                difference.contains(ActionId(i))
            );
        }
        let mut even = ActionSet::empty(300);
        for i in (0..300).step_by(2) {
            even.insert(ActionId(i));
        }
        let mut base_even = base.clone();
        base_even.intersect_with(&even);
        let mut difference_even = difference.clone();
        difference_even.intersect_with(&even);
        assert_eq!(
            minus.count_range_filtered(&base_even, &even, 0, 300),
            difference_even.len()
        );
    }

    #[test]
    fn a_full_set_holds_exactly_the_catalog() {
        for n in [1, 63, 64, 65, 128, 22_321] {
            let full = ActionSet::full(n);
            assert_eq!(full.len(), n);
            assert_eq!(full.iter().last(), Some(ActionId(n as u32 - 1)));
        }
    }
}
