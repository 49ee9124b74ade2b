//! A RON reader that keeps the position of every value.
//!
//! Why by hand: the `ron` crate reports positions only for syntax errors; once a file has
//! parsed, values carry no spans, yet validation must point at the exact key or value that
//! is wrong (`file:line:col`). This reader covers the RON a graph file uses: structs
//! `Name(field: v)` and `(field: v)`, tuples `(a, b)`, lists `[..]`, maps `{k: v}`, strings
//! (with escapes and raw strings), numbers, booleans, identifiers (enum variants),
//! `Some(v)`/`None`, line and block comments, and trailing commas.

use std::fmt;

/// Byte range in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    /// The value.
    pub value: RonValue,
    /// Its position.
    pub span: Span,
}

/// A key inside a struct or map, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// Field name, or the map key rendered as text.
    pub name: String,
    /// Position of the key.
    pub span: Span,
}

/// A parsed RON value.
#[derive(Clone, Debug, PartialEq)]
pub enum RonValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A floating point literal.
    Float(f64),
    /// A string literal.
    Str(String),
    /// A bare identifier: an enum variant or unit struct name.
    Ident(String),
    /// `[a, b]`.
    List(Vec<Spanned>),
    /// `(a, b)` or `Name(a, b)`.
    Tuple(Option<String>, Vec<Spanned>),
    /// `(k: v)` or `Name(k: v)` (struct), or `{k: v}` (map; name `None`, `is_map` true).
    Struct {
        /// Struct name when written.
        name: Option<String>,
        /// Whether written with braces as a map.
        is_map: bool,
        /// Fields in order.
        fields: Vec<(Key, Spanned)>,
    },
    /// `None`.
    None,
    /// `Some(v)`.
    Some(Box<Spanned>),
    /// `()`.
    Unit,
}

/// A syntax error with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}

impl SyntaxError {
    /// Whether the value nests deeper than [`MAX_DEPTH`] (not a mere typo: callers that
    /// fall back to reading text as a plain string must still refuse it).
    pub fn is_too_deep(&self) -> bool {
        self.message.starts_with(TOO_DEEP)
    }
}

