"""Checks Tarn's lineage events against the OpenLineage spec, as openlineage-python
carries it: its classes are generated from the spec's JSON schema (required fields,
enums, UUIDs, date-times, each facet's `_schemaURL`).

Each event is rebuilt from its JSON with those classes (an unknown or missing field, a
bad value or a facet under a key of another facet fails), then written back with the
client's own serializer and compared with what Tarn sent: nothing may be lost.

  openlineage_check.py validate EVENTS.jsonl   checks each line; prints a count
  openlineage_check.py serve PORT_FILE OUT     an OpenLineage HTTP endpoint (Marquez's
                                               POST /api/v1/lineage) that checks each
                                               event as it comes, answers 400 to a bad
                                               one, appends good ones to OUT and
                                               writes its port to PORT_FILE
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from openlineage.client.generated import base as b
from openlineage.client.generated import (
    column_lineage_dataset as cl,
    datasource_dataset as ds,
    dataset_version_dataset as dv,
    error_message_run as em,
    job_type_job as jt,
    lifecycle_state_change_dataset as lc,
    output_statistics_output_dataset as os_,
    processing_engine_run as pe,
    schema_dataset as sd,
    sql_job as sj,
)
from openlineage.client.serde import Serde

# The facets Tarn emits, by the key the spec gives each.
RUN_FACETS = {"processing_engine": pe.ProcessingEngineRunFacet, "errorMessage": em.ErrorMessageRunFacet}
JOB_FACETS = {"sql": sj.SQLJobFacet, "jobType": jt.JobTypeJobFacet}
DATASET_FACETS = {
    "schema": sd.SchemaDatasetFacet,
    "dataSource": ds.DatasourceDatasetFacet,
    "version": dv.DatasetVersionDatasetFacet,
    "columnLineage": cl.ColumnLineageDatasetFacet,
    "lifecycleStateChange": lc.LifecycleStateChangeDatasetFacet,
}
OUTPUT_FACETS = {"outputStatistics": os_.OutputStatisticsOutputDatasetFacet}


def facet(cls, raw):
    raw = dict(raw)
    producer, schema_url = raw.pop("_producer"), raw.pop("_schemaURL")
    if cls is cl.ColumnLineageDatasetFacet:
        raw["fields"] = {
            name: cl.Fields(
                inputFields=[
                    cl.InputField(
                        namespace=f["namespace"],
                        name=f["name"],
                        field=f["field"],
                        transformations=[cl.Transformation(**t) for t in f["transformations"]],
                    )
                    for f in v.pop("inputFields")
                ],
                **v,
            )
            for name, v in raw["fields"].items()
        }
    if cls is sd.SchemaDatasetFacet:
        raw["fields"] = [sd.SchemaDatasetFacetFields(**f) for f in raw["fields"]]
    if cls is lc.LifecycleStateChangeDatasetFacet:
        raw["lifecycleStateChange"] = lc.LifecycleStateChange(raw["lifecycleStateChange"])
        if "previousIdentifier" in raw:
            raw["previousIdentifier"] = lc.PreviousIdentifier(**raw["previousIdentifier"])
    built = cls(**raw, producer=producer)
    assert built._schemaURL == schema_url, f"{cls.__name__}: _schemaURL {schema_url} is not {built._schemaURL}"
    return built


def facets(kinds, raw):
    unknown = set(raw or {}) - set(kinds)
    assert not unknown, f"facets of no known kind: {unknown}"
    return {key: facet(kinds[key], value) for key, value in (raw or {}).items()}


def dataset(cls, raw):
    raw = dict(raw)
    extra = {}
    if "outputFacets" in raw:
        extra["outputFacets"] = facets(OUTPUT_FACETS, raw.pop("outputFacets"))
    built = cls(namespace=raw.pop("namespace"), name=raw.pop("name"), facets=facets(DATASET_FACETS, raw.pop("facets", {})), **extra)
    assert not raw, f"unknown dataset fields: {raw}"
    return built


def rebuild(raw):
    raw = dict(raw)
    run, job = raw.pop("run"), raw.pop("job")
    event = b.RunEvent(
        eventTime=raw.pop("eventTime"),
        producer=raw.pop("producer"),
        eventType=b.EventType(raw.pop("eventType")),
        run=b.Run(runId=run["runId"], facets=facets(RUN_FACETS, run.get("facets"))),
        job=b.Job(namespace=job["namespace"], name=job["name"], facets=facets(JOB_FACETS, job.get("facets"))),
        inputs=[dataset(b.InputDataset, d) for d in raw.pop("inputs", [])],
        outputs=[dataset(b.OutputDataset, d) for d in raw.pop("outputs", [])],
    )
    schema_url = raw.pop("schemaURL")
    assert event.schemaURL == schema_url, f"schemaURL {schema_url} is not {event.schemaURL}"
    assert not raw, f"unknown event fields: {raw}"
    return event


def pruned(value):
    """`value` without empty objects and lists (the client writes its defaults, `{}`
    and `[]`, where Tarn writes nothing)."""
    if isinstance(value, dict):
        value = {k: pruned(v) for k, v in value.items()}
        return {k: v for k, v in value.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def check(text):
    sent = json.loads(text)
    event = rebuild(json.loads(text))
    back = pruned(json.loads(Serde.to_json(event)))
    assert back == pruned(sent), f"lost on the way:\n{back}\n!=\n{pruned(sent)}"
    return sent


def validate(path):
    count = 0
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    check(line)
                except Exception as e:  # noqa: BLE001
                    print(f"event {n} is not a valid OpenLineage RunEvent: {e!r}\n{line}")
                    return 1
                count += 1
    print(f"{count} events are valid OpenLineage RunEvents")
    return 0


def serve(port_file, out):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            ok = self.path == "/api/v1/lineage" and self.headers.get("Content-Type") == "application/json"
            try:
                check(body)
            except Exception as e:  # noqa: BLE001
                print(f"refused: {e!r}", flush=True)
                ok = False
            if ok:
                with lock, open(out, "a") as f:
                    f.write(json.dumps(json.loads(body)) + "\n")
            self.send_response(201 if ok else 400)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os

    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "validate":
        sys.exit(validate(sys.argv[2]))
    serve(sys.argv[2], sys.argv[3])
