//! One sentence-embedding model: tokenizer, BERT encoder, pooling, normalization,
//! configured from the model's own files the way sentence-transformers reads them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use crate::ModelError;

/// Calls with at most this many texts have them remembered (see `SentenceEmbedder::embed`).
const REMEMBER_CALLS_UP_TO: usize = 4;
/// The most texts remembered; all are forgotten when full.
const REMEMBERED: usize = 256;

/// Texts per forward pass. Texts are ordered by length first, so a batch pads little.
const BATCH: usize = 32;

/// The CPU, or with the `cuda` feature the first CUDA GPU when one answers (candle's
/// `cuda_if_available` is the CPU in a build without the feature).
fn device() -> Device {
    Device::cuda_if_available(0).unwrap_or_else(|e| {
        tracing::warn!("no CUDA device ({e}): embedding on the CPU");
        Device::Cpu
    })
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pooling {
    Mean,
    Cls,
    Max,
}

pub struct SentenceEmbedder {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dimensions: usize,
    /// Where the weights live and the forward passes run.
    device: Device,
    /// The vectors of the texts of recent small calls (see `embed`).
    recent: Mutex<HashMap<String, Arc<[f32]>>>,
}

impl std::fmt::Debug for SentenceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEmbedder")
            .field("name", &self.name)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

/// An entry of `modules.json`: the pipeline's stages in order.
#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl SentenceEmbedder {
    /// Loads the model in `folder` (a sentence-transformers folder with a BERT encoder).
    pub fn load(name: &str, folder: &Path) -> Result<Self, ModelError> {
        let load_error = |reason: String| ModelError::Load { model: name.to_string(), reason };
        let config: Config = read_json(&folder.join("config.json")).map_err(load_error)?;
        // Without modules.json the folder is a bare encoder: mean pooling, as
        // sentence-transformers assumes for one.
        let modules: Vec<Module> = if folder.join("modules.json").is_file() {
            read_json(&folder.join("modules.json")).map_err(load_error)?
        } else {
            vec![]
        };
        let mut pooling = Pooling::Mean;
        let mut normalize = false;
        for module in &modules {
            match module.kind.rsplit('.').next().unwrap_or_default() {
                "Pooling" => {
                    let pooling_config: PoolingConfig =
                        read_json(&folder.join(&module.path).join("config.json")).map_err(load_error)?;
                    pooling = if pooling_config.pooling_mode_cls_token {
                        Pooling::Cls
                    } else if pooling_config.pooling_mode_max_tokens {
                        Pooling::Max
                    } else {
                        Pooling::Mean
                    };
                }
                "Normalize" => normalize = true,
                "Transformer" => {}
                other => return Err(load_error(format!("modules.json: unsupported module {other}"))),
            }
        }
        // The longest input in tokens: sentence-transformers truncates at
        // max_seq_length, never past the encoder's positions.
        let sentence_config: Option<SentenceBertConfig> = folder
            .join("sentence_bert_config.json")
            .is_file()
            .then(|| read_json(&folder.join("sentence_bert_config.json")))
            .transpose()
            .map_err(load_error)?;
        let max_length = sentence_config
            .and_then(|c| c.max_seq_length)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let mut tokenizer = Tokenizer::from_file(folder.join("tokenizer.json"))
            .map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|e| load_error(format!("tokenizer.json: {e}")))?;
        // Batches are padded here, per batch, after ordering texts by length.
        tokenizer.with_padding(None);
        let weights = std::fs::read(folder.join("model.safetensors"))
            .map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        let device = device();
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        let model =
            BertModel::load(vars, &config).map_err(|e| load_error(format!("model.safetensors: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            model,
            tokenizer,
            pooling,
            normalize,
            dimensions: config.hidden_size,
            device,
            recent: Mutex::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The length of every vector this model makes.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Embeds `texts`: one vector of `dimensions()` values per text, row after row in
    /// one flat vector. Texts go through the encoder in batches of similar length; the
    /// matrix products use every core. The texts of small calls (a query's question)
    /// are remembered: a prepared kNN plan evaluates `embed($1)` about three times per
    /// execute (measured, not traced), and a question may be asked again; either way
    /// the model runs once.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<f32>, ModelError> {
        let remember = texts.len() <= REMEMBER_CALLS_UP_TO;
        if remember {
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let known: Option<Vec<&Arc<[f32]>>> = texts.iter().map(|t| recent.get(*t)).collect();
            if let Some(known) = known {
                return Ok(known.into_iter().flat_map(|v| v.iter().copied()).collect());
            }
        }
        let vectors = self.compute(texts)?;
        if remember {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() + texts.len() > REMEMBERED {
                recent.clear();
            }
            for (text, vector) in texts.iter().zip(vectors.chunks(self.dimensions)) {
                recent.insert(text.to_string(), vector.into());
            }
        }
        Ok(vectors)
    }

    fn compute(&self, texts: &[&str]) -> Result<Vec<f32>, ModelError> {
        let run_error = |reason: String| ModelError::Run { model: self.name.clone(), reason };
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| run_error(format!("tokenizing: {e}")))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out = vec![0f32; texts.len() * self.dimensions];
        for batch in order.chunks(BATCH) {
            let vectors = self
                .embed_batch(batch.iter().map(|&i| &encodings[i]))
                .map_err(|e| run_error(e.to_string()))?;
            for (&i, vector) in batch.iter().zip(vectors.chunks(self.dimensions)) {
                out[i * self.dimensions..(i + 1) * self.dimensions].copy_from_slice(vector);
            }
        }
        Ok(out)
    }

    /// One forward pass over a batch, padded to its longest text; returns the pooled
    /// (and, as configured, normalized) vectors, flat.
    fn embed_batch<'a>(
        &self,
        encodings: impl ExactSizeIterator<Item = &'a tokenizers::Encoding> + Clone,
    ) -> candle_core::Result<Vec<f32>> {
        let rows = encodings.len();
        let width = encodings.clone().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (row, encoding) in encodings.enumerate() {
            for (column, &id) in encoding.get_ids().iter().enumerate() {
                ids[row * width + column] = id;
                mask[row * width + column] = 1;
            }
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                // sentence-transformers: sum of the real tokens' vectors over their
                // count (at least 1e-9).
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Max => {
                // Padding may not win: its positions are pushed far below any value.
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let pushed = ((mask.ones_like()? - &mask)? * -1e9)?;
                hidden.broadcast_add(&pushed)?.max(1)?
            }
        };
        let pooled = if self.normalize {
            // torch.nn.functional.normalize: x / max(||x||, 1e-12).
            let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        pooled.flatten_all()?.to_vec1::<f32>()
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
