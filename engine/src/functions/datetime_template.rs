//! PostgreSQL's date/time templates, both ways: `to_char(ts, 'YYYY-MM-DD HH24:MI:SS')`
//! formats a timestamp or date, `to_timestamp(text, template)` and `to_date(text,
//! template)` read one (BI tools write their time filters this way: Superset's
//! `TO_TIMESTAMP('2023-12-01 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US')`,
//! pgAdmin's `to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')`). DataFusion's
//! functions of those names take chrono's `%Y-%m-%d` patterns instead; these replace
//! them for a template argument and hand every other call to them.
//!
//! The patterns are PostgreSQL's (its "Template Patterns for Date/Time Formatting"):
//! `YYYY` `YYY` `YY` `Y` `Y,YYY` `IYYY` `CC` `MM` `MONTH`/`Month`/`month`
//! `MON`/`Mon`/`mon` `DD` `DDD` `D` `ID` `DAY`/`Day`/`day` `DY`/`Dy`/`dy` `W` `WW` `IW`
//! `Q` `J` `HH24` `HH12` `HH` `MI` `SS` `SSSS` `MS` `US` `AM`/`PM`/`A.M.`/`P.M.` (and
//! lower case) `TZ`/`tz` `TZH` `TZM` `OF`, with the `FM` prefix (no padding) and `TH`/`th`
//! suffix (ordinal), `"quoted text"` and `\` escapes. Reading follows PostgreSQL's
//! default (not `FX`) rules: blanks are skipped around values, a separator in the
//! template matches any one separator of the input, a number ends at the first
//! non-digit or at its field's width when another number follows directly, and
//! `MS`/`US` are fractions of a second (`SS.MS` of `12.3` is 12.3 s).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Date32Array, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, FieldRef, TimeUnit};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::error::EngineError;

/// One field of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    YearComma,
    Year4,
    Year3,
    Year2,
    Year1,
    IsoYear,
    Century,
    Month,
    MonthName(Case),
    MonthAbbrev(Case),
    Day,
    DayOfYear,
    DayOfWeek,
    IsoDayOfWeek,
    DayName(Case),
    DayAbbrev(Case),
    WeekOfMonth,
    WeekOfYear,
    IsoWeek,
    Quarter,
    Julian,
    Hour24,
    Hour12,
    Minute,
    Second,
    SecondsOfDay,
    Milli,
    Micro,
    Meridiem { upper: bool, dots: bool },
    TimeZone { upper: bool },
    TzHours,
    TzMinutes,
    Offset,
}

/// How a name is written: `MONTH`, `Month` or `month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Upper,
    Capital,
    Lower,
}

