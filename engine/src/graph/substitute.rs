//! `${param}` substitution in values, with the size and depth limits that keep a
//! few self-referring params from growing without bound.

use super::{Loader, Params, MAX_EXPANDED_BYTES, MAX_VALUE_BYTES};
use crate::diag::{FileId, Location};
use crate::ron_spanned::{self, RonValue, Span, Spanned};
use crate::suggest::hint;

/// What one substitution is filling in, for limit errors, and how much it has grown.
pub(super) struct Subst {
    what: String,
    bytes: usize,
    /// Macro prefix of the scope substituting (`""` or `"m/"`).
    prefix: String,
}

impl Subst {
    pub(super) fn new(what: String, prefix: &str) -> Self {
        Subst {
            what,
            bytes: 0,
            prefix: prefix.to_string(),
        }
    }
}

/// Approximate size in bytes (text plus a word per value) and nesting depth of a value.
/// Recursion is bounded: parsed values nest at most [`ron_spanned::MAX_DEPTH`] deep and
/// substitution keeps it so.
fn measure(v: &Spanned) -> (usize, usize) {
    let children: Vec<&Spanned> = match &v.value {
        RonValue::List(items) | RonValue::Tuple(_, items) => items.iter().collect(),
        RonValue::Struct { fields, .. } => fields.iter().map(|(_, i)| i).collect(),
        RonValue::Some(inner) => vec![inner],
        _ => Vec::new(),
    };
    let mut size = 8 + match &v.value {
        RonValue::Str(t) | RonValue::Ident(t) => t.len(),
        RonValue::Struct { fields, .. } => fields.iter().map(|(k, _)| k.name.len()).sum(),
        _ => 0,
    };
    let mut depth = 0;
    for c in children {
        let (s, d) = measure(c);
        size += s;
        depth = depth.max(d + 1);
    }
    (size, depth)
}

