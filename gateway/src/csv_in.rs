//! Reading CSV that comes from outside (RFC 4180, read leniently): providers' reports for
//! reconciliation and customer lists for the billing import. The bytes are
//! untrusted: nothing here panics, and a record that cannot be read is returned as an
//! error for that record alone, with its line number, so the records around it are still
//! read.
//!
//! What it accepts: a UTF-8 byte order mark; `\n` or `\r\n` line ends; `,`, `;` or tab as
//! the delimiter (whichever the header line has most of, outside quotes); fields in double
//! quotes with `""` for a quote and line breaks inside; a stray `"` inside an unquoted
//! field taken as text. Blank lines are skipped. What it refuses, per record: text after a
//! closing quote, a quote left open at the end of the input, bytes that are not UTF-8, and
//! more than [`MAX_FIELDS`] fields.

/// Fields per record at most: a report has a few dozen columns, a customer list ten.
pub const MAX_FIELDS: usize = 512;

/// One record: the line it starts on (the first line is 1) and its fields, or why it
/// could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: u64,
    pub fields: Result<Vec<String>, String>,
}

/// Every record of `bytes`, the header first, in order.
pub fn read(bytes: &[u8]) -> Vec<Record> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let delimiter = sniff_delimiter(bytes);
    let mut reader = Reader {
        bytes,
        at: 0,
        line: 1,
        delimiter,
    };
    let mut records = Vec::new();
    while reader.at < reader.bytes.len() {
        let line = reader.line;
        let fields = reader.record();
        let blank = matches!(&fields, Ok(f) if f.len() == 1 && f[0].is_empty());
        if !blank {
            records.push(Record {
                line,
                fields: fields.and_then(|raw| {
                    raw.into_iter()
                        .map(|f| String::from_utf8(f).map_err(|_| "the line is not UTF-8".into()))
                        .collect()
                }),
            });
        }
    }
    records
}

