//! SQL text to statements: sqlparser's PostgreSQL dialect, plus the few words of Tarn's
//! surface it does not know, handled on the token stream so every other Postgres rule
//! stays sqlparser's:
//!
//! - `CREATE TABLE ... USING lance|parquet`: the `USING <format>` pair is taken out and
//!   returned beside the statement.
//! - `FROM t AS OF VERSION n [alias]` (time travel) becomes
//!   `FROM tarn_as_of('t', n) AS alias`, a table function.
//! - `ALTER TABLE t ADD VECTOR INDEX [name] ON col [opclass] [USING method] [WITH (...)]`
//!   becomes `CREATE INDEX [name] ON t USING method (col [opclass]) [WITH (...)]`
//!   (method `hnsw` unless named).
//! - `CLUSTER [VERBOSE] t`, `VACUUM t (CLUSTER)` and `VACUUM (CLUSTER) t` become
//!   `VACUUM RECLUSTER t`: the table's base rewritten in its `cluster_by` order.
//!   `REFRESH TABLE t` becomes `ANALYZE TABLE t` (an external table's columns read again).
//! - `CREATE UNLOGGED TABLE` is `CREATE TABLE` (Tarn's tables are all durable).
//! - `CREATE EXTERNAL TABLE ... STORED AS ICEBERG`: `PARQUET` for sqlparser, the
//!   format `iceberg` returned beside the statement.
//! - `ALTER VIEW` is `ALTER TABLE` marked as naming a view (sqlparser knows only
//!   `ALTER VIEW ... AS query`, which PostgreSQL does not have).
//! - `MOVE` (of a cursor) is `FETCH` marked as moving only.
//! - `CREATE SEQUENCE`'s options in any order (pg_dump writes `START WITH` first),
//!   put in the one order sqlparser reads.
//! - `COMMENT ON ... IS $$text$$` (dbt's `persist_docs`): the dollar-quoted text is a
//!   plain string, the only kind sqlparser takes there.
//! - pgvector's `<+>` and ParadeDB's `@@@` operators are glued from the tokens sqlparser
//!   splits them into (`<`,`+`,`>` and `@@`,`@`) into one custom operator.

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::Result;
use crate::statements::limits;

/// One parsed statement and what our token pass took out of it.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    pub statement: Statement,
    /// `USING <format>` of a `CREATE TABLE`.
    pub table_format: Option<String>,
    /// An `ALTER TABLE` that was written `ALTER VIEW`.
    pub alter_view: bool,
    /// A `FETCH` that was written `MOVE`: it skips the rows and returns their count.
    pub moves: bool,
    /// The column of an `ALTER TABLE t ALTER [COLUMN] c SET (...)` (or `RESET (...)`),
    /// parsed as the table's `SET (...)` (a reset option set to NULL).
    pub column_options: Option<String>,
    /// A `CREATE MASKING POLICY name ON TAG tag WITH (mask = '...')`, parsed as `CREATE
    /// POLICY name ON tag USING (mask = '...')`, or a `DROP MASKING POLICY [IF EXISTS]
    /// name`, parsed as `DROP POLICY [IF EXISTS] name ON masking`.
    pub masking_policy: bool,
}

impl ParsedStatement {
    /// A statement made here, not parsed from text.
    pub fn of(statement: Statement) -> Self {
        Self {
            statement,
            table_format: None,
            alter_view: false,
            moves: false,
            column_options: None,
            masking_policy: false,
        }
    }
}

/// What the token pass took out of one statement.
#[derive(Debug, Clone, Default)]
struct Taken {
    table_format: Option<String>,
    alter_view: bool,
    moves: bool,
}

/// Parses one or more `;`-separated statements.
/// Statements past the engine's limits (length, nesting) are refused here, before
/// anything recurses into them (see `limits`).
pub fn parse_sql(sql: &str) -> Result<Vec<ParsedStatement>> {
    limits::check_statement_size(sql)?;
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).with_unescape(true).tokenize_with_location()?;
    limits::check_depth(&tokens)?;
    let tokens = order_sequence_options(rewrite_add_vector_index(tokens)?);
    let tokens = rewrite_cluster(tokens);
    let tokens = rewrite_roles(tokens);
    let (tokens, taken) = rewrite_tokens(rewrite_as_of(tokens));
    let (tokens, governance) = rewrite_governance(tokens);
    let statements = Parser::new(&dialect)
        .with_recursion_limit(limits::PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()?;
    Ok(statements
        .into_iter()
        .enumerate()
        .map(|(i, statement)| {
            let taken = taken.get(i).cloned().unwrap_or_default();
            let governance = governance.get(i).cloned().unwrap_or_default();
            ParsedStatement {
                statement,
                table_format: taken.table_format,
                alter_view: taken.alter_view,
                moves: taken.moves,
                column_options: governance.column,
                masking_policy: governance.masking,
            }
        })
        .collect())
}

