//! COPY's text and CSV formats, byte for byte as PostgreSQL 15 reads and writes them
//! (`copyfromparse.c`, `copyto.c`): splitting the client's bytes into rows whatever the
//! CopyData boundaries, a row into fields, and writing a row.
//!
//! - text: fields split by the delimiter (tab), backslash escapes (`\t`, `\n`, `\\`,
//!   `\017`, `\x1f`...), NULL is the raw field `\N` (compared before unescaping).
//! - csv: fields split by the delimiter (`,`), quoted with `"` (doubled inside quotes, or
//!   preceded by ESCAPE); NULL is the unquoted empty field; a quoted field may span lines.
//!
//! In both, a line holding only `\.` ends the data, and `\r\n` line ends are accepted.
//!
//! The binary format is `binary`'s; here it only writes its header and trailer.

use super::binary;
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    Text,
    Csv,
    /// Tuples of length-prefixed values in their types' binary form (see `binary.rs`);
    /// none of the text options apply.
    Binary,
}

/// How rows are written: the options of one COPY statement, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub kind: CopyKind,
    pub delimiter: u8,
    /// The text of NULL: `\N` (text) or the empty string (csv) unless set.
    pub null: String,
    pub header: bool,
    /// CSV only.
    pub quote: u8,
    /// CSV only: escapes a quote inside a quoted field; the quote itself by default.
    pub escape: u8,
    /// COPY TO, CSV: quote every non-NULL value of these columns (by position).
    pub force_quote: Vec<bool>,
    /// COPY FROM, CSV: never NULL (an unquoted empty field is the empty string).
    pub force_not_null: Vec<bool>,
    /// COPY FROM, CSV: a quoted field equal to the NULL text is NULL too.
    pub force_null: Vec<bool>,
    /// Columns per row; decides the quoting of a lone `\.` (csv).
    pub columns: usize,
}

impl CopyFormat {
    pub fn text() -> Self {
        Self {
            kind: CopyKind::Text,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
            force_quote: vec![],
            force_not_null: vec![],
            force_null: vec![],
            columns: 0,
        }
    }

    pub fn csv() -> Self {
        Self { kind: CopyKind::Csv, delimiter: b',', null: String::new(), ..Self::text() }
    }

    pub fn binary() -> Self {
        Self { kind: CopyKind::Binary, ..Self::text() }
    }

    fn flag(flags: &[bool], column: usize) -> bool {
        flags.get(column).copied().unwrap_or(false)
    }

    /// Splits one row (without its line end) into `fields`.
    pub(crate) fn split(&self, row: &[u8], fields: &mut Fields) -> Result<()> {
        fields.clear();
        match self.kind {
            // Binary data is never cut into lines (`binary.rs` reads it).
            CopyKind::Text | CopyKind::Binary => self.split_text(row, fields),
            CopyKind::Csv => self.split_csv(row, fields)?,
        }
        Ok(())
    }

