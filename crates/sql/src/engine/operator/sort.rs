//! Sort and top-N: rows with their ORDER BY keys, ordered as `ORDER BY`
//! orders values (NULL first, then MySQL's comparison; DESC reverses).
//! Ties keep their input order (a stable sort). With a limit, top-N keeps
//! only the first `n` in order (a selection, then a sort of those).

use std::cmp::Ordering;

use crate::executor::eval::sort_cmp;
use crate::value::Value;

/// A row and its sort keys.
pub type Keyed<R> = (Vec<Value>, R);

/// Compares two key lists; `desc[i]`: the i-th key descends.
pub fn cmp_keys(a: &[Value], b: &[Value], desc: &[bool]) -> Ordering {
    for (i, d) in desc.iter().enumerate() {
        let mut c = sort_cmp(&a[i], &b[i]);
        if *d {
            c = c.reverse();
        }
        if c.is_ne() {
            return c;
        }
    }
    Ordering::Equal
}

/// Sorts `rows` by their keys (stable).
pub fn sort<R>(rows: &mut [Keyed<R>], desc: &[bool]) {
    rows.sort_by(|a, b| cmp_keys(&a.0, &b.0, desc));
}

/// The first `n` rows in key order, ties in input order (the same rows,
/// in the same order, as a stable sort then a cut at `n`).
pub fn top_n<R>(rows: Vec<Keyed<R>>, desc: &[bool], n: usize) -> Vec<Keyed<R>> {
    if n >= rows.len() {
        let mut rows = rows;
        sort(&mut rows, desc);
        return rows;
    }
    if n == 0 {
        return Vec::new();
    }
    let mut indexed: Vec<(usize, Keyed<R>)> = rows.into_iter().enumerate().collect();
    let by = |a: &(usize, Keyed<R>), b: &(usize, Keyed<R>)| {
        cmp_keys(&a.1 .0, &b.1 .0, desc).then(a.0.cmp(&b.0))
    };
    indexed.select_nth_unstable_by(n - 1, by);
    indexed.truncate(n);
    indexed.sort_by(by);
    indexed.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_keeps_the_rows_a_stable_sort_would_put_first() {
        let rows: Vec<Keyed<usize>> = [3, 1, 2, 1, 3, 0, 2]
            .iter()
            .enumerate()
            .map(|(i, k)| (vec![Value::Int(*k)], i))
            .collect();
        for n in 0..=8 {
            let mut all = rows.clone();
            sort(&mut all, &[true]);
            all.truncate(n);
            let top = top_n(rows.clone(), &[true], n);
            assert_eq!(
                top.iter().map(|r| r.1).collect::<Vec<_>>(),
                all.iter().map(|r| r.1).collect::<Vec<_>>(),
                "n = {n}"
            );
        }
    }
}
