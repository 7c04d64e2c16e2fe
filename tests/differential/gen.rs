//! The schema, its rows, and a seeded generator of statements over it that PostgreSQL
//! and Tarn should answer alike. Each expression is generated for a wanted type, so the
//! statements type-check on PostgreSQL (the few that do not are dropped as "skipped").
//! A generation site with a known or suspected semantic trap records a tag; a mismatch
//! is "known" only when its statement carries a tag of the known-mismatch list.

use std::collections::BTreeSet;

use tarn_tests::rng::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ty {
    Int,
    Float,
    Num,
    Text,
    Bool,
    Date,
    Ts,
}

pub struct Table {
    pub name: &'static str,
    pub pk: Option<&'static str>,
    /// Column name, SQL type, and its class for the generator.
    pub cols: &'static [(&'static str, &'static str, Ty)],
}

pub const TABLES: &[Table] = &[
    Table {
        name: "t1",
        pk: Some("id"),
        cols: &[
            ("id", "INTEGER", Ty::Int),
            ("a", "INTEGER", Ty::Int),
            ("b", "BIGINT", Ty::Int),
            ("s", "SMALLINT", Ty::Int),
            ("f", "DOUBLE PRECISION", Ty::Float),
            ("n", "NUMERIC(10,2)", Ty::Num),
            ("txt", "TEXT", Ty::Text),
            ("vc", "VARCHAR(20)", Ty::Text),
            ("flag", "BOOLEAN", Ty::Bool),
            ("d", "DATE", Ty::Date),
            ("ts", "TIMESTAMP", Ty::Ts),
        ],
    },
    Table {
        name: "t2",
        pk: Some("id"),
        cols: &[
            ("id", "BIGINT", Ty::Int),
            ("t1_id", "INTEGER", Ty::Int),
            ("k", "INTEGER", Ty::Int),
            ("txt", "TEXT", Ty::Text),
            ("n", "NUMERIC(12,4)", Ty::Num),
            ("f", "DOUBLE PRECISION", Ty::Float),
            ("d", "DATE", Ty::Date),
            ("flag", "BOOLEAN", Ty::Bool),
        ],
    },
    Table {
        name: "t3",
        pk: None,
        cols: &[
            ("a", "INTEGER", Ty::Int),
            ("k", "BIGINT", Ty::Int),
            ("txt", "VARCHAR(12)", Ty::Text),
            ("f", "DOUBLE PRECISION", Ty::Float),
            ("n", "NUMERIC(8,3)", Ty::Num),
            ("ts", "TIMESTAMP", Ty::Ts),
        ],
    },
    Table {
        name: "t4",
        pk: Some("id"),
        cols: &[
            ("id", "SMALLINT", Ty::Int),
            ("code", "VARCHAR(10)", Ty::Text),
            ("b", "BIGINT", Ty::Int),
            ("d", "DATE", Ty::Date),
        ],
    },
];

pub fn table(name: &str) -> &'static Table {
    TABLES.iter().find(|t| t.name == name).expect("known table")
}

/// `CREATE TABLE` for PostgreSQL (`tarn_options` false) or Tarn (primary-key tables
/// without background compaction, so rows stay in the change store until `VACUUM`).
pub fn create_table(t: &Table, tarn_options: bool) -> String {
    let cols: Vec<String> =
        t.cols
            .iter()
            .map(|(name, ty, _)| {
                if Some(*name) == t.pk {
                    format!("{name} {ty} PRIMARY KEY")
                } else {
                    format!("{name} {ty}")
                }
            })
            .collect();
    let with = if tarn_options && t.pk.is_some() { " WITH (auto_compaction = off)" } else { "" };
    format!("CREATE TABLE {} ({}){with}", t.name, cols.join(", "))
}

const TEXTS: &[&str] =
    &["a", "b", "abc", "Abc", "ABC", "hello world", "x_y", "b%c", "", "zeta", "héllo", " pad ", "a1", "10"];
const DATES: &[&str] = &[
    "2024-01-01",
    "2024-01-15",
    "2024-01-31",
    "2024-02-29",
    "2024-03-01",
    "2023-12-31",
    "2000-02-29",
    "1999-12-31",
    "2024-07-04",
];
const TIMES: &[&str] = &["00:00:00", "12:30:00", "23:59:59", "06:15:30.5", "18:00:00.25", "09:05:01"];
const FLOATS: &[f64] = &[0.0, 1.5, -2.25, 0.1, 3.0, 100.125, 1e-5, 12345.5, -7.75, 2.0, 2.5, 1e9];

/// A literal of class `ty` as SQL, also usable as a parameter's value.
#[derive(Clone, Debug)]
pub enum Value {
    Int(i64),
    Float(f64),
    /// A decimal in text form.
    Num(String),
    Text(String),
    Bool(bool),
    Date(String),
    Ts(String),
}

impl Value {
    pub fn sql(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("CAST({} AS DOUBLE PRECISION)", float_lit(*f)),
            Value::Num(n) => n.clone(),
            Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Bool(b) => b.to_string(),
            Value::Date(d) => format!("DATE '{d}'"),
            Value::Ts(t) => format!("TIMESTAMP '{t}'"),
        }
    }
}

fn float_lit(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('e') {
        s
    } else {
        s.trim_end_matches(".0").to_string()
    }
}

