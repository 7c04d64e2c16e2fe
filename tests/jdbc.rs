//! pgJDBC, the driver of DBeaver, DataGrip, Metabase and Spark: its `DatabaseMetaData`
//! (schemas, tables, columns, primary keys, indexes, foreign keys, type info,
//! functions), `ResultSetMetaData`, `ParameterMetaData` and a fetch-size cursor,
//! through `tests/jdbc/Metadata.java` run by `java` against the server. Needs a JDK
//! and Debian's `libpostgresql-jdbc-java` (`.ci/run` installs both when missing).

use std::process::Command;

use tarn_tests::TestServer;

const DRIVER: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_reads_the_catalog_and_the_rows() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, title TEXT NOT NULL DEFAULT 'untitled',
               price NUMERIC(10,2), embedding VECTOR(3));
             CREATE INDEX items_title ON items USING bm25 (title);
             CREATE INDEX items_embedding ON items USING hnsw (embedding vector_l2_ops);
             INSERT INTO items (id, title, embedding) VALUES
               (1, 'one', '[1,0,0]'), (2, 'desk', '[1,1,1]'), (3, 'lamp', NULL), (4, 'chair', '[0,1,0]');",
        )
        .await
        .expect("fixture");
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/jdbc/Metadata.java");
    let url = format!("jdbc:postgresql://{}:{}/tarn", server.addr.ip(), server.addr.port());
    let output = tarn_tests::run(Command::new("java").args(["-cp", DRIVER, program, &url]))
        .unwrap_or_else(|e| panic!("pgJDBC's program failed (java and {DRIVER} installed?):\n{e}"));
    for expected in [
        "product|PostgreSQL|16\n",
        "schema|public\n",
        "table|public|items|TABLE\n",
        // name, type, java.sql.Types, size, nullable (0 = no), default, position
        "column|id|int8|-5|19|0|null|1\n",
        "column|title|text|12|2147483647|0|'untitled'|2\n",
        "column|price|numeric|2|10|1|null|3\n",
        "column|embedding|vector|1111|2147483647|1|null|4\n",
        "pk|id|1|items_pkey\n",
        "index|items_pkey|f|id|1\n",
        "index|items_embedding|t|embedding|1\n",
        "index|items_title|t|title|1\n",
        "typeinfo|vector\n",
        "types|true\n",
        "result|embedding|vector|",
        "fetched|4\n",
        "parameter|int8\n",
        "prepared|desk\n",
    ] {
        assert!(output.contains(expected), "pgJDBC's answers lack {expected:?}:\n{output}");
    }
    assert!(!output.contains("imported|"), "no foreign keys: {output}");
    assert!(output.contains("function|cosine_distance\n"), "{output}");
    server.stop().await;
}
