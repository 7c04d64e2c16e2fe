//! A randomized test of the change store against an in-memory model.
//!
//! One client runs a seeded random mix of writes on a small key range (so that inserts,
//! upserts, updates and deletes keep hitting the same keys), transactions that commit or
//! roll back, `VACUUM`, and server restarts. The table's thresholds are tiny, so flushes
//! and compactions happen all the time underneath; it is clustered in Z-order and has
//! Bloom, bitmap and zone-map indexes, which must never change an answer. After every step the table must equal
//! a `BTreeMap` that applied the same steps: full scan, point lookups, aggregates, the
//! version counter, time travel and the change feed.
//!
//! - `TARN_MODEL_SEED=n` replays a run (the seed is printed when a run fails);
//! - `TARN_MODEL_STEPS=n` sets its length (`TARN_MODEL_S3_STEPS=n` that of the run on
//!   a warehouse in an S3 server, 200 by default);
//! - `TARN_PG_ORACLE='host=... user=... dbname=...'` also runs every statement on a real
//!   PostgreSQL (15 or later) and holds it to the same expectations, which checks the
//!   model itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tarn_tests::rng::{env_u64, Rng};
use tarn_tests::TestServer;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

/// Keys are drawn from `0..KEYS`: small, so that conflicts are frequent.
const KEYS: i64 = 300;
const USERS: i32 = 8;
const KINDS: &[&str] = &["click", "view", "buy", "refund"];
const TABLE_DDL: &str =
    "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id INT, kind TEXT, amount DOUBLE PRECISION)";
/// Tarn's table options: tiny thresholds, and a clustering its compactions write in.
const TABLE_OPTIONS: &str = " WITH (bucket_count = 4, flush_rows = 50, compaction_threshold = 200, \
     compaction_interval = '1s', cluster_by = 'zorder(user_id, amount)')";
/// Data-skipping indexes on Tarn's table (answers never depend on them).
const TABLE_INDEXES: &str =
    "CREATE INDEX events_user ON events USING bloom (user_id) WITH (rows_per_zone = 64); \
     CREATE INDEX events_kind ON events USING bitmap (kind); \
     CREATE INDEX events_amount ON events USING brin (amount) WITH (rows_per_zone = 64)";
const SCAN: &str = "SELECT id, user_id, kind, amount FROM events ORDER BY id";

#[derive(Debug, Clone, PartialEq)]
struct Row {
    user_id: Option<i32>,
    kind: Option<String>,
    /// Always a whole number of small magnitude, so sums are exact in any order.
    amount: Option<f64>,
}

type State = BTreeMap<i64, Row>;

/// One value of a result, compared exactly.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Val {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

/// What a statement did, as a client sees it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Done, with the row count of the command tag (0 for utility statements).
    Done(u64),
    Rows(Vec<Vec<Val>>),
    /// Failed with this SQLSTATE.
    Failed(String),
}

#[derive(Debug, Clone)]
enum Param {
    Int8(i64),
    Int4(i32),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Extended protocol, no result rows: the row count matters.
    Execute,
    /// Extended protocol with result rows.
    Query,
    /// Extended protocol with result rows in no particular order (RETURNING, GROUP BY).
    QueryUnordered,
    /// Simple protocol (BEGIN, COMMIT, TRUNCATE, VACUUM).
    Simple,
}

#[derive(Debug, Clone)]
struct Stmt {
    sql: String,
    params: Vec<Param>,
    kind: Kind,
}

impl Stmt {
    fn new(kind: Kind, sql: impl Into<String>, params: Vec<Param>) -> Stmt {
        Stmt { sql: sql.into(), params, kind }
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.sql)?;
        if !self.params.is_empty() {
            write!(f, "  -- params {:?}", self.params)?;
        }
        Ok(())
    }
}

async fn run(client: &Client, stmt: &Stmt) -> Outcome {
    let params: Vec<&(dyn ToSql + Sync)> = stmt
        .params
        .iter()
        .map(|p| match p {
            Param::Int8(v) => v as &(dyn ToSql + Sync),
            Param::Int4(v) => v as &(dyn ToSql + Sync),
            Param::Text(v) => v as &(dyn ToSql + Sync),
        })
        .collect();
    let failed = |e: tokio_postgres::Error| match e.code() {
        Some(code) => Outcome::Failed(code.code().to_string()),
        None => Outcome::Failed(format!("no SQLSTATE: {e}")),
    };
    match stmt.kind {
        Kind::Simple => match client.batch_execute(&stmt.sql).await {
            Ok(()) => Outcome::Done(0),
            Err(e) => failed(e),
        },
        Kind::Execute => match client.execute(&stmt.sql, &params).await {
            Ok(n) => Outcome::Done(n),
            Err(e) => failed(e),
        },
        Kind::Query | Kind::QueryUnordered => match client.query(&stmt.sql, &params).await {
            Ok(rows) => {
                let mut rows: Vec<Vec<Val>> = rows.iter().map(values).collect();
                if stmt.kind == Kind::QueryUnordered {
                    sort_rows(&mut rows);
                }
                Outcome::Rows(rows)
            }
            Err(e) => failed(e),
        },
    }
}

