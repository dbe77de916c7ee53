//! Projection (with HAVING and the ORDER BY keys): each input row becomes
//! its select-list values; HAVING and ORDER BY see the input row followed
//! by those values (so they can name output aliases). The rows kept are
//! the result set until it is sent, and are charged to the tracker.

use super::super::exec::Sx;
use super::super::expr::BoundExpr;
use super::super::memory::row_bytes;
use super::super::table::Row;
use super::sort::Keyed;
use crate::error::SqlError;

/// Projects `rows`; a row HAVING rejects is dropped.
pub fn run(
    sx: &Sx<'_>,
    rows: Vec<Row>,
    items: &[BoundExpr],
    having: Option<&BoundExpr>,
    order: &[BoundExpr],
) -> Result<Vec<Keyed<Row>>, SqlError> {
    let mut out = Vec::new();
    for row in rows {
        sx.mem.check_time()?;
        let vals: Row = items
            .iter()
            .map(|e| e.eval(sx.session, &row))
            .collect::<Result<_, _>>()?;
        let needs_both = having.is_some() || !order.is_empty();
        let wide: Row = if needs_both {
            row.into_iter().chain(vals.iter().cloned()).collect()
        } else {
            Vec::new()
        };
        if let Some(h) = having {
            if !h.holds(sx.session, &wide)? {
                continue;
            }
        }
        let keys: Row = order
            .iter()
            .map(|e| e.eval(sx.session, &wide))
            .collect::<Result<_, _>>()?;
        sx.mem.consume(row_bytes(&keys) + row_bytes(&vals))?;
        out.push((keys, vals));
    }
    Ok(out)
}
