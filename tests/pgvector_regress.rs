//! pgvector's own regression tests against Tarn, run the way pg_regress runs them.
//!
//! The files (`test/sql/<name>.sql`, `test/expected/<name>.out`) come from pgvector's
//! source as Debian ships it (the `pgvector` source package of trixie, 0.8.x), fetched at
//! test time by `tests/pgvector_source.sh` and cached under `/var/tmp`; nothing of
//! pgvector is in this repository. A failed download fails the test with the reason,
//! unless `TARN_PGVECTOR_REGRESS_SKIP=1`.
//!
//! For each of [`FILES`] a fresh server, then what pg_regress does: the extension is
//! loaded (`--load-extension=vector`: `CREATE EXTENSION IF NOT EXISTS "vector"` through
//! `psql -X -q -c`, its output expected empty: counted as one block, `setup`), and the file
//! goes through `psql -X -a -q` on stdin with stdout and stderr into one file, from a
//! folder holding `results/` (where `copy.sql` writes), with pg_regress's environment
//! (`PGTZ=PST8PDT`, `PGDATESTYLE=Postgres, MDY`, `PGOPTIONS=-c intervalstyle=...`,
//! `LC_MESSAGES=C`, `PGAPPNAME=pg_regress/<name>`, psql variables `HIDE_TABLEAM` and
//! `HIDE_TOAST_COMPRESSION`).
//!
//! **Blocks.** pg_regress diffs whole files; here both outputs are cut into statement
//! blocks, so one difference does not hide the rest. The cuts come from the `.sql` file:
//! it is split into the units psql echoes (`-a`): a statement (its lines up to the one
//! ending in `;` outside quotes and comments), a meta-command line (`\copy ...`), or a
//! comment line between statements; blank lines are not echoed. Each output is then
//! walked in order, finding each unit's echoed lines; a block is a statement's (or
//! meta-command's) echo plus every line up to the next unit's echo. Comment lines are
//! cut away (they are echoed the same by both). A statement whose echo is missing (psql
//! stopped) is a block with no text, so it differs.
//!
//! **The baseline.** `tests/pgvector_regress/expected_differences.txt` lists every block
//! known to differ, one per line: `file<TAB>statement's first line<TAB>reason`, where a
//! first line repeated in a file gets ` (#n)` for its n-th occurrence (see [`Block::key`]).
//! The test fails when a block differs that is not listed (a regression: its expected and
//! actual text are printed) and when a listed block now matches or no longer exists
//! (delete its line: the list only shrinks). It prints
//! `pgvector regression: M of N statement blocks match`, and the per-file counts.
//!
//! The actual outputs go to `target/tmp/pgvector_regress/<name>.out` (next to them
//! `<name>.expected`) for a look with `diff`. `TARN_PGVECTOR_REGRESS_BLESS=1` rewrites the
//! baseline with today's differences, keeping the reasons of lines still listed and
//! `TODO` for new ones: review what it adds.
//!
//! `TARN_PGVECTOR_REGRESS_SERVER=host:port` runs the same files against another server
//! (user and database `tarn`) instead of Tarn and compares no baseline: against
//! PostgreSQL 15 with pgvector 0.8.0 (as `benchmarks/pgvector.sh` builds it) every block
//! matches, which is how this harness's psql invocation and block cutting were checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tarn_tests::TestServer;

/// pgvector 0.8's regression files for the `vector` type (not halfvec, sparsevec, bit).
const FILES: &[&str] = &["vector_type", "cast", "copy", "btree", "hnsw_vector", "ivfflat_vector"];

/// The setup step's key (pg_regress's `--load-extension`, once per database).
const SETUP_FILE: &str = "setup";
const SETUP_SQL: &str = "CREATE EXTENSION IF NOT EXISTS \"vector\"";

/// How long one psql run may take before it is killed (a hung server fails the test).
const PSQL_TIMEOUT: Duration = Duration::from_secs(300);

fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pgvector_regress").join("expected_differences.txt")
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pgvector_regress")
}

/// pgvector's unpacked source folder, from `tests/pgvector_source.sh`.
fn pgvector_source() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pgvector_source.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} could not start: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{} failed ({}):\n{stderr}", script.display(), output.status));
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if dir.is_empty() || !Path::new(&dir).join("test").join("sql").is_dir() {
        return Err(format!("{} printed '{dir}', not pgvector's source folder:\n{stderr}", script.display()));
    }
    Ok(PathBuf::from(dir))
}

