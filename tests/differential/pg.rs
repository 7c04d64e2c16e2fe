//! A throwaway PostgreSQL 15 server for the differential test: `initdb` into a temp
//! folder, `postgres` on a free loopback port (its unix socket inside the folder), run
//! as the `postgres` user when the test runs as root (PostgreSQL refuses root). The
//! server is stopped when the guard drops, panics included.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

fn is_root() -> bool {
    tarn_tests::run(Command::new("id").arg("-u")).map(|s| s.trim() == "0").unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    listener.local_addr().expect("probe address").port()
}

impl Postgres {
    /// `None` when PostgreSQL 15's binaries are not installed.
    pub fn start() -> Option<Postgres> {
        let bin = Path::new(PG_BIN);
        if !bin.join("postgres").exists() || !bin.join("initdb").exists() || !bin.join("pg_ctl").exists() {
            return None;
        }
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("tarn-diff-pg").tempdir().expect("temp dir");
        let data = dir.path().join("data");
        if as_postgres {
            tarn_tests::run(Command::new("chown").arg("postgres:").arg(dir.path()))
                .unwrap_or_else(|e| panic!("chown of the PostgreSQL folder: {e}"));
        }
        let command = |program: &str| -> Command {
            let path = bin.join(program);
            if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            } else {
                Command::new(path)
            }
        };
        tarn_tests::run(
            command("initdb")
                .arg("-D")
                .arg(&data)
                // Byte-order collation (as Tarn sorts text), but UTF-8 character classes so
                // upper('é') is 'É' as in Tarn.
                .args(["-A", "trust", "-U", "tarn", "-E", "UTF8", "--lc-collate=C", "--lc-ctype=C.UTF-8"])
                .arg("--no-sync"),
        )
        .unwrap_or_else(|e| panic!("initdb: {e}"));
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=1",
            dir.path().display()
        );
        let server = Postgres { port, data, as_postgres, _dir: dir };
        tarn_tests::run(
            command("pg_ctl")
                .arg("-D")
                .arg(&server.data)
                .arg("-l")
                .arg(server.data.join("server.log"))
                .args(["-o", &options, "-w", "-t", "60", "start"]),
        )
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(server.data.join("server.log")).unwrap_or_default();
            panic!("pg_ctl start: {e}\nserver log:\n{log}")
        });
        Some(server)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let conn = format!("host=127.0.0.1 port={} user=tarn dbname=postgres", self.port);
        let (client, connection) =
            tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.expect("connects to PostgreSQL");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(Path::new(PG_BIN).join("pg_ctl"));
            c
        } else {
            Command::new(Path::new(PG_BIN).join("pg_ctl"))
        };
        let _ = c.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]).output();
    }
}
