//! The sensitive-data detector: what a text column holds, judged from a sample of its
//! values and from its name, with a confidence.
//!
//! Each value is tested against the kinds below; a column is of the kind most of its
//! values are (at least [`MIN_SHARE`] of them, or [`MIN_SHARE_NAMED`] when its name
//! says so too), with that share (raised a little by a matching name) as confidence.
//!
//! | tag | a value is one when |
//! | --- | --- |
//! | `email` | `local@domain.tld`, with the characters RFC 5322 allows unquoted |
//! | `payment_card` | 12 to 19 digits (spaces or dashes between groups) starting with 2 to 6 (the card networks') and passing Luhn's check |
//! | `phone` | 10 to 15 digits (7 with a `+` or parentheses) with phone punctuation (`+`, spaces, dashes, dots, parentheses), an extension allowed, not a card |
//! | `ip_address` | an IPv4 or IPv6 address |
//! | `national_id` | a US social security number (`123-45-6789`, valid areas), a UK national insurance number (`AB123456C`) or a French NIR (15 digits with its key) |
//! | `person_name` | two to four capitalised words (titles, suffixes and particles aside), or two short words of a script without case |
//! | `free_text` | prose: six words or more, a third of them in lower case (or a sentence in a script without spaces) |
//!
//! A column of name-shaped values is a name column when some of them (15%) hold a
//! common first or last name of a small dictionary: capitalised word pairs are places
//! and products too, but a column of people's names always has some common ones.
//!
//! [`Samples`] runs it on ingest: the engine hands it the rows each committed write
//! brought (COPY, INSERT, UPDATE), and it keeps values of the text columns not yet
//! classified until a column has [`SAMPLE`] of them, or a statement brought
//! [`ENOUGH_AT_ONCE`] at once; then the column is classified, once (its tag, if any,
//! goes into the security catalog, where `tarn_column_tags` shows it and a user may
//! change it). `ANALYZE [table]` classifies what is left from a sample of the table
//! (rows written before, or too few yet). `SET tarn.classify_columns = off` leaves a
//! session's writes out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use tarn_storage::security::SecurityCatalog;
use tarn_storage::TableName;

/// Share of a column's sampled values that must be of a kind for the column to be.
pub const MIN_SHARE: f64 = 0.8;
/// The same when the column's name says it is of the kind.
pub const MIN_SHARE_NAMED: f64 = 0.5;
/// How many values of a column the detector wants before it decides.
pub const SAMPLE: usize = 100;

/// A statement that brings this many values of a column has the column classified
/// from them, without waiting for [`SAMPLE`].
pub const ENOUGH_AT_ONCE: usize = 20;

/// The values of columns waiting to be classified, by table (the engine's, shared by
/// its sessions).
#[derive(Debug, Default)]
pub struct Samples {
    pending: Mutex<HashMap<TableName, BTreeMap<String, Vec<String>>>>,
}

impl Samples {
    /// Takes the values of `table`'s unclassified text columns from `batches` (rows a
    /// write just committed, or a sample `ANALYZE` read: `settle`, decide on what
    /// there is); returns the columns now classified, each with its finding (none:
    /// nothing sensitive), for the caller to record.
    pub fn observe(
        &self,
        security: &SecurityCatalog,
        table: &TableName,
        batches: &[RecordBatch],
        settle: bool,
    ) -> Vec<(String, Option<Finding>)> {
        let Some(schema) = batches.first().map(RecordBatch::schema) else { return Vec::new() };
        let open: Vec<(usize, &str)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            })
            .map(|(i, f)| (i, f.name().as_str()))
            .filter(|(_, name)| !security.classified.contains(&(table.clone(), name.to_string())))
            .collect();
        if open.is_empty() {
            return Vec::new();
        }
        let mut pending = self.pending.lock().expect("samples lock");
        let columns = pending.entry(table.clone()).or_default();
        let mut decided = Vec::new();
        for (i, name) in open {
            let sample = columns.entry(name.to_string()).or_default();
            let mut brought = 0;
            for batch in batches {
                if sample.len() >= SAMPLE {
                    break;
                }
                let column = batch.column(i);
                let mut take = |v: Option<&str>| {
                    if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                        if sample.len() < SAMPLE {
                            sample.push(v.to_string());
                            brought += 1;
                        }
                    }
                };
                match column.data_type() {
                    DataType::Utf8 => column.as_string::<i32>().iter().for_each(&mut take),
                    DataType::LargeUtf8 => column.as_string::<i64>().iter().for_each(&mut take),
                    _ => column.as_string_view().iter().for_each(&mut take),
                }
            }
            if sample.len() >= SAMPLE || brought >= ENOUGH_AT_ONCE || (settle && !sample.is_empty()) {
                let values = columns.remove(name).unwrap_or_default();
                decided.push((name.to_string(), classify(name, values.iter().map(String::as_str))));
            }
        }
        if columns.is_empty() {
            pending.remove(table);
        }
        decided
    }

    /// Forgets what was kept of `table` (dropped).
    pub fn forget(&self, table: &TableName) {
        self.pending.lock().expect("samples lock").remove(table);
    }
}

