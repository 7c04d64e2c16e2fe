//! Lineage events: the OpenLineage `RunEvent`s (spec 2-0-2) of the statements that
//! wrote the warehouse (and, when a session asks, read it), as the engine made them
//! (`tarn_engine::lineage`), kept in a sealed log like the audit trail's
//! (`_tarn/lineage/<seq>.jsonl`, one event per line, see [`crate::audit`]), which
//! `tarn_lineage_events` and `lineage()` read.
//!
//! The types are the spec's JSON, field for field: what a segment holds is what an
//! OpenLineage consumer (Marquez) is sent. Each facet carries the `_producer` and
//! `_schemaURL` of the facet schema version it follows.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::SealedLog;

/// The lineage log's folder under `_tarn`.
pub const LINEAGE_FOLDER: &str = "lineage";

/// The warehouse's lineage events.
pub type LineageLog = SealedLog<RunEvent>;

/// What made the events (a URI, as the spec asks).
pub const PRODUCER: &str = "https://github.com/tarn-db/tarn";
const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

type Text = Cow<'static, str>;

/// A part many events hold (a statement's job, a table's columns): cloned by
/// reference, written as its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Shared<T>(pub Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Shared::new)
    }
}

/// One transition of a run (a statement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    /// RFC 3339, UTC, microseconds.
    pub event_time: String,
    pub producer: Text,
    #[serde(rename = "schemaURL")]
    pub schema_url: Text,
    pub event_type: EventType,
    pub run: Run,
    pub job: Shared<Job>,
    #[serde(default)]
    pub inputs: Vec<Dataset>,
    #[serde(default)]
    pub outputs: Vec<Dataset>,
}

