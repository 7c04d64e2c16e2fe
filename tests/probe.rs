//! Scratch: prints the parameter and column types of statements (TEMPORARY).
#[tokio::test]
async fn probe() {
    let conn = std::env::var("PROBE_CONN").unwrap();
    let (client, c) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(c);
    for sql in std::env::var("PROBE_SQL").unwrap().split(";;") {
        match client.prepare(sql).await {
            Ok(s) => println!(
                "{sql}\n  params {:?}\n  columns {:?}",
                s.params(),
                s.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect::<Vec<_>>()
            ),
            Err(e) => println!("{sql}\n  error {e}"),
        }
    }
}