impl Loader {
    /// Replace `${name}` in strings: a string that is exactly `${name}` takes the param's
    /// value (any type); otherwise the param's text is spliced into the string. `sub`
    /// counts what this value has grown by, against [`MAX_VALUE_BYTES`] and
    /// [`MAX_EXPANDED_BYTES`]; `depth` is the nesting around `v`. A limit exceeded stops the
    /// load ([`Loader::stop`]).
    pub(super) fn substitute(
        &mut self,
        v: &mut Spanned,
        file: FileId,
        params: &Params,
        declared: &[String],
        sub: &mut Subst,
        depth: usize,
    ) {
        if self.stop {
            return;
        }
        match &mut v.value {
            RonValue::Str(s) if s.contains("${") => {
                let span = v.span;
                let at = Location { file, span };
                let whole = s
                    .strip_prefix("${")
                    .and_then(|r| r.strip_suffix('}'))
                    .filter(|n| !n.contains(['{', '}', '$']));
                if let Some(name) = whole {
                    match params.get(name) {
                        Some((p, pfile)) => {
                            let (size, pdepth) = measure(p);
                            if !self.grow(sub, size, at, name) {
                                return;
                            }
                            if depth + pdepth > ron_spanned::MAX_DEPTH {
                                self.limit(
                                    at,
                                    format!(
                                        "nesting too deep: `${{{name}}}` in {} nests more than {} levels",
                                        sub.what,
                                        ron_spanned::MAX_DEPTH
                                    ),
                                );
                                return;
                            }
                            if matches!(p.value, RonValue::None) {
                                let origin = self.unset_origin(sub, *pfile, p.span, name);
                                let key = (sub.prefix.clone(), file, span.start);
                                self.unset_values.insert(key, origin);
                            }
                            v.value = p.value.clone();
                            relocate(v, span);
                        }
                        None => self.unresolved(at, name, declared),
                    }
                    return;
                }
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let after = &rest[i + 2..];
                    let Some(j) = after.find('}') else {
                        self.err(at, "`${` without a closing `}`", None);
                        return;
                    };
                    let name = &after[..j];
                    let text = match params.get(name) {
                        Some((p, pfile)) => match &p.value {
                            RonValue::Str(t) => Some(t.clone()),
                            RonValue::Int(i) => Some(i.to_string()),
                            RonValue::Float(f) => Some(f.to_string()),
                            RonValue::Bool(b) => Some(b.to_string()),
                            RonValue::None => {
                                let origin = self.unset_origin(sub, *pfile, p.span, name);
                                self.unset_splices.push((at, origin));
                                None
                            }
                            _ => {
                                self.err(at, format!("graph param `{name}` is not text or a number and cannot be spliced into a string"), None);
                                None
                            }
                        },
                        None => {
                            self.unresolved(at, name, declared);
                            None
                        }
                    };
                    if let Some(t) = text {
                        if !self.grow(sub, t.len(), at, name) {
                            return;
                        }
                        out.push_str(&t);
                    }
                    rest = &after[j + 1..];
                }
                out.push_str(rest);
                *s = out;
            }
            RonValue::List(items) | RonValue::Tuple(_, items) => {
                for it in items {
                    self.substitute(it, file, params, declared, sub, depth + 1);
                }
            }
            RonValue::Struct { fields, .. } => {
                for (_, it) in fields {
                    self.substitute(it, file, params, declared, sub, depth + 1);
                }
            }
            RonValue::Some(inner) => self.substitute(inner, file, params, declared, sub, depth + 1),
            _ => {}
        }
    }

    /// Count `bytes` more of expanded text for `sub`; false (and the load stops) past the
    /// per-value or total limit.
    fn grow(&mut self, sub: &mut Subst, bytes: usize, at: Location, name: &str) -> bool {
        sub.bytes += bytes;
        self.expanded += bytes;
        if sub.bytes > MAX_VALUE_BYTES {
            self.limit(
                at,
                format!(
                    "`${{{name}}}` makes {} larger than {} MiB (the limit per value)",
                    sub.what,
                    MAX_VALUE_BYTES >> 20
                ),
            );
            return false;
        }
        if self.expanded > MAX_EXPANDED_BYTES {
            self.limit(
                at,
                format!(
                    "`${{{name}}}` in {} makes the graph's params larger than {} MiB after substitution (the limit for a graph)",
                    sub.what,
                    MAX_EXPANDED_BYTES >> 20
                ),
            );
            return false;
        }
        true
    }

    /// Report a size limit and stop loading: going on would only repeat the error (and
    /// spend the memory the limit protects).
    pub(super) fn limit(&mut self, at: Location, msg: String) {
        self.err(at, msg, None);
        self.stop = true;
    }

    /// The graph param without a value that a `None` at `span` of `file` came from: the
    /// top-level param when it passed through params of this scope or, for a value the
    /// macro node gave, of the parent scope; else `name`.
    fn unset_origin(&self, sub: &Subst, file: FileId, span: Span, name: &str) -> String {
        let here = sub.prefix.as_str();
        let parent = here
            .strip_suffix('/')
            .map(|p| p.rfind('/').map(|i| &p[..=i]).unwrap_or(""))
            .unwrap_or("");
        [here, parent]
            .iter()
            .find_map(|pre| self.unset_values.get(&(pre.to_string(), file, span.start)))
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// `${name}` names no param substituted so far: undeclared, or (in a graph param's
    /// value, which params fill in declaration order) the param itself or a later one.
    fn unresolved(&mut self, at: Location, name: &str, declared: &[String]) {
        if declared.iter().any(|d| d == name) {
            self.err(
                at,
                format!(
                    "unresolved `${{{name}}}`: a graph param can use only the params declared \
                     before it, and `{name}` is this param or comes after it"
                ),
                None,
            );
            return;
        }
        self.err(
            at,
            format!("unresolved `${{{name}}}`: the graph declares no param `{name}`"),
            hint(name, declared),
        );
    }
}

/// Values substituted from elsewhere take the span of the place they are used, so
/// errors point at the `${name}` that brought them in.
fn relocate(v: &mut Spanned, span: Span) {
    v.span = span;
    match &mut v.value {
        RonValue::List(items) | RonValue::Tuple(_, items) => {
            items.iter_mut().for_each(|i| relocate(i, span))
        }
        RonValue::Struct { fields, .. } => fields.iter_mut().for_each(|(k, i)| {
            k.span = span;
            relocate(i, span)
        }),
        RonValue::Some(inner) => relocate(inner, span),
        _ => {}
    }
}