impl Case {
    fn apply(self, name: &str) -> String {
        match self {
            Case::Upper => name.to_uppercase(),
            Case::Lower => name.to_lowercase(),
            Case::Capital => name.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Field {
        field: Field,
        fill: bool,
        ordinal: Option<bool>,
    },
    Literal(char),
    /// Quoted text (`"T"`): written as it is, skipped as that many characters.
    Text(String),
}

/// Keywords matched case-sensitively (their case is their output's), longest first
/// among those that share a start.
const NAMED: &[(&str, Field)] = &[
    ("MONTH", Field::MonthName(Case::Upper)),
    ("Month", Field::MonthName(Case::Capital)),
    ("month", Field::MonthName(Case::Lower)),
    ("MON", Field::MonthAbbrev(Case::Upper)),
    ("Mon", Field::MonthAbbrev(Case::Capital)),
    ("mon", Field::MonthAbbrev(Case::Lower)),
    ("DAY", Field::DayName(Case::Upper)),
    ("Day", Field::DayName(Case::Capital)),
    ("day", Field::DayName(Case::Lower)),
    ("DY", Field::DayAbbrev(Case::Upper)),
    ("Dy", Field::DayAbbrev(Case::Capital)),
    ("dy", Field::DayAbbrev(Case::Lower)),
    ("A.M.", Field::Meridiem { upper: true, dots: true }),
    ("P.M.", Field::Meridiem { upper: true, dots: true }),
    ("a.m.", Field::Meridiem { upper: false, dots: true }),
    ("p.m.", Field::Meridiem { upper: false, dots: true }),
    ("AM", Field::Meridiem { upper: true, dots: false }),
    ("PM", Field::Meridiem { upper: true, dots: false }),
    ("am", Field::Meridiem { upper: false, dots: false }),
    ("pm", Field::Meridiem { upper: false, dots: false }),
    ("TZH", Field::TzHours),
    ("TZM", Field::TzMinutes),
    ("TZ", Field::TimeZone { upper: true }),
    ("tz", Field::TimeZone { upper: false }),
];

/// Keywords matched in either case, longest first among those that share a start.
const NUMERIC: &[(&str, Field)] = &[
    ("Y,YYY", Field::YearComma),
    ("YYYY", Field::Year4),
    ("YYY", Field::Year3),
    ("YY", Field::Year2),
    ("Y", Field::Year1),
    ("IYYY", Field::IsoYear),
    ("IW", Field::IsoWeek),
    ("ID", Field::IsoDayOfWeek),
    ("CC", Field::Century),
    ("MM", Field::Month),
    ("MI", Field::Minute),
    ("MS", Field::Milli),
    ("DDD", Field::DayOfYear),
    ("DD", Field::Day),
    ("D", Field::DayOfWeek),
    ("WW", Field::WeekOfYear),
    ("W", Field::WeekOfMonth),
    ("Q", Field::Quarter),
    ("J", Field::Julian),
    ("HH24", Field::Hour24),
    ("HH12", Field::Hour12),
    ("HH", Field::Hour12),
    ("SSSSS", Field::SecondsOfDay),
    ("SSSS", Field::SecondsOfDay),
    ("SS", Field::Second),
    ("US", Field::Micro),
    ("OF", Field::Offset),
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// A template's items.
fn compile(template: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = rest[1..].find('"').map(|i| i + 1).unwrap_or(rest.len());
            items.push(Item::Text(rest[1..end].to_string()));
            rest = rest.get(end + 1..).unwrap_or("");
            continue;
        }
        if c == '\\' {
            let mut chars = rest[1..].chars();
            if let Some(escaped) = chars.next() {
                items.push(Item::Literal(escaped));
            }
            rest = chars.as_str();
            continue;
        }
        let fill = starts_with_ignore_case(rest, "FM");
        let after_fill = if fill { &rest[2..] } else { rest };
        if let Some((len, field)) = keyword(after_fill) {
            let after = &after_fill[len..];
            let ordinal = if after.starts_with("TH") {
                Some(true)
            } else if after.starts_with("th") {
                Some(false)
            } else {
                None
            };
            items.push(Item::Field { field, fill, ordinal });
            rest = if ordinal.is_some() { &after[2..] } else { after };
            continue;
        }
        items.push(Item::Literal(c));
        rest = &rest[c.len_utf8()..];
    }
    items
}

/// The keyword `text` starts with: its length and field.
fn keyword(text: &str) -> Option<(usize, Field)> {
    if let Some((word, field)) = NAMED.iter().find(|(word, _)| text.starts_with(word)) {
        return Some((word.len(), *field));
    }
    NUMERIC
        .iter()
        .find(|(word, _)| starts_with_ignore_case(text, word))
        .map(|(word, field)| (word.len(), *field))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// `to_char(value, template)`: `at` in the template's words; `zone` is the time zone's
/// name for `TZ` (`None` for a timestamp without one, which PostgreSQL prints as
/// nothing).
pub fn format(at: NaiveDateTime, template: &str, zone: Option<&str>) -> String {
    let mut out = String::new();
    for item in compile(template) {
        match item {
            Item::Literal(c) => out.push(c),
            Item::Text(text) => out.push_str(&text),
            Item::Field { field, fill, ordinal } => {
                let (text, number) = format_field(at, field, fill, zone);
                out.push_str(&text);
                if let (Some(upper), Some(n)) = (ordinal, number) {
                    let suffix = ordinal_suffix(n);
                    out.push_str(&if upper { suffix.to_uppercase() } else { suffix.to_string() });
                }
            }
        }
    }
    out
}

/// One field's text, and its number when it has one (for `TH`).
fn format_field(at: NaiveDateTime, field: Field, fill: bool, zone: Option<&str>) -> (String, Option<i64>) {
    let number = |value: i64, width: usize| {
        let text = if fill { value.to_string() } else { format!("{value:0width$}") };
        (text, Some(value))
    };
    let name = |name: &str, case: Case| {
        let text = case.apply(name);
        if fill {
            text
        } else {
            format!("{text:<9}")
        }
    };
    let year = at.year() as i64;
    let hour12 = match at.hour() % 12 {
        0 => 12,
        h => h as i64,
    };
    match field {
        Field::YearComma => {
            let text = format!("{},{:03}", year / 1000, year % 1000);
            (text, Some(year))
        }
        Field::Year4 => number(year, 4),
        Field::Year3 => number(year % 1000, 3),
        Field::Year2 => number(year % 100, 2),
        Field::Year1 => number(year % 10, 1),
        Field::IsoYear => number(at.iso_week().year() as i64, 4),
        Field::Century => number(if year > 0 { (year - 1) / 100 + 1 } else { year / 100 - 1 }, 2),
        Field::Month => number(at.month() as i64, 2),
        Field::MonthName(case) => (name(MONTHS[at.month0() as usize], case), None),
        Field::MonthAbbrev(case) => (case.apply(&MONTHS[at.month0() as usize][..3]), None),
        Field::Day => number(at.day() as i64, 2),
        Field::DayOfYear => number(at.ordinal() as i64, 3),
        Field::DayOfWeek => number(at.weekday().num_days_from_sunday() as i64 + 1, 1),
        Field::IsoDayOfWeek => number(at.weekday().number_from_monday() as i64, 1),
        Field::DayName(case) => (name(DAYS[at.weekday().num_days_from_sunday() as usize], case), None),
        Field::DayAbbrev(case) => {
            (case.apply(&DAYS[at.weekday().num_days_from_sunday() as usize][..3]), None)
        }
        Field::WeekOfMonth => number((at.day() as i64 - 1) / 7 + 1, 1),
        Field::WeekOfYear => number((at.ordinal() as i64 - 1) / 7 + 1, 2),
        Field::IsoWeek => number(at.iso_week().week() as i64, 2),
        Field::Quarter => number(at.month0() as i64 / 3 + 1, 1),
        Field::Julian => number(julian_day(at.date()), 1),
        Field::Hour24 => number(at.hour() as i64, 2),
        Field::Hour12 => number(hour12, 2),
        Field::Minute => number(at.minute() as i64, 2),
        Field::Second => number(at.second() as i64, 2),
        Field::SecondsOfDay => number(at.num_seconds_from_midnight() as i64, 1),
        Field::Milli => number((at.nanosecond() / 1_000_000) as i64, 3),
        Field::Micro => number((at.nanosecond() / 1_000) as i64, 6),
        Field::Meridiem { upper, dots } => {
            let pm = at.hour() >= 12;
            let text = match (pm, dots) {
                (false, false) => "AM",
                (true, false) => "PM",
                (false, true) => "A.M.",
                (true, true) => "P.M.",
            };
            (if upper { text.to_string() } else { text.to_lowercase() }, None)
        }
        Field::TimeZone { upper } => {
            let zone = zone.unwrap_or("");
            (if upper { zone.to_uppercase() } else { zone.to_lowercase() }, None)
        }
        Field::TzHours => (if zone.is_some() { "+00".into() } else { String::new() }, None),
        Field::TzMinutes => (if zone.is_some() { "00".into() } else { String::new() }, None),
        Field::Offset => (if zone.is_some() { "+00".into() } else { String::new() }, None),
    }
}

fn ordinal_suffix(n: i64) -> &'static str {
    match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    }
}

