//! Roles, privileges and row-level security through real clients (tokio-postgres and
//! psql): `CREATE ROLE | USER`, membership, `GRANT | REVOKE` on tables and columns with
//! 42501 on every way a statement reaches a table (views, CTEs, subqueries, table
//! functions, writes, COPY), `SET ROLE`, a login role's SCRAM password, `\du` and `\dp`;
//! row policies as pre-filters inside kNN, BM25 and `hybrid_search` (a secured top k is
//! complete), evaluated before a user's predicate (a division by zero on a hidden row
//! stays hidden), `WITH CHECK` on written rows.

use std::process::Command;

use tarn_server::auth::HbaRule;
use tarn_server::ServerConfig;
use tarn_tests::TestServer;
use tokio_postgres::{Client, NoTls};

async fn connect_as(server: &TestServer, user: &str) -> Client {
    let conn = format!("host={} port={} user={user} dbname=tarn", server.addr.ip(), server.addr.port());
    let (client, connection) = tokio_postgres::connect(&conn, NoTls).await.expect("connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The SQLSTATE a statement fails with ("ok" when it does not).
async fn code(client: &Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => "ok".into(),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no code: {e}")),
    }
}

async fn ids(client: &Client, sql: &str) -> Vec<i64> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", tarn_tests::describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn psql(server: &TestServer, user: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
            "-U",
            user,
            "-d",
            "tarn",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_grants_guard_every_way_to_a_table() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, owner text, secret text, amount int);
             INSERT INTO items VALUES (1, 'a', 's1', 10), (2, 'b', 's2', 20);
             CREATE TABLE other (id bigint PRIMARY KEY);
             INSERT INTO other VALUES (1);
             CREATE VIEW secrets AS SELECT id, secret FROM items;
             CREATE ROLE analysts;
             CREATE USER alice PASSWORD 'pw';
             GRANT analysts TO alice;
             GRANT SELECT (id, owner, amount) ON items TO analysts;",
        )
        .await
        .unwrap();

    let alice = connect_as(&server, "alice").await;
    let who: String = alice.query_one("SELECT current_user", &[]).await.unwrap().get(0);
    assert_eq!(who, "alice");
    // Column privileges, through membership.
    assert_eq!(ids(&alice, "SELECT id FROM items WHERE owner = 'a' AND amount > 0").await, [1]);
    assert_eq!(ids(&alice, "SELECT count(*) FROM items").await, [2]);
    for denied in [
        "SELECT secret FROM items",
        "SELECT * FROM items",
        "SELECT id FROM items WHERE secret = 's1'",
        "WITH x AS (SELECT secret FROM items) SELECT count(*) FROM x",
        "SELECT * FROM secrets",
        "SELECT id FROM items WHERE id IN (SELECT id FROM other)",
        "SELECT * FROM table_changes('items', 0, 10)",
        "SELECT * FROM items FOR VERSION AS OF 1",
        "INSERT INTO items VALUES (3, 'c', 's3', 30)",
        "UPDATE items SET amount = 0",
        "DELETE FROM items WHERE id = 1",
        "TRUNCATE items",
        "COPY items TO STDOUT",
        "CREATE TABLE mine (id int)",
        "DROP TABLE other",
        "CREATE ROLE mallory SUPERUSER",
        "GRANT SELECT ON items TO alice",
        "ALTER TABLE items ENABLE ROW LEVEL SECURITY",
        "SELECT count(*) FROM tarn_audit_log",
        "INSERT INTO items VALUES (1, 'a', 's', 1) ON CONFLICT (id) DO UPDATE SET amount = 0",
        "COPY items TO '/tmp/tarn-governance-items.parquet'",
        "CREATE TEMP VIEW peek AS SELECT secret FROM items",
        "SELECT pg_cancel_backend(pg_backend_pid())",
    ] {
        assert_eq!(code(&alice, denied).await, "42501", "{denied}");
    }
    // A session's temporary tables are its own.
    assert_eq!(
        code(&alice, "CREATE TEMP TABLE scratch (id int); INSERT INTO scratch VALUES (1)").await,
        "ok"
    );
    assert_eq!(ids(&alice, "SELECT count(*) FROM scratch").await, [1]);
    // RETURNING is a read too.
    let returning = "INSERT INTO scratch VALUES (2) RETURNING (SELECT max(secret) FROM items)";
    assert_eq!(code(&alice, returning).await, "42501");
    assert_eq!(code(&alice, "DROP TABLE scratch").await, "ok");
    // Other sessions' statements are not alice's to read.
    let seen = ids(
        &alice,
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tarn' AND query <> '<insufficient privilege>'",
    )
    .await;
    assert_eq!(seen, [0]);
    // A primary-key lookup takes the same checks (it has a fast path of its own).
    assert_eq!(code(&alice, "SELECT secret FROM items WHERE id = 1").await, "42501");
    assert_eq!(ids(&alice, "SELECT amount::bigint FROM items WHERE id = 2").await, [20]);

    // Writes need their own privilege; an UPDATE's WHERE needs SELECT on what it reads.
    admin.batch_execute("GRANT INSERT, UPDATE ON items TO alice").await.unwrap();
    assert_eq!(code(&alice, "INSERT INTO items VALUES (3, 'c', 's3', 30)").await, "ok");
    assert_eq!(code(&alice, "UPDATE items SET amount = amount + 1 WHERE owner = 'c'").await, "ok");
    assert_eq!(code(&alice, "UPDATE items SET amount = 0 WHERE secret = 's3'").await, "42501");
    assert_eq!(code(&alice, "DELETE FROM items WHERE id = 3").await, "42501");

    // A kept plan does not outlive a REVOKE (nor a GRANT).
    let amounts = alice.prepare("SELECT amount FROM items WHERE id = 3").await.unwrap();
    assert_eq!(alice.query(&amounts, &[]).await.unwrap().len(), 1);
    admin.batch_execute("REVOKE SELECT (amount) ON items FROM analysts").await.unwrap();
    let e = alice.query(&amounts, &[]).await.expect_err("revoked");
    assert_eq!(e.code().unwrap().code(), "42501");
    admin.batch_execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO alice").await.unwrap();
    assert_eq!(alice.query(&amounts, &[]).await.unwrap().len(), 1);
    assert_eq!(ids(&alice, "SELECT count(*) FROM secrets").await, [3]);

    // SET ROLE: a superuser becomes alice, and is checked as her.
    admin.batch_execute("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM alice").await.unwrap();
    admin.batch_execute("SET ROLE alice").await.unwrap();
    let (who, session): (String, String) = admin
        .query_one("SELECT current_user, session_user", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((who.as_str(), session.as_str()), ("alice", "tarn"));
    assert_eq!(code(&admin, "SELECT secret FROM items").await, "42501");
    admin.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(code(&admin, "SELECT secret FROM items").await, "ok");
    // A pooler's DISCARD ALL gives the next client the session user back.
    admin.batch_execute("SET ROLE alice; DISCARD ALL").await.unwrap();
    assert_eq!(code(&admin, "SELECT secret FROM items").await, "ok");
    // alice may not become someone else.
    admin.batch_execute("CREATE ROLE bob LOGIN").await.unwrap();
    assert_eq!(code(&alice, "SET ROLE bob").await, "42501");
    assert_eq!(code(&alice, "SET ROLE analysts").await, "ok");

    // A role without LOGIN does not log in; a dropped role's name is a new one.
    let e = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=analysts dbname=tarn", server.addr.port()),
        NoTls,
    )
    .await
    .map(drop)
    .expect_err("NOLOGIN");
    assert_eq!(e.code().unwrap().code(), "28000");
    assert_eq!(code(&admin, "DROP ROLE analysts").await, "2BP01");
    assert_eq!(code(&admin, "CREATE ROLE alice").await, "42710");
    assert_eq!(code(&admin, "GRANT SELECT ON items TO nobody").await, "42704");
    assert_eq!(code(&admin, "GRANT analysts TO bob").await, "ok");
    assert_eq!(code(&admin, "GRANT bob TO analysts").await, "0LP01");

    // A role dropped under an open session leaves it with no rights (not a server
    // user's).
    admin.batch_execute("CREATE ROLE zed LOGIN; GRANT SELECT ON other TO zed").await.unwrap();
    let zed = connect_as(&server, "zed").await;
    assert_eq!(ids(&zed, "SELECT count(*) FROM other").await, [1]);
    admin.batch_execute("REVOKE SELECT ON other FROM zed; DROP ROLE zed").await.unwrap();
    assert_eq!(code(&zed, "SELECT count(*) FROM other").await, "42501");
    assert_eq!(code(&zed, "CREATE TABLE mine (id int)").await, "42501");

    // psql's \du and \dp.
    let du = psql(&server, "tarn", "\\du");
    assert!(du.contains("alice") && du.contains("{analysts}") && du.contains("Cannot login"), "{du}");
    let dp = psql(&server, "tarn", "\\dp items");
    assert!(dp.contains("alice=aw/tarn") && dp.contains("tarn=arwdDxt/tarn"), "{dp}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_role_logs_in_with_its_scram_password() {
    let config = ServerConfig {
        hba: vec![
            HbaRule { user: "tarn".into(), ..HbaRule::new("127.0.0.1/32", "trust") },
            HbaRule::new("127.0.0.1/32", "scram-sha-256"),
        ],
        ..Default::default()
    };
    let server = TestServer::start_configured(config).await;
    let admin = server.client().await;
    admin.batch_execute("CREATE USER carol WITH PASSWORD 'correct horse'").await.unwrap();
    let stored: String = admin
        .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = 'carol'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "********");
    let secret = std::fs::read_to_string(server.data.join("_tarn/security.json")).unwrap();
    assert!(secret.contains("SCRAM-SHA-256$4096:") && !secret.contains("correct horse"), "{secret}");
    let conn = |password: &str| {
        format!("host=127.0.0.1 port={} user=carol dbname=tarn password='{password}'", server.addr.port())
    };
    let (client, connection) = tokio_postgres::connect(&conn("correct horse"), NoTls).await.expect("logs in");
    tokio::spawn(connection);
    let who: String = client.query_one("SELECT current_user", &[]).await.unwrap().get(0);
    assert_eq!(who, "carol");
    let e = tokio_postgres::connect(&conn("wrong"), NoTls).await.map(drop).expect_err("wrong password");
    assert_eq!(e.code().unwrap().code(), "28P01");
    admin.batch_execute("ALTER ROLE carol PASSWORD 'battery staple'").await.unwrap();
    assert!(tokio_postgres::connect(&conn("correct horse"), NoTls).await.is_err());
    assert!(tokio_postgres::connect(&conn("battery staple"), NoTls).await.is_ok());
    server.stop().await;
}