/// The kinds of data, by tag.
pub const TAGS: [&str; 7] =
    ["email", "payment_card", "phone", "ip_address", "national_id", "person_name", "free_text"];

/// One column's classification.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub tag: &'static str,
    pub confidence: f64,
}

/// The kind of data `values` (a sample of a text column named `column`) are, if any.
pub fn classify<'a>(column: &str, values: impl IntoIterator<Item = &'a str>) -> Option<Finding> {
    let mut counts = [0usize; TAGS.len()];
    let (mut total, mut known_names) = (0usize, 0usize);
    for value in values {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        total += 1;
        if let Some(kind) = kind_of(value) {
            counts[kind] += 1;
            known_names += usize::from(kind == PERSON_NAME && has_known_name(value));
        }
    }
    if total == 0 {
        return None;
    }
    let hinted = name_hint(column);
    let (kind, count) = counts.iter().enumerate().max_by_key(|(_, &c)| c)?;
    let share = *count as f64 / total as f64;
    let named = hinted == Some(kind);
    let needed = if named { MIN_SHARE_NAMED } else { MIN_SHARE };
    if *count == 0 || share < needed {
        return None;
    }
    // Capitalised word pairs are also places, products and teams: a column of names
    // has common names among them (written in a script without case, the shape is
    // enough).
    if kind == PERSON_NAME && !named && (known_names as f64) < MIN_KNOWN_NAMES * *count as f64 {
        return None;
    }
    let confidence = if named { (share + 0.2).min(1.0) } else { share * 0.95 };
    Some(Finding { tag: TAGS[kind], confidence: (confidence * 1000.0).round() / 1000.0 })
}

/// Common given and family names (the files' words; `#` starts a comment line).
static FIRST_NAMES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("detector/first_names.txt")));
static LAST_NAMES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("detector/last_names.txt")));