/// Days since 4714-11-24 BC (the Julian Day PostgreSQL's `J` counts).
fn julian_day(date: NaiveDate) -> i64 {
    date.num_days_from_ce() as i64 + 1_721_425
}

/// What a text read with a template set.
#[derive(Debug, Default)]
struct Parts {
    year: Option<i64>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    julian: Option<i64>,
    hour: Option<u32>,
    hour_is_12: bool,
    pm: Option<bool>,
    minute: Option<u32>,
    second: Option<u32>,
    seconds_of_day: Option<u32>,
    micros: u32,
    /// `TZH:TZM`: minutes east of UTC, and whether `TZH` was negative.
    offset_minutes: i64,
    offset_negative: bool,
}

/// `to_timestamp(text, template)`: the timestamp `text` writes in the template's
/// words, in UTC (an offset read with `TZH`/`TZM` is taken off). 22007 for text the
/// template does not describe, 22008 for a field out of range.
pub fn parse(text: &str, template: &str) -> Result<NaiveDateTime, EngineError> {
    let items = compile(template);
    let mut parts = Parts::default();
    let mut rest = text;
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Literal(c) if c.is_whitespace() => rest = rest.trim_start(),
            Item::Literal(_) => {
                // A separator matches any one separator of the input, or none.
                if let Some(c) = rest.chars().next().filter(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
                    rest = &rest[c.len_utf8()..];
                }
            }
            Item::Text(t) => {
                let skip: usize = rest.chars().take(t.chars().count()).map(char::len_utf8).sum();
                rest = &rest[skip..];
            }
            Item::Field { field, ordinal, .. } => {
                rest = rest.trim_start();
                let next_is_number =
                    matches!(items.get(i + 1), Some(Item::Field { field, .. }) if is_numeric(*field));
                rest = read_field(rest, *field, next_is_number, &mut parts)?;
                if ordinal.is_some() {
                    let skip: usize =
                        rest.chars().take_while(|c| c.is_alphabetic()).take(2).map(char::len_utf8).sum();
                    rest = &rest[skip..];
                }
            }
        }
    }
    assemble(parts, text)
}

