//! A real S3-compatible server for the object-storage tests: moto's server mode
//! (`moto[server]` from PyPI, in a venv under `target/tmp`), on a free loopback port,
//! with one bucket. Tarn reaches it over plain HTTP (`allow_http`) with moto's test
//! credentials.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every test warehouse lives in (each under a prefix of its own).
pub const BUCKET: &str = "tarn";

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts the server (its venv under `target_tmp`, a test's `CARGO_TARGET_TMPDIR`)
    /// and creates [`BUCKET`]. Panics with pip's or moto's output when it cannot:
    /// nothing is skipped.
    pub fn start(target_tmp: &Path) -> Moto {
        let python = crate::python_venv(
            target_tmp,
            "tarn-motoenv",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("object_storage").join("requirements.txt"),
        )
        .unwrap_or_else(|e| panic!("the moto environment could not be set up:\n{e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server starts");
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "moto did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let create = format!(
            "import urllib.request; urllib.request.urlopen(urllib.request.Request('{}/{BUCKET}', method='PUT'))",
            moto.endpoint
        );
        crate::run(Command::new(&python).args(["-c", &create])).expect("the bucket is created");
        moto
    }

    /// The configuration file (TOML) of a server whose warehouse is
    /// `s3://tarn/<prefix>` on this server, with the write-ahead log in `wal_dir`.
    pub fn config_toml(&self, prefix: &str, wal_dir: &Path) -> String {
        format!(
            "data = 's3://{BUCKET}/{prefix}'\nwal_dir = '{}'\n[s3]\nendpoint = '{}'\nregion = 'us-east-1'\n\
             access_key_id = 'testing'\nsecret_access_key = 'testing'\nallow_http = true\n",
            wal_dir.display(),
            self.endpoint
        )
    }

    /// That configuration, and the warehouse URL it names.
    pub fn config(&self, prefix: &str, wal_dir: &Path) -> (String, tarn_server::ServerConfig) {
        let config: tarn_server::ServerConfig =
            toml::from_str(&self.config_toml(prefix, wal_dir)).expect("the test configuration parses");
        (config.data.clone(), config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