impl From<datafusion::sql::sqlparser::tokenizer::TokenizerError> for crate::EngineError {
    fn from(e: datafusion::sql::sqlparser::tokenizer::TokenizerError) -> Self {
        crate::EngineError::syntax(format!("syntax error: {e}"))
    }
}

/// Applies the rewrites above; returns the tokens and, for each non-empty statement in
/// order, what was taken out of it.
fn rewrite_tokens(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<Taken>) {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut all_taken = Vec::new();
    // State of the statement being read.
    let mut words_seen = 0usize;
    let mut is_create_table = false;
    let mut depth = 0i32;
    let mut taken = Taken::default();
    let mut pending_using: Option<usize> = None;

    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        if matches!(token.token, Token::Whitespace(_)) {
            out.push(token);
            continue;
        }
        // A `USING` at depth 0 of a CREATE TABLE, waiting for its format word.
        if let Some(at) = pending_using.take() {
            if let Token::Word(w) = &token.token {
                out.truncate(at);
                taken.table_format = Some(w.value.to_ascii_lowercase());
                continue;
            }
        }
        match &token.token {
            Token::SemiColon if depth == 0 => {
                if words_seen > 0 {
                    all_taken.push(std::mem::take(&mut taken));
                }
                words_seen = 0;
                is_create_table = false;
                out.push(token);
                continue;
            }
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            // `CREATE UNLOGGED TABLE`: every Tarn table is logged (PostgreSQL's unlogged
            // tables give up durability for speed; ours keep it), so the word goes.
            Token::Word(w)
                if words_seen == 1
                    && w.value.eq_ignore_ascii_case("unlogged")
                    && first_word_is(&out, Keyword::CREATE) =>
            {
                continue;
            }
            Token::Word(w)
                if words_seen == 1 && w.keyword == Keyword::VIEW && first_word_is(&out, Keyword::ALTER) =>
            {
                words_seen += 1;
                taken.alter_view = true;
                out.push(TokenWithSpan { token: Token::make_keyword("TABLE"), span: token.span });
                continue;
            }
            Token::Word(w)
                if words_seen == 0 && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("move") =>
            {
                words_seen += 1;
                taken.moves = true;
                out.push(TokenWithSpan { token: Token::make_keyword("FETCH"), span: token.span });
                continue;
            }
            Token::DollarQuotedString(text) if first_word_is(&out, Keyword::COMMENT) => {
                words_seen += 1;
                out.push(TokenWithSpan {
                    token: Token::SingleQuotedString(text.value.clone()),
                    span: token.span,
                });
                continue;
            }
            // `CREATE EXTERNAL TABLE ... STORED AS ICEBERG`: sqlparser knows Hive's file
            // formats only; the statement goes on as PARQUET, marked as Iceberg.
            Token::Word(w)
                if is_create_table
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("iceberg")
                    && last_words(&out, 2) == ["STORED", "AS"] =>
            {
                words_seen += 1;
                taken.table_format = Some("iceberg".into());
                out.push(TokenWithSpan { token: Token::make_keyword("PARQUET"), span: token.span });
                continue;
            }
            Token::Word(w) => {
                words_seen += 1;
                if words_seen <= 4 && w.keyword == Keyword::TABLE && first_word_is(&out, Keyword::CREATE) {
                    is_create_table = true;
                }
                if is_create_table && depth == 0 && w.keyword == Keyword::USING {
                    pending_using = Some(out.len());
                }
            }
            _ => words_seen += 1,
        }
        // Operator glue.
        let glued = match &token.token {
            Token::Lt if next_is(&mut iter, &Token::Plus) => {
                let plus = iter.next();
                if next_is(&mut iter, &Token::Gt) {
                    iter.next();
                    Some(Token::CustomBinaryOperator("<+>".into()))
                } else {
                    out.push(token.clone());
                    out.extend(plus);
                    continue;
                }
            }
            Token::AtAt if next_is(&mut iter, &Token::AtSign) => {
                iter.next();
                Some(Token::CustomBinaryOperator("@@@".into()))
            }
            _ => None,
        };
        match glued {
            Some(t) => out.push(TokenWithSpan { token: t, span: token.span }),
            None => out.push(token),
        }
    }
    if words_seen > 0 {
        all_taken.push(taken);
    }
    (out, all_taken)
}

/// The options of each `CREATE [TEMP] SEQUENCE` in the order sqlparser reads them: `AS`,
/// `INCREMENT`, `[NO] MINVALUE`, `[NO] MAXVALUE`, `START`, `CACHE`, `[NO] CYCLE`,
/// `OWNED BY` (PostgreSQL takes any order).
fn order_sequence_options(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    for_each_statement(tokens, |statement| out.extend(order_options_of(statement)));
    out
}