/// A deterministic 3-dimensional vector per row.
fn vector_of(i: i64) -> String {
    let x = i as f32;
    format!("[{},{},{}]", (x * 0.37).sin(), (x * 0.11).cos(), (x * 0.05).sin())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_policies_filter_inside_searches_and_before_user_predicates() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, tenant text, n int, body text, emb vector(3))",
        )
        .await
        .unwrap();
    let words = ["lake", "river", "stone", "forest", "cloud"];
    let rows: Vec<String> = (1..=2000i64)
        .map(|i| {
            let tenant = if i % 10 == 0 { "a" } else { "b" };
            let body = format!("{} {} {}", words[(i % 5) as usize], words[(i / 5 % 5) as usize], i);
            // `n` is 0 on one hidden row only: 100 / n fails there.
            let n = if i == 7 { 0 } else { i };
            format!("({i}, '{tenant}', {n}, '{body}', '{}')", vector_of(i))
        })
        .collect();
    admin.batch_execute(&format!("INSERT INTO docs VALUES {}", rows.join(", "))).await.unwrap();
    admin
        .batch_execute(
            "VACUUM docs;
             CREATE INDEX docs_emb ON docs USING hnsw (emb vector_l2_ops);
             CREATE INDEX docs_body ON docs USING bm25 (body);
             CREATE ROLE alice LOGIN;
             GRANT SELECT, INSERT, UPDATE, DELETE ON docs TO alice;
             ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant_a ON docs FOR SELECT TO alice USING (tenant = 'a');",
        )
        .await
        .unwrap();
    let alice = connect_as(&server, "alice").await;
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs").await, [200]);
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs WHERE tenant = 'b'").await, [0]);

    // kNN: the policy is a pre-filter inside the index search: 10 rows, the same the
    // superuser's filtered search finds.
    let q = vector_of(5);
    let knn = format!("SELECT id FROM docs ORDER BY emb <-> '{q}' LIMIT 10");
    let secured = ids(&alice, &knn).await;
    let filtered =
        ids(&admin, &format!("SELECT id FROM docs WHERE tenant = 'a' ORDER BY emb <-> '{q}' LIMIT 10")).await;
    assert_eq!(secured.len(), 10);
    assert!(secured.iter().all(|id| id % 10 == 0), "{secured:?}");
    assert_eq!(secured, filtered);
    let plan = tarn_tests::explain(&alice, &knn).await;
    assert!(plan.contains("TarnKnn") && plan.contains("tenant"), "{plan}");

    // BM25: the same inside tantivy's top-k loop.
    let bm25 =
        "SELECT id FROM docs WHERE body @@@ 'lake' ORDER BY bm25_score(body, 'lake') DESC, id LIMIT 10";
    let secured = ids(&alice, bm25).await;
    assert_eq!(secured.len(), 10);
    assert!(secured.iter().all(|id| id % 10 == 0), "{secured:?}");
    let filtered = ids(&admin, &bm25.replace("WHERE", "WHERE tenant = 'a' AND")).await;
    assert_eq!(secured, filtered);

    // hybrid_search fuses two secured searches.
    let hybrid = ids(&alice, &format!("SELECT id FROM hybrid_search('docs', 'river', '{q}', 10)")).await;
    assert_eq!(hybrid.len(), 10);
    assert!(hybrid.iter().all(|id| id % 10 == 0), "{hybrid:?}");

    // Policies go first: the division by zero is on a hidden row, and stays hidden.
    assert_eq!(code(&admin, "SELECT count(*) FROM docs WHERE 100 / n > 0").await, "22012");
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs WHERE 100 / n >= 0").await, [200]);
    let guarded =
        ids(&alice, &format!("SELECT id FROM docs WHERE 100 / n >= 0 ORDER BY emb <-> '{q}' LIMIT 10")).await;
    assert_eq!(guarded, filtered_knn(&admin, &q).await);
    let guarded =
        ids(&alice, "SELECT id FROM docs WHERE body @@@ 'stone' AND 100 / n >= 0 ORDER BY id LIMIT 5").await;
    assert!(guarded.len() == 5 && guarded.iter().all(|id| id % 10 == 0), "{guarded:?}");

    // Writes: no INSERT policy yet, so no row passes WITH CHECK; then one that does.
    assert_eq!(code(&alice, "INSERT INTO docs VALUES (5000, 'a', 1, 'new', '[1,1,1]')").await, "42501");
    admin
        .batch_execute(
            "CREATE POLICY insert_a ON docs FOR INSERT TO alice WITH CHECK (tenant = 'a');
             CREATE POLICY update_a ON docs FOR UPDATE TO alice USING (tenant = 'a') WITH CHECK (tenant = 'a');",
        )
        .await
        .unwrap();
    assert_eq!(code(&alice, "INSERT INTO docs VALUES (5000, 'b', 1, 'new', '[1,1,1]')").await, "42501");
    assert_eq!(code(&alice, "INSERT INTO docs VALUES (5000, 'a', 1, 'new', '[1,1,1]')").await, "ok");
    // UPDATE reaches only rows its policy and the SELECT policy pass; moving a row out
    // of the policy is refused.
    let updated = alice.execute("UPDATE docs SET body = body || ' x'", &[]).await.unwrap();
    assert_eq!(updated, 201);
    assert_eq!(code(&alice, "UPDATE docs SET tenant = 'b' WHERE id = 10").await, "42501");
    // Under policies: no TRUNCATE, no upsert, no earlier version (the policies are
    // planned for the table as it is).
    assert_eq!(code(&alice, "TRUNCATE docs").await, "42501");
    let upsert =
        "INSERT INTO docs VALUES (10, 'a', 1, 'x', '[1,1,1]') ON CONFLICT (id) DO UPDATE SET body = 'y'";
    assert_eq!(code(&alice, upsert).await, "0A000");
    assert_eq!(code(&alice, "SELECT id FROM docs FOR VERSION AS OF 1 WHERE body @@@ 'lake'").await, "0A000");
    // No DELETE policy: no row to delete.
    assert_eq!(alice.execute("DELETE FROM docs", &[]).await.unwrap(), 0);
    assert_eq!(ids(&admin, "SELECT count(*) FROM docs").await, [2001]);
    // A restrictive policy narrows what the permissive ones let through.
    admin
        .batch_execute("CREATE POLICY small ON docs AS RESTRICTIVE FOR SELECT TO alice USING (id < 1000)")
        .await
        .unwrap();
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs").await, [99]);
    // A superuser and BYPASSRLS see every row; DISABLE turns the policies off.
    assert_eq!(ids(&admin, "SELECT count(*) FROM docs").await, [2001]);
    admin.batch_execute("ALTER ROLE alice BYPASSRLS").await.unwrap();
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs").await, [2001]);
    admin
        .batch_execute("ALTER ROLE alice NOBYPASSRLS; ALTER TABLE docs DISABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs").await, [2001]);
    let dp = psql(&server, "tarn", "\\dp docs");
    assert!(dp.contains("tenant_a (r):") && dp.contains("small (RESTRICTIVE) (r):"), "{dp}");

    // A JSON-Logic rule, compiled to SQL once; the session's setting is read when the
    // session plans (a change of it plans the filter again).
    admin
        .batch_execute(
            r#"ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
               DROP POLICY tenant_a ON docs; DROP POLICY small ON docs;
               CREATE POLICY by_tenant ON docs FOR SELECT TO alice
                 USING json_logic('{"==": [{"var": "tenant"}, {"var": "session.tenant"}]}');"#,
        )
        .await
        .unwrap();
    assert_eq!(code(&alice, "SELECT count(*) FROM docs").await, "42704", "no tarn.tenant set yet");
    assert_eq!(ids(&alice, "SELECT 41::bigint + 1").await, [42], "other statements go on");
    alice.batch_execute("SET tarn.tenant = 'a'").await.unwrap();
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs").await, [201]);
    alice.batch_execute("SET tarn.tenant = 'b'").await.unwrap();
    assert_eq!(ids(&alice, "SELECT count(*) FROM docs").await, [1800]);
    let dp = psql(&server, "tarn", "\\dp docs");
    assert!(dp.contains("(\"tenant\" = current_setting('tarn.tenant'))"), "{dp}");
    assert_eq!(code(&admin, r#"CREATE POLICY bad ON docs USING json_logic('{"some": []}')"#).await, "0A000");
    server.stop().await;
}

async fn filtered_knn(admin: &Client, q: &str) -> Vec<i64> {
    ids(admin, &format!("SELECT id FROM docs WHERE tenant = 'a' ORDER BY emb <-> '{q}' LIMIT 10")).await
}

/// A small deterministic generator (the tests crate takes no `rand`).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

/// A card number of `prefix` and `len` digits passing Luhn's check.
fn card_number(rng: &mut Lcg, prefix: &str, len: usize) -> String {
    let mut digits: Vec<u32> = prefix.chars().map(|c| c.to_digit(10).unwrap()).collect();
    while digits.len() < len - 1 {
        digits.push(rng.below(10) as u32);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().map(|d| char::from_digit(*d, 10).unwrap()).collect()
}

/// The generated data set: tables of columns, each with the tag it should get
/// (`None`: nothing sensitive) and its values. Sensitive kinds come in several formats
/// and under names that say so or not; the others are what tables hold beside them
/// (codes, dates, ids, amounts, places, products, URLs, statuses).
fn sensitive_data_set(
    rows: usize,
) -> Vec<(&'static str, Vec<(&'static str, Option<&'static str>, Vec<String>)>)> {
    let mut rng = Lcg(7);
    let firsts = [
        "Maria", "James", "Wei", "Priya", "John", "Emma", "Carlos", "Aisha", "Oliver", "Sofia", "Dmitri",
        "Ngozi", "Mateo", "Ingrid", "Kwame", "Yuki", "Hannah", "Rahul", "Lucia", "Tomasz",
    ];
    let lasts = [
        "Garcia",
        "Smith",
        "Chen",
        "Patel",
        "Johnson",
        "Brown",
        "Lopez",
        "Kim",
        "Nguyen",
        "Wilson",
        "Okafor",
        "Kowalski",
        "Lindqvist",
        "Haddad",
        "Rossi",
        "Tanaka",
        "Murphy",
        "Singh",
        "Dubois",
        "Silva",
    ];
    let domains = ["example.com", "mail.example.org", "corp.example.net", "example.co.uk"];
    let words = [
        "the", "parcel", "arrived", "late", "and", "the", "box", "was", "damaged", "please", "refund", "my",
        "order", "customer", "called", "twice", "about", "a", "missing", "item",
    ];
    let cities =
        ["Paris", "Berlin", "San Jose", "Lagos", "Osaka", "Lima", "Toronto", "Austin", "Oslo", "Pune"];
    let products = [
        "Blue Widget",
        "Steel Water Bottle",
        "Desk Lamp",
        "Trail Shoes",
        "Green Tea 500g",
        "Phone Case",
        "Yoga Mat",
        "USB Cable 2m",
    ];
    let statuses = ["pending", "shipped", "delivered", "returned", "cancelled"];
    let column = |rng: &mut Lcg, make: &mut dyn FnMut(&mut Lcg, usize) -> String| -> Vec<String> {
        (0..rows).map(|i| make(rng, i)).collect()
    };
    let name = |rng: &mut Lcg| format!("{} {}", rng.pick(&firsts), rng.pick(&lasts));
    let email = |rng: &mut Lcg, i: usize| {
        let (f, l) = (rng.pick(&firsts).to_lowercase(), rng.pick(&lasts).to_lowercase());
        match i % 3 {
            0 => format!("{f}.{l}@{}", rng.pick(&domains)),
            1 => format!("{}{}+shop@{}", &f[..1], l, rng.pick(&domains)),
            _ => format!("{f}{}@{}", rng.below(100), rng.pick(&domains)),
        }
    };
    let phone = |rng: &mut Lcg, i: usize| match i % 4 {
        0 => format!("+1 {}-555-{}", 200 + rng.below(800), rng.digits(4)),
        1 => format!("({}) 555-{}", 200 + rng.below(800), rng.digits(4)),
        2 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
        _ => format!("{}.555.{}", 200 + rng.below(800), rng.digits(4)),
    };
    let card = |rng: &mut Lcg, i: usize| {
        let number = match i % 3 {
            0 => card_number(rng, "4", 16),
            1 => card_number(rng, "5", 16),
            _ => card_number(rng, "37", 15),
        };
        if i % 2 == 0 && number.len() == 16 {
            number.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ")
        } else {
            number
        }
    };
    let ip = |rng: &mut Lcg, i: usize| match i % 5 {
        4 => format!("2001:db8::{:x}:{:x}", rng.below(65536), rng.below(65536)),
        _ => format!("{}.{}.{}.{}", 1 + rng.below(223), rng.below(256), rng.below(256), 1 + rng.below(254)),
    };
    let national = |rng: &mut Lcg, i: usize| match i % 2 {
        0 => format!("{}-{}-{}", 100 + rng.below(500), 10 + rng.below(90), 1000 + rng.below(9000)),
        _ => format!(
            "{}{}{}{}",
            rng.pick(&["AB", "CE", "JK", "PR"]),
            rng.digits(6),
            rng.pick(&["A", "B", "C", "D"]),
            ""
        ),
    };
    let text = |rng: &mut Lcg, _: usize| {
        let n = 6 + rng.below(12) as usize;
        (0..n).map(|_| rng.pick(&words)).collect::<Vec<_>>().join(" ")
    };
    vec![
        (
            "customers",
            vec![
                ("full_name", Some("person_name"), column(&mut rng, &mut |r, _| name(r))),
                ("email", Some("email"), column(&mut rng, &mut |r, i| email(r, i))),
                ("phone", Some("phone"), column(&mut rng, &mut |r, i| phone(r, i))),
                ("ssn", Some("national_id"), column(&mut rng, &mut |r, i| national(r, i))),
                ("city", None, column(&mut rng, &mut |r, _| r.pick(&cities).to_string())),
                (
                    "signup_date",
                    None,
                    column(&mut rng, &mut |r, _| {
                        format!("2024-{:02}-{:02}", 1 + r.below(12), 1 + r.below(28))
                    }),
                ),
                ("status", None, column(&mut rng, &mut |r, _| r.pick(&statuses).to_string())),
            ],
        ),
        (
            "payments",
            vec![
                ("c1", Some("payment_card"), column(&mut rng, &mut |r, i| card(r, i))),
                ("c2", Some("ip_address"), column(&mut rng, &mut |r, i| ip(r, i))),
                ("c3", Some("email"), column(&mut rng, &mut |r, i| email(r, i))),
                ("c4", None, column(&mut rng, &mut |r, _| format!("{}.{:02}", r.below(500), r.below(100)))),
                ("c5", None, column(&mut rng, &mut |r, _| format!("ORD-2024-{}", r.digits(6)))),
                (
                    "c6",
                    None,
                    column(&mut rng, &mut |r, _| {
                        format!(
                            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                            r.next(),
                            r.below(65536),
                            r.below(4096),
                            r.below(4096),
                            r.next()
                        )
                    }),
                ),
                ("c7", None, column(&mut rng, &mut |r, _| r.digits(5))),
            ],
        ),
        (
            "tickets",
            vec![
                ("owner", Some("person_name"), column(&mut rng, &mut |r, _| name(r))),
                ("body", Some("free_text"), column(&mut rng, &mut |r, i| text(r, i))),
                ("product", None, column(&mut rng, &mut |r, _| r.pick(&products).to_string())),
                (
                    "url",
                    None,
                    column(&mut rng, &mut |r, _| format!("https://shop.example.com/p/{}", r.digits(5))),
                ),
                (
                    "created",
                    None,
                    column(&mut rng, &mut |r, _| {
                        format!("2024-03-{:02} {:02}:{:02}:00", 1 + r.below(28), r.below(24), r.below(60))
                    }),
                ),
                ("color", None, column(&mut rng, &mut |r, _| format!("#{:06x}", r.below(1 << 24)))),
                ("mobile_number", Some("phone"), column(&mut rng, &mut |r, i| phone(r, i))),
            ],
        ),
    ]
}

/// Tab-separated COPY text of `columns` (which hold no tab, newline nor backslash).
fn copy_text(columns: &[(&str, Option<&str>, Vec<String>)]) -> String {
    let rows = columns[0].2.len();
    (0..rows)
        .map(|i| {
            let mut line = i.to_string();
            for (_, _, values) in columns {
                line.push('\t');
                line.push_str(&values[i]);
            }
            line.push('\n');
            line
        })
        .collect()
}

async fn copy_rows(client: &Client, table: &str, text: String) {
    use futures::SinkExt;
    let sink = client.copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN")).await.unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from(text)).await.unwrap();
    sink.as_mut().finish().await.unwrap();
}

async fn tags(client: &Client, table: &str) -> Vec<(String, String, String)> {
    client
        .query(
            "SELECT column_name, tag, source FROM tarn_column_tags WHERE table_name = $1 ORDER BY column_name",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detector_finds_sensitive_columns_of_a_generated_data_set() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let data = sensitive_data_set(150);
    let (mut tagged, mut right, mut sensitive) = (0, 0, 0);
    for (table, columns) in &data {
        let defs: Vec<String> = columns.iter().map(|(name, _, _)| format!("{name} text")).collect();
        client
            .batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, {})", defs.join(", ")))
            .await
            .unwrap();
        copy_rows(&client, table, copy_text(columns)).await;
        let found = tags(&client, table).await;
        for (name, expected, _) in columns {
            let got = found.iter().find(|(c, _, _)| c == name).map(|(_, t, _)| t.as_str());
            sensitive += usize::from(expected.is_some());
            tagged += usize::from(got.is_some());
            right += usize::from(got.is_some() && got == *expected);
            if got != *expected {
                eprintln!("{table}.{name}: expected {expected:?}, found {got:?}");
            }
        }
    }
    let precision = right as f64 / tagged as f64;
    let recall = right as f64 / sensitive as f64;
    eprintln!("detector: {sensitive} sensitive columns of 21, {tagged} tagged, {right} right: precision {precision:.3}, recall {recall:.3}");
    assert!(precision >= 0.9 && recall >= 0.9, "precision {precision:.3}, recall {recall:.3}");
    // Every tag the detector set is the detector's, with a confidence.
    let sources: Vec<String> = client
        .query("SELECT DISTINCT source FROM tarn_column_tags", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, ["detector"]);
}

/// SHA-256 of `text`, hex, as DataFusion's own `sha256` makes it.
async fn sha256_hex(client: &Client, text: &str) -> String {
    client.query_one("SELECT encode(sha256($1), 'hex')", &[&text]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_bound_to_tags_apply_to_every_way_rows_leave() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE TABLE people (id bigint PRIMARY KEY, contact text, ssn text, notes text, embedding vector(2));
             CREATE INDEX people_notes ON people USING bm25 (notes);
             CREATE INDEX people_embedding ON people USING hnsw (embedding vector_l2_ops);
             CREATE ROLE analyst LOGIN;
             CREATE ROLE lead LOGIN;
             GRANT SELECT ON people TO analyst, lead;
             GRANT UPDATE, DELETE, INSERT ON people TO analyst;
             CREATE MASKING POLICY email_mask ON TAG email WITH (mask = 'partial');
             CREATE MASKING POLICY id_mask ON TAG national_id WITH (mask = 'hash');
             GRANT tarn_unmask TO lead;",
        )
        .await
        .unwrap();
    // Rows from an INSERT are classified as they come (30 at once is enough).
    let values: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "({i}, 'person{i}@example.com', '{}-{}-{}', 'ticket number {i} about a late refund', '[{i}, 1]')",
                100 + i,
                10 + i,
                1000 + i
            )
        })
        .collect();
    admin.batch_execute(&format!("INSERT INTO people VALUES {}", values.join(", "))).await.unwrap();
    assert_eq!(
        tags(&admin, "people").await,
        [
            ("contact".to_string(), "email".to_string(), "detector".to_string()),
            ("notes".into(), "free_text".into(), "detector".into()),
            ("ssn".into(), "national_id".into(), "detector".into()),
        ]
    );

    let analyst = connect_as(&server, "analyst").await;
    let text =
        |rows: Vec<tokio_postgres::Row>| -> Vec<Option<String>> { rows.iter().map(|r| r.get(0)).collect() };
    // A scan, a filter (on the mask, never the value), a kNN and a BM25 search.
    let row = analyst.query_one("SELECT contact, ssn FROM people WHERE id = 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "p***@example.com");
    assert_eq!(row.get::<_, String>(1), sha256_hex(&admin, "103-13-1003").await);
    assert_eq!(
        ids(&analyst, "SELECT id FROM people WHERE contact = 'person3@example.com'").await,
        Vec::<i64>::new()
    );
    assert_eq!(ids(&analyst, "SELECT count(*) FROM people WHERE contact = 'p***@example.com'").await, [30]);
    let nearest = analyst
        .query("SELECT contact FROM people ORDER BY embedding <-> '[2, 1]' LIMIT 2", &[])
        .await
        .unwrap();
    assert_eq!(text(nearest), [Some("p***@example.com".to_string()), Some("p***@example.com".to_string())]);
    let found = analyst
        .query("SELECT contact FROM people WHERE notes @@@ 'number' AND id < 2 ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(text(found).len(), 2);
    assert_eq!(code(&analyst, "SELECT id FROM people WHERE contact @@@ 'person3'").await, "42501");
    // COPY TO and views read masked too; an earlier version is refused, not unmasked.
    let copied = psql(&server, "analyst", "COPY (SELECT ssn FROM people WHERE id = 0) TO STDOUT");
    assert_eq!(copied.trim(), sha256_hex(&admin, "100-10-1000").await);
    assert_eq!(code(&analyst, "SELECT * FROM people FOR VERSION AS OF 1").await, "0A000");
    // A write that rewrites rows it read masked would write the masks back: refused.
    for rewrite in [
        "UPDATE people SET notes = 'x' WHERE id = 3",
        "DELETE FROM people WHERE id = 3",
        "INSERT INTO people VALUES (3, 'a@b.c', '1', 'n', '[1, 1]') ON CONFLICT (id) DO UPDATE SET notes = 'y'",
    ] {
        assert_eq!(code(&analyst, rewrite).await, "0A000", "{rewrite}");
    }
    assert_eq!(
        code(&analyst, "INSERT INTO people VALUES (99, 'new@example.com', '1', 'n', '[9, 9]')").await,
        "ok"
    );
    // tarn_unmask's members, and superusers, read the values.
    let lead = connect_as(&server, "lead").await;
    let row = lead.query_one("SELECT contact FROM people WHERE id = 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "person3@example.com");

    // CREATE TABLE AS: the copies keep their tags (an expression of one text column
    // too); the other columns are the detector's to look at.
    admin
        .batch_execute("CREATE TABLE copy AS SELECT id, contact AS mail, upper(ssn) AS code, length(notes) AS n FROM people")
        .await
        .unwrap();
    let inherited: Vec<(String, String)> =
        tags(&admin, "copy").await.into_iter().map(|(c, t, _)| (c, t)).collect();
    assert_eq!(inherited, [("code".to_string(), "national_id".to_string()), ("mail".into(), "email".into())]);
    admin.batch_execute("GRANT SELECT ON copy TO analyst").await.unwrap();
    let row = analyst.query_one("SELECT mail FROM copy WHERE id = 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "p***@example.com");

    // A user's tag replaces the detector's and stays; RESET takes it off.
    admin.batch_execute("ALTER TABLE people ALTER COLUMN contact RESET (tag)").await.unwrap();
    let row = analyst.query_one("SELECT contact FROM people WHERE id = 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "person3@example.com");
    admin.batch_execute("ALTER TABLE people ALTER COLUMN notes SET (tag = 'email')").await.unwrap();
    let row = analyst.query_one("SELECT notes FROM people WHERE id = 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "t***** n***** 3 a**** a l*** r*****");
    assert_eq!(code(&admin, "ALTER TABLE people ALTER COLUMN nope SET (tag = 'email')").await, "42703");
    assert_eq!(code(&admin, "ALTER TABLE people ALTER COLUMN ssn SET (color = 'red')").await, "22023");
    assert_eq!(code(&analyst, "ALTER TABLE people ALTER COLUMN ssn SET (tag = NULL)").await, "42501");
    assert_eq!(code(&analyst, "CREATE MASKING POLICY m ON TAG phone WITH (mask = 'null')").await, "42501");
    assert_eq!(code(&admin, "CREATE MASKING POLICY again ON TAG email WITH (mask = 'null')").await, "42710");

    // Rows written with the detector off are classified by ANALYZE.
    admin
        .batch_execute(
            "CREATE TABLE later (id bigint PRIMARY KEY, addr text);
             SET tarn.classify_columns = off;
             INSERT INTO later SELECT i, '10.0.' || (i % 250) || '.' || (i % 200 + 1) FROM generate_series(1, 50) AS s(i);
             RESET tarn.classify_columns;",
        )
        .await
        .unwrap();
    assert!(tags(&admin, "later").await.is_empty());
    admin.batch_execute("ANALYZE later").await.unwrap();
    assert_eq!(
        tags(&admin, "later").await,
        [("addr".to_string(), "ip_address".to_string(), "detector".to_string())]
    );

    // psql lists them.
    let listed = psql(&server, "tarn", "SELECT * FROM tarn_masking_policies ORDER BY 1");
    assert!(listed.lines().any(|l| l.contains("email_mask") && l.contains("partial")), "{listed}");
    admin
        .batch_execute("DROP MASKING POLICY email_mask; DROP MASKING POLICY IF EXISTS email_mask")
        .await
        .unwrap();
    let row = analyst.query_one("SELECT notes FROM people WHERE id = 3", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "ticket number 3 about a late refund");
}
