//! How big and how deep a statement may be, checked before anything recurses into it.
//!
//! Parsing, our syntax rewrites, DataFusion's planner and optimizer, physical planning,
//! expression evaluation and even dropping a syntax tree all recurse once per level of
//! nesting. A client that sends `SELECT 1+1+...+1` with 200,000 terms must get an error
//! (54001, as PostgreSQL answers), not overflow a thread's stack and abort the process
//! with every other session in it. So:
//!
//! - [`check_statement_size`]: statement text longer than [`MAX_STATEMENT_BYTES`] is
//!   refused (54000) before it is tokenized.
//! - [`check_depth`]: a bound on the depth of every expression, read off the token stream
//!   before parsing (see [`depth_bound`]), refused (54001) past
//!   [`MAX_EXPRESSION_DEPTH`]. sqlparser builds a chain of left-associative operators in
//!   a loop, so its own recursion limit ([`PARSER_RECURSION_LIMIT`], which bounds
//!   parentheses, subqueries and right-nested constructs) does not see such chains;
//!   this bound does.
//! - [`STATEMENT_STACK_BYTES`]: the stack of the threads statements run on (the server's
//!   runtime), sized so that a statement at both limits runs to completion in a debug
//!   build; `tests/limits.rs` checks it at the limit and past it.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{EngineError, Result};

/// Longest statement text accepted (PostgreSQL's own limit is 1 GiB; a statement this
/// long is generated, and its tokens alone take tens of bytes per byte of text).
pub const MAX_STATEMENT_BYTES: usize = 16 << 20;

/// Deepest expression accepted. PostgreSQL, with its default 2 MB `max_stack_depth`,
/// takes `1+1+...+1` with 4,000 terms and refuses 6,000. DataFusion's analyzer and
/// optimizer cost the square of an expression's depth (types and names of every
/// subtree are worked out again at every level: 2,000 terms take 22 s in a debug build),
/// so ours is lower: 1,000 terms cost about 4 s in a debug build, a fraction of that in
/// a release build.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// sqlparser's limit on its own recursion (parenthesised expressions, subqueries): its
/// default is 50, below what PostgreSQL accepts (1,000 nested parentheses parse there).
pub const PARSER_RECURSION_LIMIT: usize = 1_000;

/// Stack of every thread a statement runs on: 64 MiB of address space, of which only
/// what deep statements touch is ever backed by memory.
pub const STATEMENT_STACK_BYTES: usize = 64 << 20;

pub fn check_statement_size(sql: &str) -> Result<()> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(EngineError::ProgramLimit {
            message: format!(
                "statement is too long: {} bytes (the limit is {} bytes)",
                sql.len(),
                MAX_STATEMENT_BYTES
            ),
        });
    }
    Ok(())
}

/// Most dimensions an array may have, PostgreSQL's `MAXDIM`. Arrow nests a list type
/// per dimension, and planning a thousand-deep `ARRAY[ARRAY[...]]` takes minutes.
pub const MAX_ARRAY_DIMENSIONS: usize = 6;

/// Refuses statements whose expressions may nest deeper than [`MAX_EXPRESSION_DEPTH`],
/// or whose array constructors nest more than [`MAX_ARRAY_DIMENSIONS`] deep.
pub fn check_depth(tokens: &[TokenWithSpan]) -> Result<()> {
    let depth = depth_bound(tokens);
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(stack_depth_exceeded(depth));
    }
    let dimensions = array_dimensions(tokens);
    if dimensions > MAX_ARRAY_DIMENSIONS {
        return Err(EngineError::ProgramLimit {
            message: format!(
                "number of array dimensions ({dimensions}) exceeds the maximum allowed ({MAX_ARRAY_DIMENSIONS})"
            ),
        });
    }
    Ok(())
}