impl RunEvent {
    pub fn new(event_type: EventType, event_time: String, run: Run, job: Shared<Job>) -> RunEvent {
        RunEvent {
            event_time,
            producer: Cow::Borrowed(PRODUCER),
            schema_url: Cow::Borrowed(RUN_EVENT_SCHEMA),
            event_type,
            run,
            job,
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Start,
    Running,
    Complete,
    Abort,
    Fail,
    Other,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Running => "RUNNING",
            EventType::Complete => "COMPLETE",
            EventType::Abort => "ABORT",
            EventType::Fail => "FAIL",
            EventType::Other => "OTHER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// A UUID (version 7: ordered by time).
    pub run_id: String,
    #[serde(default)]
    pub facets: RunFacets,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFacets {
    /// The spec names this one in snake case.
    #[serde(rename = "processing_engine", skip_serializing_if = "Option::is_none")]
    pub processing_engine: Option<Facet<ProcessingEngine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<Facet<ErrorMessage>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub facets: JobFacets,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFacets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<Facet<SqlJob>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<Facet<JobType>>,
}

/// An input or output dataset: a table (`schema.table` in the warehouse's namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub facets: DatasetFacets,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_facets: Option<OutputFacets>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetFacets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Shared<Facet<Schema>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_source: Option<Shared<Facet<DataSource>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Facet<DatasetVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_lineage: Option<Facet<ColumnLineage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_state_change: Option<Facet<LifecycleStateChange>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFacets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_statistics: Option<Facet<OutputStatistics>>,
}

/// A facet: its body and the schema it follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facet<T> {
    #[serde(rename = "_producer")]
    pub producer: Text,
    #[serde(rename = "_schemaURL")]
    pub schema_url: Text,
    #[serde(flatten)]
    pub body: T,
}

/// A facet body, with the URL of its schema.
pub trait FacetBody {
    const SCHEMA_URL: &'static str;
}

impl<T: FacetBody> Facet<T> {
    pub fn new(body: T) -> Facet<T> {
        Facet { producer: Cow::Borrowed(PRODUCER), schema_url: Cow::Borrowed(T::SCHEMA_URL), body }
    }
}

macro_rules! facet {
    ($t:ident, $url:literal) => {
        impl FacetBody for $t {
            const SCHEMA_URL: &'static str = $url;
        }
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingEngine {
    pub version: String,
    pub name: String,
}
facet!(
    ProcessingEngine,
    "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessage {
    /// The SQLSTATE and message: `42P01: relation "nope" does not exist`.
    pub message: String,
    pub programming_language: String,
}
facet!(
    ErrorMessage,
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlJob {
    pub query: String,
    pub dialect: String,
}
facet!(SqlJob, "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobType {
    /// `BATCH`.
    pub processing_type: String,
    /// `TARN`.
    pub integration: String,
    /// `QUERY`, `DDL`, `COPY`.
    pub job_type: String,
}
facet!(JobType, "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<SchemaField>,
}
facet!(Schema, "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaField {
    pub name: String,
    /// The PostgreSQL type name.
    #[serde(rename = "type")]
    pub data_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    pub name: String,
    pub uri: String,
}
facet!(
    DataSource,
    "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetVersion {
    /// The table version read, or the one the statement made.
    pub dataset_version: String,
}
facet!(
    DatasetVersion,
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
);

/// For each output column, the input columns it came from and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnLineage {
    pub fields: BTreeMap<String, FieldLineage>,
}
facet!(
    ColumnLineage,
    "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldLineage {
    pub input_fields: Vec<InputField>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputField {
    pub namespace: String,
    pub name: String,
    pub field: String,
    pub transformations: Vec<Transformation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Transformation {
    #[serde(rename = "type")]
    pub kind: TransformationType,
    pub subtype: Subtype,
    /// The value is a masked (hashed, partial or nulled) form of the input.
    pub masking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransformationType {
    Direct,
    Indirect,
}

/// `IDENTITY`, `TRANSFORMATION`, `AGGREGATION` for direct transformations; the rest for
/// indirect ones (the input decides which rows there are or where they go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Subtype {
    Identity,
    Transformation,
    Aggregation,
    Join,
    GroupBy,
    Filter,
    Sort,
    Window,
    Conditional,
}

impl Subtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Subtype::Identity => "IDENTITY",
            Subtype::Transformation => "TRANSFORMATION",
            Subtype::Aggregation => "AGGREGATION",
            Subtype::Join => "JOIN",
            Subtype::GroupBy => "GROUP_BY",
            Subtype::Filter => "FILTER",
            Subtype::Sort => "SORT",
            Subtype::Window => "WINDOW",
            Subtype::Conditional => "CONDITIONAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleStateChange {
    /// `CREATE`, `ALTER`, `DROP`, `RENAME`, `TRUNCATE`, `OVERWRITE`.
    pub lifecycle_state_change: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_identifier: Option<PreviousIdentifier>,
}
facet!(
    LifecycleStateChange,
    "https://openlineage.io/spec/facets/1-0-1/LifecycleStateChangeDatasetFacet.json#/$defs/LifecycleStateChangeDatasetFacet"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousIdentifier {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatistics {
    pub row_count: u64,
}
facet!(
    OutputStatistics,
    "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_the_spec_json_and_reads_back() {
        let mut event = RunEvent::new(
            EventType::Complete,
            "2026-12-07T10:00:00.000000Z".into(),
            Run { run_id: "0193a0d0-0000-7000-8000-000000000000".into(), facets: RunFacets::default() },
            Shared::new(Job { namespace: "tarn".into(), name: "etl".into(), facets: JobFacets::default() }),
        );
        let mut lineage = ColumnLineage::default();
        lineage.fields.insert(
            "total".into(),
            FieldLineage {
                input_fields: vec![InputField {
                    namespace: "file:///w".into(),
                    name: "public.orders".into(),
                    field: "amount".into(),
                    transformations: vec![Transformation {
                        kind: TransformationType::Direct,
                        subtype: Subtype::Aggregation,
                        masking: false,
                    }],
                }],
            },
        );
        event.outputs.push(Dataset {
            namespace: "file:///w".into(),
            name: "public.totals".into(),
            facets: DatasetFacets { column_lineage: Some(Facet::new(lineage)), ..Default::default() },
            output_facets: Some(OutputFacets {
                output_statistics: Some(Facet::new(OutputStatistics { row_count: 3 })),
            }),
        });
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventType"], "COMPLETE");
        assert_eq!(json["schemaURL"], RUN_EVENT_SCHEMA);
        let facet = &json["outputs"][0]["facets"]["columnLineage"];
        assert!(facet["_schemaURL"].as_str().unwrap().contains("ColumnLineageDatasetFacet"));
        let field = &facet["fields"]["total"]["inputFields"][0];
        assert_eq!(field["transformations"][0]["type"], "DIRECT");
        assert_eq!(field["transformations"][0]["subtype"], "AGGREGATION");
        assert_eq!(json["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 3);
        assert_eq!(serde_json::from_value::<RunEvent>(json).unwrap(), event);
    }
}