/// Calls `each` with each statement's tokens (its `;` included), in order.
fn for_each_statement(tokens: Vec<TokenWithSpan>, mut each: impl FnMut(Vec<TokenWithSpan>)) {
    let mut statement = Vec::new();
    for token in tokens {
        let end = token.token == Token::SemiColon;
        statement.push(token);
        if end {
            each(std::mem::take(&mut statement));
        }
    }
    each(statement);
}

fn order_options_of(statement: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let keyword = |t: &TokenWithSpan| match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let solid: Vec<usize> =
        (0..statement.len()).filter(|&i| !matches!(statement[i].token, Token::Whitespace(_))).collect();
    let word_at = |n: usize| solid.get(n).and_then(|&i| keyword(&statement[i]));
    let mut n = match (word_at(0), word_at(1), word_at(2)) {
        (Some(Keyword::CREATE), Some(Keyword::SEQUENCE), _) => 2,
        (Some(Keyword::CREATE), Some(Keyword::TEMP | Keyword::TEMPORARY), Some(Keyword::SEQUENCE)) => 3,
        _ => return statement,
    };
    if word_at(n) == Some(Keyword::IF) {
        n += 3;
    }
    // The name: words joined by dots.
    n += 1;
    while solid.get(n).is_some_and(|&i| statement[i].token == Token::Period) {
        n += 2;
    }
    let Some(&options_start) = solid.get(n) else { return statement };
    let rank = |k: Keyword, next: Option<Keyword>| match (k, next) {
        (Keyword::AS, _) => Some(0),
        (Keyword::INCREMENT, _) => Some(1),
        (Keyword::MINVALUE, _) | (Keyword::NO, Some(Keyword::MINVALUE)) => Some(2),
        (Keyword::MAXVALUE, _) | (Keyword::NO, Some(Keyword::MAXVALUE)) => Some(3),
        (Keyword::START, _) => Some(4),
        (Keyword::CACHE, _) => Some(5),
        (Keyword::CYCLE, _) | (Keyword::NO, Some(Keyword::CYCLE)) => Some(6),
        (Keyword::OWNED, _) => Some(7),
        _ => None,
    };
    // Each option: its rank and its tokens (blanks dropped); the `;` stays at the end.
    // Anything else is left for sqlparser to refuse.
    let mut options: Vec<(usize, Vec<TokenWithSpan>)> = Vec::new();
    let mut end = Vec::new();
    for (k, &i) in solid.iter().enumerate().skip(n) {
        let token = statement[i].clone();
        if token.token == Token::SemiColon {
            end.push(token);
            continue;
        }
        let next = solid.get(k + 1).and_then(|&j| keyword(&statement[j]));
        // `NO MINVALUE` is one option.
        let after_no =
            options.last().is_some_and(|(_, t)| t.len() == 1 && keyword(&t[0]) == Some(Keyword::NO));
        match (keyword(&token).and_then(|w| rank(w, next)), options.last_mut()) {
            (Some(r), _) if !after_no => options.push((r, vec![token])),
            (_, Some((_, tokens))) => tokens.push(token),
            (_, None) => return statement,
        }
    }
    if options.windows(2).all(|w| w[0].0 <= w[1].0) {
        return statement;
    }
    options.sort_by_key(|(r, _)| *r);
    let mut out: Vec<TokenWithSpan> = statement[..options_start].to_vec();
    for token in options.into_iter().flat_map(|(_, tokens)| tokens).chain(end) {
        let span = token.span;
        out.push(token);
        out.push(TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span });
    }
    out
}

