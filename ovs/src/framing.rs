//! Streaming JSON splitter: OVSDB sends JSON texts back to back with no delimiter, and a
//! socket read may hold half an object or several; lines mean nothing.

/// Largest message accepted before the stream is declared broken.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Cuts a byte stream into complete top-level JSON objects or arrays by tracking nesting
/// depth, strings and escapes. It does not validate JSON; the parser does that.
#[derive(Debug, Default)]
pub struct JsonSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    scanned: usize,
    /// Start of the current object in `buf`, if inside one.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escape: bool,
}

/// Why the splitter gave up on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A byte outside any object that cannot start one.
    Garbage(u8),
    /// An object grew beyond [`MAX_MESSAGE`].
    TooLarge(usize),
    /// A closing bracket without an opening one.
    Unbalanced,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Garbage(b) => write!(f, "unexpected byte {b:#04x} between messages"),
            SplitError::TooLarge(n) => write!(f, "message larger than {n} bytes"),
            SplitError::Unbalanced => write!(f, "closing bracket without an opening one"),
        }
    }
}

impl JsonSplitter {
    /// A splitter with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when bytes of an unfinished object are buffered (a close now truncates it).
    pub fn has_partial(&self) -> bool {
        self.start.is_some()
    }

    /// Appends `data` and returns every object completed by it, in order.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, SplitError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            match self.start {
                None => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => consumed = i + 1,
                    b'{' | b'[' => {
                        self.start = Some(i);
                        self.depth = 1;
                    }
                    other => return Err(SplitError::Garbage(other)),
                },
                Some(start) => {
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                        } else if b == b'\\' {
                            self.escape = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        } else {
                            // Strings are most of OVSDB's bytes (uuids, names): jump to the
                            // next quote or backslash instead of stepping through them.
                            match memchr::memchr2(b'"', b'\\', &self.buf[i..]) {
                                Some(k) => i += k,
                                None => i = self.buf.len(),
                            }
                            if i - start > MAX_MESSAGE {
                                return Err(SplitError::TooLarge(MAX_MESSAGE));
                            }
                            continue;
                        }
                    } else {
                        match b {
                            b'"' => self.in_string = true,
                            b'{' | b'[' => self.depth += 1,
                            b'}' | b']' => {
                                self.depth =
                                    self.depth.checked_sub(1).ok_or(SplitError::Unbalanced)?;
                                if self.depth == 0 {
                                    out.push(self.buf[start..=i].to_vec());
                                    self.start = None;
                                    consumed = i + 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    if let Some(start) = self.start {
                        if i + 1 - start > MAX_MESSAGE {
                            return Err(SplitError::TooLarge(MAX_MESSAGE));
                        }
                    }
                }
            }
            i += 1;
        }
        self.buf.drain(..consumed);
        self.scanned = self.buf.len();
        if let Some(start) = self.start.as_mut() {
            *start -= consumed;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = JsonSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            for m in s.push(c).unwrap() {
                out.push(String::from_utf8(m).unwrap());
            }
        }
        out
    }

    #[test]
    fn several_objects_in_one_read() {
        let got = all(&[br#"{"a":1}{"b":[2,3]} {"c":{}}"#]);
        assert_eq!(got, vec![r#"{"a":1}"#, r#"{"b":[2,3]}"#, r#"{"c":{}}"#]);
    }

    #[test]
    fn object_split_across_reads_at_every_byte() {
        let msg = br#"{"id":7,"result":[{"rows":[{"name":"a{b}c\"}"}]}],"error":null}"#;
        for cut in 1..msg.len() {
            let got = all(&[&msg[..cut], &msg[cut..]]);
            assert_eq!(
                got,
                vec![String::from_utf8(msg.to_vec()).unwrap()],
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(all(&bytes).len(), 1);
    }

    #[test]
    fn strings_with_braces_and_escapes() {
        let got = all(&[br#"{"s":"}}}]]\\"}{"t":"\"{\\\"["}"#]);
        assert_eq!(got, vec![r#"{"s":"}}}]]\\"}"#, r#"{"t":"\"{\\\"["}"#]);
        for m in &got {
            serde_json::from_str::<serde_json::Value>(m).unwrap();
        }
    }

    #[test]
    fn escaped_backslash_before_quote_split_between_reads() {
        let got = all(&[br#"{"s":"a\"#, br#"\"}"#, br#"{"x":1}"#]);
        assert_eq!(got, vec![r#"{"s":"a\\"}"#, r#"{"x":1}"#]);
    }

    #[test]
    fn partial_is_reported() {
        let mut s = JsonSplitter::new();
        assert!(s.push(br#"{"id":1,"res"#).unwrap().is_empty());
        assert!(s.has_partial());
        assert_eq!(s.push(br#"ult":2}"#).unwrap().len(), 1);
        assert!(!s.has_partial());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut s = JsonSplitter::new();
        assert_eq!(s.push(b"hello"), Err(SplitError::Garbage(b'h')));
        let mut s = JsonSplitter::new();
        assert_eq!(s.push(b"{}}"), Err(SplitError::Garbage(b'}')));
    }

    #[test]
    fn unicode_passes_through() {
        let got = all(&["{\"n\":\"ü{\"}".as_bytes()]);
        assert_eq!(got, vec!["{\"n\":\"ü{\"}"]);
    }
}
