//! Splits an import file into records as its chunks arrive, without holding the file:
//! a top-level JSON array of objects (Auth0's bulk-import format) or NDJSON (one
//! record a line, Auth0's export format). Each record comes with the line it starts
//! on, for the job's error report. Memory is bounded by the largest record allowed.

/// One piece of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A record's text (not yet parsed).
    Record { line: u64, text: Vec<u8> },
    /// Something that cannot be a record (too large, cut off, or stray text).
    Bad {
        line: u64,
        text: Vec<u8>,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace (or a byte-order mark) seen yet.
    Start,
    /// Inside a top-level `[ … ]`.
    Array,
    /// After the array's closing `]`.
    AfterArray,
    /// One record a line.
    Lines,
}

/// The splitter's state between chunks.
#[derive(Debug)]
pub struct Splitter {
    mode: Mode,
    max_record: usize,
    /// The current line, from 1.
    line: u64,
    /// The record being read (array mode: `Some` between its first and last byte).
    record: Vec<u8>,
    in_record: bool,
    record_line: u64,
    overflow: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    bom: usize,
}

impl Splitter {
    /// A splitter refusing records larger than `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        Self {
            mode: Mode::Start,
            max_record,
            line: 1,
            record: Vec::new(),
            in_record: false,
            record_line: 1,
            overflow: false,
            depth: 0,
            in_string: false,
            escaped: false,
            bom: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        if self.record.len() < self.max_record {
            self.record.push(byte);
        } else {
            self.overflow = true;
        }
    }

    fn start(&mut self) {
        self.in_record = true;
        self.record_line = self.line;
        self.record.clear();
        self.overflow = false;
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
    }

    fn end(&mut self, out: &mut Vec<Piece>) {
        self.in_record = false;
        let text = std::mem::take(&mut self.record);
        let line = self.record_line;
        if self.overflow {
            out.push(Piece::Bad {
                line,
                text: text[..text.len().min(256)].to_vec(),
                message: format!("The record is larger than {} bytes.", self.max_record),
            });
        } else if !text.iter().all(u8::is_ascii_whitespace) {
            out.push(Piece::Record { line, text });
        }
    }

    /// Feeds the next bytes; complete pieces are appended to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Piece>) {
        for &byte in data {
            // A UTF-8 byte-order mark before anything else is not content.
            if self.mode == Mode::Start && self.bom < 3 && byte == [0xEF, 0xBB, 0xBF][self.bom] {
                self.bom += 1;
                continue;
            }
            match self.mode {
                Mode::Start => {
                    if byte == b'\n' {
                        self.line += 1;
                    } else if byte.is_ascii_whitespace() {
                    } else if byte == b'[' {
                        self.mode = Mode::Array;
                    } else {
                        self.mode = Mode::Lines;
                        self.start();
                        self.push(byte);
                    }
                }
                Mode::Lines => {
                    if byte == b'\n' {
                        if self.in_record {
                            self.end(out);
                        }
                        self.line += 1;
                    } else {
                        if !self.in_record {
                            self.start();
                        }
                        self.push(byte);
                    }
                }
                Mode::Array => self.array_byte(byte, out),
                Mode::AfterArray => {
                    if byte == b'\n' {
                        self.line += 1;
                    } else if !byte.is_ascii_whitespace() {
                        self.start();
                        self.push(byte);
                        self.mode = Mode::Lines;
                    }
                }
            }
        }
    }

    fn array_byte(&mut self, byte: u8, out: &mut Vec<Piece>) {
        if !self.in_record {
            match byte {
                b'\n' => self.line += 1,
                b',' => {}
                b']' => self.mode = Mode::AfterArray,
                b if b.is_ascii_whitespace() => {}
                _ => {
                    self.start();
                    self.scan(byte, out);
                }
            }
            return;
        }
        self.scan(byte, out);
    }

    /// One byte of a record inside the array: strings and nesting decide where it ends.
    fn scan(&mut self, byte: u8, out: &mut Vec<Piece>) {
        if byte == b'\n' {
            self.line += 1;
        }
        if self.in_string {
            self.push(byte);
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            }
            return;
        }
        match byte {
            b'"' => {
                self.in_string = true;
                self.push(byte);
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.push(byte);
            }
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                self.push(byte);
                if self.depth == 0 {
                    self.end(out);
                }
            }
            // A scalar or a stray closing bracket at the top: ends at the separator.
            b',' if self.depth == 0 => self.end(out),
            b']' => {
                self.end(out);
                self.mode = Mode::AfterArray;
            }
            _ => self.push(byte),
        }
    }

    /// The end of the file: whatever is left over.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if self.in_record {
            if self.mode == Mode::Array {
                let text = std::mem::take(&mut self.record);
                self.in_record = false;
                out.push(Piece::Bad {
                    line: self.record_line,
                    text: text[..text.len().min(256)].to_vec(),
                    message: "The file ends inside this record.".into(),
                });
            } else {
                self.end(out);
            }
        } else if self.mode == Mode::Array {
            out.push(Piece::Bad {
                line: self.line,
                text: Vec::new(),
                message: "The file ends before the array's closing ']'.".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, chunk: usize) -> Vec<Piece> {
        let mut splitter = Splitter::new(64);
        let mut out = Vec::new();
        for part in text.as_bytes().chunks(chunk.max(1)) {
            splitter.feed(part, &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    fn record(line: u64, text: &str) -> Piece {
        Piece::Record {
            line,
            text: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn arrays_split_into_objects_with_their_lines_whatever_the_chunking() {
        let text = "[\n  {\"a\": \"x,}]\\\"\"},\n  {\"b\": [1, {\"c\": 2}]}\n,{\"d\":\n1}\n]\n";
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                split(text, chunk),
                vec![
                    record(2, "{\"a\": \"x,}]\\\"\"}"),
                    record(3, "{\"b\": [1, {\"c\": 2}]}"),
                    record(4, "{\"d\":\n1}"),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn ndjson_splits_on_lines_and_skips_blank_ones() {
        let text = "\u{feff}{\"a\":1}\n\n{\"b\":2}\r\nnot json\n{\"c\":3}";
        assert_eq!(
            split(text, 3),
            vec![
                record(1, "{\"a\":1}"),
                record(3, "{\"b\":2}\r"),
                record(4, "not json"),
                record(5, "{\"c\":3}"),
            ]
        );
    }

    #[test]
    fn oversized_and_cut_off_records_are_reported_not_kept() {
        let big = format!(
            "[{{\"a\": \"{}\"}}, {{\"b\": 1}}, {{\"c\": ",
            "x".repeat(100)
        );
        let pieces = split(&big, 5);
        assert!(
            matches!(&pieces[0], Piece::Bad { line: 1, message, .. } if message.contains("larger"))
        );
        assert_eq!(pieces[1], record(1, "{\"b\": 1}"));
        assert!(
            matches!(&pieces[2], Piece::Bad { message, .. } if message.contains("ends inside"))
        );
        let lines = format!("{{\"a\": \"{}\"}}\n{{\"b\":1}}\n", "y".repeat(100));
        let pieces = split(&lines, 4);
        assert!(matches!(&pieces[0], Piece::Bad { line: 1, .. }));
        assert_eq!(pieces[1], record(2, "{\"b\":1}"));
    }

    #[test]
    fn an_unclosed_array_is_reported() {
        let pieces = split("[{\"a\":1},", 2);
        assert_eq!(pieces[0], record(1, "{\"a\":1}"));
        assert!(matches!(&pieces[1], Piece::Bad { message, .. } if message.contains("closing")));
        assert!(split("[]", 1).is_empty());
    }
}