/// `sql` with every literal (numbers, strings, bit strings) replaced by `?`, as an audit
/// trail keeps statements when told to keep no values; text that does not tokenize is
/// kept as `?` whole.
pub fn redact_literals(sql: &str) -> String {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else { return "?".to_string() };
    tokens
        .into_iter()
        .map(|token| match token {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_) => "?".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// `name AS OF VERSION n [alias]` (or `FOR VERSION AS OF n`, `FOR SYSTEM_VERSION AS OF
/// n`, `VERSION AS OF n`) to `tarn_as_of('name', n) AS alias` (the alias defaulting to
/// the table's name).
fn rewrite_as_of(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    // Tarn's spelling, and Spark's, Iceberg's and Delta's.
    const SPELLINGS: [&[&str]; 4] = [
        &["AS", "OF", "VERSION"],
        &["FOR", "VERSION", "AS", "OF"],
        &["FOR", "SYSTEM_VERSION", "AS", "OF"],
        &["VERSION", "AS", "OF"],
    ];
    let word = |j: usize, text: &str| matches!(&tokens[j].token, Token::Word(w) if w.value.eq_ignore_ascii_case(text));
    let significant = |from: usize, count: usize| -> Vec<usize> {
        (from..tokens.len())
            .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
            .take(count)
            .collect()
    };
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let version = SPELLINGS.iter().find_map(|spelling| {
            let at = significant(i, spelling.len() + 1);
            let (number, words) = at.split_last()?;
            let spelled =
                words.len() == spelling.len() && words.iter().zip(spelling.iter()).all(|(&j, w)| word(j, w));
            match &tokens[*number].token {
                Token::Number(n, _) if spelled => Some((n.clone(), *number)),
                _ => None,
            }
        });
        if let Some((n, at)) = version {
            // The table name: `word (. word)*` just before, whitespace aside.
            let mut parts = Vec::new();
            let mut want_word = true;
            while let Some(last) = out.last() {
                match &last.token {
                    Token::Whitespace(_) if parts.is_empty() => {
                        out.pop();
                    }
                    Token::Word(w) if want_word => {
                        parts.push(w.clone());
                        want_word = false;
                        out.pop();
                    }
                    Token::Period if !want_word => {
                        want_word = true;
                        out.pop();
                    }
                    _ => break,
                }
            }
            if let Some(table) = parts.first().cloned() {
                let name: Vec<String> = parts.iter().rev().map(|w| w.value.clone()).collect();
                let wrap = TokenWithSpan::wrap;
                out.push(wrap(Token::Whitespace(Whitespace::Space)));
                out.push(wrap(Token::make_word("tarn_as_of", None)));
                out.push(wrap(Token::LParen));
                out.push(wrap(Token::SingleQuotedString(name.join("."))));
                out.push(wrap(Token::Comma));
                out.push(wrap(Token::Number(n, false)));
                out.push(wrap(Token::RParen));
                let aliased = significant(at + 1, 1).first().is_some_and(|&j| {
                    matches!(&tokens[j].token, Token::Word(w) if w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword)
                });
                if !aliased {
                    out.push(wrap(Token::Whitespace(Whitespace::Space)));
                    out.push(wrap(Token::make_keyword("AS")));
                    out.push(wrap(Token::Whitespace(Whitespace::Space)));
                    out.push(wrap(Token::Word(table)));
                }
                i = at + 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Tarn's short form of a vector index (see the module docs), statement by statement.
fn rewrite_add_vector_index(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut failed = None;
    for_each_statement(tokens, |statement| match add_vector_index(statement) {
        Ok(tokens) => out.extend(tokens),
        Err(e) => {
            failed.get_or_insert(e);
        }
    });
    failed.map_or(Ok(out), Err)
}

fn add_vector_index(statement: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let significant: Vec<&Token> =
        statement.iter().map(|t| &t.token).filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let word = |i: usize| match significant.get(i) {
        Some(Token::Word(w)) => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    if word(0).as_deref() != Some("alter") || word(1).as_deref() != Some("table") {
        return Ok(statement);
    }
    let Some(add) = (2..significant.len()).find(|&i| {
        word(i).as_deref() == Some("add")
            && word(i + 1).as_deref() == Some("vector")
            && word(i + 2).as_deref() == Some("index")
    }) else {
        return Ok(statement);
    };
    let text = |range: std::ops::Range<usize>| {
        significant[range].iter().map(|t| t.to_string()).collect::<Vec<_>>().join("")
    };
    let table = text(2..add);
    let mut i = add + 3;
    let name = match word(i) {
        Some(w) if w != "on" => {
            i += 1;
            significant[i - 1].to_string()
        }
        _ => String::new(),
    };
    if word(i).as_deref() != Some("on") {
        return Err(crate::EngineError::syntax(
            "syntax error: ALTER TABLE t ADD VECTOR INDEX [name] ON column",
        ));
    }
    let column = significant.get(i + 1).map(|t| t.to_string()).unwrap_or_default();
    i += 2;
    let opclass = match word(i) {
        Some(w) if w.ends_with("_ops") => {
            i += 1;
            format!(" {w}")
        }
        _ => String::new(),
    };
    let method = if word(i).as_deref() == Some("using") {
        i += 2;
        word(i - 1).unwrap_or_default()
    } else {
        "hnsw".to_string()
    };
    let rest =
        significant[i.min(significant.len())..].iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
    let sql = format!("CREATE INDEX {name} ON {table} USING {method} ({column}{opclass}) {rest}");
    Ok(Tokenizer::new(&PostgreSqlDialect {}, &sql).with_unescape(true).tokenize_with_location()?)
}

/// `CLUSTER` and `VACUUM ... (CLUSTER)` as `VACUUM RECLUSTER t`, `REFRESH TABLE` as
/// `ANALYZE TABLE`, statement by statement.
fn rewrite_cluster(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    for_each_statement(tokens, |statement| out.extend(cluster(statement)));
    out
}

fn cluster(statement: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &TokenWithSpan, word: &str| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    let significant: Vec<usize> =
        (0..statement.len()).filter(|&i| !matches!(statement[i].token, Token::Whitespace(_))).collect();
    let Some(&first) = significant.first() else { return statement };
    let recluster = |span| {
        let space = TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span };
        vec![
            TokenWithSpan { token: Token::make_keyword("VACUUM"), span },
            space.clone(),
            TokenWithSpan { token: Token::make_keyword("RECLUSTER"), span },
            space,
        ]
    };
    if is_word(&statement[first], "cluster") {
        // `CLUSTER [VERBOSE] name ...`: the words after it are the table.
        let mut out = recluster(statement[first].span);
        let mut rest = significant.iter().skip(1).peekable();
        if rest.peek().is_some_and(|&&i| is_word(&statement[i], "verbose")) {
            rest.next();
        }
        let from = rest.next().copied().unwrap_or(statement.len());
        out.extend(statement[from..].iter().cloned());
        return out;
    }
    if is_word(&statement[first], "refresh")
        && significant.get(1).is_some_and(|&i| is_word(&statement[i], "table"))
    {
        // `REFRESH TABLE t` is `ANALYZE TABLE t` (see `statements::external`).
        let mut out = statement;
        out[first] = TokenWithSpan { token: Token::make_keyword("ANALYZE"), span: out[first].span };
        return out;
    }
    if !is_word(&statement[first], "vacuum") {
        return statement;
    }
    // `( CLUSTER )` anywhere after VACUUM.
    let Some(at) = significant.windows(3).position(|w| {
        statement[w[0]].token == Token::LParen
            && is_word(&statement[w[1]], "cluster")
            && statement[w[2]].token == Token::RParen
    }) else {
        return statement;
    };
    let (open, close) = (significant[at], significant[at + 2]);
    let mut out = recluster(statement[first].span);
    out.extend(statement[first + 1..open].iter().cloned());
    out.extend(statement[close + 1..].iter().cloned());
    out
}

/// PostgreSQL's role statements sqlparser reads otherwise: `CREATE USER name ...` is
/// `CREATE ROLE name ... LOGIN`; `GRANT g [, ...] TO r` and `REVOKE g FROM r` (no `ON`:
/// role membership) are written `GRANT ROLE g, ROLE ...` for it. And `CREATE POLICY ...
/// USING json_logic('...')` (a rule without the parentheses an expression takes
/// there) gets them.
fn rewrite_roles(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    for_each_statement(tokens, |statement| out.extend(roles(statement)));
    out
}

fn roles(mut statement: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &TokenWithSpan, word: &str| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    let significant: Vec<usize> =
        (0..statement.len()).filter(|&i| !matches!(statement[i].token, Token::Whitespace(_))).collect();
    let word_at = |n: usize| significant.get(n).map(|&i| &statement[i]);
    let (Some(first), Some(second)) = (word_at(0), word_at(1)) else { return statement };
    if is_word(first, "create") && is_word(second, "policy") {
        return parenthesized_rules(statement);
    }
    if is_word(first, "create") && is_word(second, "user") {
        let login =
            significant.iter().any(|&i| is_word(&statement[i], "login") || is_word(&statement[i], "nologin"));
        let at = significant[1];
        statement[at] = TokenWithSpan { token: Token::make_keyword("ROLE"), span: statement[at].span };
        if !login {
            let end = match statement.iter().rposition(|t| t.token == Token::SemiColon) {
                Some(semicolon) => semicolon,
                None => statement.len(),
            };
            let span = statement[at].span;
            statement.splice(
                end..end,
                [
                    TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span },
                    TokenWithSpan { token: Token::make_keyword("LOGIN"), span },
                ],
            );
        }
        return statement;
    }
    let grant = is_word(first, "grant");
    if !(grant || is_word(first, "revoke")) {
        return statement;
    }
    let to = if grant { "to" } else { "from" };
    let mut depth = 0;
    let mut names_end = None;
    for &i in &significant[1..] {
        match &statement[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && is_word(&statement[i], "on") => return statement,
            _ if depth == 0 && is_word(&statement[i], to) && names_end.is_none() => names_end = Some(i),
            _ => {}
        }
    }
    let Some(names_end) = names_end else { return statement };
    // `ROLE` before each name between GRANT/REVOKE and TO/FROM (`ADMIN OPTION FOR`
    // and the like are left for the parser to refuse).
    let mut out = Vec::with_capacity(statement.len() + 8);
    let mut expect_name = true;
    for (i, token) in statement.into_iter().enumerate() {
        if i > significant[0] && i < names_end && !matches!(token.token, Token::Whitespace(_)) {
            if expect_name && matches!(token.token, Token::Word(_)) {
                out.push(TokenWithSpan { token: Token::make_keyword("ROLE"), span: token.span });
                out.push(TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span: token.span });
            }
            expect_name = token.token == Token::Comma;
        }
        out.push(token);
    }
    out
}

/// What [`rewrite_governance`] took out of one statement.
#[derive(Debug, Clone, Default)]
struct Governance {
    column: Option<String>,
    masking: bool,
}

/// The statements of column tags and masking policies, in shapes sqlparser reads:
/// `ALTER TABLE t ALTER [COLUMN] c SET (k = v)` is `ALTER TABLE t SET (k = v)` (and
/// `RESET (k)` is `SET (k = NULL)`) with the column taken out; `CREATE MASKING POLICY
/// p ON TAG g WITH (mask = 'm')` is `CREATE POLICY p ON g USING (mask = 'm')`, and
/// `DROP MASKING POLICY [IF EXISTS] p` is `DROP POLICY [IF EXISTS] p ON masking`, both
/// marked. Returns the tokens and, for each non-empty statement, what was taken.
fn rewrite_governance(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<Governance>) {
    let mut out = Vec::with_capacity(tokens.len());
    let mut taken = Vec::new();
    for_each_statement(tokens, |statement| {
        let empty = statement.iter().all(|t| matches!(t.token, Token::Whitespace(_) | Token::SemiColon));
        let ends = statement.iter().rev().find(|t| !matches!(t.token, Token::Whitespace(_))).cloned();
        let (mut statement, governance) = governance(statement);
        // The rewrites drop the `;`: it goes back.
        if let Some(semicolon) = ends.filter(|t| t.token == Token::SemiColon) {
            if statement.last().map(|t| &t.token) != Some(&Token::SemiColon) {
                statement.push(semicolon);
            }
        }
        if !empty {
            taken.push(governance);
        }
        out.extend(statement);
    });
    (out, taken)
}

fn governance(statement: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Governance) {
    let is_word = |t: &TokenWithSpan, word: &str| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    let solid: Vec<usize> = (0..statement.len())
        .filter(|&i| !matches!(statement[i].token, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let at = |n: usize| solid.get(n).map(|&i| &statement[i]);
    let word = |n: usize, w: &str| at(n).is_some_and(|t| is_word(t, w));
    let span = at(0).map(|t| t.span).unwrap_or(datafusion::sql::sqlparser::tokenizer::Span::empty());
    let make = |token: Token| TokenWithSpan { token, span };
    let space = || make(Token::Whitespace(Whitespace::Space));
    let none = Governance::default();
    if word(0, "create") && word(1, "masking") && word(2, "policy") {
        // CREATE MASKING POLICY name ON TAG tag WITH (...), the tag dotted or not.
        let with = (7..solid.len()).find(|&n| word(n, "with"));
        let (true, Some(with)) = (word(4, "on") && word(5, "tag"), with) else { return (statement, none) };
        if with + 1 >= solid.len() {
            return (statement, none);
        }
        let mut out = vec![make(Token::make_keyword("CREATE")), space(), make(Token::make_keyword("POLICY"))];
        out.extend([
            space(),
            at(3).cloned().expect("checked"),
            space(),
            make(Token::make_keyword("ON")),
            space(),
        ]);
        out.extend(solid[6..with].iter().map(|&i| statement[i].clone()));
        out.extend([space(), make(Token::make_keyword("USING")), space()]);
        out.extend(statement[solid[with + 1]..].iter().cloned());
        return (out, Governance { column: None, masking: true });
    }
    if word(0, "drop") && word(1, "masking") && word(2, "policy") {
        let mut out = vec![make(Token::make_keyword("DROP")), space(), make(Token::make_keyword("POLICY"))];
        for &i in &solid[3..] {
            out.extend([space(), statement[i].clone()]);
        }
        out.extend([
            space(),
            make(Token::make_keyword("ON")),
            space(),
            make(Token::make_word("masking", None)),
        ]);
        return (out, Governance { column: None, masking: true });
    }
    if !(word(0, "alter") && word(1, "table")) {
        return (statement, none);
    }
    // ALTER TABLE [IF EXISTS] [ONLY] name ALTER [COLUMN] c SET|RESET ( ... )
    let Some(alter) = (2..solid.len()).find(|&n| word(n, "alter")) else { return (statement, none) };
    let column_at = if word(alter + 1, "column") { alter + 2 } else { alter + 1 };
    let reset = word(column_at + 1, "reset");
    let options_at = column_at + 2;
    if !(word(column_at + 1, "set") || reset) || !at(options_at).is_some_and(|t| t.token == Token::LParen) {
        return (statement, none);
    }
    let Some(Token::Word(column)) = at(column_at).map(|t| &t.token) else { return (statement, none) };
    let column = match column.quote_style {
        Some(_) => column.value.clone(),
        None => column.value.to_lowercase(),
    };
    let mut out: Vec<TokenWithSpan> = statement[..solid[alter]].to_vec();
    out.extend([make(Token::make_keyword("SET")), space()]);
    for &i in &solid[options_at..] {
        let token = statement[i].clone();
        // RESET (a, b): SET (a = NULL, b = NULL).
        let ends_name = reset && matches!(token.token, Token::Comma | Token::RParen);
        let last = out.iter().rev().find(|t| !matches!(t.token, Token::Whitespace(_)));
        if ends_name && matches!(last.map(|t| &t.token), Some(Token::Word(_))) {
            out.extend([space(), make(Token::Eq), space(), make(Token::make_keyword("NULL"))]);
        }
        out.extend([token, space()]);
    }
    (out, Governance { column: Some(column), masking: false })
}

/// `USING json_logic(...)` / `CHECK json_logic(...)` as `USING (json_logic(...))`.
fn parenthesized_rules(statement: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &Token, word: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(statement.len() + 4);
    // Depth of the call being wrapped, while in one.
    let mut wrapping: Option<i32> = None;
    let mut depth = 0;
    for token in statement {
        let opens_rule = wrapping.is_none()
            && is_word(&token.token, "json_logic")
            && out
                .iter()
                .rev()
                .find(|t| !matches!(t.token, Token::Whitespace(_)))
                .is_some_and(|t| is_word(&t.token, "using") || is_word(&t.token, "check"));
        if opens_rule {
            out.push(TokenWithSpan { token: Token::LParen, span: token.span });
            wrapping = Some(depth);
        }
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        let span = token.span;
        let closes = token.token == Token::RParen && wrapping == Some(depth);
        out.push(token);
        if closes {
            out.push(TokenWithSpan { token: Token::RParen, span });
            wrapping = None;
        }
    }
    out
}

fn next_is(iter: &mut std::iter::Peekable<impl Iterator<Item = TokenWithSpan>>, expected: &Token) -> bool {
    iter.peek().is_some_and(|t| &t.token == expected)
}

/// The last `n` words before the end of `out`, upper-cased, oldest first.
fn last_words(out: &[TokenWithSpan], n: usize) -> Vec<String> {
    let mut words: Vec<String> = out
        .iter()
        .rev()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(n)
        .map(|t| match &t.token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect();
    words.reverse();
    words
}

/// Whether the current statement (tokens after the last `;`) begins with `keyword`.
fn first_word_is(out: &[TokenWithSpan], keyword: Keyword) -> bool {
    let start = out.iter().rposition(|t| t.token == Token::SemiColon).map_or(0, |p| p + 1);
    out[start..]
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.keyword == keyword))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_options_come_in_any_order() {
        let parsed = parse_sql(
            "CREATE SEQUENCE s START WITH 5 INCREMENT BY -1 NO MINVALUE MAXVALUE 9 CACHE 1 AS integer; \
             CREATE SEQUENCE IF NOT EXISTS app.t NO CYCLE MINVALUE 1",
        )
        .unwrap();
        assert_eq!(
            parsed[0].statement.to_string(),
            "CREATE SEQUENCE s AS INTEGER INCREMENT BY -1 NO MINVALUE MAXVALUE 9 START WITH 5 CACHE 1"
        );
        assert_eq!(
            parsed[1].statement.to_string(),
            "CREATE SEQUENCE IF NOT EXISTS app.t MINVALUE 1 NO CYCLE"
        );
    }

    #[test]
    fn column_tags_and_masking_policies_are_marked() {
        let parsed = parse_sql(
            "ALTER TABLE s.t ALTER COLUMN \"Mail\" SET (tag = 'email'); \
             ALTER TABLE t ALTER c RESET (tag);\n\
             CREATE MASKING POLICY m ON TAG email WITH (mask = 'partial'); \
             DROP MASKING POLICY IF EXISTS m; ALTER TABLE t ALTER COLUMN c SET DEFAULT 1; \
             CREATE MASKING POLICY n ON TAG pii.email WITH (mask = 'hash')",
        )
        .unwrap();
        assert_eq!(parsed[0].column_options.as_deref(), Some("Mail"));
        assert_eq!(parsed[0].statement.to_string(), "ALTER TABLE s.t SET (tag = 'email')");
        assert_eq!(parsed[1].column_options.as_deref(), Some("c"));
        assert_eq!(parsed[1].statement.to_string(), "ALTER TABLE t SET (tag = NULL)");
        assert!(parsed[2].masking_policy);
        assert_eq!(parsed[2].statement.to_string(), "CREATE POLICY m ON email USING (mask = 'partial')");
        assert!(parsed[3].masking_policy);
        assert_eq!(parsed[3].statement.to_string(), "DROP POLICY IF EXISTS m ON masking");
        assert!(parsed[4].column_options.is_none() && !parsed[4].masking_policy);
        assert_eq!(parsed[5].statement.to_string(), "CREATE POLICY n ON pii.email USING (mask = 'hash')");
    }

    #[test]
    fn alter_view_is_alter_table_marked_as_a_view() {
        let parsed = parse_sql(
            "/* {\"app\": \"dbt\"} */ alter view \"db\".\"public\".\"v__dbt_tmp\" rename to \"v\"; \
             ALTER TABLE t RENAME TO u",
        )
        .unwrap();
        assert!(parsed[0].alter_view);
        assert_eq!(
            parsed[0].statement.to_string(),
            "ALTER TABLE \"db\".\"public\".\"v__dbt_tmp\" RENAME TO \"v\""
        );
        assert!(!parsed[1].alter_view);
    }

    #[test]
    fn a_comment_may_be_dollar_quoted() {
        let parsed = parse_sql("COMMENT ON TABLE t IS $tag$it's $$ here$tag$").unwrap();
        let Statement::Comment { comment, .. } = &parsed[0].statement else { panic!("{parsed:?}") };
        assert_eq!(comment.as_deref(), Some("it's $$ here"));
    }

    #[test]
    fn using_format_is_taken_out_of_create_table_only() {
        let parsed = parse_sql(
            "CREATE TABLE t (id INT PRIMARY KEY) USING parquet WITH (bucket_count = 2); \
             SELECT * FROM a JOIN b USING (id); CREATE TABLE u (x INT)",
        )
        .unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].table_format.as_deref(), Some("parquet"));
        assert!(parsed[0].statement.to_string().contains("WITH (bucket_count = 2)"));
        assert_eq!(parsed[1].table_format, None);
        assert!(parsed[1].statement.to_string().contains("USING(id)"));
        assert_eq!(parsed[2].table_format, None);
    }

    #[test]
    fn pgvector_and_paradedb_operators_are_glued() {
        let parsed = parse_sql("SELECT a <+> b, c @@@ 'x', 1 < +2").unwrap();
        let text = parsed[0].statement.to_string();
        assert!(text.contains("a <+> b"), "{text}");
        assert!(text.contains("c @@@ 'x'"), "{text}");
        assert!(text.contains("1 < +2"), "{text}");
    }

    #[test]
    fn as_of_version_becomes_a_table_function() {
        let parsed = parse_sql(
            "SELECT * FROM s.events AS OF VERSION 17 WHERE id = 1; SELECT * FROM t AS OF VERSION 2 x",
        )
        .unwrap();
        let text = parsed[0].statement.to_string();
        assert!(text.contains("tarn_as_of('s.events', 17) AS events WHERE"), "{text}");
        let text = parsed[1].statement.to_string();
        assert!(text.contains("tarn_as_of('t', 2) x"), "{text}");
        for spelling in ["FOR VERSION AS OF", "for system_version as of", "VERSION AS OF"] {
            let parsed =
                parse_sql(&format!("SELECT * FROM s.events {spelling} 17 e JOIN t ON true")).unwrap();
            let text = parsed[0].statement.to_string();
            assert!(text.contains("tarn_as_of('s.events', 17) e JOIN"), "{spelling}: {text}");
        }
    }

    #[test]
    fn add_vector_index_is_create_index() {
        let parsed = parse_sql(
            "ALTER TABLE s.items ADD VECTOR INDEX ON embedding; \
             ALTER TABLE items ADD VECTOR INDEX emb ON embedding vector_cosine_ops USING ivfflat WITH (lists = 4)",
        )
        .unwrap();
        let text = parsed[0].statement.to_string();
        assert!(text.starts_with("CREATE INDEX ON s.items USING hnsw (embedding)"), "{text}");
        let text = parsed[1].statement.to_string();
        assert!(
            text.contains("emb ON items USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4)"),
            "{text}"
        );
    }

    #[test]
    fn cluster_is_vacuum_recluster() {
        for sql in ["CLUSTER s.t", "cluster verbose s.t", "VACUUM s.t (CLUSTER)", "VACUUM (cluster) s.t"] {
            let parsed = parse_sql(sql).unwrap();
            let Statement::Vacuum(vacuum) = &parsed[0].statement else {
                panic!("{sql}: {:?}", parsed[0].statement)
            };
            assert!(vacuum.recluster, "{sql}");
            assert_eq!(vacuum.table_name.as_ref().unwrap().to_string(), "s.t", "{sql}");
        }
        let Statement::Vacuum(plain) = &parse_sql("VACUUM t").unwrap()[0].statement else { panic!() };
        assert!(!plain.recluster);
    }

    #[test]
    fn empty_statements_are_skipped() {
        assert_eq!(parse_sql(";; SELECT 1;;").unwrap().len(), 1);
        assert!(parse_sql("   ").unwrap().is_empty());
    }
}