fn null_or(rng: &mut Rng, percent: u64, v: String) -> String {
    if rng.percent(percent) {
        "NULL".into()
    } else {
        v
    }
}

/// A value of `ty` from the pools the rows and literals share (so predicates match rows).
pub fn random_value(rng: &mut Rng, ty: Ty) -> Value {
    match ty {
        Ty::Int => Value::Int(rng.range(-3, 16)),
        Ty::Float => Value::Float(*rng.pick(FLOATS)),
        Ty::Num => {
            let cents = rng.range(-500, 2000);
            Value::Num(format!(
                "{}{}.{:02}",
                if cents < 0 { "-" } else { "" },
                cents.abs() / 100,
                cents.abs() % 100
            ))
        }
        Ty::Text => Value::Text(rng.pick(TEXTS).to_string()),
        Ty::Bool => Value::Bool(rng.percent(50)),
        Ty::Date => Value::Date(rng.pick(DATES).to_string()),
        Ty::Ts => Value::Ts(format!("{} {}", rng.pick(DATES), rng.pick(TIMES))),
    }
}

fn row_cell(rng: &mut Rng, table: &str, col: &str, ty: Ty) -> String {
    let v = match (table, col) {
        (_, "b") => {
            let big = [0, 3_000_000_000i64, -1_000_003, 7, 7, 1 << 40, 42];
            rng.pick(&big).to_string()
        }
        (_, "s") => rng.range(-5, 30).to_string(),
        ("t2", "t1_id") => rng.range(0, 46).to_string(),
        ("t4", "code") => format!("'{}'", rng.pick(&["A", "B", "C", "a", "b", "c"])),
        _ => match random_value(rng, ty) {
            Value::Float(f) => float_lit(f),
            Value::Date(d) => format!("'{d}'"),
            Value::Ts(t) => format!("'{t}'"),
            v => v.sql(),
        },
    };
    null_or(rng, 15, v)
}

