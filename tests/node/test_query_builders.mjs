// knex and postgres.js against Tarn: the statements each sends with parameters, as their
// users write them (run by tests/node.rs). knex sends `limit $2` as text of unknown type;
// postgres.js sends `= ANY($1)` with an array parameter whose type it learns from the
// server's ParameterDescription.
import assert from "node:assert/strict";
import knexFactory from "knex";
import postgres from "postgres";

const host = process.env.TARN_HOST;
const port = Number(process.env.TARN_PORT);

async function withKnex() {
  const knex = knexFactory({
    client: "pg",
    connection: { host, port, user: "tarn", database: "tarn" },
    pool: { min: 1, max: 1 },
  });
  try {
    await knex.raw("DROP TABLE IF EXISTS kx");
    await knex.raw("CREATE TABLE kx (id BIGINT PRIMARY KEY, name TEXT)");
    await knex("kx").insert([{ id: 1, name: "a" }, { id: 2, name: "b" }, { id: 3, name: "c" }]);
    // select * from "kx" where "id" = $1 limit $2
    const one = await knex("kx").where({ id: 2 }).first();
    assert.deepEqual(one, { id: "2", name: "b" });
    const page = await knex("kx").select("id").orderBy("id").limit(2).offset(1);
    assert.deepEqual(page.map((r) => r.id), ["2", "3"]);
    const some = await knex("kx").whereIn("id", [1, 3]).orderBy("id");
    assert.deepEqual(some.map((r) => r.name), ["a", "c"]);
    await knex("kx").where({ id: 3 }).update({ name: "z" });
    assert.equal((await knex("kx").where("name", "z").count("* as n"))[0].n, "1");
    console.log("knex: ok");
  } finally {
    await knex.destroy();
  }
}

async function withPostgresJs() {
  const sql = postgres({ host, port, user: "tarn", database: "tarn", max: 1, onnotice: () => {} });
  try {
    await sql`DROP TABLE IF EXISTS pj`;
    await sql`CREATE TABLE pj (id BIGINT PRIMARY KEY, name TEXT)`;
    await sql`INSERT INTO pj VALUES (1, 'a'), (2, 'b'), (3, 'c')`;
    const names = await sql`SELECT id FROM pj WHERE name = ANY(${["a", "c", "q"]}) ORDER BY id`;
    assert.deepEqual(names.map((r) => Number(r.id)), [1, 3]);
    const ids = await sql`SELECT name FROM pj WHERE id = ANY(${[2, 3]}) ORDER BY id`;
    assert.deepEqual(ids.map((r) => r.name), ["b", "c"]);
    const limited = await sql`SELECT id FROM pj ORDER BY id LIMIT ${2}`;
    assert.equal(limited.length, 2);
    console.log("postgres.js: ok");
  } finally {
    await sql.end();
  }
}

await withKnex();
await withPostgresJs();
console.log("all checks passed");
