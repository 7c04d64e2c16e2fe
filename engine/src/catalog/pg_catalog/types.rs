//! The types Tarn has, as `pg_type` lists them, and the names Postgres gives them:
//! `to_regtype`, `::regtype` and `format_type` read this list.

use crate::types::{VECTOR_ARRAY_OID, VECTOR_OID};

/// One row of `pg_type`.
#[derive(Debug, Clone, Copy)]
pub struct PgTypeRow {
    pub oid: u32,
    pub name: &'static str,
    pub len: i16,
    pub category: u8,
    pub elem: u32,
    pub array: u32,
    /// Prefix of its I/O functions: `int4` gives `int4in`, `int4recv`...
    pub io: &'static str,
}

impl PgTypeRow {
    /// An array type (`int2vector` and `oidvector` have elements but their own I/O).
    pub fn is_array(&self) -> bool {
        self.elem != 0 && self.category == b'A' && !matches!(self.oid, 22 | 30)
    }

    /// `typinput` and friends, by name.
    pub fn function(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.io)
    }

    pub fn by_value(&self) -> bool {
        matches!(self.len, 1 | 2 | 4 | 8) && self.name != "interval"
    }

    pub fn align(&self) -> u8 {
        match self.len {
            8 | 16 => b'd',
            2 => b's',
            1 => b'c',
            _ => b'i',
        }
    }

    pub fn storage(&self) -> u8 {
        if self.len == -1 {
            b'x'
        } else {
            b'p'
        }
    }

    /// Text types sort by the default collation.
    pub fn collation(&self) -> u32 {
        if self.category == b'S' {
            100
        } else {
            0
        }
    }

    pub fn namespace(&self) -> u32 {
        if self.oid == VECTOR_OID || self.oid == VECTOR_ARRAY_OID {
            super::PUBLIC_OID
        } else {
            super::PG_CATALOG_OID
        }
    }
}

macro_rules! types {
    ($(($oid:expr, $name:expr, $len:expr, $cat:expr, $elem:expr, $array:expr, $io:expr)),* $(,)?) => {
        &[$(PgTypeRow { oid: $oid, name: $name, len: $len, category: $cat, elem: $elem, array: $array, io: $io }),*]
    };
}

/// Every type a Tarn column or catalog column can have, with its array type.
pub const TYPES: &[PgTypeRow] = types![
    (16, "bool", 1, b'B', 0, 1000, "bool"),
    (17, "bytea", -1, b'U', 0, 1001, "bytea"),
    (18, "char", 1, b'Z', 0, 1002, "char"),
    (19, "name", 64, b'S', 0, 1003, "name"),
    (20, "int8", 8, b'N', 0, 1016, "int8"),
    (21, "int2", 2, b'N', 0, 1005, "int2"),
    (22, "int2vector", -1, b'A', 21, 1006, "int2vector"),
    (23, "int4", 4, b'N', 0, 1007, "int4"),
    (24, "regproc", 4, b'N', 0, 1008, "regproc"),
    (25, "text", -1, b'S', 0, 1009, "text"),
    (26, "oid", 4, b'N', 0, 1028, "oid"),
    (30, "oidvector", -1, b'A', 26, 1013, "oidvector"),
    (114, "json", -1, b'U', 0, 199, "json_"),
    (199, "_json", -1, b'A', 114, 0, "array_"),
    (700, "float4", 4, b'N', 0, 1021, "float4"),
    (701, "float8", 8, b'N', 0, 1022, "float8"),
    (705, "unknown", -2, b'X', 0, 0, "unknown"),
    (1000, "_bool", -1, b'A', 16, 0, "array_"),
    (1001, "_bytea", -1, b'A', 17, 0, "array_"),
    (1002, "_char", -1, b'A', 18, 0, "array_"),
    (1003, "_name", -1, b'A', 19, 0, "array_"),
    (1005, "_int2", -1, b'A', 21, 0, "array_"),
    (1006, "_int2vector", -1, b'A', 22, 0, "array_"),
    (1007, "_int4", -1, b'A', 23, 0, "array_"),
    (1008, "_regproc", -1, b'A', 24, 0, "array_"),
    (1009, "_text", -1, b'A', 25, 0, "array_"),
    (1013, "_oidvector", -1, b'A', 30, 0, "array_"),
    (1015, "_varchar", -1, b'A', 1043, 0, "array_"),
    (1016, "_int8", -1, b'A', 20, 0, "array_"),
    (1021, "_float4", -1, b'A', 700, 0, "array_"),
    (1022, "_float8", -1, b'A', 701, 0, "array_"),
    (1028, "_oid", -1, b'A', 26, 0, "array_"),
    (1043, "varchar", -1, b'S', 0, 1015, "varchar"),
    (1082, "date", 4, b'D', 0, 1182, "date_"),
    (1083, "time", 8, b'D', 0, 1183, "time_"),
    (1114, "timestamp", 8, b'D', 0, 1115, "timestamp_"),
    (1115, "_timestamp", -1, b'A', 1114, 0, "array_"),
    (1182, "_date", -1, b'A', 1082, 0, "array_"),
    (1183, "_time", -1, b'A', 1083, 0, "array_"),
    (1184, "timestamptz", 8, b'D', 0, 1185, "timestamptz_"),
    (1185, "_timestamptz", -1, b'A', 1184, 0, "array_"),
    (1186, "interval", 16, b'T', 0, 1187, "interval_"),
    (1187, "_interval", -1, b'A', 1186, 0, "array_"),
    (1231, "_numeric", -1, b'A', 1700, 0, "array_"),
    (1560, "bit", -1, b'V', 0, 1561, "bit_"),
    (1561, "_bit", -1, b'A', 1560, 0, "array_"),
    (1562, "varbit", -1, b'V', 0, 1563, "varbit_"),
    (1563, "_varbit", -1, b'A', 1562, 0, "array_"),
    (1700, "numeric", -1, b'N', 0, 1231, "numeric_"),
    (2205, "regclass", 4, b'N', 0, 2210, "regclass"),
    (2206, "regtype", 4, b'N', 0, 2211, "regtype"),
    (2210, "_regclass", -1, b'A', 2205, 0, "array_"),
    (2211, "_regtype", -1, b'A', 2206, 0, "array_"),
    (2950, "uuid", 16, b'U', 0, 2951, "uuid_"),
    (2951, "_uuid", -1, b'A', 2950, 0, "array_"),
    (3802, "jsonb", -1, b'U', 0, 3807, "jsonb_"),
    (3807, "_jsonb", -1, b'A', 3802, 0, "array_"),
    (4089, "regnamespace", 4, b'N', 0, 4090, "regnamespace"),
    (4090, "_regnamespace", -1, b'A', 4089, 0, "array_"),
    (VECTOR_OID, "vector", -1, b'U', 0, VECTOR_ARRAY_OID, "vector_"),
    (VECTOR_ARRAY_OID, "_vector", -1, b'A', VECTOR_OID, 0, "array_"),
];

