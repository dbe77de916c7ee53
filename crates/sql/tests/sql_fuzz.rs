//! Random SQL never panics the parser, table builder or planner: a
//! deterministic mutation run over a corpus of statements (the cargo-fuzz
//! target `fuzz/fuzz_targets/sql.rs` explores the same entry point).

use tiox_sql::engine::fuzz;

const CORPUS: &[&str] = &[
    "SELECT c FROM t WHERE id = ?",
    "SELECT c FROM t WHERE id BETWEEN 1 AND 10 ORDER BY c LIMIT 5",
    "SELECT k, COUNT(*), SUM(d) FROM t WHERE k IN (1, 2, 3) GROUP BY k HAVING COUNT(*) > 1",
    "SELECT DISTINCT c FROM t WHERE k = 5 AND c > 'a' AND c <= 'zz'",
    "SELECT * FROM t AS a LEFT JOIN t AS b ON a.id = b.k WHERE a.u = 'x'",
    "SELECT (SELECT MAX(id) FROM t), EXISTS (SELECT 1 FROM t WHERE id = 1)",
    "SELECT id FROM t WHERE id > 18446744073709551615 OR id < -9223372036854775809",
    "SELECT 1 UNION ALL SELECT 2 ORDER BY 1 DESC",
    "INSERT INTO t (id, k, c) VALUES (1, 2, 'x'), (3, 4, 'y') ON DUPLICATE KEY UPDATE k = VALUES(k) + 1",
    "UPDATE t SET k = k + 1 WHERE id = 1 ORDER BY id LIMIT 1",
    "DELETE FROM t WHERE k BETWEEN 1.5 AND '9e99'",
    "CREATE TABLE IF NOT EXISTS x (a INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, b DECIMAL(65,30), c ENUM('a','b''c'), d VARCHAR(255) COLLATE utf8mb4_bin, UNIQUE KEY (b, c)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE y (a DATETIME(6) DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, b BLOB, PRIMARY KEY (a, b))",
    "ALTER TABLE t ADD COLUMN z INT NOT NULL DEFAULT 0, DROP INDEX k_c",
    "CREATE UNIQUE INDEX ux ON t (c, k)",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "(",
    ")",
    ",",
    "'",
    "\"",
    "`",
    "?",
    "NULL",
    "=",
    "<=>",
    "IN (",
    "BETWEEN",
    " AND ",
    " OR ",
    "NOT ",
    "-",
    "9223372036854775808",
    "1e308",
    "0x",
    "SELECT ",
    "FROM t",
    "WHERE ",
    "id",
    "k",
    "c",
    "u",
    "*",
    ";",
    "/*",
    "*/",
    "--",
    "\\",
    "\u{0}",
    "é",
    "CASE WHEN",
    "END",
];

#[test]
fn random_sql_never_panics_the_parser_builder_or_planner() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for s in CORPUS {
        parsed += fuzz::sql(s.as_bytes());
    }
    assert_eq!(parsed, CORPUS.len(), "every corpus statement parses");
    for _ in 0..4000 {
        let mut s: Vec<u8> = CORPUS[rng.below(CORPUS.len())].as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 if !s.is_empty() => {
                    let i = rng.below(s.len());
                    s[i] = rng.next() as u8;
                }
                1 if !s.is_empty() => {
                    let i = rng.below(s.len());
                    let j = (i + rng.below(12)).min(s.len());
                    s.drain(i..j);
                }
                _ => {
                    let i = rng.below(s.len() + 1);
                    let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                    s.splice(i..i, piece.iter().copied());
                }
            }
        }
        let _ = fuzz::sql(&s);
    }
}
