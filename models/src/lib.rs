//! Tarn's model runtime: sentence-embedding models, found by name in a models folder
//! and run on the CPU, and the fetch that puts the default model there. Knows nothing
//! of SQL (the engine's `embed()` calls it).
//!
//! A model is a folder in the sentence-transformers layout: `config.json` (a BERT-family
//! encoder), `model.safetensors`, `tokenizer.json`, `modules.json` (which pooling, and
//! whether vectors are normalized) and `sentence_bert_config.json` (the longest input).

mod embedder;
mod fetch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use embedder::SentenceEmbedder;
pub use fetch::{fetch_default_model, FetchError};

/// The model `embed(text)` uses when none is named: all-MiniLM-L6-v2, 384 dimensions.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("embedding model \"{model}\" is not available: no models folder is set (--models DIR, or models_dir in the config file)")]
    NoModelsDir { model: String },
    #[error("embedding model \"{model}\" is not installed in {dir} (run `tarn models fetch --models {dir}` for the default model)")]
    NotInstalled { model: String, dir: String },
    #[error("invalid embedding model name \"{0}\": a model is a folder name in the models folder")]
    BadName(String),
    #[error("loading embedding model \"{model}\": {reason}")]
    Load { model: String, reason: String },
    #[error("embedding with model \"{model}\": {reason}")]
    Run { model: String, reason: String },
}

/// The models folder and the models loaded from it, each loaded once and shared.
pub struct Models {
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Arc<SentenceEmbedder>>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Models {
    /// `dir` is the models folder; without one, every model is unavailable (and says
    /// which setting to give).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir, loaded: Mutex::new(HashMap::new()) }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The model called `name`, loaded on first use. Loading holds the registry's lock:
    /// two statements asking for a model at once load it once.
    pub fn embedder(&self, name: &str) -> Result<Arc<SentenceEmbedder>, ModelError> {
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
            return Err(ModelError::BadName(name.to_string()));
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = loaded.get(name) {
            return Ok(Arc::clone(model));
        }
        let Some(dir) = &self.dir else {
            return Err(ModelError::NoModelsDir { model: name.to_string() });
        };
        let folder = dir.join(name);
        if !folder.join("config.json").is_file() {
            return Err(ModelError::NotInstalled { model: name.to_string(), dir: dir.display().to_string() });
        }
        let model = Arc::new(SentenceEmbedder::load(name, &folder)?);
        tracing::info!(model = name, dimensions = model.dimensions(), "embedding model loaded");
        loaded.insert(name.to_string(), Arc::clone(&model));
        Ok(model)
    }
}