/// A number off the front of `text`: its value, how many digits it had (at most
/// `limit`), and what follows.
fn read_number(text: &str, limit: usize, signed: bool) -> Option<(i64, usize, &str)> {
    let (negative, body) = match text.strip_prefix('-').filter(|_| signed) {
        Some(body) => (true, body),
        None => (false, text.strip_prefix('+').filter(|_| signed).unwrap_or(text)),
    };
    let digits = body.chars().take_while(char::is_ascii_digit).take(limit).count();
    if digits == 0 {
        return None;
    }
    let value: i64 = body[..digits].parse().ok()?;
    Some((if negative { -value } else { value }, digits, &body[digits..]))
}

/// How a template writes `field` (for messages).
fn keyword_of(field: Field) -> &'static str {
    NAMED.iter().chain(NUMERIC).find(|(_, f)| *f == field).map_or("?", |(word, _)| word)
}

fn is_numeric(field: Field) -> bool {
    NUMERIC.iter().any(|(_, f)| *f == field)
}

/// Reads one field off the front of `rest` into `parts`; what is left.
fn read_field<'a>(
    rest: &'a str,
    field: Field,
    next_is_number: bool,
    parts: &mut Parts,
) -> Result<&'a str, EngineError> {
    let invalid = || EngineError::InvalidDatetime {
        message: format!(
            "invalid value \"{}\" for \"{}\"",
            rest.chars().take_while(|c| c.is_alphanumeric()).take(12).collect::<String>(),
            keyword_of(field)
        ),
    };
    // A number: its digits, at most `width` of them when another number follows.
    let limit = |width: usize| if next_is_number { width } else { usize::MAX };
    let number = |width: usize, signed: bool| read_number(rest, limit(width), signed).ok_or_else(invalid);
    // A number of at most `width` digits into a field of `parts`.
    let into = |slot: &mut Option<u32>, width: usize| -> Result<&'a str, EngineError> {
        let (value, _, after) = number(width, false)?;
        *slot = Some(u32::try_from(value).map_err(|_| invalid())?);
        Ok(after)
    };
    let name_index = |names: &[&str], abbreviated: bool| -> Option<(usize, usize)> {
        names.iter().enumerate().find_map(|(i, name)| {
            let name = if abbreviated { &name[..3] } else { name };
            starts_with_ignore_case(rest, name).then_some((i, name.len()))
        })
    };
    let left = match field {
        Field::YearComma => {
            let (thousands, _, after) = number(usize::MAX, false)?;
            let after = after.strip_prefix(',').ok_or_else(invalid)?;
            let (units, _, after) = read_number(after, 3, false).ok_or_else(invalid)?;
            parts.year = Some(thousands * 1000 + units);
            after
        }
        Field::Year4 | Field::IsoYear => {
            let (year, _, after) = number(4, true)?;
            parts.year = Some(year);
            after
        }
        Field::Year3 | Field::Year2 | Field::Year1 => {
            let width = match field {
                Field::Year3 => 3,
                Field::Year2 => 2,
                _ => 1,
            };
            let (year, digits, after) = number(width, false)?;
            // PostgreSQL's nearest year to 2020 for short years.
            parts.year = Some(match digits {
                1 => 2000 + year,
                2 if year < 70 => 2000 + year,
                2 => 1900 + year,
                3 if year < 100 => 2000 + year,
                3 => 1000 + year,
                _ => year,
            });
            after
        }
        Field::Century => number(2, true)?.2,
        Field::Month => into(&mut parts.month, 2)?,
        Field::MonthName(_) | Field::MonthAbbrev(_) => {
            let abbreviated = matches!(field, Field::MonthAbbrev(_));
            let (i, len) = name_index(&MONTHS, abbreviated).ok_or_else(invalid)?;
            parts.month = Some(i as u32 + 1);
            &rest[len..]
        }
        Field::DayName(_) | Field::DayAbbrev(_) => {
            let (_, len) = name_index(&DAYS, matches!(field, Field::DayAbbrev(_))).ok_or_else(invalid)?;
            &rest[len..]
        }
        Field::Day => into(&mut parts.day, 2)?,
        Field::DayOfYear => into(&mut parts.day_of_year, 3)?,
        Field::DayOfWeek | Field::IsoDayOfWeek | Field::Quarter | Field::WeekOfMonth => number(1, false)?.2,
        Field::WeekOfYear | Field::IsoWeek => number(2, false)?.2,
        Field::Julian => {
            let (day, _, after) = number(usize::MAX, false)?;
            parts.julian = Some(day);
            after
        }
        Field::Hour24 | Field::Hour12 => {
            parts.hour_is_12 = field == Field::Hour12;
            into(&mut parts.hour, 2)?
        }
        Field::Minute => into(&mut parts.minute, 2)?,
        Field::Second => into(&mut parts.second, 2)?,
        Field::SecondsOfDay => into(&mut parts.seconds_of_day, 5)?,
        Field::Milli | Field::Micro => {
            let (width, scale) = if field == Field::Milli { (3, 1_000) } else { (6, 1) };
            let (value, digits, after) = number(width, false)?;
            if digits > width {
                return Err(invalid());
            }
            // A fraction of a second: `.5` with `MS` is 500 ms.
            parts.micros += (value * 10i64.pow((width - digits) as u32) * scale) as u32;
            after
        }
        Field::Meridiem { .. } => {
            let upper = rest.to_ascii_uppercase();
            let (pm, len) = if upper.starts_with("A.M.") {
                (false, 4)
            } else if upper.starts_with("P.M.") {
                (true, 4)
            } else if upper.starts_with("AM") {
                (false, 2)
            } else if upper.starts_with("PM") {
                (true, 2)
            } else {
                return Err(invalid());
            };
            parts.pm = Some(pm);
            &rest[len..]
        }
        Field::TzHours => {
            let (hours, _, after) = number(2, true)?;
            parts.offset_negative = rest.starts_with('-');
            parts.offset_minutes = hours.abs() * 60;
            after
        }
        Field::TzMinutes => {
            let (minutes, _, after) = number(2, false)?;
            parts.offset_minutes += minutes;
            after
        }
        Field::TimeZone { .. } | Field::Offset => {
            return Err(EngineError::FeatureNotSupported {
                message: "formatting field \"TZ\"/\"OF\" is only supported in to_char".into(),
            })
        }
    };
    Ok(left)
}