/// The delimiter the first line uses most, outside quotes; `,` when it has none.
fn sniff_delimiter(bytes: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    // The first of the most frequent, so a tie (or none at all) is a comma.
    let mut best = (b',', counts[0]);
    for (delimiter, count) in [(b';', counts[1]), (b'\t', counts[2])] {
        if count > best.1 {
            best = (delimiter, count);
        }
    }
    best.0
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
    delimiter: u8,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Reads one record; on an error, skips to the end of the line it happened on.
    fn record(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let mut fields = Vec::new();
        loop {
            if fields.len() >= MAX_FIELDS {
                self.skip_line();
                return Err(format!("more than {MAX_FIELDS} fields"));
            }
            let field = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.unquoted()
            };
            fields.push(field);
            match self.peek() {
                Some(b) if b == self.delimiter => self.at += 1,
                Some(b'\n') => {
                    self.at += 1;
                    self.line += 1;
                    return Ok(fields);
                }
                None => return Ok(fields),
                Some(_) => {
                    self.skip_line();
                    return Err("text after a closing quote".into());
                }
            }
        }
    }

    /// Up to the delimiter or the line end (without its `\r`).
    fn unquoted(&mut self) -> Vec<u8> {
        let start = self.at;
        while let Some(b) = self.peek() {
            if b == self.delimiter || b == b'\n' {
                break;
            }
            self.at += 1;
        }
        let mut field = &self.bytes[start..self.at];
        if self.peek() != Some(self.delimiter) {
            field = field.strip_suffix(b"\r").unwrap_or(field);
        }
        field.to_vec()
    }

    /// From the opening quote to the closing one; `""` is a quote. Leaves `at` after the
    /// closing quote (and a `\r` that ends the line).
    fn quoted(&mut self) -> Result<Vec<u8>, String> {
        self.at += 1;
        let mut field = Vec::new();
        loop {
            match self.peek() {
                None => return Err("a quoted field is not closed".into()),
                Some(b'"') => {
                    if self.bytes.get(self.at + 1) == Some(&b'"') {
                        field.push(b'"');
                        self.at += 2;
                    } else {
                        self.at += 1;
                        if self.peek() == Some(b'\r') && self.bytes.get(self.at + 1) == Some(&b'\n')
                        {
                            self.at += 1;
                        }
                        return Ok(field);
                    }
                }
                Some(b) => {
                    if b == b'\n' {
                        self.line += 1;
                    }
                    field.push(b);
                    self.at += 1;
                }
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.peek() {
            self.at += 1;
            if b == b'\n' {
                self.line += 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(text: &str) -> Vec<Result<Vec<String>, String>> {
        read(text.as_bytes())
            .into_iter()
            .map(|r| r.fields)
            .collect()
    }

    fn ok(values: &[&str]) -> Result<Vec<String>, String> {
        Ok(values.iter().map(|v| v.to_string()).collect())
    }

    #[test]
    fn reads_quotes_escapes_and_line_ends() {
        let text = "\u{feff}a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n\n2,,\n";
        assert_eq!(
            fields(text),
            vec![
                ok(&["a", "b", "c"]),
                ok(&["1", "x, y", "say \"hi\""]),
                ok(&["2", "", ""])
            ]
        );
    }

    #[test]
    fn counts_lines_across_quoted_line_breaks() {
        let records = read(b"h1,h2\n\"two\nlines\",x\nlast,y");
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 2, 4]);
        assert_eq!(records[1].fields, ok(&["two\nlines", "x"]));
    }

    #[test]
    fn takes_the_delimiter_the_header_uses() {
        assert_eq!(fields("a;b\n1;2"), vec![ok(&["a", "b"]), ok(&["1", "2"])]);
        assert_eq!(fields("a\tb\n1\t2"), vec![ok(&["a", "b"]), ok(&["1", "2"])]);
    }

    #[test]
    fn a_bad_record_fails_alone() {
        let records = read(b"a,b\n\"x\"y,1\n2,3\n\xff,4\n5,6\n\"open,7");
        let got: Vec<(u64, bool)> = records.iter().map(|r| (r.line, r.fields.is_ok())).collect();
        assert_eq!(
            got,
            vec![
                (1, true),
                (2, false),
                (3, true),
                (4, false),
                (5, true),
                (6, false)
            ]
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let records = read(&bytes);
            // Lines only go forward.
            prop_assert!(records.windows(2).all(|w| w[0].line < w[1].line));
        }

        #[test]
        fn random_rows_never_panic(rows in prop::collection::vec(
            prop::collection::vec("[a-z0-9,;\"\t\r\n .-]{0,12}", 0..8), 0..24)) {
            let text: String = rows.iter().map(|r| r.join(",")).collect::<Vec<_>>().join("\n");
            let _ = read(text.as_bytes());
        }

        /// What `csv_out` writes (the import's own files, the customer export), read back:
        /// the same values, formulas defused as written.
        #[test]
        fn rows_written_by_csv_out_read_back(
            rows in prop::collection::vec(
                prop::collection::vec("[ -~\r\n\tàé€]{0,12}", 2..6), 1..12),
            crlf in any::<bool>(),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("\u{feff}h1,h2{end}");
            for row in &rows {
                let line: Vec<String> = row.iter().map(|v| crate::csv_out::field(v)).collect();
                text.push_str(&line.join(","));
                text.push_str(end);
            }
            let records = read(text.as_bytes());
            prop_assert_eq!(records.len(), rows.len() + 1);
            for (record, row) in records[1..].iter().zip(&rows) {
                let expected: Vec<String> =
                    row.iter().map(|v| crate::csv_out::defuse(v).into_owned()).collect();
                prop_assert_eq!(&record.fields, &Ok(expected));
            }
        }

        #[test]
        fn quoted_fields_round_trip(values in prop::collection::vec("[ -~\n]{0,16}", 1..8)) {
            let line: Vec<String> = values.iter().map(|v| format!("\"{}\"", v.replace('"', "\"\""))).collect();
            // A leading plain field: a record of one empty field is a blank line, skipped.
            let text = format!("h\nk,{}\n", line.join(","));
            let records = read(text.as_bytes());
            prop_assert_eq!(records.len(), 2);
            let mut expected = vec!["k".to_string()];
            expected.extend(values.iter().cloned());
            prop_assert_eq!(&records[1].fields, &Ok(expected));
        }
    }
}
