// pgvector-node (the `pgvector` package's node-postgres support) against a Tarn server,
// written as its README shows: registerTypes, toSql parameters, <-> ordering, an HNSW
// index. Connection from TARN_HOST / TARN_PORT. Exits non-zero on the first failure.
import assert from 'node:assert/strict';
import pg from 'pg';
import pgvector from 'pgvector/pg';

const client = new pg.Client({
  host: process.env.TARN_HOST,
  port: Number(process.env.TARN_PORT),
  user: 'tarn',
  database: 'tarn',
});
await client.connect();
await pgvector.registerTypes(client);

await client.query('CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3))');
const vectors = [[1, 1, 1], [2, 2, 2.5], [1, 1, 2]];
for (const [i, v] of vectors.entries()) {
  await client.query('INSERT INTO items (id, embedding) VALUES ($1, $2)', [i + 1, pgvector.toSql(v)]);
}
await client.query('INSERT INTO items (id, embedding) VALUES ($1, $2)', [4, null]);

// Results parsed into arrays by the registered type parser.
const all = await client.query('SELECT id, embedding FROM items ORDER BY id');
assert.deepEqual(all.rows.map((r) => r.embedding), [...vectors, null]);

// Nearest neighbours with the query vector as a parameter, plain and prepared.
const query = pgvector.toSql([1, 1, 1.1]);
const search = 'SELECT id, embedding <-> $1 AS distance FROM items ORDER BY embedding <-> $1 LIMIT 3';
let result = await client.query(search, [query]);
assert.deepEqual(result.rows.map((r) => Number(r.id)), [1, 3, 2]);
assert.ok(Math.abs(result.rows[2].distance - Math.sqrt(3.96)) < 1e-5, String(result.rows[2].distance));
result = await client.query({ name: 'nearest', text: search, values: [query] });
assert.deepEqual(result.rows.map((r) => Number(r.id)), [1, 3, 2]);

for (const [op, expected] of [['<=>', [1, 2, 3]], ['<#>', [2, 3, 1]], ['<+>', [1, 3, 2]]]) {
  result = await client.query(`SELECT id FROM items ORDER BY embedding ${op} $1 LIMIT 3`, [query]);
  assert.deepEqual(result.rows.map((r) => Number(r.id)), expected, op);
}

// An index, rows enough to train it, and the same answer through it.
await client.query(`INSERT INTO items SELECT i, ARRAY[10 + i % 17, 10 + i % 13, 10 + i % 11]::vector(3)
                    FROM generate_series(100, 1500) AS t(i)`);
await client.query('CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)');
const plan = await client.query(`EXPLAIN ${search}`, [query]);
assert.ok(plan.rows.some((r) => r.plan.includes('TarnKnnExec: mode=index')), JSON.stringify(plan.rows));
result = await client.query(search, [query]);
assert.deepEqual(result.rows.map((r) => Number(r.id)), [1, 3, 2]);

// A vector of the wrong dimension: the client's error, with its SQLSTATE.
await assert.rejects(client.query(search, [pgvector.toSql([1, 2])]), (e) => e.code === '22000');

await client.end();
console.log('pgvector-node: all checks passed');