    fn split_text(&self, row: &[u8], fields: &mut Fields) {
        let (delimiter, null, n) = (self.delimiter, self.null.as_bytes(), row.len());
        let data = &mut fields.data;
        let mut i = 0;
        loop {
            let (raw_start, start) = (i, data.len());
            while i < n {
                let run = i;
                while i < n && row[i] != delimiter && row[i] != b'\\' {
                    i += 1;
                }
                data.extend_from_slice(&row[run..i]);
                if i == n || row[i] == delimiter {
                    break;
                }
                // A backslash: what follows is escaped.
                i += 1;
                let Some(&c) = row.get(i) else {
                    data.push(b'\\');
                    break;
                };
                i += 1;
                match c {
                    b'0'..=b'7' => {
                        let mut value = u32::from(c - b'0');
                        for _ in 0..2 {
                            match row.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        data.push((value & 0xff) as u8);
                    }
                    b'x' => match row.get(i).and_then(|&d| hex_digit(d)) {
                        Some(high) => {
                            i += 1;
                            let mut value = high;
                            if let Some(low) = row.get(i).and_then(|&d| hex_digit(d)) {
                                value = value * 16 + low;
                                i += 1;
                            }
                            data.push(value);
                        }
                        None => data.push(b'x'),
                    },
                    b'b' => data.push(8),
                    b'f' => data.push(12),
                    b'n' => data.push(b'\n'),
                    b'r' => data.push(b'\r'),
                    b't' => data.push(b'\t'),
                    b'v' => data.push(11),
                    other => data.push(other),
                }
            }
            let is_null = &row[raw_start..i] == null;
            fields.spans.push((!is_null).then_some((start, data.len())));
            if i == n {
                return;
            }
            i += 1; // the delimiter
        }
    }

    fn split_csv(&self, row: &[u8], fields: &mut Fields) -> Result<()> {
        let (delimiter, quote, escape, null, n) =
            (self.delimiter, self.quote, self.escape, self.null.as_bytes(), row.len());
        let data = &mut fields.data;
        let mut i = 0;
        loop {
            let (raw_start, start, column) = (i, data.len(), fields.spans.len());
            let mut quoted = false;
            loop {
                let run = i;
                while i < n && row[i] != delimiter && row[i] != quote {
                    i += 1;
                }
                data.extend_from_slice(&row[run..i]);
                if i == n || row[i] == delimiter {
                    break;
                }
                quoted = true;
                i += 1;
                loop {
                    let Some(&c) = row.get(i) else {
                        return Err(EngineError::BadCopyFormat {
                            message: "unterminated CSV quoted field".into(),
                        });
                    };
                    // Checked before the closing quote: the escape is usually the quote.
                    if c == escape {
                        if let Some(&next) = row.get(i + 1).filter(|&&next| next == quote || next == escape) {
                            data.push(next);
                            i += 2;
                            continue;
                        }
                    }
                    i += 1;
                    if c == quote {
                        break;
                    }
                    data.push(c);
                }
            }
            let is_null = if quoted {
                Self::flag(&self.force_null, column) && &data[start..] == null
            } else {
                !Self::flag(&self.force_not_null, column) && &row[raw_start..i] == null
            };
            fields.spans.push((!is_null).then_some((start, data.len())));
            if i == n {
                return Ok(());
            }
            i += 1; // the delimiter
        }
    }

    /// Appends one field of a row: the delimiter before all but the first, then the
    /// value (`None`: NULL) escaped or quoted as the format needs. Text and CSV only: a
    /// binary row is its values' binary form, written by the server.
    pub fn write_field(&self, out: &mut Vec<u8>, column: usize, value: Option<&str>) {
        if column > 0 {
            out.push(self.delimiter);
        }
        let Some(value) = value else {
            out.extend_from_slice(self.null.as_bytes());
            return;
        };
        match self.kind {
            CopyKind::Text | CopyKind::Binary => self.write_text(out, value.as_bytes()),
            CopyKind::Csv => self.write_csv(out, Self::flag(&self.force_quote, column), value),
        }
    }

    /// Appends what comes before the rows: binary's signature, or the header line when
    /// asked for: the column names, quoted only where needed (FORCE_QUOTE is for values).
    pub fn write_header<'a>(&self, out: &mut Vec<u8>, names: impl IntoIterator<Item = &'a str>) {
        if self.kind == CopyKind::Binary {
            return binary::write_header(out);
        }
        if !self.header {
            return;
        }
        for (i, name) in names.into_iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match self.kind {
                CopyKind::Text | CopyKind::Binary => self.write_text(out, name.as_bytes()),
                CopyKind::Csv => self.write_csv(out, false, name),
            }
        }
        self.end_row(out);
    }

    /// Appends what comes after the rows: binary's trailer; nothing for text and CSV
    /// (Postgres' COPY TO writes no `\.`).
    pub fn write_trailer(&self, out: &mut Vec<u8>) {
        if self.kind == CopyKind::Binary {
            binary::write_trailer(out);
        }
    }

    /// Ends a row.
    pub fn end_row(&self, out: &mut Vec<u8>) {
        out.push(b'\n');
    }

    fn write_text(&self, out: &mut Vec<u8>, value: &[u8]) {
        let mut run = 0;
        for (i, &c) in value.iter().enumerate() {
            let escaped = match c {
                8 => b'b',
                12 => b'f',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                11 => b'v',
                b'\\' => b'\\',
                c if c == self.delimiter => c,
                _ => continue,
            };
            out.extend_from_slice(&value[run..i]);
            out.push(b'\\');
            out.push(escaped);
            run = i + 1;
        }
        out.extend_from_slice(&value[run..]);
    }

    fn write_csv(&self, out: &mut Vec<u8>, force_quote: bool, value: &str) {
        let bytes = value.as_bytes();
        let needs_quotes = force_quote
            || value == self.null
            || (self.columns == 1 && value == "\\.")
            || bytes.iter().any(|&c| c == self.delimiter || c == self.quote || c == b'\n' || c == b'\r');
        if !needs_quotes {
            out.extend_from_slice(bytes);
            return;
        }
        out.push(self.quote);
        for &c in bytes {
            if c == self.quote || c == self.escape {
                out.push(self.escape);
            }
            out.push(c);
        }
        out.push(self.quote);
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The fields of one row, unescaped into one buffer (reused row after row).
#[derive(Debug, Default)]
pub(crate) struct Fields {
    data: Vec<u8>,
    /// Each field's bytes in `data`; `None` is NULL.
    spans: Vec<Option<(usize, usize)>>,
}

impl Fields {
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
    }

    /// Appends a field as it is (binary fields need no unescaping).
    pub(crate) fn push(&mut self, value: Option<&[u8]>) {
        let start = self.data.len();
        if let Some(value) = value {
            self.data.extend_from_slice(value);
        }
        self.spans.push(value.map(|_| (start, self.data.len())));
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Field `i`'s bytes; `None` for NULL.
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans[i].map(|(start, end)| &self.data[start..end])
    }
}