/// `INSERT` statements (the same on both engines) for keys `from..to` of `t`.
pub fn insert_rows(rng: &mut Rng, t: &Table, from: i64, to: i64) -> String {
    let rows: Vec<String> = (from..to)
        .map(|key| {
            let cells: Vec<String> = t
                .cols
                .iter()
                .map(|(name, _, ty)| {
                    if Some(*name) == t.pk || (t.pk.is_none() && *name == "a" && key % 4 == 0) {
                        key.to_string()
                    } else {
                        row_cell(rng, t.name, name, *ty)
                    }
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    format!("INSERT INTO {} VALUES {}", t.name, rows.join(", "))
}

/// Rows per table in the initial load.
pub const ROWS: &[(&str, i64)] = &[("t1", 40), ("t2", 60), ("t3", 30), ("t4", 10)];

/// The writes of the mixed phase (after `VACUUM`): updates, deletes and new rows.
pub fn mixed_writes(rng: &mut Rng) -> Vec<String> {
    let mut out = vec![
        "UPDATE t1 SET a = a + 1, txt = 'upd', n = n * 2 WHERE id % 7 = 0".to_string(),
        "DELETE FROM t1 WHERE id % 5 = 0".to_string(),
        "UPDATE t2 SET k = NULL, f = f + 1 WHERE id % 6 = 1".to_string(),
        "DELETE FROM t2 WHERE id % 9 = 2".to_string(),
        "UPDATE t3 SET txt = 'zz' WHERE k = 7 OR k IS NULL".to_string(),
        "DELETE FROM t3 WHERE a = 3".to_string(),
        "UPDATE t4 SET code = 'Z', d = NULL WHERE id = 2".to_string(),
        "DELETE FROM t4 WHERE id = 3".to_string(),
    ];
    out.push(insert_rows(rng, table("t1"), 41, 48));
    out.push(insert_rows(rng, table("t2"), 61, 70));
    out.push(insert_rows(rng, table("t3"), 31, 36));
    out.push("UPDATE t1 SET txt = NULL, flag = NOT flag WHERE id IN (41, 42, 43)".to_string());
    out
}

/// A generated statement.
pub struct Stmt {
    pub sql: String,
    /// The statement's ORDER BY fixes the order of its rows.
    pub ordered: bool,
    /// Parameters, for statements sent through the extended protocol.
    pub params: Vec<Value>,
    /// Sent through the extended protocol (typed results) even without parameters.
    pub extended: bool,
    /// Output columns whose values are floating point (compared within a tolerance).
    pub approx: Vec<bool>,
    pub tags: BTreeSet<&'static str>,
}

type Scope = Vec<(String, &'static Table)>;

pub struct Gen {
    rng: Rng,
    params: Option<Vec<Value>>,
    tags: BTreeSet<&'static str>,
    aliases: u32,
    /// The last window select has a select-list column without a column reference.
    window_constant: bool,
}

const OUT_TYPES: &[Ty] =
    &[Ty::Int, Ty::Int, Ty::Text, Ty::Text, Ty::Num, Ty::Float, Ty::Bool, Ty::Date, Ty::Ts];

impl Gen {
    pub fn new(rng: Rng) -> Gen {
        Gen { rng, params: None, tags: BTreeSet::new(), aliases: 0, window_constant: false }
    }

    fn tag(&mut self, tag: &'static str) {
        self.tags.insert(tag);
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("x{}", self.aliases)
    }

    fn scope_of(&mut self, name: &str) -> (String, &'static Table) {
        (self.alias(), table(name))
    }

    fn any_table(&mut self) -> &'static Table {
        &TABLES[self.rng.below(TABLES.len() as u64) as usize]
    }

    fn column(&mut self, scope: &Scope, ty: Ty) -> Option<String> {
        let all: Vec<String> = scope
            .iter()
            .flat_map(|(alias, t)| {
                t.cols.iter().filter(|c| c.2 == ty).map(move |c| format!("{alias}.{}", c.0))
            })
            .collect();
        (!all.is_empty()).then(|| self.rng.pick(&all).clone())
    }

    fn literal(&mut self, ty: Ty) -> String {
        if self.rng.percent(4) {
            return match ty {
                Ty::Int => "CAST(NULL AS INTEGER)",
                Ty::Text => "CAST(NULL AS TEXT)",
                Ty::Float => "CAST(NULL AS DOUBLE PRECISION)",
                Ty::Num => "CAST(NULL AS NUMERIC)",
                Ty::Bool => "CAST(NULL AS BOOLEAN)",
                Ty::Date => "CAST(NULL AS DATE)",
                Ty::Ts => "CAST(NULL AS TIMESTAMP)",
            }
            .into();
        }
        random_value(&mut self.rng, ty).sql()
    }

    /// A literal, or in a prepared statement sometimes a `$n` parameter in its place.
    fn lit_or_param(&mut self, ty: Ty) -> String {
        if let Some(params) = self.params.as_mut() {
            if self.rng.percent(60) {
                params.push(random_value(&mut self.rng, ty));
                if ty == Ty::Ts {
                    self.tags.insert("timestamp parameter");
                }
                return format!("${}", params.len());
            }
        }
        self.literal(ty)
    }

    pub fn expr(&mut self, scope: &Scope, ty: Ty, depth: u32) -> String {
        if depth == 0 || self.rng.percent(35) {
            return match self.column(scope, ty) {
                Some(c) if self.rng.percent(85) => c,
                _ => {
                    if ty == Ty::Num {
                        self.tag("numeric literal in an expression");
                    }
                    self.literal(ty)
                }
            };
        }
        let d = depth - 1;
        if self.rng.percent(8) {
            let (c, a, b) = (self.pred(scope, d), self.expr(scope, ty, d), self.expr(scope, ty, d));
            return format!("CASE WHEN {c} THEN {a} ELSE {b} END");
        }
        if self.rng.percent(8) {
            let (a, b) = (self.expr(scope, ty, d), self.expr(scope, ty, d));
            return format!("COALESCE({a}, {b})");
        }
        let r = self.rng.below(100);
        match ty {
            Ty::Int => match r {
                0..=29 => {
                    let op = *self.rng.pick(&["+", "-", "*"]);
                    format!("({} {op} {})", self.expr(scope, Ty::Int, d), self.expr(scope, Ty::Int, d))
                }
                30..=39 => {
                    self.tag("integer division");
                    format!(
                        "({} / NULLIF({}, 0))",
                        self.expr(scope, Ty::Int, d),
                        self.expr(scope, Ty::Int, d)
                    )
                }
                40..=46 => {
                    self.tag("integer modulo");
                    format!(
                        "({} % NULLIF({}, 0))",
                        self.expr(scope, Ty::Int, d),
                        self.expr(scope, Ty::Int, d)
                    )
                }
                47..=54 => format!("abs({})", self.expr(scope, Ty::Int, d)),
                55..=64 => {
                    self.tag("length");
                    format!("length({})", self.expr(scope, Ty::Text, d))
                }
                65..=69 => {
                    self.tag("cast float to int");
                    format!("CAST({} AS INTEGER)", self.expr(scope, Ty::Float, d))
                }
                70..=74 => {
                    self.tag("cast numeric to int");
                    format!("CAST({} AS INTEGER)", self.expr(scope, Ty::Num, d))
                }
                75..=79 => {
                    self.tag("date - date");
                    format!("({} - {})", self.expr(scope, Ty::Date, d), self.expr(scope, Ty::Date, d))
                }
                80..=87 => {
                    let f = self.rng.pick(&["greatest", "least"]).to_string();
                    format!("{f}({}, {})", self.expr(scope, Ty::Int, d), self.expr(scope, Ty::Int, d))
                }
                88..=93 => {
                    self.tag("strpos");
                    format!("strpos({}, {})", self.expr(scope, Ty::Text, d), self.literal(Ty::Text))
                }
                _ => format!("(- {})", self.expr(scope, Ty::Int, d)),
            },
            Ty::Float => match r {
                0..=34 => {
                    let op = *self.rng.pick(&["+", "-", "*"]);
                    format!("({} {op} {})", self.expr(scope, Ty::Float, d), self.expr(scope, Ty::Float, d))
                }
                35..=44 => {
                    format!(
                        "({} / NULLIF({}, 0))",
                        self.expr(scope, Ty::Float, d),
                        self.expr(scope, Ty::Float, d)
                    )
                }
                45..=59 => format!("CAST({} AS DOUBLE PRECISION)", self.expr(scope, Ty::Int, d)),
                60..=69 => format!("abs({})", self.expr(scope, Ty::Float, d)),
                70..=77 => {
                    let f = self.rng.pick(&["floor", "ceil"]).to_string();
                    format!("{f}({})", self.expr(scope, Ty::Float, d))
                }
                78..=85 => {
                    self.tag("round(float8)");
                    format!("round({})", self.expr(scope, Ty::Float, d))
                }
                86..=92 => format!("sqrt(abs({}))", self.expr(scope, Ty::Float, d)),
                _ => {
                    self.tag("cast numeric to float");
                    format!("CAST({} AS DOUBLE PRECISION)", self.expr(scope, Ty::Num, d))
                }
            },
            Ty::Num => match r {
                0..=34 => {
                    let op = *self.rng.pick(&["+", "-"]);
                    format!("({} {op} {})", self.expr(scope, Ty::Num, d), self.expr(scope, Ty::Num, d))
                }
                35..=49 => {
                    self.tag("numeric * int");
                    format!("({} * {})", self.expr(scope, Ty::Num, d), self.expr(scope, Ty::Int, d))
                }
                50..=59 => {
                    self.tag("numeric division");
                    format!(
                        "({} / NULLIF({}, 0))",
                        self.expr(scope, Ty::Num, d),
                        self.expr(scope, Ty::Num, d)
                    )
                }
                60..=69 => {
                    self.tag("round(numeric, n)");
                    let places = self.rng.range(0, 3);
                    format!("round({}, {places})", self.expr(scope, Ty::Num, d))
                }
                70..=79 => format!("abs({})", self.expr(scope, Ty::Num, d)),
                80..=89 => format!("CAST({} AS NUMERIC(12,2))", self.expr(scope, Ty::Int, d)),
                _ => {
                    self.tag("extract");
                    let field = *self.rng.pick(&["year", "month", "day", "dow", "doy", "quarter"]);
                    if self.rng.percent(50) {
                        format!("EXTRACT({field} FROM {})", self.expr(scope, Ty::Date, d))
                    } else {
                        let field = *self.rng.pick(&["year", "month", "day", "hour", "minute", "dow"]);
                        format!("EXTRACT({field} FROM {})", self.expr(scope, Ty::Ts, d))
                    }
                }
            },
            Ty::Text => match r {
                0..=14 => {
                    let f = self.rng.pick(&["lower", "upper"]).to_string();
                    format!("{f}({})", self.expr(scope, Ty::Text, d))
                }
                15..=29 => {
                    let start = self.rng.range(-1, 5);
                    if self.rng.percent(50) {
                        if start < 1 {
                            self.tag("substr start < 1");
                        }
                        let len = self.rng.range(0, 4);
                        format!("substr({}, {start}, {len})", self.expr(scope, Ty::Text, d))
                    } else {
                        format!("substr({}, {})", self.expr(scope, Ty::Text, d), start.max(1))
                    }
                }
                30..=44 => {
                    format!("({} || {})", self.expr(scope, Ty::Text, d), self.expr(scope, Ty::Text, d))
                }
                45..=54 => {
                    format!("concat({}, {})", self.expr(scope, Ty::Text, d), self.expr(scope, Ty::Text, d))
                }
                55..=64 => {
                    self.tag("cast int to text");
                    format!("CAST({} AS TEXT)", self.expr(scope, Ty::Int, d))
                }
                65..=69 => {
                    self.tag("cast date to text");
                    format!("CAST({} AS TEXT)", self.expr(scope, Ty::Date, d))
                }
                70..=73 => {
                    self.tag("cast timestamp to text");
                    format!("CAST({} AS TEXT)", self.expr(scope, Ty::Ts, d))
                }
                74..=79 => {
                    self.tag("trim");
                    let f = self.rng.pick(&["trim", "ltrim", "rtrim"]).to_string();
                    format!("{f}({})", self.expr(scope, Ty::Text, d))
                }
                80..=86 => {
                    let n = self.rng.range(0, 4);
                    let f = self.rng.pick(&["left", "right"]).to_string();
                    format!("{f}({}, {n})", self.expr(scope, Ty::Text, d))
                }
                87..=92 => format!("replace({}, 'b', 'XY')", self.expr(scope, Ty::Text, d)),
                _ => {
                    self.tag("cast numeric to text");
                    format!("CAST({} AS TEXT)", self.expr(scope, Ty::Num, d))
                }
            },
            Ty::Bool => format!("({})", self.pred(scope, depth)),
            Ty::Date => match r {
                0..=39 => {
                    self.tag("date + int");
                    format!("({} + {})", self.expr(scope, Ty::Date, d), self.rng.range(-40, 40))
                }
                40..=69 => format!("CAST({} AS DATE)", self.expr(scope, Ty::Ts, d)),
                _ => {
                    let f = self.rng.pick(&["greatest", "least"]).to_string();
                    format!("{f}({}, {})", self.expr(scope, Ty::Date, d), self.expr(scope, Ty::Date, d))
                }
            },
            Ty::Ts => match r {
                0..=49 => {
                    self.tag("date_trunc");
                    let unit = *self.rng.pick(&["year", "quarter", "month", "week", "day", "hour", "minute"]);
                    format!("date_trunc('{unit}', {})", self.expr(scope, Ty::Ts, d))
                }
                50..=74 => format!("CAST({} AS TIMESTAMP)", self.expr(scope, Ty::Date, d)),
                _ => {
                    self.tag("timestamp + interval");
                    let iv = *self.rng.pick(&["1 day", "2 hours", "30 minutes", "1 month", "-3 days"]);
                    format!("({} + INTERVAL '{iv}')", self.expr(scope, Ty::Ts, d))
                }
            },
        }
    }

    fn comparable(&mut self) -> Ty {
        *self.rng.pick(&[
            Ty::Int,
            Ty::Int,
            Ty::Int,
            Ty::Text,
            Ty::Text,
            Ty::Num,
            Ty::Float,
            Ty::Date,
            Ty::Ts,
            Ty::Bool,
        ])
    }

    pub fn pred(&mut self, scope: &Scope, depth: u32) -> String {
        let d = depth.saturating_sub(1);
        let r = self.rng.below(100);
        match r {
            0..=34 => {
                let ty = self.comparable();
                if ty == Ty::Float {
                    self.tag("float comparison");
                }
                let op = *self.rng.pick(&["=", "<>", "<", "<=", ">", ">="]);
                let left = self.expr(scope, ty, d);
                let right =
                    if self.rng.percent(60) { self.lit_or_param(ty) } else { self.expr(scope, ty, d) };
                format!("{left} {op} {right}")
            }
            35..=44 => {
                let ty = self.comparable();
                let not = if self.rng.percent(50) { "NOT " } else { "" };
                format!("{} IS {not}NULL", self.expr(scope, ty, d))
            }
            45..=54 if depth > 0 => {
                let op = *self.rng.pick(&["AND", "OR"]);
                format!("({} {op} {})", self.pred(scope, d), self.pred(scope, d))
            }
            55..=59 if depth > 0 => format!("NOT ({})", self.pred(scope, d)),
            60..=67 => {
                let pattern =
                    *self.rng.pick(&["a%", "%b%", "_b%", "%", "A%", "%c", "x\\_y", "%o w%", "h_llo%"]);
                let op = *self.rng.pick(&["LIKE", "LIKE", "NOT LIKE", "ILIKE"]);
                if op == "ILIKE" {
                    self.tag("ILIKE");
                }
                if pattern.contains('\\') {
                    self.tag("LIKE escape");
                }
                let pattern = if self.params.is_some() && self.rng.percent(40) {
                    let params = self.params.as_mut().expect("params");
                    params.push(Value::Text(pattern.into()));
                    format!("${}", params.len())
                } else {
                    format!("'{pattern}'")
                };
                format!("{} {op} {pattern}", self.expr(scope, Ty::Text, d))
            }
            68..=75 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Num, Ty::Date]);
                let n = self.rng.range(1, 4);
                let items: Vec<String> = (0..n).map(|_| self.lit_or_param(ty)).collect();
                let not = if self.rng.percent(30) { "NOT " } else { "" };
                format!("{} {not}IN ({})", self.expr(scope, ty, d), items.join(", "))
            }
            76..=81 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Num, Ty::Date, Ty::Float]);
                if ty == Ty::Float {
                    self.tag("float comparison");
                }
                let (lo, hi) = (self.lit_or_param(ty), self.lit_or_param(ty));
                format!("{} BETWEEN {lo} AND {hi}", self.expr(scope, ty, d))
            }
            82..=86 => {
                let ty = self.comparable();
                let not = if self.rng.percent(50) { "NOT " } else { "" };
                self.tag("IS DISTINCT FROM");
                format!("{} IS {not}DISTINCT FROM {}", self.expr(scope, ty, d), self.expr(scope, ty, d))
            }
            _ => match self.column(scope, Ty::Bool) {
                Some(c) => c,
                None => {
                    let ty = Ty::Int;
                    format!("{} >= {}", self.expr(scope, ty, d), self.lit_or_param(ty))
                }
            },
        }
    }

    /// An aggregate over `scope`, and its output's class.
    fn aggregate(&mut self, scope: &Scope) -> (String, Ty) {
        let r = self.rng.below(100);
        match r {
            0..=14 => ("count(*)".into(), Ty::Int),
            15..=24 => {
                let ty = self.comparable();
                (format!("count({})", self.expr(scope, ty, 1)), Ty::Int)
            }
            25..=31 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Num]);
                self.tag("count(DISTINCT)");
                (format!("count(DISTINCT {})", self.expr(scope, ty, 1)), Ty::Int)
            }
            32..=46 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Int, Ty::Num, Ty::Float]);
                (format!("sum({})", self.expr(scope, ty, 1)), ty)
            }
            47..=54 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Num, Ty::Float]);
                self.tag(if ty == Ty::Num { "avg(numeric)" } else { "avg" });
                (format!("avg({})", self.expr(scope, ty, 1)), Ty::Float)
            }
            55..=74 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Num, Ty::Float, Ty::Date, Ty::Ts]);
                let f = self.rng.pick(&["min", "max"]).to_string();
                (format!("{f}({})", self.expr(scope, ty, 1)), ty)
            }
            75..=82 => {
                let f = self.rng.pick(&["bool_and", "bool_or"]).to_string();
                self.tag("bool_and/bool_or");
                (format!("{f}({})", self.pred(scope, 1)), Ty::Bool)
            }
            83..=89 => {
                self.tag("string_agg");
                let e = self.expr(scope, Ty::Text, 1);
                (format!("string_agg({e}, ',' ORDER BY {e})"), Ty::Text)
            }
            _ => {
                self.tag("stddev/variance");
                let f = self.rng.pick(&["stddev_samp", "var_pop", "stddev_pop", "var_samp"]).to_string();
                let ty = *self.rng.pick(&[Ty::Int, Ty::Float]);
                (format!("{f}({})", self.expr(scope, ty, 1)), Ty::Float)
            }
        }
    }

    /// `FROM ...` of one table or a join of two, and the scope it makes.
    fn from(&mut self, outer: &Scope) -> (String, Scope) {
        let r = self.rng.below(100);
        if r < 55 {
            let t = self.any_table();
            let (alias, t) = self.scope_of(t.name);
            let mut scope = outer.clone();
            scope.push((alias.clone(), t));
            return (format!("{} {alias}", t.name), scope);
        }
        let (l, lc, r_, rc) = *self.rng.pick(&[
            ("t1", "id", "t2", "t1_id"),
            ("t1", "a", "t3", "a"),
            ("t1", "a", "t4", "id"),
            ("t2", "k", "t3", "k"),
            ("t1", "txt", "t3", "txt"),
            ("t2", "d", "t1", "d"),
            ("t4", "b", "t1", "b"),
            ("t2", "t1_id", "t1", "id"),
        ]);
        let (la, lt) = self.scope_of(l);
        let (ra, rt) = self.scope_of(r_);
        let kind = *self.rng.pick(&["JOIN", "JOIN", "LEFT JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
        if kind == "FULL JOIN" {
            self.tag("FULL JOIN");
        }
        let mut on = format!("{la}.{lc} = {ra}.{rc}");
        let mut scope = outer.clone();
        scope.push((la.clone(), lt));
        scope.push((ra.clone(), rt));
        if self.rng.percent(20) {
            let local: Scope = vec![(la.clone(), lt), (ra.clone(), rt)];
            on = format!("{on} AND {}", self.pred(&local, 1));
        }
        (format!("{l} {la} {kind} {r_} {ra} ON {on}"), scope)
    }

    /// `ORDER BY` every output column (by position), in random directions.
    fn order_all(&mut self, n: usize) -> String {
        let mut positions: Vec<usize> = (1..=n).collect();
        for i in (1..positions.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            positions.swap(i, j);
        }
        let keys: Vec<String> = positions
            .iter()
            .map(|p| {
                let dir = *self.rng.pick(&["", " DESC", " ASC", "", " DESC NULLS LAST", " NULLS FIRST"]);
                format!("{p}{dir}")
            })
            .collect();
        format!(" ORDER BY {}", keys.join(", "))
    }

    /// Maybe ORDER BY all columns, and then maybe LIMIT/OFFSET; returns (sql, ordered).
    fn tail(&mut self, n: usize) -> (String, bool) {
        if !self.rng.percent(45) {
            return (String::new(), false);
        }
        let mut s = self.order_all(n);
        if self.rng.percent(60) {
            let limit = if self.params.is_some() && self.rng.percent(25) {
                self.tag("LIMIT $n");
                let params = self.params.as_mut().expect("params");
                params.push(Value::Int(self.rng.range(0, 12)));
                format!("${}", params.len())
            } else {
                self.rng.range(0, 12).to_string()
            };
            s.push_str(&format!(" LIMIT {limit}"));
            if self.rng.percent(40) {
                s.push_str(&format!(" OFFSET {}", self.rng.range(0, 8)));
            }
        }
        (s, true)
    }

    /// Tags a select list naming one expression twice.
    fn check_duplicates(&mut self, exprs: &[String]) {
        if (1..exprs.len()).any(|i| exprs[..i].contains(&exprs[i])) {
            self.tag("duplicate select expressions");
        }
    }

    fn select_list(&mut self, scope: &Scope, n: usize) -> (Vec<String>, Vec<Ty>) {
        let mut exprs = Vec::new();
        let mut tys = Vec::new();
        for _ in 0..n {
            let ty = *self.rng.pick(OUT_TYPES);
            exprs.push(self.expr(scope, ty, 2));
            tys.push(ty);
        }
        self.check_duplicates(&exprs);
        (exprs, tys)
    }

    /// A subquery predicate over `scope` (the outer query's), maybe correlated.
    fn subquery_pred(&mut self, scope: &Scope) -> String {
        let r = self.rng.below(100);
        let t = self.any_table();
        let (alias, t) = self.scope_of(t.name);
        let inner: Scope = vec![(alias.clone(), t)];
        let mut both = scope.clone();
        both.push((alias.clone(), t));
        match r {
            0..=34 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Date, Ty::Num]);
                let (Some(outer_col), Some(inner_col)) = (self.column(scope, ty), self.column(&inner, ty))
                else {
                    return self.pred(scope, 1);
                };
                let not = if self.rng.percent(30) { "NOT " } else { "" };
                if !not.is_empty() {
                    self.tag("NOT IN subquery");
                }
                let filter = if self.rng.percent(60) {
                    format!(" WHERE {}", self.pred(&inner, 1))
                } else {
                    String::new()
                };
                format!("{outer_col} {not}IN (SELECT {inner_col} FROM {} {alias}{filter})", t.name)
            }
            35..=69 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Int, Ty::Text, Ty::Date]);
                let (Some(outer_col), Some(inner_col)) = (self.column(scope, ty), self.column(&inner, ty))
                else {
                    return self.pred(scope, 1);
                };
                let not = if self.rng.percent(35) { "NOT " } else { "" };
                let extra = if self.rng.percent(50) {
                    format!(" AND {}", self.pred(&both, 1))
                } else {
                    String::new()
                };
                self.tag("correlated EXISTS");
                format!(
                    "{not}EXISTS (SELECT 1 FROM {} {alias} WHERE {inner_col} = {outer_col}{extra})",
                    t.name
                )
            }
            _ => {
                let (agg, ty) = self.aggregate(&inner);
                if !matches!(ty, Ty::Int | Ty::Num | Ty::Date | Ty::Text) {
                    return self.pred(scope, 1);
                }
                let left = self.expr(scope, ty, 1);
                let op = *self.rng.pick(&["=", "<", ">=", "<>"]);
                let corr = match (self.column(scope, Ty::Int), self.column(&inner, Ty::Int)) {
                    (Some(o), Some(i)) if self.rng.percent(50) => {
                        self.tag("correlated scalar subquery");
                        format!(" WHERE {i} = {o}")
                    }
                    _ => String::new(),
                };
                format!("{left} {op} (SELECT {agg} FROM {} {alias}{corr})", t.name)
            }
        }
    }

    fn plain_select(&mut self) -> (String, Vec<Ty>) {
        let (from, scope) = self.from(&Vec::new());
        let n = self.rng.range(1, 5) as usize;
        let (mut exprs, mut tys) = self.select_list(&scope, n);
        if self.rng.percent(12) {
            // A scalar subquery in the select list, maybe correlated.
            let t = self.any_table();
            let (alias, t) = self.scope_of(t.name);
            let inner: Scope = vec![(alias.clone(), t)];
            let (agg, ty) = self.aggregate(&inner);
            let corr = match (self.column(&scope, Ty::Int), self.column(&inner, Ty::Int)) {
                (Some(o), Some(i)) => {
                    self.tag("correlated scalar subquery");
                    format!(" WHERE {i} = {o}")
                }
                _ => String::new(),
            };
            exprs.push(format!("(SELECT {agg} FROM {} {alias}{corr})", t.name));
            tys.push(ty);
        }
        let distinct = if self.rng.percent(15) { "DISTINCT " } else { "" };
        let mut sql = format!("SELECT {distinct}{} FROM {from}", exprs.join(", "));
        if self.rng.percent(75) {
            let p = if self.rng.percent(25) { self.subquery_pred(&scope) } else { self.pred(&scope, 2) };
            sql.push_str(&format!(" WHERE {p}"));
        }
        (sql, tys)
    }

    fn aggregate_select(&mut self) -> (String, Vec<Ty>) {
        let (from, scope) = self.from(&Vec::new());
        let groups = self.rng.below(3) as usize;
        let mut exprs = Vec::new();
        let mut tys = Vec::new();
        for _ in 0..groups {
            let ty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Bool, Ty::Date, Ty::Num, Ty::Ts]);
            let Some(column) = self.column(&scope, ty) else { continue };
            let mut e = column.clone();
            if self.rng.percent(30) {
                // An expression over a column (a constant would be a position or refused).
                let candidate = self.expr(&scope, ty, 1);
                if scope.iter().any(|(alias, _)| candidate.contains(&format!("{alias}."))) {
                    e = candidate;
                }
            }
            exprs.push(e);
            tys.push(ty);
        }
        let group_by: Vec<String> = exprs.clone();
        for _ in 0..self.rng.range(1, 4) {
            let (a, ty) = self.aggregate(&scope);
            exprs.push(a);
            tys.push(ty);
        }
        self.check_duplicates(&exprs);
        let mut sql = format!("SELECT {} FROM {from}", exprs.join(", "));
        if self.rng.percent(50) {
            sql.push_str(&format!(" WHERE {}", self.pred(&scope, 1)));
        }
        if !group_by.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", group_by.join(", ")));
        }
        if self.rng.percent(40) {
            let params_before = self.params.as_ref().map_or(0, Vec::len);
            let (a, ty) = self.aggregate(&scope);
            let op = *self.rng.pick(&["=", "<>", "<", ">", ">="]);
            let right = self.lit_or_param(ty);
            sql.push_str(&format!(" HAVING {a} {op} {right}"));
            if self.params.as_ref().map_or(0, Vec::len) > params_before {
                self.tag("parameter in HAVING");
            }
        }
        (sql, tys)
    }

    fn window_select(&mut self) -> (String, Vec<Ty>) {
        let t = *self.rng.pick(&["t1", "t2", "t4", "t3"]);
        let (alias, t) = self.scope_of(t);
        let scope: Scope = vec![(alias.clone(), t)];
        let n = self.rng.range(1, 3) as usize;
        let (mut exprs, mut tys) = self.select_list(&scope, n);
        let pty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Bool]);
        let part = self.column(&scope, pty).map(|c| format!("PARTITION BY {c} ")).unwrap_or_default();
        let oty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Num, Ty::Date]);
        let ocol = self.column(&scope, oty).unwrap_or_else(|| format!("{alias}.{}", t.cols[0].0));
        self.tag("window");
        let r = self.rng.below(100);
        let (w, ty) = match (r, t.pk) {
            (0..=29, Some(pk)) => {
                let f = *self.rng.pick(&["row_number()", "lag({})", "lead({})", "first_value({})"]);
                let arg = self.column(&scope, Ty::Int).expect("int column");
                let (f, ty) = if f.contains("{}") {
                    (f.replace("{}", &arg), Ty::Int)
                } else {
                    (f.to_string(), Ty::Int)
                };
                (format!("{f} OVER ({part}ORDER BY {ocol}, {alias}.{pk})"), ty)
            }
            (0..=49, _) => {
                let f = *self.rng.pick(&["rank()", "dense_rank()", "count(*)"]);
                (format!("{f} OVER ({part}ORDER BY {ocol})"), Ty::Int)
            }
            (50..=74, _) => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Num, Ty::Float]);
                let arg = self.expr(&scope, ty, 1);
                let f = *self.rng.pick(&["sum", "min", "max", "count"]);
                let ty = if f == "count" { Ty::Int } else { ty };
                (format!("{f}({arg}) OVER ({part}ORDER BY {ocol})"), ty)
            }
            _ => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Num]);
                let arg = self.expr(&scope, ty, 1);
                let f = *self.rng.pick(&["sum", "max", "count", "avg"]);
                if f == "avg" && ty == Ty::Num {
                    self.tag("avg(numeric)");
                }
                let ty = match f {
                    "count" => Ty::Int,
                    "avg" => Ty::Float,
                    _ => ty,
                };
                (format!("{f}({arg}) OVER ({part})"), ty)
            }
        };
        self.window_constant = exprs.iter().any(|e| !e.contains(&format!("{alias}.")));
        exprs.push(w);
        tys.push(ty);
        self.check_duplicates(&exprs);
        let mut sql = format!("SELECT {} FROM {} {alias}", exprs.join(", "), t.name);
        if self.rng.percent(50) {
            sql.push_str(&format!(" WHERE {}", self.pred(&scope, 1)));
        }
        (sql, tys)
    }

    fn set_op_select(&mut self) -> (String, Vec<Ty>) {
        let n = self.rng.range(1, 3) as usize;
        let tys: Vec<Ty> =
            (0..n).map(|_| *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Date, Ty::Num, Ty::Bool])).collect();
        let side = |g: &mut Gen| -> (String, bool) {
            let t = g.any_table();
            let (alias, t) = g.scope_of(t.name);
            let scope: Scope = vec![(alias.clone(), t)];
            let exprs: Vec<String> = tys
                .iter()
                .map(|ty| {
                    if g.rng.percent(70) {
                        g.column(&scope, *ty).unwrap_or_else(|| g.expr(&scope, *ty, 1))
                    } else {
                        g.expr(&scope, *ty, 1)
                    }
                })
                .collect();
            g.check_duplicates(&exprs);
            let filter =
                if g.rng.percent(60) { format!(" WHERE {}", g.pred(&scope, 1)) } else { String::new() };
            (format!("SELECT {} FROM {} {alias}{filter}", exprs.join(", "), t.name), t.pk.is_some())
        };
        let op =
            *self.rng.pick(&["UNION", "UNION ALL", "INTERSECT", "INTERSECT ALL", "EXCEPT", "EXCEPT ALL"]);
        match op {
            "INTERSECT ALL" => self.tag("INTERSECT ALL"),
            "EXCEPT ALL" => self.tag("EXCEPT ALL"),
            _ => {}
        }
        let ((a, left_pk), (b, _)) = (side(self), side(self));
        if op == "INTERSECT" && left_pk {
            self.tag("INTERSECT, primary-key table on the left");
        }
        let mut sql = format!("({a}) {op} ({b})");
        if self.rng.percent(20) {
            let op2 = *self.rng.pick(&["UNION", "UNION ALL", "EXCEPT"]);
            let (c, _) = side(self);
            sql = format!("({sql}) {op2} ({c})");
        }
        (sql, tys)
    }

    pub fn statement(&mut self) -> Stmt {
        self.tags.clear();
        self.window_constant = false;
        let prepared = self.rng.percent(25);
        self.params = prepared.then(Vec::new);
        let r = self.rng.below(100);
        let (mut sql, tys) = match r {
            0..=34 => self.plain_select(),
            35..=59 => self.aggregate_select(),
            60..=74 => self.window_select(),
            75..=89 => self.set_op_select(),
            _ => {
                // A CTE or a derived table around a plain select.
                let (inner, tys) = self.plain_select();
                let cols: Vec<String> = (1..=tys.len()).map(|i| format!("c{i}")).collect();
                if self.rng.percent(50) {
                    (format!("WITH w ({}) AS ({inner}) SELECT * FROM w", cols.join(", ")), tys)
                } else {
                    (format!("SELECT * FROM ({inner}) AS w ({})", cols.join(", ")), tys)
                }
            }
        };
        let (tail, ordered) = self.tail(tys.len());
        sql.push_str(&tail);
        if self.tags.contains("IS DISTINCT FROM")
            && [" LEFT JOIN ", " RIGHT JOIN ", " FULL JOIN "].iter().any(|j| sql.contains(j))
        {
            self.tag("IS DISTINCT FROM over an outer join");
        }
        if ordered && self.window_constant {
            self.tag("window, ORDER BY with a constant column");
        }
        if sql.matches("string_agg(").count() > 1 {
            self.tag("several ordered aggregates");
        }
        if (sql.starts_with("WITH w (") || sql.contains(") AS w (")) && sql.contains("CAST(") {
            self.tag("CAST under a column alias list");
        }
        let params = self.params.take().unwrap_or_default();
        Stmt {
            sql,
            ordered,
            extended: prepared || self.rng.percent(10),
            params,
            approx: tys.iter().map(|t| *t == Ty::Float).collect(),
            tags: self.tags.clone(),
        }
    }
}