/// One thing psql echoes with `-a`.
#[derive(Debug)]
struct Unit {
    lines: Vec<String>,
    /// A comment line between statements: echoed, but no block of its own.
    comment: bool,
}

/// Splits a psql script into the units psql echoes (see the module docs).
fn units(sql: &str) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut buffer: Vec<String> = Vec::new();
    // Lexer state carried across lines.
    let (mut single, mut double, mut block_comment) = (false, false, 0usize);
    for line in sql.lines() {
        let in_quote = single || double || block_comment > 0;
        if line.is_empty() && !in_quote {
            continue; // psql does not echo an empty line outside a quote
        }
        if buffer.is_empty() && !in_quote {
            let trimmed = line.trim_start();
            if trimmed.starts_with('\\') {
                units.push(Unit { lines: vec![line.to_string()], comment: false });
                continue;
            }
            if trimmed.starts_with("--") || trimmed.is_empty() {
                units.push(Unit { lines: vec![line.to_string()], comment: true });
                continue;
            }
        }
        buffer.push(line.to_string());
        let chars: Vec<char> = line.chars().collect();
        let mut ended = false;
        let mut i = 0;
        while i < chars.len() {
            let (c, next) = (chars[i], chars.get(i + 1).copied());
            if block_comment > 0 {
                if c == '*' && next == Some('/') {
                    block_comment -= 1;
                    i += 1;
                } else if c == '/' && next == Some('*') {
                    block_comment += 1;
                    i += 1;
                }
            } else if single {
                if c == '\'' {
                    single = false;
                }
            } else if double {
                if c == '"' {
                    double = false;
                }
            } else {
                match c {
                    '\'' => single = true,
                    '"' => double = true,
                    '-' if next == Some('-') => break,
                    '/' if next == Some('*') => {
                        block_comment += 1;
                        i += 1;
                    }
                    ';' => ended = true,
                    c if !c.is_whitespace() => ended = false,
                    _ => {}
                }
            }
            i += 1;
        }
        if ended && !(single || double || block_comment > 0) {
            units.push(Unit { lines: std::mem::take(&mut buffer), comment: false });
        }
    }
    if !buffer.is_empty() {
        units.push(Unit { lines: buffer, comment: false });
    }
    units
}

/// A statement (or meta-command) and, from one output, its echo and what followed it.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    first_line: String,
    /// 1 for the first statement in the file with this first line, 2 for the next...
    occurrence: usize,
    /// The echo and the output; empty when the echo was not found.
    text: String,
}

impl Block {
    /// The baseline's key: file and first line, with ` (#n)` for a repeated first line.
    fn key(&self) -> (String, String) {
        let statement = if self.occurrence > 1 {
            format!("{} (#{})", self.first_line, self.occurrence)
        } else {
            self.first_line.clone()
        };
        (self.file.clone(), statement)
    }
}