/// The timestamp the parts name; fields not read are PostgreSQL's defaults (year 1,
/// January, the 1st, midnight).
fn assemble(parts: Parts, text: &str) -> Result<NaiveDateTime, EngineError> {
    let overflow = || EngineError::DatetimeOverflow {
        message: format!("date/time field value out of range: \"{text}\""),
    };
    let year = parts.year.unwrap_or(1);
    let year = i32::try_from(year).map_err(|_| overflow())?;
    let date = match (parts.julian, parts.day_of_year) {
        (Some(julian), _) => {
            NaiveDate::from_num_days_from_ce_opt(i32::try_from(julian - 1_721_425).map_err(|_| overflow())?)
        }
        (None, Some(ordinal)) => NaiveDate::from_yo_opt(year, ordinal),
        (None, None) => NaiveDate::from_ymd_opt(year, parts.month.unwrap_or(1), parts.day.unwrap_or(1)),
    }
    .ok_or_else(overflow)?;
    let mut hour = parts.hour.unwrap_or(0);
    if parts.hour_is_12 || parts.pm.is_some() {
        if !(1..=12).contains(&hour) && parts.hour.is_some() {
            return Err(EngineError::DatetimeOverflow {
                message: format!("hour \"{hour}\" is invalid for the 12-hour clock"),
            });
        }
        hour %= 12;
        if parts.pm == Some(true) {
            hour += 12;
        }
    }
    let (hour, minute, second) = match parts.seconds_of_day {
        Some(s) => (s / 3600, s / 60 % 60, s % 60),
        None => (hour, parts.minute.unwrap_or(0), parts.second.unwrap_or(0)),
    };
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, parts.micros).ok_or_else(overflow)?;
    let at = NaiveDateTime::new(date, time);
    let offset = if parts.offset_negative { -parts.offset_minutes } else { parts.offset_minutes };
    Ok(at - chrono::Duration::minutes(offset))
}

