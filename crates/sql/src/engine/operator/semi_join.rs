//! Semi and anti-semi joins: the rows of a decorrelated `EXISTS` / `IN`
//! subquery, as the key values it joined on, held in a hash table; an
//! outer row is kept when its key matches one (`EXISTS`, `IN`) or none
//! (`NOT EXISTS`).
//!
//! Keys compare as `=` does (the hash join's key parts). A NULL key part
//! matches nothing, so `IN` rejects the row (NULL and FALSE both reject in
//! WHERE) and `NOT EXISTS` keeps it (no subquery row can match it). When a
//! key column holds values of several kinds (`'1'` and `1` are equal in
//! MySQL), lookups on it compare with every row instead of hashing.

use std::collections::HashMap;

use super::hash_join::KeyPart;
use crate::engine::expr::compare::compare;
use crate::value::Value;

/// The subquery side of a semi join.
pub struct SemiTable {
    rows: Vec<Vec<Value>>,
    kinds: Vec<Option<u8>>,
    mixed: Vec<bool>,
    hashed: HashMap<Vec<KeyPart>, Vec<usize>>,
}

impl SemiTable {
    /// A table over the subquery's key rows (`width` keys each).
    pub fn new(rows: Vec<Vec<Value>>, width: usize) -> SemiTable {
        let mut kinds: Vec<Option<u8>> = vec![None; width];
        let mut mixed = vec![false; width];
        let mut parts: Vec<Option<Vec<KeyPart>>> = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: Option<Vec<KeyPart>> = r.iter().map(KeyPart::of).collect();
            if let Some(k) = &key {
                for (i, p) in k.iter().enumerate() {
                    match kinds[i] {
                        None => kinds[i] = Some(p.kind()),
                        Some(x) if x != p.kind() => mixed[i] = true,
                        _ => {}
                    }
                }
            }
            parts.push(key);
        }
        let mut hashed: HashMap<Vec<KeyPart>, Vec<usize>> = HashMap::new();
        for (i, k) in parts.into_iter().enumerate() {
            if let Some(k) = k {
                hashed.entry(project(&k, &mixed)).or_default().push(i);
            }
        }
        SemiTable {
            rows,
            kinds,
            mixed,
            hashed,
        }
    }

    /// Whether a subquery row's keys equal `key` (false when a part of
    /// `key` is NULL).
    pub fn matches(&self, key: &[Value]) -> bool {
        let Some(parts) = key.iter().map(KeyPart::of).collect::<Option<Vec<_>>>() else {
            return false;
        };
        let same_kinds = parts
            .iter()
            .zip(&self.kinds)
            .zip(&self.mixed)
            .all(|((p, k), m)| *m || k.is_none_or(|k| k == p.kind()));
        let equal = |r: &Vec<Value>| {
            r.iter()
                .zip(key)
                .all(|(a, b)| compare(a, b) == Some(std::cmp::Ordering::Equal))
        };
        if same_kinds {
            // Hashing narrows the candidates; `=` decides.
            return self
                .hashed
                .get(&project(&parts, &self.mixed))
                .is_some_and(|c| c.iter().any(|&i| equal(&self.rows[i])));
        }
        self.rows.iter().any(equal)
    }
}

/// The hashed columns of a key (those holding one kind of value).
fn project(key: &[KeyPart], mixed: &[bool]) -> Vec<KeyPart> {
    key.iter()
        .zip(mixed)
        .filter(|(_, m)| !**m)
        .map(|(p, _)| p.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_equality_does_and_nulls_match_nothing() {
        let t = SemiTable::new(
            vec![
                vec![Value::Int(1), Value::Text("a".into())],
                vec![Value::Int(2), Value::Null],
            ],
            2,
        );
        assert!(t.matches(&[Value::Decimal("1.0".into()), Value::Text("A".into())]));
        assert!(!t.matches(&[Value::Int(2), Value::Null]));
        assert!(!t.matches(&[Value::Int(3), Value::Text("a".into())]));
        let mixed = SemiTable::new(vec![vec![Value::Int(1)], vec![Value::Text("x".into())]], 1);
        assert!(mixed.matches(&[Value::Text("1".into())]));
        assert!(mixed.matches(&[Value::Text("X".into())]));
        assert!(!mixed.matches(&[Value::Int(5)]));
    }
}