/// Cuts `output` into one block per non-comment unit of `units`.
fn blocks(file: &str, units: &[Unit], output: &str) -> Vec<Block> {
    let lines: Vec<&str> = output.lines().collect();
    // Where each unit's echo starts, found in order; None if not found.
    let mut starts: Vec<Option<usize>> = Vec::with_capacity(units.len());
    let mut cursor = 0;
    for unit in units {
        let n = unit.lines.len();
        let found = (cursor..lines.len().saturating_sub(n - 1))
            .find(|&j| unit.lines.iter().zip(&lines[j..j + n]).all(|(a, b)| a == b));
        if let Some(j) = found {
            cursor = j + n;
        }
        starts.push(found);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut result = Vec::new();
    for (index, unit) in units.iter().enumerate() {
        if unit.comment {
            continue;
        }
        let first_line = unit.lines[0].clone();
        let occurrence = {
            let count = seen.entry(first_line.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let text = match starts[index] {
            None => String::new(),
            Some(start) => {
                let end = starts[index + 1..].iter().flatten().next().copied().unwrap_or(lines.len());
                let mut text = String::new();
                for line in &lines[start..end] {
                    text.push_str(line);
                    text.push('\n');
                }
                text
            }
        };
        result.push(Block { file: file.to_string(), first_line, occurrence, text });
    }
    result
}

/// The psql variables pg_regress (PostgreSQL 15) sets.
const PSQL_VARIABLES: [&str; 4] = ["-v", "HIDE_TABLEAM=on", "-v", "HIDE_TOAST_COMPRESSION=on"];

/// Environment that would point psql elsewhere or change its output (pg_regress unsets the
/// connection ones too).
const UNSET_ENVIRONMENT: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGCONNECT_TIMEOUT",
    "PGDATA",
    "PGPASSWORD",
    "PGPASSFILE",
    "PSQLRC",
    "PSQL_PAGER",
    "PAGER",
];

/// Runs psql as pg_regress does, stdout and stderr into one file; returns that file's text.
fn psql(
    (host, port): (&str, u16),
    name: &str,
    workdir: &Path,
    input: Option<&Path>,
    command: Option<&str>,
) -> String {
    let output_path = workdir.join(format!("{name}.psql-output"));
    let output = std::fs::File::create(&output_path).expect("psql output file");
    let mut cmd = Command::new("psql");
    cmd.arg("-X");
    if input.is_some() {
        cmd.arg("-a");
    }
    let port = port.to_string();
    cmd.args(["-q", "-h", host, "-p", &port, "-U", "tarn", "-d", "tarn"]).args(PSQL_VARIABLES);
    if let Some(command) = command {
        cmd.args(["-c", command]);
    }
    for var in UNSET_ENVIRONMENT {
        cmd.env_remove(var);
    }
    cmd.env("PGTZ", "PST8PDT")
        .env("PGDATESTYLE", "Postgres, MDY")
        .env("PGOPTIONS", "-c intervalstyle=postgres_verbose")
        .env("LC_MESSAGES", "C")
        .env("PGAPPNAME", format!("pg_regress/{name}"))
        .current_dir(workdir)
        .stdout(Stdio::from(output.try_clone().expect("psql output file")))
        .stderr(Stdio::from(output));
    match input {
        Some(path) => cmd.stdin(Stdio::from(std::fs::File::open(path).expect("sql file"))),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd.spawn().expect("psql runs (the postgresql-client package; .ci/run installs it)");
    let deadline = Instant::now() + PSQL_TIMEOUT;
    loop {
        if child.try_wait().expect("psql status").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("psql on {name} ran longer than {PSQL_TIMEOUT:?}; the server hangs?");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // psql's exit status is not looked at: with -a and no ON_ERROR_STOP it goes on after
    // errors, and what it printed is what is compared.
    std::fs::read_to_string(&output_path).expect("psql output is text")
}

/// The baseline: key -> reason, in the file's order.
fn read_baseline() -> Vec<((String, String), String)> {
    let path = baseline_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(file), Some(statement)) = (fields.next(), fields.next()) else {
            panic!("{}:{}: expected file<TAB>statement<TAB>reason, got {line:?}", path.display(), number + 1);
        };
        let reason = fields.next().unwrap_or("TODO").to_string();
        entries.push(((file.to_string(), statement.to_string()), reason));
    }
    entries
}

const BASELINE_HEADER: &str = "\
# pgvector's regression tests against Tarn (tests/pgvector_regress.rs): the statement
# blocks whose output differs from pgvector's expected file today, one per line:
#   file<TAB>statement's first line<TAB>reason
# A first line repeated in a file has ` (#n)` for its n-th occurrence. A block that
# differs and is not listed fails the test; so does a listed block that now matches
# (delete its line: this list only shrinks). TARN_PGVECTOR_REGRESS_BLESS=1 rewrites it.
";

fn write_baseline(differing: &[Block], old: &[((String, String), String)]) {
    let reasons: HashMap<&(String, String), &String> = old.iter().map(|(k, r)| (k, r)).collect();
    let mut text = BASELINE_HEADER.to_string();
    for block in differing {
        let key = block.key();
        let reason = reasons.get(&key).map_or("TODO", |r| r.as_str());
        writeln!(text, "{}\t{}\t{reason}", key.0, key.1).expect("string write");
    }
    std::fs::write(baseline_path(), text).expect("baseline written");
}

/// Expected and actual text of a block, for a failure message.
fn show(expected: &Block, actual: &Block) -> String {
    let missing = if expected.file == SETUP_FILE {
        "(no output)\n"
    } else {
        "(missing: psql never echoed this statement)\n"
    };
    format!(
        "--- {} {}\n--- expected:\n{}--- tarn:\n{}",
        expected.file,
        expected.key().1,
        if expected.text.is_empty() { missing } else { &expected.text },
        if actual.text.is_empty() { missing } else { &actual.text }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_regression_tests() {
    if std::env::var("TARN_PGVECTOR_REGRESS_SKIP").as_deref() == Ok("1") {
        eprintln!("pgvector regression: skipped (TARN_PGVECTOR_REGRESS_SKIP=1)");
        return;
    }
    let started = Instant::now();
    // The harness itself can be checked against PostgreSQL with pgvector (every block
    // should match there): TARN_PGVECTOR_REGRESS_SERVER=host:port (user and database
    // `tarn`, the extension's tables dropped as the files drop them) runs the files
    // against that server instead of Tarn, prints the counts and compares no baseline.
    let external: Option<(String, u16)> = std::env::var("TARN_PGVECTOR_REGRESS_SERVER").ok().map(|s| {
        let (host, port) = s.rsplit_once(':').expect("TARN_PGVECTOR_REGRESS_SERVER is host:port");
        (host.to_string(), port.parse().expect("TARN_PGVECTOR_REGRESS_SERVER's port"))
    });
    let source =
        tokio::task::spawn_blocking(pgvector_source).await.expect("download task").unwrap_or_else(|e| {
            panic!(
                "pgvector's source could not be fetched (TARN_PGVECTOR_REGRESS_SKIP=1 skips this test): {e}"
            )
        });
    let results = results_dir();
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&results).expect("results folder");
    // psql runs in a folder of its own, with the `results/` that copy.sql writes into.
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(work.path().join("results")).expect("results folder");

    let mut expected_blocks: Vec<Block> = Vec::new();
    let mut actual_blocks: Vec<Block> = Vec::new();
    let mut setup_outputs = String::new();
    for name in FILES {
        let sql_path = source.join("test").join("sql").join(format!("{name}.sql"));
        let expected_path = source.join("test").join("expected").join(format!("{name}.out"));
        let sql =
            std::fs::read_to_string(&sql_path).unwrap_or_else(|e| panic!("{}: {e}", sql_path.display()));
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let units = units(&sql);

        let server = match &external {
            Some(_) => None,
            None => Some(TestServer::start().await),
        };
        let address = match (&external, &server) {
            (Some((host, port)), _) => (host.clone(), *port),
            (None, Some(server)) => (server.addr.ip().to_string(), server.addr.port()),
            (None, None) => unreachable!("a server was started"),
        };
        let (workdir, sql_for_psql) = (work.path().to_path_buf(), sql_path.clone());
        let (setup, actual) = tokio::task::block_in_place(|| {
            let address = (address.0.as_str(), address.1);
            let setup = psql(address, name, &workdir, None, Some(SETUP_SQL));
            let actual = psql(address, name, &workdir, Some(&sql_for_psql), None);
            (setup, actual)
        });
        if let Some(server) = server {
            server.stop().await;
        }
        if !setup.is_empty() {
            writeln!(setup_outputs, "{name}: {}", setup.trim_end()).expect("string write");
        }
        std::fs::write(results.join(format!("{name}.out")), &actual).expect("result written");
        std::fs::write(results.join(format!("{name}.expected")), &expected).expect("result written");

        let expected_file_blocks = blocks(name, &units, &expected);
        let actual_file_blocks = blocks(name, &units, &actual);
        assert_eq!(expected_file_blocks.len(), actual_file_blocks.len());
        let unfound = expected_file_blocks.iter().filter(|b| b.text.is_empty()).count();
        assert_eq!(
            unfound, 0,
            "{name}: statements of the .sql file not echoed in pgvector's own expected file"
        );
        expected_blocks.extend(expected_file_blocks);
        actual_blocks.extend(actual_file_blocks);
    }
    // pg_regress's --load-extension, one block for every server: psql -q prints nothing.
    let setup_expected =
        Block { file: SETUP_FILE.into(), first_line: SETUP_SQL.into(), occurrence: 1, text: "".into() };
    expected_blocks.insert(0, setup_expected.clone());
    actual_blocks.insert(0, Block { text: setup_outputs, ..setup_expected });

    // Count and compare with the baseline.
    let baseline = read_baseline();
    let listed: HashSet<&(String, String)> = baseline.iter().map(|(k, _)| k).collect();
    let mut per_file: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut differing: Vec<Block> = Vec::new();
    let mut regressions = String::new();
    let mut now_matching = String::new();
    let mut keys_present: HashSet<(String, String)> = HashSet::new();
    for (expected, actual) in expected_blocks.iter().zip(&actual_blocks) {
        let key = expected.key();
        let matches = expected.text == actual.text;
        let counts = per_file.entry(expected.file.as_str()).or_default();
        counts.1 += 1;
        if matches {
            counts.0 += 1;
            if listed.contains(&key) {
                writeln!(now_matching, "  {}\t{}", key.0, key.1).expect("string write");
            }
        } else {
            differing.push(actual.clone());
            if !listed.contains(&key) {
                regressions.push_str(&show(expected, actual));
            }
        }
        keys_present.insert(key);
    }
    let stale: Vec<&(String, String)> =
        listed.iter().copied().filter(|k| !keys_present.contains(*k)).collect();

    let (matching, total) = per_file.values().fold((0, 0), |(m, t), (fm, ft)| (m + fm, t + ft));
    for name in std::iter::once(&SETUP_FILE).chain(FILES) {
        let (m, t) = per_file[name];
        eprintln!("  {name}: {m} of {t}");
    }
    eprintln!(
        "pgvector regression: {matching} of {total} statement blocks match (pgvector {} from {}; {:.1} s; outputs in {})",
        std::fs::read_to_string(source.parent().expect("cache").join("PGVECTOR_VERSION"))
            .unwrap_or_default()
            .trim(),
        source.display(),
        started.elapsed().as_secs_f64(),
        results.display()
    );

    if let Some((host, port)) = &external {
        eprintln!("pgvector regression: ran against {host}:{port}, not Tarn; no baseline compared");
        for (expected, actual) in expected_blocks.iter().zip(&actual_blocks) {
            if expected.text != actual.text {
                eprint!("{}", show(expected, actual));
            }
        }
        return;
    }
    if std::env::var("TARN_PGVECTOR_REGRESS_BLESS").as_deref() == Ok("1") {
        write_baseline(&differing, &baseline);
        eprintln!(
            "pgvector regression: {} rewritten ({} differing blocks)",
            baseline_path().display(),
            differing.len()
        );
        return;
    }
    let mut failure = String::new();
    if !regressions.is_empty() {
        writeln!(
            failure,
            "blocks that differ from pgvector's expected output and are not in {}:\n{regressions}",
            baseline_path().display()
        )
        .expect("string write");
    }
    if !now_matching.is_empty() {
        writeln!(
            failure,
            "blocks listed in {} that now match pgvector's output: delete these lines (the list only shrinks):\n{now_matching}",
            baseline_path().display()
        )
        .expect("string write");
    }
    if !stale.is_empty() {
        writeln!(
            failure,
            "lines of {} that name no statement of the files (delete them):",
            baseline_path().display()
        )
        .expect("string write");
        for (file, statement) in stale {
            writeln!(failure, "  {file}\t{statement}").expect("string write");
        }
    }
    assert!(failure.is_empty(), "{failure}");
}

#[test]
fn units_follow_psql_echo() {
    let sql = "-- a comment\n\nSELECT 1;\nSELECT\n  ';' -- x;\n  ;\n\\copy t TO 'x'\nSELECT 2; SELECT 3;\n";
    let units = units(sql);
    let shown: Vec<(bool, Vec<&str>)> =
        units.iter().map(|u| (u.comment, u.lines.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        shown,
        vec![
            (true, vec!["-- a comment"]),
            (false, vec!["SELECT 1;"]),
            (false, vec!["SELECT", "  ';' -- x;", "  ;"]),
            (false, vec!["\\copy t TO 'x'"]),
            (false, vec!["SELECT 2; SELECT 3;"]),
        ]
    );
    let output = "-- a comment\nSELECT 1;\n ?column? \n(1 row)\n\nSELECT\n  ';' -- x;\n  ;\nERROR: x\n\\copy t TO 'x'\n";
    let blocks = blocks("f", &units, output);
    assert_eq!(blocks.len(), 4);
    assert_eq!(blocks[0].text, "SELECT 1;\n ?column? \n(1 row)\n\n");
    assert_eq!(blocks[1].text, "SELECT\n  ';' -- x;\n  ;\nERROR: x\n");
    assert_eq!(blocks[2].text, "\\copy t TO 'x'\n");
    assert_eq!(blocks[3].text, "", "never echoed");
}