/// How deep `ARRAY[...]` constructors (and the bare `[...]` inside them) nest.
fn array_dimensions(tokens: &[TokenWithSpan]) -> usize {
    // For each open `[`: whether it belongs to an array constructor.
    let mut open: Vec<bool> = Vec::new();
    let mut inside = 0usize;
    let mut deepest = 0usize;
    let mut after_array = false;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => continue,
            Token::LBracket => {
                let constructor = after_array || open.last().copied().unwrap_or(false);
                open.push(constructor);
                if constructor {
                    inside += 1;
                    deepest = deepest.max(inside);
                }
            }
            Token::RBracket => {
                if open.pop() == Some(true) {
                    inside -= 1;
                }
            }
            _ => {}
        }
        after_array = matches!(&token.token, Token::Word(w) if w.keyword == Keyword::ARRAY);
    }
    deepest
}

pub fn stack_depth_exceeded(depth: usize) -> EngineError {
    EngineError::StackDepth {
        message: format!(
            "stack depth limit exceeded: the statement nests about {depth} levels deep (the limit is {MAX_EXPRESSION_DEPTH})"
        ),
    }
}

/// An upper bound on the depth of the syntax tree the tokens parse into.
///
/// Brackets (and `CASE ... END`) open a level each. Within a level, an operator chain
/// `a op b op c ...` is a tree as deep as it is long, and operators of different
/// precedence nest: below an `OR` chain hang `AND` chains, below those comparisons,
/// and so on. A run of operators of one precedence ends where an operator that binds
/// more loosely appears (`x = 1 OR x = 2`: the `=` runs are one long each, the `OR` run
/// is as long as the list), so the depth of a level is at most the sum, over
/// precedence classes, of the current run of each. Items of a list (commas, `WHEN`,
/// `THEN`, `ELSE`) sit side by side and start afresh. The bound at a token is that of
/// every enclosing level plus the levels open; the statement's is the largest. Long
/// lists (`IN (...)`, multi-row `VALUES`, wide select lists) cost nothing.
pub fn depth_bound(tokens: &[TokenWithSpan]) -> usize {
    let mut levels: Vec<Level> = vec![Level::default()];
    let mut enclosing = 0usize; // the depth of all levels but the innermost
    let mut deepest = 0usize;
    for token in tokens {
        let token = &token.token;
        if matches!(token, Token::Whitespace(_)) {
            continue;
        }
        let word = match token {
            Token::Word(w) => Some(w.keyword),
            _ => None,
        };
        if matches!(token, Token::LParen | Token::LBracket | Token::LBrace) || word == Some(Keyword::CASE) {
            enclosing += levels.last().map_or(0, Level::depth);
            levels.push(Level::default());
        } else if matches!(token, Token::RParen | Token::RBracket | Token::RBrace)
            || word == Some(Keyword::END)
        {
            if levels.len() > 1 {
                levels.pop();
                enclosing -= levels.last().map_or(0, Level::depth);
            }
        } else if matches!(token, Token::Comma)
            || matches!(word, Some(Keyword::WHEN | Keyword::THEN | Keyword::ELSE))
        {
            *levels.last_mut().expect("never empty") = Level::default();
        } else if matches!(token, Token::SemiColon) {
            levels = vec![Level::default()];
            enclosing = 0;
        } else if let Some(class) = precedence(token) {
            levels.last_mut().expect("never empty").operator(class);
        }
        let here = enclosing + levels.last().map_or(0, Level::depth) + levels.len();
        deepest = deepest.max(here);
    }
    deepest
}

/// Precedence classes, loosest first (PostgreSQL's table, with the set operations and
/// joins, which also chain, below them).
const CLASSES: usize = 12;

/// One bracket level: the current run of operators of each precedence class.
#[derive(Default)]
struct Level {
    runs: [usize; CLASSES],
}

impl Level {
    fn operator(&mut self, class: usize) {
        self.runs[class] += 1;
        // Operators binding tighter than this one start new operands after it.
        for run in &mut self.runs[class + 1..] {
            *run = 0;
        }
    }