fn words(text: &'static str) -> HashSet<&'static str> {
    text.lines().filter(|l| !l.starts_with('#')).flat_map(str::split_whitespace).collect()
}

/// [`TAGS`]' index of person names.
const PERSON_NAME: usize = 5;
/// Share of a name column's values with a common first or last name (or in a script
/// without case) for a column not named so.
const MIN_KNOWN_NAMES: f64 = 0.15;

/// The kind (an index into [`TAGS`]) of one value, most specific first.
fn kind_of(value: &str) -> Option<usize> {
    if is_email(value) {
        Some(0)
    } else if is_national_id(value) {
        Some(4)
    } else if is_payment_card(value) {
        Some(1)
    } else if is_ip_address(value) {
        Some(3)
    } else if is_isbn(value) {
        None
    } else if is_phone(value) {
        Some(2)
    } else if is_person_name(value) {
        Some(5)
    } else if is_free_text(value) {
        Some(6)
    } else {
        None
    }
}

/// The kind a column's name suggests, from its words (`customer_email` is `customer`
/// and `email`).
fn name_hint(column: &str) -> Option<usize> {
    let name = column.to_ascii_lowercase();
    let words: Vec<&str> =
        name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let person = ["first", "last", "full", "given", "family", "surname", "firstname", "lastname", "fullname"];
    let whose = ["customer", "person", "patient", "employee", "contact", "author", "user", "owner"];
    if name.contains("email") || name.contains("e_mail") || has(&["mail"]) {
        Some(0)
    } else if name.contains("card") || has(&["ccn", "pan", "cc"]) {
        Some(1)
    } else if name.contains("phone") || has(&["mobile", "tel", "fax", "cell"]) {
        Some(2)
    } else if has(&["ip", "ipv4", "ipv6", "ipaddr", "ipaddress"]) {
        Some(3)
    } else if name.contains("ssn") || has(&["social", "national", "nino", "nin", "passport", "sin"]) {
        Some(4)
    } else if has(&person) || (has(&["name"]) && words.iter().all(|w| *w == "name" || whose.contains(w))) {
        Some(5)
    } else if has(&[
        "comment",
        "comments",
        "note",
        "notes",
        "description",
        "text",
        "body",
        "message",
        "review",
        "bio",
        "feedback",
    ]) {
        Some(6)
    } else {
        None
    }
}

fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-'!#$&*/=?^`{|}~".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// The digits of `value` if it is only digits and the separators in `allowed`.
fn digits_of(value: &str, allowed: &str) -> Option<Vec<u8>> {
    let mut digits = Vec::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '0'..='9' => digits.push(c as u8 - b'0'),
            _ if allowed.contains(c) => {}
            _ => return None,
        }
    }
    Some(digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = d as u32;
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

fn is_payment_card(value: &str) -> bool {
    let Some(digits) = digits_of(value, " -") else { return false };
    // Every network's numbers start with 2 to 6 (Mastercard's 2-series, Amex and
    // Diners 3, Visa 4, Mastercard and Maestro 5, Discover, UnionPay and Maestro 6)
    // and are 12 (Maestro) to 19 digits long.
    (12..=19).contains(&digits.len()) && (2..=6).contains(&digits[0]) && luhn(&digits)
}

fn is_phone(value: &str) -> bool {
    // An extension (`x123`, `ext. 12`) is not part of the number.
    let lower = value.to_ascii_lowercase();
    let marker = lower.find("ext").map(|i| (i, 3)).or_else(|| lower.find('x').map(|i| (i, 1)));
    let value = match marker {
        Some((at, len)) if at > 0 => {
            let extension = lower[at + len..].trim_start_matches('.').trim();
            if extension.is_empty() || !extension.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            lower[..at].trim_end()
        }
        Some(_) => return false,
        None => lower.as_str(),
    };
    let Some(digits) = digits_of(value, "+ -.()") else { return false };
    let punctuated = value.chars().any(|c| "+ -.()".contains(c));
    let plus_first = !value.contains('+') || value.starts_with('+');
    let balanced = value.matches('(').count() == value.matches(')').count();
    // Ten digits or more (area code and number); fewer only with a `+` or an area code
    // in parentheses, so dates (`2024-01-05`) and short codes are not phones.
    let long_enough = (10..=15).contains(&digits.len())
        || ((7..=9).contains(&digits.len()) && (value.starts_with('+') || value.contains('(')));
    long_enough && punctuated && plus_first && balanced && !is_payment_card(value)
}

fn is_ip_address(value: &str) -> bool {
    // Four dotted numbers (IPv4), or a colon form (IPv6) that parses.
    value.len() >= 7 && (value.contains('.') || value.contains(':')) && value.parse::<IpAddr>().is_ok()
}

fn is_national_id(value: &str) -> bool {
    us_ssn(value) || uk_nino(value) || fr_nir(value)
}

/// France's NIR (numéro de sécurité sociale): sex 1 or 2, twelve more digits (year,
/// month, place, order), and a key of 97 minus the first thirteen modulo 97; spaces
/// allowed. Corsica's départements 2A and 2B count as 19 and 18.
fn fr_nir(value: &str) -> bool {
    let compact: String = value.chars().filter(|c| *c != ' ').collect::<String>().to_ascii_uppercase();
    if compact.len() != 15 || !matches!(compact.as_bytes()[0], b'1' | b'2') {
        return false;
    }
    let body = compact[..13].replace("2A", "19").replace("2B", "18");
    let (Ok(body), Ok(key)) = (body.parse::<u64>(), compact[13..].parse::<u64>()) else { return false };
    key == 97 - body % 97
}

/// `AAA-GG-SSSS`: area not 000, 666 nor 900-999; group and serial not zero.
fn us_ssn(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let [area, group, serial] = parts.as_slice() else { return false };
    let numeric = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(numeric(area, 3) && numeric(group, 2) && numeric(serial, 4)) {
        return false;
    }
    let area: u32 = area.parse().unwrap_or(0);
    area != 0 && area != 666 && area < 900 && *group != "00" && *serial != "0000"
}

/// Two prefix letters (not D, F, I, Q, U, V; the second not O), six digits, a suffix
/// A to D; spaces between pairs allowed.
fn uk_nino(value: &str) -> bool {
    let compact: Vec<char> = value.chars().filter(|c| *c != ' ').collect();
    if compact.len() != 9 {
        return false;
    }
    let first_ok = |c: char| c.is_ascii_uppercase() && !"DFIQUV".contains(c);
    compact[0..2].iter().all(|&c| first_ok(c))
        && compact[1] != 'O'
        && compact[2..8].iter().all(char::is_ascii_digit)
        && ('A'..='D').contains(&compact[8])
}

/// Titles and suffixes around a name (`Dr.`, `Mrs.`, `MD`, `Jr.`), in several languages.
const NAME_AFFIXES: &[&str] = &[
    "dr", "mr", "mrs", "ms", "miss", "mx", "prof", "sir", "herr", "frau", "m", "mme", "mlle", "sr", "sra",
    "srta", "dott", "sig", "md", "phd", "dds", "dvm", "jr", "ii", "iii", "iv", "ing", "dipl", "univ", "bsc",
    "msc", "ba", "ma", "beng", "meng", "mba", "dipling", "univprof", "profdr",
];

/// Particles of family names, written in lower case (`van`, `de la`).
const NAME_PARTICLES: &[&str] =
    &["da", "de", "del", "della", "der", "di", "du", "la", "le", "van", "von", "y", "zu"];

/// Two to four words (titles and suffixes aside) that are each capitalised letters
/// (hyphens, apostrophes and particles allowed), or two words of one to four
/// characters of a script without case (`坂本 拓真`).
fn is_person_name(value: &str) -> bool {
    let words: Vec<&str> = value
        .split_whitespace()
        .filter(|w| !NAME_AFFIXES.contains(&w.replace(['.', '-'], "").to_lowercase().as_str()))
        .collect();
    if !(2..=4).contains(&words.len()) {
        return false;
    }
    let caseless = |w: &str| {
        (1..=4).contains(&w.chars().count())
            && w.chars().all(|c| c.is_alphabetic() && !c.is_uppercase() && !c.is_lowercase())
    };
    if words.len() == 2 && words.iter().all(|w| caseless(w)) {
        return true;
    }
    let capitalised = |w: &str| {
        let mut chars = w.chars();
        chars.next().is_some_and(char::is_uppercase)
            && chars.all(|c| c.is_alphabetic() || c == '\'' || c == '-')
    };
    let particle = |w: &str| NAME_PARTICLES.contains(&w);
    words.iter().all(|w| capitalised(w) || particle(w))
        && words.iter().filter(|w| capitalised(w)).count() >= 2
}

/// Whether a name-shaped value holds a common first or last name, or is in a script
/// without case.
fn has_known_name(value: &str) -> bool {
    value.split_whitespace().any(|w| {
        let lower = w.trim_end_matches('.').to_lowercase();
        FIRST_NAMES.contains(lower.as_str())
            || LAST_NAMES.contains(lower.as_str())
            || w.chars().all(|c| c.is_alphabetic() && !c.is_uppercase() && !c.is_lowercase())
    })
}

/// Prose: six words or more, a third of them in lower case at least (an address or
/// a title is capitalised, German prose is not all); or, in a script without spaces, twenty characters or more with a
/// sentence's punctuation.
fn is_free_text(value: &str) -> bool {
    let words: Vec<&str> = value.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).collect();
    let lower = words.iter().filter(|w| w.chars().next().is_some_and(char::is_lowercase)).count();
    let prose = words.len() >= 6 && lower * 3 >= words.len();
    let unspaced = value.chars().count() >= 20 && value.contains(['。', '、', '！', '？']);
    prose || unspaced
}