const TOO_DEEP: &str = "nesting too deep";

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Spanned {
    /// The fields of a struct or map value.
    pub fn fields(&self) -> Option<&[(Key, Spanned)]> {
        match &self.value {
            RonValue::Struct { fields, .. } => Some(fields),
            RonValue::Unit => Some(&[]),
            _ => None,
        }
    }

    /// The value of a field of a struct or map.
    pub fn get(&self, name: &str) -> Option<&Spanned> {
        self.fields()?
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    /// The string content when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            RonValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Follow a path of field names / list indices to a nested value.
    pub fn find(&self, path: &[String]) -> Option<&Spanned> {
        let mut cur = self;
        for seg in path {
            cur = match &cur.value {
                RonValue::Struct { fields, .. } => fields
                    .iter()
                    .find(|(k, _)| &k.name == seg)
                    .map(|(_, v)| v)?,
                RonValue::List(items) | RonValue::Tuple(_, items) => {
                    items.get(seg.parse::<usize>().ok()?)?
                }
                RonValue::Some(inner) => inner.find(std::slice::from_ref(seg))?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Convert to JSON for typed deserialization: structs and maps become objects,
    /// tuples and lists arrays, identifiers strings (unit enum variants), `None` null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            RonValue::Bool(b) => J::Bool(*b),
            RonValue::Int(i) => J::from(*i),
            RonValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            RonValue::Str(s) | RonValue::Ident(s) => J::String(s.clone()),
            RonValue::List(items) | RonValue::Tuple(None, items) => {
                J::Array(items.iter().map(Spanned::to_json).collect())
            }
            RonValue::Tuple(Some(name), items) => {
                let inner = if items.len() == 1 {
                    items[0].to_json()
                } else {
                    J::Array(items.iter().map(Spanned::to_json).collect())
                };
                let mut m = serde_json::Map::new();
                m.insert(name.clone(), inner);
                J::Object(m)
            }
            RonValue::Struct { fields, .. } => J::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
            RonValue::None | RonValue::Unit => J::Null,
            RonValue::Some(v) => v.to_json(),
        }
    }
}

/// Deepest nesting of lists, maps, structs, tuples and `Some(..)` a value may have.
/// The reader (and every walk over a parsed value) recurses once per level, so without
/// a limit 10,000 `[` overflow the stack and abort the process; graphs need a handful.
pub const MAX_DEPTH: usize = 128;

/// The UTF-8 byte order mark some editors write at the start of a file.
const BOM: char = '\u{feff}';

/// Parse one RON value filling the whole text (comments and whitespace around allowed).
/// A leading byte order mark is skipped; spans stay offsets into `src`.
pub fn parse(src: &str) -> Result<Spanned, SyntaxError> {
    let mut p = Parser {
        src,
        bytes: src.as_bytes(),
        pos: if src.starts_with(BOM) {
            BOM.len_utf8()
        } else {
            0
        },
        depth: 0,
    };
    let v = p.value()?;
    p.skip_ws()?;
    if p.pos < p.bytes.len() {
        return Err(p.err_here("unexpected text after the end of the value"));
    }
    Ok(v)
}

/// Line and column (both 1-based, column in characters) of a byte offset. An offset
/// inside a multi-byte character counts as that character; a leading byte order mark is
/// not a column.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(src, offset);
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = match before.rfind('\n') {
        Some(i) => i + 1,
        None if src.starts_with(BOM) => BOM.len_utf8().min(offset),
        None => 0,
    };
    let col = src[line_start..offset].chars().count() + 1;
    (line, col)
}

/// The largest char boundary at or before `i` (clamped to the text), so that a span from
/// anywhere can slice user text without panicking.
pub fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary at or after `i` (clamped to the text).
pub fn ceil_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Open lists, maps, structs, tuples and `Some(` around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    /// An error spanning the character at the current position (all of its bytes, so a
    /// diagnostic can print it even when it is not ASCII, e.g. a smart quote).
    fn err_here(&self, message: &str) -> SyntaxError {
        let end = match self.src.get(self.pos..).and_then(|r| r.chars().next()) {
            Some(c) => self.pos + c.len_utf8(),
            None => self.pos,
        };
        SyntaxError {
            message: message.to_string(),
            span: Span {
                start: self.pos,
                end,
            },
        }
    }

    /// Enter one nesting level at the opening bracket under the cursor; refused past
    /// [`MAX_DEPTH`].
    fn descend(&mut self) -> Result<(), SyntaxError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err_here(&format!(
                "{TOO_DEEP}: more than {MAX_DEPTH} levels of lists, maps, structs or tuples"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                    while let Some(b) = self.peek() {
                        if b == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    self.pos += 2;
                    let mut depth = 1;
                    while depth > 0 {
                        match (self.peek(), self.bytes.get(self.pos + 1)) {
                            (None, _) => {
                                return Err(SyntaxError {
                                    message: "unterminated block comment".into(),
                                    span: Span {
                                        start,
                                        end: start + 2,
                                    },
                                })
                            }
                            (Some(b'*'), Some(b'/')) => {
                                depth -= 1;
                                self.pos += 2
                            }
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.pos += 2
                            }
                            _ => self.pos += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Spanned, SyntaxError> {
        self.skip_ws()?;
        let start = self.pos;
        if matches!(self.peek(), Some(b'[' | b'{' | b'(')) {
            self.descend()?;
            let v = self.value_inner(start);
            self.depth -= 1;
            return v;
        }
        self.value_inner(start)
    }

    fn value_inner(&mut self, start: usize) -> Result<Spanned, SyntaxError> {
        let value = match self.peek() {
            None => return Err(self.err_here("expected a value, found the end of the file")),
            Some(b'"') => RonValue::Str(self.string()?),
            Some(b'r') if matches!(self.bytes.get(self.pos + 1), Some(b'"') | Some(b'#')) => {
                RonValue::Str(self.raw_string()?)
            }
            Some(b'[') => {
                self.pos += 1;
                RonValue::List(self.seq(b']')?)
            }
            Some(b'{') => {
                self.pos += 1;
                RonValue::Struct {
                    name: None,
                    is_map: true,
                    fields: self.map_body()?,
                }
            }
            Some(b'(') => self.paren(None)?,
            Some(b) if b == b'-' || b == b'+' || b == b'.' || b.is_ascii_digit() => {
                self.number()?
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let ident = self.ident();
                match ident.as_str() {
                    "true" => RonValue::Bool(true),
                    "false" => RonValue::Bool(false),
                    "None" => RonValue::None,
                    "inf" => RonValue::Float(f64::INFINITY),
                    "NaN" => RonValue::Float(f64::NAN),
                    "Some" => {
                        self.skip_ws()?;
                        if self.peek() != Some(b'(') {
                            return Err(self.err_here("expected `(` after `Some`"));
                        }
                        self.descend()?;
                        self.pos += 1;
                        let inner = self.value();
                        self.depth -= 1;
                        let inner = inner?;
                        self.skip_ws()?;
                        if self.peek() == Some(b',') {
                            self.pos += 1;
                            self.skip_ws()?;
                        }
                        if self.peek() != Some(b')') {
                            return Err(self.err_here("expected `)` to close `Some(`"));
                        }
                        self.pos += 1;
                        RonValue::Some(Box::new(inner))
                    }
                    _ => {
                        let save = self.pos;
                        self.skip_ws()?;
                        if self.peek() == Some(b'(') {
                            self.descend()?;
                            let v = self.paren(Some(ident));
                            self.depth -= 1;
                            v?
                        } else {
                            self.pos = save;
                            RonValue::Ident(ident)
                        }
                    }
                }
            }
            Some(_) => {
                return Err(
                    self.err_here("expected a value (string, number, list, map, struct or tuple)")
                )
            }
        };
        Ok(Spanned {
            value,
            span: Span {
                start,
                end: self.pos,
            },
        })
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.src[start..self.pos].to_string()
    }

    /// `(` already at pos: a unit `()`, a struct `(a: 1)` or a tuple `(1, 2)`.
    fn paren(&mut self, name: Option<String>) -> Result<RonValue, SyntaxError> {
        self.pos += 1; // '('
        self.skip_ws()?;
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(match name {
                Some(n) => RonValue::Struct {
                    name: Some(n),
                    is_map: false,
                    fields: vec![],
                },
                None => RonValue::Unit,
            });
        }
        // A struct starts with `ident :` (but not `ident ::`).
        let save = self.pos;
        let is_struct = if matches!(self.peek(), Some(b) if b.is_ascii_alphabetic() || b == b'_') {
            self.ident();
            self.skip_ws()?;
            let r = self.peek() == Some(b':');
            self.pos = save;
            r
        } else {
            false
        };
        if is_struct {
            let mut fields = Vec::new();
            let mut seen = std::collections::HashSet::new();
            loop {
                self.skip_ws()?;
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    break;
                }
                let kstart = self.pos;
                if !matches!(self.peek(), Some(b) if b.is_ascii_alphabetic() || b == b'_') {
                    return Err(self.err_here("expected a field name"));
                }
                let key = self.ident();
                let kspan = Span {
                    start: kstart,
                    end: self.pos,
                };
                self.skip_ws()?;
                if self.peek() != Some(b':') {
                    return Err(self.err_here(&format!("expected `:` after field `{key}`")));
                }
                self.pos += 1;
                let v = self.value()?;
                if !seen.insert(key.clone()) {
                    return Err(SyntaxError {
                        message: format!("field `{key}` is given twice"),
                        span: kspan,
                    });
                }
                fields.push((
                    Key {
                        name: key,
                        span: kspan,
                    },
                    v,
                ));
                self.skip_ws()?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {}
                    _ => return Err(self.err_here("expected `,` or `)` after a field")),
                }
            }
            Ok(RonValue::Struct {
                name,
                is_map: false,
                fields,
            })
        } else {
            Ok(RonValue::Tuple(name, self.seq(b')')?))
        }
    }

    fn seq(&mut self, close: u8) -> Result<Vec<Spanned>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err_here(&format!("expected `,` or `{}`", close as char))),
            }
        }
    }

    fn map_body(&mut self) -> Result<Vec<(Key, Spanned)>, SyntaxError> {
        let mut fields = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            self.skip_ws()?;
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(fields);
            }
            let k = self.value()?;
            let name = match &k.value {
                RonValue::Str(s) | RonValue::Ident(s) => s.clone(),
                RonValue::Int(i) => i.to_string(),
                _ => {
                    return Err(SyntaxError {
                        message: "map keys must be strings or integers".into(),
                        span: k.span,
                    })
                }
            };
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.err_here("expected `:` after a map key"));
            }
            self.pos += 1;
            let v = self.value()?;
            if !seen.insert(name.clone()) {
                return Err(SyntaxError {
                    message: format!("key \"{name}\" is given twice"),
                    span: k.span,
                });
            }
            fields.push((Key { name, span: k.span }, v));
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.err_here("expected `,` or `}` after a map entry")),
            }
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let mut chars = rest.chars();
            match chars.next() {
                None => {
                    return Err(SyntaxError {
                        message: "unterminated string".into(),
                        span: Span {
                            start,
                            end: start + 1,
                        },
                    })
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    let esc = chars.next();
                    self.pos += 1;
                    let c = match esc {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some('\'') => '\'',
                        Some('u') => {
                            let body = &self.src[self.pos + 1..];
                            let close = body.find('}').filter(|_| body.starts_with('{'));
                            let Some(close) = close else {
                                return Err(self.err_here("expected `\\u{XXXX}`"));
                            };
                            let hex = &body[1..close];
                            let c = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                            let Some(c) = c else {
                                return Err(self.err_here("invalid unicode escape"));
                            };
                            self.pos += 1 + close + 1;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.err_here("unknown escape sequence")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    out.push(c);
                }
            }
        }
    }

    fn raw_string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.pos += 1; // r
        let mut hashes = 0;
        while self.peek() == Some(b'#') {
            hashes += 1;
            self.pos += 1;
        }
        if self.peek() != Some(b'"') {
            return Err(self.err_here("expected `\"` in raw string"));
        }
        self.pos += 1;
        let terminator = format!("\"{}", "#".repeat(hashes));
        match self.src[self.pos..].find(&terminator) {
            Some(i) => {
                let s = self.src[self.pos..self.pos + i].to_string();
                self.pos += i + terminator.len();
                Ok(s)
            }
            None => Err(SyntaxError {
                message: "unterminated raw string".into(),
                span: Span {
                    start,
                    end: start + 1,
                },
            }),
        }
    }

    fn number(&mut self) -> Result<RonValue, SyntaxError> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-') | Some(b'+')) {
            self.pos += 1;
        }
        if self.src[self.pos..].starts_with("inf") {
            self.pos += 3;
            let neg = self.bytes[start] == b'-';
            return Ok(RonValue::Float(if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }));
        }
        if self.src[self.pos..].starts_with("0x") {
            self.pos += 2;
            let hs = self.pos;
            while matches!(self.peek(), Some(b) if b.is_ascii_hexdigit() || b == b'_') {
                self.pos += 1;
            }
            let digits: String = self.src[hs..self.pos]
                .chars()
                .filter(|c| *c != '_')
                .collect();
            let v = i64::from_str_radix(&digits, 16).map_err(|_| SyntaxError {
                message: "invalid hex number".into(),
                span: Span {
                    start,
                    end: self.pos,
                },
            })?;
            return Ok(RonValue::Int(if self.bytes[start] == b'-' {
                -v
            } else {
                v
            }));
        }
        let mut is_float = false;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' | b'_' => self.pos += 1,
                b'.' | b'e' | b'E' => {
                    is_float = true;
                    self.pos += 1;
                    if matches!(b, b'e' | b'E') && matches!(self.peek(), Some(b'-') | Some(b'+')) {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let text: String = self.src[start..self.pos]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        let span = Span {
            start,
            end: self.pos,
        };
        if is_float {
            text.parse::<f64>()
                .map(RonValue::Float)
                .map_err(|_| SyntaxError {
                    message: format!("invalid number `{text}`"),
                    span,
                })
        } else {
            text.parse::<i64>()
                .map(RonValue::Int)
                .map_err(|_| SyntaxError {
                    message: format!("invalid number `{text}`"),
                    span,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_like_text_with_positions() {
        let src = "Graph(\n  name: \"g\", // c\n  nodes: { \"a\": (node: \"X\", params: (k: (3, 3, 1), m: -29, f: 1.5e1, e: Some(Foo), n: None, l: [1, 2,],)) },\n)";
        let v = parse(src).unwrap();
        let a = v.get("nodes").unwrap().get("a").unwrap();
        let params = a.get("params").unwrap();
        assert_eq!(params.get("m").unwrap().value, RonValue::Int(-29));
        assert_eq!(params.get("f").unwrap().value, RonValue::Float(15.0));
        let k = params.get("k").unwrap();
        assert_eq!(line_col(src, k.span.start), (3, 41));
        assert_eq!(k.to_json(), serde_json::json!([3, 3, 1]));
        assert_eq!(params.get("e").unwrap().to_json(), serde_json::json!("Foo"));
        assert_eq!(params.get("n").unwrap().to_json(), serde_json::Value::Null);
        assert_eq!(
            params.find(&["l".into(), "1".into()]).unwrap().value,
            RonValue::Int(2)
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let src = "(a: 1,\n b 2)";
        let e = parse(src).unwrap_err();
        assert_eq!(line_col(src, e.span.start), (2, 4));
        assert!(e.message.contains("`:`"), "{}", e.message);
        let e = parse("(a: \"open)").unwrap_err();
        assert!(e.message.contains("unterminated string"));
        let e = parse("(a: 1, a: 2)").unwrap_err();
        assert!(e.message.contains("twice"));
    }

    #[test]
    fn strings_escapes_and_raw() {
        let v = parse(r##"["a\"b\n\u{e9}", r#"x"y"#]"##).unwrap();
        assert_eq!(v.to_json(), serde_json::json!(["a\"b\né", "x\"y"]));
    }

    #[test]
    fn nesting_is_limited_at_the_bracket_that_goes_too_deep() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        for open in ["[", "(", "{\"k\": ", "Some(", "A("] {
            let src = open.repeat(10_000);
            let e = parse(&src).unwrap_err();
            assert!(e.is_too_deep(), "{open}: {}", e.message);
            // At the bracket of the level past the limit.
            let bracket = open.find(['[', '(', '{']).unwrap();
            assert_eq!(e.span.start, open.len() * MAX_DEPTH + bracket, "{open}");
        }
        // Not every error is a nesting error.
        assert!(!parse("[1,").unwrap_err().is_too_deep());
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_is_no_column() {
        let src = "\u{feff}(a: 1, b x)";
        let e = parse(src).unwrap_err();
        assert_eq!(line_col(src, e.span.start), (1, 10));
        assert_eq!(
            parse("\u{feff}[1]").unwrap().to_json(),
            serde_json::json!([1])
        );
        // Only at the start.
        assert!(parse("[1]\u{feff}").is_err());
    }

    #[test]
    fn errors_at_non_ascii_characters_span_the_whole_character() {
        let src = "(name: \u{201c}demo\u{201d})";
        let e = parse(src).unwrap_err();
        assert_eq!(&src[e.span.start..e.span.end], "\u{201c}");
        assert_eq!(line_col(src, e.span.start), (1, 8));
        // An offset inside a character counts as that character.
        assert_eq!(line_col(src, e.span.start + 1), (1, 8));
        let e = parse("\"a\\\u{e9}\"").unwrap_err();
        assert!(e.message.contains("escape"), "{}", e.message);
        assert_eq!(e.span.end - e.span.start, 2);
    }

    #[test]
    fn json_of_named_tuple_is_externally_tagged() {
        let v = parse("Ellipsoid(2.0)").unwrap();
        assert_eq!(v.to_json(), serde_json::json!({"Ellipsoid": 2.0}));
    }
}