/// Which of the three functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ToChar,
    ToTimestamp,
    ToDate,
}

/// `to_char`, `to_timestamp` or `to_date` with a template, over DataFusion's function
/// of the same name (`fallback`) for every other call (`to_timestamp(1700000000)`,
/// `to_char(x, '%Y')` on a number...).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TemplateFunction {
    kind: Kind,
    fallback: Arc<ScalarUDF>,
    signature: Signature,
}

impl TemplateFunction {
    pub fn new(kind: Kind, fallback: Arc<ScalarUDF>) -> Self {
        Self { kind, fallback, signature: Signature::user_defined(Volatility::Stable) }
    }

    /// Whether a call of these argument types is one of ours: with a template, or
    /// `to_timestamp(seconds)` (PostgreSQL's is a `timestamptz`, with microseconds).
    fn takes(&self, types: &[DataType]) -> bool {
        let text = |t: &DataType| {
            matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
        };
        if let [seconds] = types {
            return self.kind == Kind::ToTimestamp && (seconds.is_numeric() || *seconds == DataType::Null);
        }
        let [value, template] = types else { return false };
        let value_fits = match self.kind {
            Kind::ToChar => matches!(
                value,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null
            ),
            Kind::ToTimestamp | Kind::ToDate => text(value),
        };
        value_fits && text(template)
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ToChar => "to_char",
            Kind::ToTimestamp => "to_timestamp",
            Kind::ToDate => "to_date",
        }
    }
}

