//! Limit: `LIMIT n OFFSET m` over rows in their final order.

/// Skips `offset` rows and keeps at most `limit`.
pub fn run<R>(rows: Vec<R>, offset: usize, limit: Option<usize>) -> Vec<R> {
    rows.into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}