/// Cuts the client's bytes into rows. CopyData messages may split a row anywhere (and a
/// CSV row may span lines inside quotes), so the unfinished tail is kept for the next.
#[derive(Debug, Default)]
pub(crate) struct RowSplitter {
    buf: Vec<u8>,
    /// Start of the row being looked for.
    start: usize,
    /// Where the search for its end resumes.
    scan: usize,
    in_quote: bool,
    /// The previous byte was an escape (text: a backslash; csv: ESCAPE inside quotes).
    escaped: bool,
}

impl RowSplitter {
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.scan = 0;
            self.start = 0;
        } else if self.start > 0 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete row, without its line end; `None` until more data arrives.
    pub(crate) fn next_row(&mut self, format: &CopyFormat) -> Option<&[u8]> {
        let bytes = &self.buf;
        let mut i = self.scan;
        let end = match format.kind {
            CopyKind::Text | CopyKind::Binary => loop {
                let Some(&c) = bytes.get(i) else { break None };
                if self.escaped {
                    self.escaped = false;
                } else if c == b'\\' {
                    self.escaped = true;
                } else if c == b'\n' {
                    break Some(i);
                }
                i += 1;
            },
            CopyKind::Csv => {
                // PostgreSQL ignores ESCAPE when it is the quote: `""` toggles twice.
                let escape = (format.escape != format.quote).then_some(format.escape);
                loop {
                    let Some(&c) = bytes.get(i) else { break None };
                    if c == b'\n' && !self.in_quote {
                        break Some(i);
                    }
                    if self.in_quote && Some(c) == escape {
                        self.escaped = !self.escaped;
                    }
                    if c == format.quote && !self.escaped {
                        self.in_quote = !self.in_quote;
                    }
                    if Some(c) != escape {
                        self.escaped = false;
                    }
                    i += 1;
                }
            }
        };
        let Some(end) = end else {
            self.scan = i;
            return None;
        };
        let start = self.start;
        self.start = end + 1;
        self.scan = end + 1;
        self.in_quote = false;
        self.escaped = false;
        Some(strip_cr(&self.buf[start..end]))
    }

    /// At the end of the data: the last row when it has no line end.
    pub(crate) fn last_row(&mut self, format: &CopyFormat) -> Result<Option<&[u8]>> {
        if self.start >= self.buf.len() {
            return Ok(None);
        }
        if format.kind == CopyKind::Csv && self.in_quote {
            return Err(EngineError::BadCopyFormat { message: "unterminated CSV quoted field".into() });
        }
        let start = self.start;
        self.start = self.buf.len();
        Ok(Some(strip_cr(&self.buf[start..])))
    }
}

