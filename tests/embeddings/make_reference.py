import json, torch, numpy as np, sentence_transformers, transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Vector databases store embeddings next to the rows they describe.",
    "PostgreSQL speaks a wire protocol that many drivers implement.",
    "Ünïcödé façade — naïve café, 東京タワー and emoji 🚀 included.",
    "",
    "hello",
    "UPPER case and lower CASE should tokenize the same way for an uncased model",
    "Tarn merges a change store with a Lance base on every read. " * 60,
    "Numbers like 3.14159 and 2026-12-06 and hyphenated-words, punctuation!?",
]

model = SentenceTransformer('MODEL_DIR', device='cpu')
print(model)
print("versions:", sentence_transformers.__version__, transformers.__version__, torch.__version__)
emb = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
emb_raw = model.encode(SENTENCES, normalize_embeddings=False, convert_to_numpy=True)
print("shape", emb.shape, "norms(raw output)", np.linalg.norm(emb_raw, axis=1).round(6))
print("max |normalized - raw|", float(np.abs(emb - emb_raw).max()))
feats = model.tokenizer(SENTENCES, truncation=True, max_length=model.max_seq_length)
token_counts = [len(ids) for ids in feats["input_ids"]]
# cross-check with model.tokenize (what encode uses)
tk = model.tokenize(SENTENCES)
assert token_counts == tk["attention_mask"].sum(1).tolist(), (token_counts, tk["attention_mask"].sum(1).tolist())
print("token_counts", token_counts)
out = {
    "model": "all-MiniLM-L6-v2",
    "max_seq_length": int(model.max_seq_length),
    "sentences": SENTENCES,
    "token_counts": token_counts,
    "embeddings": [[round(float(x), 7) for x in row] for row in emb],
    "generated_with": {"sentence_transformers": sentence_transformers.__version__,
                       "transformers": transformers.__version__, "torch": torch.__version__,
                       "normalize_embeddings": True, "device": "cpu"},
}
with open('OUT', 'w', encoding='utf-8') as f:
    json.dump(out, f, ensure_ascii=False)
sim = emb @ emb.T
print("cos(0,1)=%.4f cos(0,3)=%.4f cos(2,3)=%.4f" % (sim[0,1], sim[0,3], sim[2,3]))
print("emb[0][:5]", emb[0][:5])