fn values(row: &tokio_postgres::Row) -> Vec<Val> {
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            let v = match *ty {
                Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| Val::Int(v.into())),
                Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| Val::Int(v.into())),
                Type::INT8 => row.get::<_, Option<i64>>(i).map(Val::Int),
                Type::FLOAT4 => row.get::<_, Option<f32>>(i).map(|v| Val::Float(v.into())),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(Val::Float),
                Type::TEXT | Type::VARCHAR | Type::NAME => row.get::<_, Option<String>>(i).map(Val::Text),
                _ => panic!("column {} has unexpected type {ty}", row.columns()[i].name()),
            };
            v.unwrap_or(Val::Null)
        })
        .collect()
}

fn sort_rows(rows: &mut [Vec<Val>]) {
    rows.sort_by(|a, b| a.partial_cmp(b).expect("no NaN in results"));
}

fn opt_int(v: Option<i64>) -> Val {
    v.map_or(Val::Null, Val::Int)
}

fn row_values(id: i64, row: &Row) -> Vec<Val> {
    vec![
        Val::Int(id),
        opt_int(row.user_id.map(i64::from)),
        row.kind.clone().map_or(Val::Null, Val::Text),
        row.amount.map_or(Val::Null, Val::Float),
    ]
}

fn sql_literal(row: &Row, id: i64) -> String {
    let user = row.user_id.map_or("NULL".to_string(), |u| u.to_string());
    let kind = row.kind.as_ref().map_or("NULL".to_string(), |k| format!("'{k}'"));
    let amount = row.amount.map_or("NULL".to_string(), |a| format!("{a:?}"));
    format!("({id}, {user}, {kind}, {amount})")
}

fn sum(amounts: impl Iterator<Item = Option<f64>>) -> Val {
    let present: Vec<f64> = amounts.flatten().collect();
    if present.is_empty() {
        Val::Null
    } else {
        Val::Float(present.iter().sum())
    }
}

/// The model: the committed table, and the open transaction's view of it.
#[derive(Debug, Default)]
struct Model {
    committed: State,
    tx: Option<Tx>,
}

#[derive(Debug)]
struct Tx {
    state: State,
    /// A statement failed: everything until the end of the block fails with 25P02, and
    /// COMMIT rolls back.
    failed: bool,
    statements: usize,
}

/// One random step: what to send, what must come back, and the table afterwards.
struct Planned {
    stmt: Stmt,
    expect: Outcome,
    /// The table after the statement, when it succeeds.
    after: State,
}

struct Gen<'a> {
    rng: &'a mut Rng,
    state: &'a State,
}

impl<'a> Gen<'a> {
    fn row(&mut self) -> Row {
        let user_id = if self.rng.percent(5) { None } else { Some(self.rng.range(0, USERS.into()) as i32) };
        let kind = if self.rng.percent(5) { None } else { Some(self.rng.pick(KINDS).to_string()) };
        let amount = if self.rng.percent(5) { None } else { Some(self.rng.range(-1000, 1000) as f64) };
        Row { user_id, kind, amount }
    }

    fn absent_keys(&mut self, n: usize) -> Vec<i64> {
        let mut keys = BTreeSet::new();
        for _ in 0..n * 20 {
            if keys.len() == n {
                break;
            }
            let k = self.rng.range(0, KEYS);
            if !self.state.contains_key(&k) {
                keys.insert(k);
            }
        }
        self.shuffled(keys.into_iter().collect())
    }

    fn present_key(&mut self) -> Option<i64> {
        if self.state.is_empty() {
            return None;
        }
        let i = self.rng.below(self.state.len() as u64) as usize;
        self.state.keys().nth(i).copied()
    }

    /// A key that is present about `percent`% of the time (when any is).
    fn key(&mut self, percent: u64) -> i64 {
        if self.rng.percent(percent) {
            if let Some(k) = self.present_key() {
                return k;
            }
        }
        self.rng.range(0, KEYS)
    }