impl ScalarUDFImpl for TemplateFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The fallback's (`date_format` for `to_char`): a session state made from this one
    /// registers every function under its name and aliases, so an alias left to the
    /// fallback would bring it back under the name too.
    fn aliases(&self) -> &[String] {
        self.fallback.aliases()
    }

    fn coerce_types(&self, types: &[DataType]) -> DfResult<Vec<DataType>> {
        if !self.takes(types) {
            let fields: Vec<FieldRef> =
                types.iter().map(|t| Arc::new(arrow::datatypes::Field::new("a", t.clone(), true))).collect();
            let coerced = datafusion::logical_expr::type_coercion::functions::fields_with_udf(
                &fields,
                self.fallback.as_ref(),
            )?;
            return Ok(coerced.iter().map(|f| f.data_type().clone()).collect());
        }
        let value = match (self.kind, &types[0]) {
            (Kind::ToChar, DataType::Null) => DataType::Timestamp(TimeUnit::Microsecond, None),
            (Kind::ToChar, other) => other.clone(),
            (Kind::ToTimestamp, _) if types.len() == 1 => return Ok(vec![DataType::Float64]),
            _ => DataType::Utf8,
        };
        Ok(vec![value, DataType::Utf8])
    }

    fn return_type(&self, types: &[DataType]) -> DfResult<DataType> {
        if !self.takes(types) {
            return self.fallback.return_type(types);
        }
        Ok(match self.kind {
            Kind::ToChar => DataType::Utf8,
            Kind::ToTimestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::ToDate => DataType::Date32,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let types: Vec<DataType> = args.arg_fields.iter().map(|f| f.data_type().clone()).collect();
        if !self.takes(&types) {
            return self.fallback.return_field_from_args(args);
        }
        Ok(Arc::new(arrow::datatypes::Field::new(self.name(), self.return_type(&types)?, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(|a| a.data_type()).collect();
        if !self.takes(&types) {
            return self.fallback.invoke_with_args(args);
        }
        let rows = args.number_rows;
        let value = args.args[0].to_array(rows)?;
        let result = match (self.kind, args.args.get(1)) {
            (Kind::ToTimestamp, None) => from_epoch(&value)?,
            (kind, Some(template)) => {
                let templates = arrow::compute::cast(&template.to_array(rows)?, &DataType::Utf8)?;
                let templates = templates.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                match kind {
                    Kind::ToChar => formatted(&value, templates)?,
                    _ => read(kind, &value, templates)?,
                }
            }
            (_, None) => unreachable!("`takes` allows one argument to to_timestamp only"),
        };
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

/// `to_char(timestamps, templates)`; a `timestamptz` prints its zone (UTC) for `TZ`.
fn formatted(value: &ArrayRef, templates: &StringArray) -> DfResult<ArrayRef> {
    let zone = matches!(value.data_type(), DataType::Timestamp(_, Some(_))).then_some("UTC");
    let micros = arrow::compute::cast(value, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = micros.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("cast to timestamp");
    let out: StringArray = micros
        .iter()
        .zip(templates.iter())
        .map(|(at, template)| {
            let at = chrono::DateTime::from_timestamp_micros(at?)?.naive_utc();
            Some(format(at, template?, zone))
        })
        .collect();
    Ok(Arc::new(out))
}

/// `to_timestamp(texts, templates)` (a `timestamptz`) or `to_date` (a `date`).
fn read(kind: Kind, value: &ArrayRef, templates: &StringArray) -> DfResult<ArrayRef> {
    let texts = arrow::compute::cast(value, &DataType::Utf8)?;
    let texts = texts.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
    let mut read = Vec::with_capacity(texts.len());
    for (text, template) in texts.iter().zip(templates.iter()) {
        read.push(match (text, template) {
            (Some(text), Some(template)) => {
                Some(parse(text, template).map_err(EngineError::into_datafusion)?)
            }
            _ => None,
        });
    }
    Ok(if kind == Kind::ToDate {
        let days = read.iter().map(|at| at.map(|at| at.date().num_days_from_ce() - UNIX_EPOCH_FROM_CE));
        Arc::new(Date32Array::from_iter(days))
    } else {
        let micros = read.iter().map(|at| at.map(|at| at.and_utc().timestamp_micros()));
        Arc::new(TimestampMicrosecondArray::from_iter(micros).with_timezone("UTC"))
    })
}

/// `to_timestamp(seconds since 1970)`, to the microsecond.
fn from_epoch(value: &ArrayRef) -> DfResult<ArrayRef> {
    let seconds = arrow::compute::cast(value, &DataType::Float64)?;
    let seconds = seconds.as_any().downcast_ref::<Float64Array>().expect("cast to Float64");
    let mut micros = Vec::with_capacity(seconds.len());
    for s in seconds.iter() {
        micros.push(match s.map(|s| (s, (s * 1e6).round())) {
            Some((s, us)) if !us.is_finite() || us.abs() >= i64::MAX as f64 => {
                return Err(EngineError::DatetimeOverflow {
                    message: format!("timestamp out of range: \"{s}\""),
                }
                .into_datafusion())
            }
            Some((_, us)) => Some(us as i64),
            None => None,
        });
    }
    Ok(Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC")))
}

/// 1970-01-01 (day 0 of a `Date32`) in days from 0001-01-01 (day 1 of chrono's count).
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// Replaces DataFusion's `to_char`, `to_timestamp` and `to_date` with the template-aware
/// ones, each keeping DataFusion's for its other calls.
pub fn register(ctx: &SessionContext) {
    for kind in [Kind::ToChar, Kind::ToTimestamp, Kind::ToDate] {
        if let Ok(fallback) = ctx.udf(kind.name()) {
            ctx.register_udf(ScalarUDF::from(TemplateFunction::new(kind, fallback)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    /// Expected texts from PostgreSQL 15.
    #[test]
    fn formats_as_postgres_formats() {
        let t = at("2023-12-01 15:04:05.123456");
        assert_eq!(format(t, "YYYY-MM-DD HH24:MI:SS", None), "2023-12-01 15:04:05");
        assert_eq!(format(t, "YYYY-MM-DD HH24:MI:SS TZ", None), "2023-12-01 15:04:05 ");
        assert_eq!(format(t, "YYYY-MM-DD HH24:MI:SS TZ", Some("UTC")), "2023-12-01 15:04:05 UTC");
        assert_eq!(format(t, "HH12:MI AM, Day Month DD", None), "03:04 PM, Friday    December  01");
        assert_eq!(format(t, "FMHH12:MI am, FMDay FMMonth FMDDth", None), "3:04 pm, Friday December 1st");
        assert_eq!(format(t, "Dy Mon YY Q DDD D ID IW WW W", None), "Fri Dec 23 4 335 6 5 48 48 1");
        assert_eq!(format(t, "MS US SSSS J", None), "123 123456 54245 2460280");
        assert_eq!(format(t, "\"Week\" IW \\\"YYYY", None), "Week 48 \"2023");
        assert_eq!(format(t, "Y,YYY CC MON mon", None), "2,023 21 DEC dec");
    }

    #[test]
    fn reads_as_postgres_reads() {
        let read = |text: &str, template: &str| parse(text, template).unwrap();
        assert_eq!(read("2023-12-01 00:00:00.000000", "YYYY-MM-DD HH24:MI:SS.US"), at("2023-12-01 00:00:00"));
        assert_eq!(read("2023-12-01 10:20:30.5", "YYYY-MM-DD HH24:MI:SS.MS"), at("2023-12-01 10:20:30.5"));
        assert_eq!(read("20231201", "YYYYMMDD"), at("2023-12-01 00:00:00"));
        assert_eq!(read("  1 Dec 2023", "DD Mon YYYY"), at("2023-12-01 00:00:00"));
        assert_eq!(read("05 March 99 11:30 PM", "DD Month YY HH12:MI AM"), at("1999-03-05 23:30:00"));
        assert_eq!(read("2023/1/5", "YYYY-MM-DD"), at("2023-01-05 00:00:00"));
        assert_eq!(read("2023-12-01 10:00 +02", "YYYY-MM-DD HH24:MI TZH"), at("2023-12-01 08:00:00"));
        assert_eq!(read("2023 335", "YYYY DDD"), at("2023-12-01 00:00:00"));
        assert_eq!(read("2460280", "J"), at("2023-12-01 00:00:00"));
        assert!(matches!(parse("2023-13-01", "YYYY-MM-DD"), Err(EngineError::DatetimeOverflow { .. })));
        assert!(matches!(parse("abcd-12-01", "YYYY-MM-DD"), Err(EngineError::InvalidDatetime { .. })));
        assert!(matches!(parse("2023-02-30", "YYYY-MM-DD"), Err(EngineError::DatetimeOverflow { .. })));
    }
}
