//! The options of a COPY statement, in both spellings (`WITH (FORMAT csv, HEADER)` and
//! the pre-9.0 `CSV HEADER`), checked as PostgreSQL checks them (`ProcessCopyOptions`).

use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Ident};

use super::format::{CopyFormat, CopyKind};
use crate::error::{EngineError, Result};
use crate::statements::ddl;

/// The options of one COPY statement, before its columns are known.
pub(super) struct CopyOptions {
    pub(super) format: CopyFormat,
    pub(super) force_quote: Vec<String>,
    pub(super) force_not_null: Vec<String>,
    pub(super) force_null: Vec<String>,
}

impl CopyOptions {
    /// Reads `WITH (FORMAT csv, HEADER, ...)` and the pre-9.0 spelling (`CSV HEADER`,
    /// `DELIMITER ','`), checked as Postgres checks them.
    pub(super) fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption], to: bool) -> Result<Self> {
        let mut kind = CopyKind::Text;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) = (None, None, false, None, None);
        let (mut force_quote, mut force_not_null, mut force_null) = (vec![], vec![], vec![]);
        let names = |idents: &[Ident]| idents.iter().map(ddl::ident).collect::<Vec<_>>();
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    kind = match name.value.to_ascii_lowercase().as_str() {
                        "text" => CopyKind::Text,
                        "csv" => CopyKind::Csv,
                        "binary" => CopyKind::Binary,
                        other => {
                            return Err(EngineError::InvalidParameter {
                                message: format!("COPY format \"{other}\" not recognized"),
                            })
                        }
                    }
                }
                CopyOption::Freeze(_) => {}
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(text) => null = Some(text.clone()),
                CopyOption::Header(on) => header = *on,
                CopyOption::Quote(c) => quote = Some(*c),
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::ForceQuote(columns) => force_quote = names(columns),
                CopyOption::ForceNotNull(columns) => force_not_null = names(columns),
                CopyOption::ForceNull(columns) => force_null = names(columns),
                CopyOption::Encoding(encoding) => check_encoding(encoding)?,
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => kind = CopyKind::Binary,
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(text) => null = Some(text.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Csv(csv_options) => {
                    kind = CopyKind::Csv;
                    for option in csv_options {
                        match option {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            CopyLegacyCsvOption::ForceQuote(columns) => force_quote = names(columns),
                            CopyLegacyCsvOption::ForceNotNull(columns) => force_not_null = names(columns),
                        }
                    }
                }
                other => {
                    return Err(EngineError::unsupported(format!("COPY option {other} is not supported")))
                }
            }
        }

        if kind == CopyKind::Binary {
            let given = [("DELIMITER", delimiter.is_some()), ("NULL", null.is_some())];
            if let Some((option, _)) = given.iter().find(|(_, given)| *given) {
                return Err(EngineError::syntax(format!("cannot specify {option} in BINARY mode")));
            }
            if header {
                return Err(EngineError::unsupported("cannot specify HEADER in BINARY mode"));
            }
        }
        let mut format = match kind {
            CopyKind::Text => CopyFormat::text(),
            CopyKind::Csv => CopyFormat::csv(),
            CopyKind::Binary => CopyFormat::binary(),
        };
        let csv_only = |what: &str, given: bool| {
            if given && kind != CopyKind::Csv {
                return Err(EngineError::unsupported(format!("COPY {what} available only in CSV mode")));
            }
            Ok(())
        };
        csv_only("quote", quote.is_some())?;
        csv_only("escape", escape.is_some())?;
        csv_only("force quote", !force_quote.is_empty())?;
        csv_only("force not null", !force_not_null.is_empty())?;
        csv_only("force null", !force_null.is_empty())?;
        if !force_quote.is_empty() && !to {
            return Err(EngineError::unsupported("COPY force quote only available using COPY TO"));
        }
        if (!force_not_null.is_empty() || !force_null.is_empty()) && to {
            return Err(EngineError::unsupported(
                "COPY force not null and force null only available using COPY FROM",
            ));
        }
        let one_byte = |what: &str, c: char| {
            u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
                EngineError::unsupported(format!("COPY {what} must be a single one-byte character"))
            })
        };
        if let Some(c) = delimiter {
            format.delimiter = one_byte("delimiter", c)?;
        }
        if let Some(c) = quote {
            format.quote = one_byte("quote", c)?;
        }
        format.escape = match escape {
            Some(c) => one_byte("escape", c)?,
            None => format.quote,
        };
        if let Some(null) = null {
            format.null = null;
        }
        format.header = header;
        let d = format.delimiter;
        if d == b'\n' || d == b'\r' {
            return Err(EngineError::InvalidParameter {
                message: "COPY delimiter cannot be newline or carriage return".into(),
            });
        }
        if format.null.contains(['\n', '\r']) {
            return Err(EngineError::InvalidParameter {
                message: "COPY null representation cannot use newline or carriage return".into(),
            });
        }
        if kind == CopyKind::Text && (d == b'\\' || d == b'.' || d.is_ascii_lowercase() || d.is_ascii_digit())
        {
            return Err(EngineError::InvalidParameter {
                message: format!("COPY delimiter cannot be \"{}\"", d as char),
            });
        }
        if kind == CopyKind::Csv {
            if d == format.quote {
                return Err(EngineError::InvalidParameter {
                    message: "COPY delimiter and quote must be different".into(),
                });
            }
            if format.null.as_bytes().contains(&d) {
                return Err(EngineError::InvalidParameter {
                    message: "COPY delimiter must not appear in the NULL specification".into(),
                });
            }
        }
        Ok(Self { format, force_quote, force_not_null, force_null })
    }
}