    fn shuffled<T>(&mut self, mut items: Vec<T>) -> Vec<T> {
        for i in (1..items.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        items
    }

    fn values(&self, rows: &[(i64, Row)]) -> String {
        rows.iter().map(|(id, r)| sql_literal(r, *id)).collect::<Vec<_>>().join(", ")
    }

    fn insert_sql(&mut self, rows: &[(i64, Row)]) -> String {
        let columns = if self.rng.percent(50) { " (id, user_id, kind, amount)" } else { "" };
        format!("INSERT INTO events{columns} VALUES {}", self.values(rows))
    }

    fn insert_new(&mut self) -> Option<Planned> {
        let n = self.rng.range(1, 6) as usize;
        let keys = self.absent_keys(n);
        if keys.is_empty() {
            return None;
        }
        let rows: Vec<(i64, Row)> = keys.iter().map(|&k| (k, self.row())).collect();
        let mut after = self.state.clone();
        after.extend(rows.iter().cloned());
        let sql = self.insert_sql(&rows);
        Some(Planned {
            stmt: Stmt::new(Kind::Execute, sql, vec![]),
            expect: Outcome::Done(rows.len() as u64),
            after,
        })
    }

    /// New keys plus one that is already there (or one new key twice): 23505, no change.
    fn insert_duplicate(&mut self) -> Option<Planned> {
        let n = self.rng.range(0, 4) as usize;
        let mut keys = self.absent_keys(n);
        let dup = if self.rng.percent(20) { keys.first().copied() } else { self.present_key() };
        keys.push(dup?);
        let keys = self.shuffled(keys);
        let rows: Vec<(i64, Row)> = keys.iter().map(|&k| (k, self.row())).collect();
        let sql = self.insert_sql(&rows);
        Some(Planned {
            stmt: Stmt::new(Kind::Execute, sql, vec![]),
            expect: Outcome::Failed("23505".into()),
            after: self.state.clone(),
        })
    }

    /// Distinct keys, some present and some not.
    fn mixed_keys(&mut self) -> Vec<i64> {
        let n = self.rng.range(1, 6) as usize;
        let mut keys = BTreeSet::new();
        for _ in 0..n {
            let k = self.key(50);
            keys.insert(k);
        }
        self.shuffled(keys.into_iter().collect())
    }

    fn upsert_update(&mut self) -> Option<Planned> {
        let mut rows: Vec<(i64, Row)> = self.mixed_keys().into_iter().map(|k| (k, self.row())).collect();
        if self.rng.percent(5) {
            // A key twice in one statement: 21000, nothing changes.
            rows.push((rows[0].0, self.row()));
            let sql = format!(
                "INSERT INTO events VALUES {} ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount",
                self.values(&rows)
            );
            let (expect, after) = (Outcome::Failed("21000".into()), self.state.clone());
            return Some(Planned { stmt: Stmt::new(Kind::Execute, sql, vec![]), expect, after });
        }
        let guarded = self.rng.percent(30);
        let mut after = self.state.clone();
        let mut returned = Vec::new();
        for (k, new) in &rows {
            match after.get_mut(k) {
                None => {
                    after.insert(*k, new.clone());
                    returned.push(vec![Val::Int(*k), new.kind.clone().map_or(Val::Null, Val::Text)]);
                }
                Some(old) => {
                    let pass = !guarded || matches!((old.amount, new.amount), (Some(o), Some(n)) if o < n);
                    if pass {
                        old.amount = new.amount;
                        old.kind = new.kind.clone();
                        returned.push(vec![Val::Int(*k), new.kind.clone().map_or(Val::Null, Val::Text)]);
                    }
                }
            }
        }
        let guard = if guarded { " WHERE events.amount < EXCLUDED.amount" } else { "" };
        let sql = format!(
            "INSERT INTO events VALUES {} ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, kind = EXCLUDED.kind{guard}",
            self.values(&rows)
        );
        Some(self.maybe_returning(sql, "id, kind", returned, after))
    }

    /// The statement with `RETURNING columns` half the time (checking the rows), or
    /// without (checking the count).
    fn maybe_returning(
        &mut self,
        sql: String,
        columns: &str,
        mut returned: Vec<Vec<Val>>,
        after: State,
    ) -> Planned {
        if self.rng.percent(50) {
            sort_rows(&mut returned);
            let sql = format!("{sql} RETURNING {columns}");
            Planned {
                stmt: Stmt::new(Kind::QueryUnordered, sql, vec![]),
                expect: Outcome::Rows(returned),
                after,
            }
        } else {
            let expect = Outcome::Done(returned.len() as u64);
            Planned { stmt: Stmt::new(Kind::Execute, sql, vec![]), expect, after }
        }
    }

    fn upsert_nothing(&mut self) -> Option<Planned> {
        let mut rows: Vec<(i64, Row)> = self.mixed_keys().into_iter().map(|k| (k, self.row())).collect();
        if self.rng.percent(15) {
            // A key twice: the first row is inserted (if the key is free), the second skipped.
            rows.push((rows[0].0, self.row()));
        }
        let mut after = self.state.clone();
        let mut returned = Vec::new();
        for (k, new) in &rows {
            if !after.contains_key(k) {
                after.insert(*k, new.clone());
                returned.push(vec![Val::Int(*k)]);
            }
        }
        let sql = format!("INSERT INTO events VALUES {} ON CONFLICT (id) DO NOTHING", self.values(&rows));
        Some(self.maybe_returning(sql, "id", returned, after))
    }

    /// Doubles amounts; the bound keeps every amount (and so every sum) exact.
    fn update_double(&mut self) -> Option<Planned> {
        let user = self.rng.range(0, USERS.into()) as i32;
        let mut after = self.state.clone();
        let mut returned = Vec::new();
        for (k, row) in after.iter_mut() {
            if row.user_id != Some(user) {
                continue;
            }
            if let Some(a) = row.amount.filter(|a| *a > -1_000_000.0 && *a < 1_000_000.0) {
                row.amount = Some(a * 2.0);
                returned.push(vec![Val::Int(*k), Val::Float(a * 2.0)]);
            }
        }
        sort_rows(&mut returned);
        let sql = "UPDATE events SET amount = amount * 2 WHERE user_id = $1 AND amount > -1000000 AND amount < 1000000 RETURNING id, amount";
        Some(Planned {
            stmt: Stmt::new(Kind::QueryUnordered, sql, vec![Param::Int4(user)]),
            expect: Outcome::Rows(returned),
            after,
        })
    }

    fn update_by_id(&mut self) -> Option<Planned> {
        let id = self.key(80);
        let kind = self.rng.pick(KINDS).to_string();
        let user = self.rng.range(0, USERS.into()) as i32;
        let mut after = self.state.clone();
        let n = match after.get_mut(&id) {
            Some(row) => {
                row.kind = Some(kind.clone());
                row.user_id = Some(user);
                row.amount = row.amount.map(|a| a - 7.0);
                1
            }
            None => 0,
        };
        let sql = "UPDATE events SET kind = $2, user_id = $3, amount = amount - 7 WHERE id = $1";
        let params = vec![Param::Int8(id), Param::Text(kind), Param::Int4(user)];
        Some(Planned { stmt: Stmt::new(Kind::Execute, sql, params), expect: Outcome::Done(n), after })
    }

    fn delete_kind(&mut self) -> Option<Planned> {
        let kind = self.rng.pick(KINDS).to_string();
        let mut after = self.state.clone();
        let mut returned = Vec::new();
        after.retain(|k, row| {
            let hit = row.kind.as_deref() == Some(kind.as_str());
            if hit {
                returned.push(vec![Val::Int(*k)]);
            }
            !hit
        });
        let sql = "DELETE FROM events WHERE kind = $1 RETURNING id";
        Some(Planned {
            stmt: Stmt::new(Kind::QueryUnordered, sql, vec![Param::Text(kind)]),
            expect: Outcome::Rows(returned),
            after,
        })
    }

    fn delete_id(&mut self) -> Option<Planned> {
        let id = self.key(70);
        let mut after = self.state.clone();
        let n = u64::from(after.remove(&id).is_some());
        let sql = "DELETE FROM events WHERE id = $1";
        Some(Planned {
            stmt: Stmt::new(Kind::Execute, sql, vec![Param::Int8(id)]),
            expect: Outcome::Done(n),
            after,
        })
    }

    fn delete_range(&mut self) -> Option<Planned> {
        let lo = self.rng.range(0, KEYS);
        let hi = lo + self.rng.range(1, 12);
        let mut after = self.state.clone();
        let before = after.len();
        after.retain(|k, _| !(lo..hi).contains(k));
        let n = (before - after.len()) as u64;
        let sql = "DELETE FROM events WHERE id >= $1 AND id < $2";
        let params = vec![Param::Int8(lo), Param::Int8(hi)];
        Some(Planned { stmt: Stmt::new(Kind::Execute, sql, params), expect: Outcome::Done(n), after })
    }

    /// `INSERT ... SELECT` from the table itself, shifted by `off`: 23505 if any shifted
    /// key is taken.
    fn insert_select(&mut self) -> Option<Planned> {
        let off = self.rng.range(1, 60);
        let lo = self.rng.range(0, KEYS - off - 10);
        let hi = lo + self.rng.range(1, 10);
        let source: Vec<(i64, Row)> = self.state.range(lo..hi).map(|(k, r)| (*k + off, r.clone())).collect();
        let conflict = source.iter().any(|(k, _)| self.state.contains_key(k));
        let mut after = self.state.clone();
        let expect = if conflict {
            Outcome::Failed("23505".into())
        } else {
            after.extend(source.iter().cloned());
            Outcome::Done(source.len() as u64)
        };
        let sql = format!(
            "INSERT INTO events SELECT id + {off}, user_id, kind, amount FROM events WHERE id >= {lo} AND id < {hi}"
        );
        Some(Planned { stmt: Stmt::new(Kind::Execute, sql, vec![]), expect, after })
    }

    fn truncate(&mut self) -> Option<Planned> {
        Some(Planned {
            stmt: Stmt::new(Kind::Simple, "TRUNCATE events", vec![]),
            expect: Outcome::Done(0),
            after: State::new(),
        })
    }

    /// A random data-changing statement; `in_tx` makes failing ones rarer.
    fn statement(&mut self, in_tx: bool) -> Planned {
        // Weights chosen so the table hovers around a third full.
        let table: &[(u64, fn(&mut Gen<'a>) -> Option<Planned>)] = &[
            (200, Gen::insert_new),
            (if in_tx { 15 } else { 60 }, Gen::insert_duplicate),
            (140, Gen::upsert_update),
            (80, Gen::upsert_nothing),
            (80, Gen::update_double),
            (80, Gen::update_by_id),
            (15, Gen::delete_kind),
            (100, Gen::delete_id),
            (30, Gen::delete_range),
            (40, Gen::insert_select),
            (3, Gen::truncate),
        ];
        let total: u64 = table.iter().map(|(w, _)| w).sum();
        loop {
            let mut pick = self.rng.below(total);
            for (w, make) in table {
                if pick < *w {
                    if let Some(planned) = make(self) {
                        return planned;
                    }
                    break;
                }
                pick -= w;
            }
        }
    }
}

/// The servers under test: Tarn, and optionally PostgreSQL as a second oracle.
struct Dbs {
    server: Option<TestServer>,
    tarn: Client,
    pg: Option<Client>,
    seed: u64,
    step: usize,
    /// The last statements sent, printed when an expectation fails.
    log: Vec<String>,
}

impl Dbs {
    fn fail(&self, what: &str) -> ! {
        let start = self.log.len().saturating_sub(25);
        panic!(
            "{what}\n  at step {} with TARN_MODEL_SEED={}\n  last statements:\n    {}",
            self.step,
            self.seed,
            self.log[start..].join("\n    ")
        );
    }

    /// Runs `stmt` on every server and holds each to `expect`.
    async fn check(&mut self, stmt: &Stmt, expect: &Outcome) {
        self.log.push(stmt.to_string());
        let got = run(&self.tarn, stmt).await;
        if &got != expect {
            self.fail(&format!("tarn: {stmt}\n  expected {expect:?}\n  got      {got:?}"));
        }
        if let Some(pg) = &self.pg {
            let got = run(pg, stmt).await;
            if &got != expect {
                self.fail(&format!(
                    "postgres (the model may be wrong): {stmt}\n  expected {expect:?}\n  got      {got:?}"
                ));
            }
        }
    }

    async fn tarn_query(&mut self, sql: &str) -> Outcome {
        self.log.push(sql.to_string());
        run(&self.tarn, &Stmt::new(Kind::Query, sql, vec![])).await
    }

    async fn restart(&mut self) {
        self.log.push("-- restart".into());
        let server = self.server.take().expect("a server");
        let server = server.restart().await;
        self.tarn = server.client().await;
        self.server = Some(server);
    }

    /// The table's current version (the newest over its buckets).
    async fn version(&mut self) -> i64 {
        match self.tarn_query("SELECT max(version) FROM tarn_tables WHERE table_name = 'events'").await {
            Outcome::Rows(rows) if rows.len() == 1 => match rows[0][0] {
                Val::Int(v) => v,
                ref other => self.fail(&format!("tarn_tables version is {other:?}")),
            },
            other => self.fail(&format!("reading tarn_tables: {other:?}")),
        }
    }
}

/// What readers see, answered from `state`: a full scan and a point lookup always, and
/// when `thorough` (each read costs ~10 ms in a debug build) another lookup, aggregates
/// and a filtered scan.
async fn check_reads(dbs: &mut Dbs, rng: &mut Rng, state: &State, thorough: bool) {
    let scan: Vec<Vec<Val>> = state.iter().map(|(k, r)| row_values(*k, r)).collect();
    dbs.check(&Stmt::new(Kind::Query, SCAN, vec![]), &Outcome::Rows(scan)).await;

    let mut probes = vec![];
    if thorough || rng.percent(50) {
        probes.push(rng.range(-5, KEYS + 5));
    }
    if thorough || probes.is_empty() {
        probes.extend((Gen { rng: &mut *rng, state }).present_key());
    }
    for id in probes {
        let expect = state.get(&id).map(|r| vec![row_values(id, r)]).unwrap_or_default();
        let stmt = Stmt::new(
            Kind::Query,
            "SELECT id, user_id, kind, amount FROM events WHERE id = $1",
            vec![Param::Int8(id)],
        );
        dbs.check(&stmt, &Outcome::Rows(expect)).await;
    }
    if !thorough {
        return;
    }

    let aggregate = vec![
        Val::Int(state.len() as i64),
        sum(state.values().map(|r| r.amount)),
        opt_int(state.keys().next().copied()),
        opt_int(state.keys().next_back().copied()),
    ];
    let stmt = Stmt::new(Kind::Query, "SELECT count(*), sum(amount), min(id), max(id) FROM events", vec![]);
    dbs.check(&stmt, &Outcome::Rows(vec![aggregate])).await;

    let mut groups: BTreeMap<Option<&str>, Vec<Option<f64>>> = BTreeMap::new();
    for row in state.values() {
        groups.entry(row.kind.as_deref()).or_default().push(row.amount);
    }
    let mut expect: Vec<Vec<Val>> = groups
        .into_iter()
        .map(|(kind, amounts)| {
            vec![
                kind.map_or(Val::Null, |k| Val::Text(k.into())),
                Val::Int(amounts.len() as i64),
                sum(amounts.into_iter()),
            ]
        })
        .collect();
    sort_rows(&mut expect);
    let stmt = Stmt::new(
        Kind::QueryUnordered,
        "SELECT kind, count(*), sum(amount) FROM events GROUP BY kind",
        vec![],
    );
    dbs.check(&stmt, &Outcome::Rows(expect)).await;

    let user = rng.range(0, USERS.into()) as i32;
    let expect: Vec<Vec<Val>> = state
        .iter()
        .filter(|(_, r)| r.user_id == Some(user))
        .map(|(k, r)| vec![Val::Int(*k), r.amount.map_or(Val::Null, Val::Float)])
        .collect();
    let stmt = Stmt::new(
        Kind::Query,
        "SELECT id, amount FROM events WHERE user_id = $1 ORDER BY id",
        vec![Param::Int4(user)],
    );
    dbs.check(&stmt, &Outcome::Rows(expect)).await;
}

/// `table_changes` for the one commit that made `version`, against the model's diff.
/// Rows the commit rewrote without changing may or may not be listed; every listed row
/// must agree with the table after the commit.
async fn check_changes(dbs: &mut Dbs, version: i64, before: &State, after: &State) {
    let sql = format!(
        "SELECT id, user_id, kind, amount, _change_type, _commit_version FROM table_changes('events', {version}, {version})"
    );
    let rows = match dbs.tarn_query(&sql).await {
        Outcome::Rows(rows) => rows,
        other => dbs.fail(&format!("{sql}: {other:?}")),
    };
    let mut listed: BTreeMap<i64, Vec<Vec<Val>>> = BTreeMap::new();
    for row in rows {
        let Val::Int(id) = row[0] else { dbs.fail(&format!("{sql}: id {:?}", row[0])) };
        if row[5] != Val::Int(version) {
            dbs.fail(&format!("{sql}: _commit_version of {row:?}"));
        }
        listed.entry(id).or_default().push(row);
    }
    let mut changed: BTreeSet<i64> = BTreeSet::new();
    for (k, r) in after {
        if before.get(k) != Some(r) {
            changed.insert(*k);
        }
    }
    changed.extend(before.keys().filter(|k| !after.contains_key(k)));
    for k in &changed {
        if !listed.contains_key(k) {
            dbs.fail(&format!(
                "{sql}: key {k} changed ({:?} -> {:?}) but is not listed; listed: {listed:?}",
                before.get(k),
                after.get(k)
            ));
        }
    }
    for (k, entries) in &listed {
        if entries.len() != 1 {
            dbs.fail(&format!("{sql}: key {k} listed {} times: {entries:?}", entries.len()));
        }
        let entry = &entries[0];
        let expected_type = match (before.contains_key(k), after.get(k)) {
            (false, Some(_)) => "insert",
            (true, Some(_)) => "update",
            (true, None) => "delete",
            (false, None) => {
                dbs.fail(&format!("{sql}: key {k} listed but absent before and after: {entry:?}"))
            }
        };
        if entry[4] != Val::Text(expected_type.into()) {
            dbs.fail(&format!("{sql}: key {k} should be an {expected_type}: {entry:?}"));
        }
        if let Some(row) = after.get(k) {
            if entry[..4] != row_values(*k, row)[..] {
                dbs.fail(&format!("{sql}: key {k} should read {row:?}: {entry:?}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_match_an_in_memory_model() {
    // 600 steps take about a minute in a debug build; more with the variable.
    let steps = env_u64("TARN_MODEL_STEPS", 600) as usize;
    run_model(TestServer::start().await, steps).await;
}

/// The short run on a warehouse in an S3 server (moto), the log on local disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_on_s3_match_an_in_memory_model() {
    let moto = tarn_tests::moto::Moto::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let wal = tempfile::tempdir().unwrap();
    let (url, config) = moto.config("model", wal.path());
    let steps = env_u64("TARN_MODEL_S3_STEPS", 200) as usize;
    run_model(TestServer::start_at(&url, config).await, steps).await;
}

async fn run_model(server: TestServer, steps: usize) {
    let seed = env_u64("TARN_MODEL_SEED", 0x7A4E_2026);
    println!("TARN_MODEL_SEED={seed} TARN_MODEL_STEPS={steps}");
    let mut rng = Rng::new(seed);

    let tarn = server.client().await;
    tarn.batch_execute(&format!("{TABLE_DDL}{TABLE_OPTIONS}; {TABLE_INDEXES}")).await.unwrap();
    let pg = match std::env::var("TARN_PG_ORACLE") {
        Ok(conn) => {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .expect("connecting to TARN_PG_ORACLE");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.batch_execute(&format!("DROP TABLE IF EXISTS events; {TABLE_DDL}")).await.unwrap();
            Some(client)
        }
        Err(_) => None,
    };
    let mut dbs = Dbs { server: Some(server), tarn, pg, seed, step: 0, log: Vec::new() };
    let mut model = Model::default();
    let mut version = dbs.version().await;
    assert_eq!(version, 1, "a new table is at version 1");
    // Versions seen, with the committed table at each, for time travel.
    let mut history: BTreeMap<i64, State> = BTreeMap::from([(1, State::new())]);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();

    for step in 0..steps {
        dbs.step = step;
        let before = model.committed.clone();
        // Whether this step may have committed a write, and the commit-version delta that
        // allows: a write that changed nothing may or may not make a version.
        let mut wrote = false;
        let mut changes_checked = false;
        let mut thorough = rng.percent(20);
        match &mut model.tx {
            None => {
                let roll = rng.below(1000);
                if roll < 60 {
                    *counts.entry("begin".to_string()).or_default() += 1;
                    dbs.check(&Stmt::new(Kind::Simple, "BEGIN", vec![]), &Outcome::Done(0)).await;
                    model.tx = Some(Tx { state: model.committed.clone(), failed: false, statements: 0 });
                } else if roll < 80 && rng.percent(25) {
                    // Tarn's alone: the base rewritten in its Z-order.
                    *counts.entry("cluster".to_string()).or_default() += 1;
                    thorough = true;
                    dbs.log.push("CLUSTER events".into());
                    let done = run(&dbs.tarn, &Stmt::new(Kind::Simple, "CLUSTER events", vec![])).await;
                    if done != Outcome::Done(0) {
                        dbs.fail(&format!("CLUSTER events: {done:?}"));
                    }
                } else if roll < 80 {
                    *counts.entry("vacuum".to_string()).or_default() += 1;
                    thorough = true;
                    dbs.check(&Stmt::new(Kind::Simple, "VACUUM events", vec![]), &Outcome::Done(0)).await;
                } else if roll < 86 {
                    *counts.entry("restart".to_string()).or_default() += 1;
                    thorough = true;
                    dbs.restart().await;
                    // The newest version reads the same after a restart, through time travel too.
                    let now = dbs.version().await;
                    if now != version {
                        dbs.fail(&format!("version {version} before the restart, {now} after"));
                    }
                } else {
                    let planned = Gen { rng: &mut rng, state: &model.committed }.statement(false);
                    *counts
                        .entry(planned.stmt.sql.split(' ').next().unwrap_or("?").to_string())
                        .or_default() += 1;
                    dbs.check(&planned.stmt, &planned.expect).await;
                    if !matches!(planned.expect, Outcome::Failed(_)) {
                        model.committed = planned.after;
                        wrote = true;
                    }
                }
            }
            Some(tx) => {
                let roll = rng.below(100);
                if roll < 15 || tx.statements >= 8 {
                    let failed = tx.failed;
                    let state = std::mem::take(&mut tx.state);
                    model.tx = None;
                    *counts.entry("commit".to_string()).or_default() += 1;
                    thorough = true;
                    dbs.check(&Stmt::new(Kind::Simple, "COMMIT", vec![]), &Outcome::Done(0)).await;
                    if !failed {
                        model.committed = state;
                        wrote = true;
                    }
                } else if roll < 22 {
                    model.tx = None;
                    *counts.entry("rollback".to_string()).or_default() += 1;
                    thorough = true;
                    dbs.check(&Stmt::new(Kind::Simple, "ROLLBACK", vec![]), &Outcome::Done(0)).await;
                } else {
                    tx.statements += 1;
                    let mut planned = Gen { rng: &mut rng, state: &tx.state }.statement(true);
                    if tx.failed {
                        planned.expect = Outcome::Failed("25P02".into());
                    }
                    dbs.check(&planned.stmt, &planned.expect).await;
                    if matches!(planned.expect, Outcome::Failed(_)) {
                        tx.failed = true;
                    } else {
                        tx.state = planned.after;
                    }
                }
            }
        }

        match &model.tx {
            Some(tx) if tx.failed => {
                let stmt = Stmt::new(Kind::Query, SCAN, vec![]);
                dbs.check(&stmt, &Outcome::Failed("25P02".into())).await;
                continue;
            }
            // Inside the block: its own writes, nothing else (there are no other writers).
            Some(tx) => {
                let state = tx.state.clone();
                check_reads(&mut dbs, &mut rng, &state, thorough).await;
                continue;
            }
            None => {}
        }
        let state = model.committed.clone();
        check_reads(&mut dbs, &mut rng, &state, thorough).await;

        // Versions: one per committed change, none for a failure, a rollback, a read.
        let now = dbs.version().await;
        let changed = state != before;
        let ok = if changed {
            now == version + 1
        } else if wrote {
            now == version || now == version + 1
        } else {
            now == version
        };
        if !ok {
            dbs.fail(&format!(
                "version went from {version} to {now} (table changed: {changed}, statement wrote: {wrote})"
            ));
        }
        if now != version {
            history.insert(now, state.clone());
            if changed && rng.percent(25) {
                check_changes(&mut dbs, now, &before, &state).await;
                changes_checked = true;
            }
        }
        version = now;
        // Time travel: the version just made, and a random earlier one.
        if rng.percent(5) || changes_checked {
            let mut probes = vec![now];
            let earlier: Vec<i64> = history.keys().copied().collect();
            probes.push(*rng.pick(&earlier));
            for v in probes {
                let expect: Vec<Vec<Val>> = history[&v].iter().map(|(k, r)| row_values(*k, r)).collect();
                let sql =
                    format!("SELECT id, user_id, kind, amount FROM events AS OF VERSION {v} ORDER BY id");
                let got = dbs.tarn_query(&sql).await;
                if got != Outcome::Rows(expect.clone()) {
                    dbs.fail(&format!("{sql} (current {now})\n  expected {expect:?}\n  got      {got:?}"));
                }
            }
        }
    }
    println!("steps by kind: {counts:?}; final version {version}, {} rows", model.committed.len());
    // A run that never reached the interesting states would prove little.
    for kind in [
        "INSERT", "UPDATE", "DELETE", "TRUNCATE", "begin", "commit", "rollback", "vacuum", "cluster",
        "restart",
    ] {
        assert!(counts.get(kind).copied().unwrap_or(0) > 0 || steps < 500, "no {kind} step in {steps} steps");
    }
    if let Some(server) = dbs.server.take() {
        server.stop().await;
    }
}