/// An ISBN-13 (978 or 979, with its check digit): a book, not a phone.
fn is_isbn(value: &str) -> bool {
    let Some(digits) = digits_of(value, "- ") else { return false };
    if digits.len() != 13 || digits[..3] != [9, 7, 8] && digits[..3] != [9, 7, 9] {
        return false;
    }
    let sum: u32 = digits.iter().enumerate().map(|(i, &d)| d as u32 * if i % 2 == 0 { 1 } else { 3 }).sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_are_lower_case_words() {
        for name in FIRST_NAMES.iter().chain(LAST_NAMES.iter()) {
            assert!(name.chars().all(char::is_lowercase), "{name}");
        }
        assert!(FIRST_NAMES.contains("maria") && LAST_NAMES.contains("müller"));
    }

    #[test]
    fn values_are_told_apart() {
        assert_eq!(kind_of("jane.doe+news@example.co.uk"), Some(0));
        assert_eq!(kind_of("4111 1111 1111 1111"), Some(1));
        assert_eq!(kind_of("4111 1111 1111 1112"), None, "fails Luhn");
        assert_eq!(kind_of("+1 (415) 555-0134"), Some(2));
        assert_eq!(kind_of("10.0.12.7"), Some(3));
        assert_eq!(kind_of("2001:db8::1"), Some(3));
        assert_eq!(kind_of("123-45-6789"), Some(4));
        assert_ne!(kind_of("666-45-6789"), Some(4), "area 666 is never issued");
        assert_eq!(kind_of("QQ123456C"), None);
        assert_eq!(kind_of("AB 12 34 56 C"), Some(4));
        assert_eq!(kind_of("2 84 12 76 451 089 93"), Some(4));
        assert_ne!(kind_of("2 84 12 76 451 089 94"), Some(4));
        assert_eq!(kind_of("(415) 555-0134 ext. 12"), Some(2));
        assert_eq!(kind_of("217-977-6317x066"), Some(2));
        assert_eq!(kind_of("30439150008062"), Some(1));
        assert_eq!(kind_of("Maria Garcia"), Some(5));
        assert_eq!(kind_of("Dr. Anna-Lena van der Berg"), Some(5));
        assert_eq!(kind_of("坂本 拓真"), Some(5));
        assert_eq!(kind_of("978-0-306-40615-7"), None, "an ISBN, not a phone");
        assert_eq!(kind_of("Flat 5, Smith Street, London W1 2AB"), None);
        assert_eq!(kind_of("the parcel arrived two days late and damaged"), Some(6));
        assert_eq!(kind_of("2024-01-05"), None);
        assert_eq!(kind_of("SKU-1234-XL"), None);
    }

    #[test]
    fn a_column_needs_most_of_its_values_unless_its_name_agrees() {
        let mixed = ["a@b.io", "c@d.io", "e@f.io", "nothing", "none", "n/a"];
        assert_eq!(classify("contact_info", mixed), None);
        let found = classify("email", mixed).expect("named");
        assert_eq!(found.tag, "email");
        assert!((found.confidence - 0.7).abs() < 1e-9);
        assert_eq!(classify("x", ["1.2.3.4", "10.0.0.1"]).map(|f| f.tag), Some("ip_address"));
        assert_eq!(classify("x", [" ", ""]), None);
        // Name-shaped products are not names; names are, some of them common.
        let products = ["Blue Widget", "Desk Lamp", "Trail Shoes", "Yoga Mat", "Phone Case"];
        assert_eq!(classify("item", products), None);
        let people = ["Maria Okafor", "Tomasz Lindqvist", "Ngozi Haddad", "Kwame Rossi", "Ingrid Tanaka"];
        assert_eq!(classify("x", people).map(|f| f.tag), Some("person_name"));
    }
}