fn check_encoding(encoding: &str) -> Result<()> {
    match encoding.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
        "UTF8" | "UNICODE" => Ok(()),
        _ => Err(EngineError::unsupported(format!(
            "COPY encoding \"{encoding}\" is not supported; Tarn speaks UTF8"
        ))),
    }
}

/// Per-column flags for the columns named in a FORCE_* option.
pub(super) fn resolve_columns(named: &[String], columns: &[&str], option: &str) -> Result<Vec<bool>> {
    let mut flags = vec![false; columns.len()];
    for name in named {
        let index = columns.iter().position(|c| c == name).ok_or_else(|| EngineError::InvalidParameter {
            message: format!("{option} column \"{name}\" not referenced by COPY"),
        })?;
        flags[index] = true;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parser::parse_sql;
    use datafusion::sql::sqlparser::ast::Statement;

    fn options(sql: &str) -> Result<CopyOptions> {
        let parsed = parse_sql(sql).unwrap().remove(0);
        let Statement::Copy { options, legacy_options, to, .. } = parsed.statement else { panic!("{sql}") };
        CopyOptions::parse(&options, &legacy_options, to)
    }

    #[test]
    fn options_in_both_spellings_checked_like_postgres() {
        let o = options("COPY t FROM STDIN WITH CSV HEADER").unwrap();
        assert_eq!((o.format.kind, o.format.header, o.format.delimiter), (CopyKind::Csv, true, b','));
        let o = options("COPY t FROM STDIN (FORMAT csv, HEADER false, DELIMITER ';', NULL 'NA', QUOTE '''')")
            .unwrap();
        assert_eq!((o.format.header, o.format.delimiter, o.format.null.as_str()), (false, b';', "NA"));
        assert_eq!((o.format.quote, o.format.escape), (b'\'', b'\''));
        let o = options("COPY t FROM STDIN DELIMITER '|' NULL AS ''").unwrap();
        assert_eq!((o.format.kind, o.format.delimiter, o.format.null.as_str()), (CopyKind::Text, b'|', ""));
        let o = options("COPY (SELECT 1) TO STDOUT (FORMAT csv, FORCE_QUOTE (a))").unwrap();
        assert_eq!(o.force_quote, vec!["a".to_string()]);

        for binary in [
            "COPY t FROM STDIN (FORMAT binary)",
            "COPY t FROM STDIN BINARY",
            "COPY t TO STDOUT (FORMAT BINARY)",
        ] {
            assert_eq!(options(binary).unwrap().format, CopyFormat::binary(), "{binary}");
        }
        for (sql, want) in [
            ("COPY t FROM STDIN (FORMAT binary, DELIMITER ',')", "cannot specify DELIMITER in BINARY mode"),
            ("COPY t FROM STDIN BINARY NULL 'x'", "cannot specify NULL in BINARY mode"),
        ] {
            let e = options(sql).err().expect(sql);
            assert!(matches!(&e, EngineError::Syntax { .. }), "{sql}: {e:?}");
            assert_eq!(e.to_string(), want);
        }
        let e = options("COPY t TO STDOUT (FORMAT binary, HEADER)").err().expect("no header");
        assert!(matches!(&e, EngineError::FeatureNotSupported { .. }), "as Postgres 15: {e:?}");
        assert_eq!(e.to_string(), "cannot specify HEADER in BINARY mode");
        let e = options("COPY t FROM STDIN (FORMAT binary, FORCE_NULL (a))").err().expect("csv only");
        assert_eq!(e.to_string(), "COPY force null available only in CSV mode");

        for unsupported in [
            "COPY t FROM STDIN (QUOTE '\"')",
            "COPY t FROM STDIN (FORMAT csv, FORCE_QUOTE (a))",
            "COPY t TO STDOUT (FORMAT csv, FORCE_NOT_NULL (a))",
            "COPY t FROM STDIN (ENCODING 'latin1')",
        ] {
            assert!(
                matches!(options(unsupported), Err(EngineError::FeatureNotSupported { .. })),
                "{unsupported}"
            );
        }
        for invalid in [
            "COPY t FROM STDIN (DELIMITER 'a')",
            "COPY t FROM STDIN (FORMAT csv, DELIMITER '\"')",
            "COPY t FROM STDIN (FORMAT csv, NULL 'a,b')",
            "COPY t FROM STDIN (FORMAT xml)",
        ] {
            assert!(matches!(options(invalid), Err(EngineError::InvalidParameter { .. })), "{invalid}");
        }
    }

    #[test]
    fn force_columns_must_be_copied_columns() {
        assert_eq!(resolve_columns(&["b".into()], &["a", "b"], "FORCE_NULL").unwrap(), vec![false, true]);
        let e = resolve_columns(&["c".into()], &["a", "b"], "FORCE_NULL").unwrap_err();
        assert_eq!(e.to_string(), "FORCE_NULL column \"c\" not referenced by COPY");
    }
}