fn strip_cr(row: &[u8]) -> &[u8] {
    row.strip_suffix(b"\r").unwrap_or(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: &CopyFormat, chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = RowSplitter::default();
        let mut out = vec![];
        for chunk in chunks {
            splitter.push(chunk);
            while let Some(row) = splitter.next_row(format) {
                out.push(String::from_utf8(row.to_vec()).unwrap());
            }
        }
        if let Some(row) = splitter.last_row(format).unwrap() {
            out.push(String::from_utf8(row.to_vec()).unwrap());
        }
        out
    }

    fn fields(format: &CopyFormat, row: &str) -> Vec<Option<String>> {
        let mut fields = Fields::default();
        format.split(row.as_bytes(), &mut fields).unwrap();
        (0..fields.len()).map(|i| fields.get(i).map(|f| String::from_utf8(f.to_vec()).unwrap())).collect()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn rows_are_found_across_chunk_boundaries() {
        let text = CopyFormat::text();
        // An escaped newline stays in the row; CRLF ends a row; the last needs no newline.
        let got = rows(&text, &[b"1\ta\\", b"\nb\r\n2\t", b"x\n", b"3\tlast"]);
        assert_eq!(got, vec!["1\ta\\\nb", "2\tx", "3\tlast"]);
        let csv = CopyFormat::csv();
        let got = rows(&csv, &[b"1,\"multi\n", b"line\"\n2,\"a\"\"", b"\"\n"]);
        assert_eq!(got, vec!["1,\"multi\nline\"", "2,\"a\"\"\""]);
        let mut splitter = RowSplitter::default();
        splitter.push(b"1,\"open\n");
        assert!(splitter.next_row(&csv).is_none());
        assert!(matches!(splitter.last_row(&csv), Err(EngineError::BadCopyFormat { .. })));
    }

    #[test]
    fn text_fields_unescape_and_know_null() {
        let text = CopyFormat::text();
        assert_eq!(fields(&text, "1\t\\N\t"), vec![s("1"), None, s("")]);
        assert_eq!(
            fields(&text, "a\\tb\\\\c\\nd\\101\\x41\\x4g\\q\\N"),
            // `\x4` takes one hex digit; `\N` inside a longer field is just N.
            vec![s("a\tb\\c\ndAA\u{4}gqN")]
        );
        assert_eq!(fields(&text, ""), vec![s("")]);
        let mut piped = CopyFormat::text();
        piped.delimiter = b'|';
        piped.null = "NULL".into();
        assert_eq!(fields(&piped, "a\\|b|NULL|\\N"), vec![s("a|b"), None, s("N")]);
    }

    #[test]
    fn csv_fields_follow_postgres_quoting() {
        let csv = CopyFormat::csv();
        assert_eq!(
            fields(&csv, "1,\"a,b\",,\"\",\"q\"\"x\", sp "),
            vec![s("1"), s("a,b"), None, s(""), s("q\"x"), s(" sp ")]
        );
        assert_eq!(fields(&csv, "ab\"c,d\"e"), vec![s("abc,de")]);
        let mut escaped = CopyFormat::csv();
        escaped.escape = b'\\';
        assert_eq!(fields(&escaped, "\"a\\\"b\\\\\",\"c\\d\""), vec![s("a\"b\\"), s("c\\d")]);
        let mut forced = CopyFormat::csv();
        forced.null = "NA".into();
        forced.force_not_null = vec![true, false];
        forced.force_null = vec![false, true];
        assert_eq!(fields(&forced, "NA,\"NA\""), vec![s("NA"), None]);
        let mut fields = Fields::default();
        assert!(matches!(
            csv.split(b"1,\"open", &mut fields),
            Err(EngineError::BadCopyFormat { message }) if message == "unterminated CSV quoted field"
        ));
    }

    fn write(format: &CopyFormat, values: &[Option<&str>]) -> String {
        let mut out = vec![];
        for (i, v) in values.iter().enumerate() {
            format.write_field(&mut out, i, *v);
        }
        format.end_row(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_are_written_like_postgres() {
        let text = CopyFormat::text();
        assert_eq!(
            write(&text, &[Some("1"), Some("a\"b"), None, Some("l1\nl2\t\\")]),
            "1\ta\"b\t\\N\tl1\\nl2\\t\\\\\n"
        );
        let mut csv = CopyFormat::csv();
        csv.columns = 4;
        assert_eq!(
            write(&csv, &[Some("1"), Some("a\"b"), None, Some("l1\nl2")]),
            "1,\"a\"\"b\",,\"l1\nl2\"\n"
        );
        // The empty string is quoted so it reads back as itself, not NULL.
        assert_eq!(write(&csv, &[Some(""), Some("x,y")]), "\"\",\"x,y\"\n");
        csv.columns = 1;
        assert_eq!(write(&csv, &[Some("\\.")]), "\"\\.\"\n");
        csv.force_quote = vec![true];
        assert_eq!(write(&csv, &[Some("plain")]), "\"plain\"\n");
        let mut header = vec![];
        csv.write_header(&mut header, ["plain"]);
        assert!(header.is_empty(), "no HEADER");
        csv.header = true;
        csv.write_header(&mut header, ["plain"]);
        assert_eq!(header, b"plain\n", "FORCE_QUOTE leaves the header alone");
        let (mut binary, format) = (vec![], CopyFormat::binary());
        format.write_header(&mut binary, ["plain"]);
        format.write_trailer(&mut binary);
        assert_eq!(binary, b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff");
    }

    #[test]
    fn written_rows_read_back() {
        let values = [Some("tab\there"), None, Some(""), Some("back\\slash,\"quote\"\r\nend"), Some("\\N")];
        for mut format in [CopyFormat::text(), CopyFormat::csv()] {
            format.columns = values.len();
            let row = write(&format, &values);
            let got = rows(&format, &[row.as_bytes()]);
            assert_eq!(got.len(), 1, "{row:?}");
            let want: Vec<Option<String>> = values.iter().map(|v| v.map(str::to_string)).collect();
            assert_eq!(fields(&format, &got[0]), want, "{row:?}");
        }
    }
}