    fn depth(&self) -> usize {
        self.runs.iter().sum()
    }
}

/// The precedence class of a token that joins two things into one node (or wraps
/// one); `None` for everything else.
fn precedence(token: &Token) -> Option<usize> {
    if let Token::Word(w) = token {
        return match w.keyword {
            Keyword::UNION | Keyword::EXCEPT | Keyword::JOIN => Some(0),
            Keyword::INTERSECT => Some(1),
            Keyword::OR => Some(2),
            Keyword::AND => Some(3),
            Keyword::NOT => Some(4),
            Keyword::IS => Some(5),
            Keyword::LIKE | Keyword::ILIKE | Keyword::SIMILAR | Keyword::BETWEEN | Keyword::IN => Some(7),
            Keyword::AT | Keyword::COLLATE => Some(11),
            _ => None,
        };
    }
    Some(match token {
        Token::Eq | Token::DoubleEq | Token::Neq | Token::Lt | Token::Gt | Token::LtEq | Token::GtEq => 6,
        Token::Plus | Token::Minus => 9,
        Token::Mul | Token::Div | Token::Mod | Token::DuckIntDiv => 10,
        Token::Caret | Token::DoubleColon => 11,
        Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Period
        | Token::Colon
        | Token::EOF => return None,
        // Every other symbol: `||`, `<->`, `@@@`, `->>`, `&`, `|`, ...
        _ => 8,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn bound(sql: &str) -> usize {
        depth_bound(&Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap())
    }

    #[test]
    fn chains_count_their_length_lists_do_not() {
        let chain = format!("SELECT {}", vec!["1"; 1000].join("+"));
        assert!(bound(&chain) >= 999);
        let list = format!("SELECT x IN ({}) FROM t", vec!["1"; 10_000].join(","));
        assert!(bound(&list) < 10, "{}", bound(&list));
        let rows = format!("INSERT INTO t VALUES {}", vec!["(1, -2, 'a' || 'b')"; 10_000].join(","));
        assert!(bound(&rows) < 10, "{}", bound(&rows));
    }

    #[test]
    fn operators_of_different_precedence_nest_once_per_run() {
        let ors = format!("SELECT * FROM t WHERE {}", vec!["x = 1"; 500].join(" OR "));
        let b = bound(&ors);
        assert!((500..510).contains(&b), "{b}");
        let mixed = format!("SELECT {}", vec!["a * b * c"; 100].join(" + "));
        let b = bound(&mixed);
        assert!((102..110).contains(&b), "{b}");
        let nots = format!("SELECT {} x", "NOT ".repeat(300));
        assert!(bound(&nots) >= 300);
        let cases = format!("SELECT {}1{}", "CASE WHEN x THEN ".repeat(200), " END".repeat(200));
        assert!(bound(&cases) >= 200);
    }

    #[test]
    fn array_constructors_nest_six_deep_at_most() {
        let tokens = |sql: &str| Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        assert_eq!(array_dimensions(&tokens("SELECT ARRAY[[1,2],[3,4]], a[1][2], ARRAY[ARRAY[1]]")), 2);
        let deep = format!("SELECT {}1{}", "ARRAY[".repeat(7), "]".repeat(7));
        assert!(matches!(check_depth(&tokens(&deep)), Err(EngineError::ProgramLimit { .. })));
        let ok = format!("SELECT {}1{}", "ARRAY[".repeat(6), "]".repeat(6));
        assert!(check_depth(&tokens(&ok)).is_ok());
    }

    #[test]
    fn brackets_nest_and_statements_start_afresh() {
        let nested = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert!(bound(&nested) >= 300);
        let two = format!("SELECT {}; SELECT 1", vec!["1"; 100].join("+"));
        assert!(bound(&two) < 110);
        let after_comma = format!("SELECT {}, 1", vec!["1"; 100].join("+"));
        assert!(bound(&after_comma) >= 99);
    }
}