pub fn by_oid(oid: u32) -> Option<&'static PgTypeRow> {
    TYPES.iter().find(|t| t.oid == oid)
}

/// `to_regtype(name)`: the OID of a type by any name Postgres accepts for it
/// (`integer`, `int4`, `public.vector`, `vector[]`...), NULL if there is none.
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.trim_matches('"');
    let name = name.strip_prefix("pg_catalog.").or_else(|| name.strip_prefix("public.")).unwrap_or(name);
    // Modifiers (`vector(3)`, `varchar(10)`) do not change the type.
    let name = match name.find('(') {
        Some(at) if name.ends_with(')') || name.ends_with(")[]") => {
            let rest = &name[name.find(')').map(|i| i + 1).unwrap_or(name.len())..];
            format!("{}{rest}", name[..at].trim_end())
        }
        _ => name.to_string(),
    };
    if let Some(element) = name.strip_suffix("[]") {
        let oid = type_oid(element)?;
        return by_oid(oid).map(|t| t.array).filter(|&array| array != 0);
    }
    let canonical = match name.as_str() {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "\"char\"" => "char",
        other => other,
    };
    TYPES.iter().find(|t| t.name == canonical).map(|t| t.oid)
}

/// The name `oid::regtype` shows, and `format_type` without a modifier.
pub fn type_name(oid: u32) -> Option<String> {
    let row = by_oid(oid)?;
    if row.is_array() {
        return type_name(row.elem).map(|element| format!("{element}[]"));
    }
    Some(
        match row.name {
            "int4" => "integer",
            "int2" => "smallint",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "bool" => "boolean",
            "varchar" => "character varying",
            "timestamp" => "timestamp without time zone",
            "timestamptz" => "timestamp with time zone",
            "time" => "time without time zone",
            "char" => "\"char\"",
            other => other,
        }
        .to_string(),
    )
}

/// `format_type(oid, typmod)`: the type as `\d` shows it, with its modifier
/// (`vector(3)`, `numeric(10,2)`, `character varying(20)`, `timestamp(3) without time zone`).
pub fn format_type(oid: u32, typmod: Option<i32>) -> Option<String> {
    let Some(row) = by_oid(oid) else { return Some("???".to_string()) };
    let typmod = typmod.filter(|&m| m >= 0);
    if row.is_array() {
        return format_type(row.elem, typmod).map(|element| format!("{element}[]"));
    }
    let name = type_name(oid)?;
    let Some(m) = typmod else { return Some(name) };
    Some(match row.name {
        "vector" => format!("vector({m})"),
        "varchar" => format!("character varying({})", m - 4),
        "numeric" => {
            let m = m - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        "timestamp" => format!("timestamp({m}) without time zone"),
        "timestamptz" => format!("timestamp({m}) with time zone"),
        "time" => format!("time({m}) without time zone"),
        _ => name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_postgres_gives_them() {
        assert_eq!(format_type(VECTOR_OID, Some(3)).as_deref(), Some("vector(3)"));
        assert_eq!(format_type(1700, Some((10 << 16 | 2) + 4)).as_deref(), Some("numeric(10,2)"));
        assert_eq!(format_type(1043, Some(24)).as_deref(), Some("character varying(20)"));
        assert_eq!(format_type(1007, None).as_deref(), Some("integer[]"));
        assert_eq!(format_type(20, Some(-1)).as_deref(), Some("bigint"));
        assert_eq!(format_type(18, None).as_deref(), Some("\"char\""));
        assert_eq!(type_oid("vector(3)[]"), Some(VECTOR_ARRAY_OID));
        assert_eq!(type_oid("double precision"), Some(701));
        // Every array type names an element that is listed, and back.
        for t in TYPES.iter().filter(|t| t.elem != 0) {
            assert!(by_oid(t.elem).is_some(), "{}", t.name);
        }
        for t in TYPES.iter().filter(|t| t.array != 0) {
            assert_eq!(by_oid(t.array).map(|a| a.elem), Some(t.oid), "{}", t.name);
        }
    }
}
