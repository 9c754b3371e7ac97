//! Maps between positions in the config text and dotted key paths, so every
//! config error can read `PATH:LINE: key: reason` whether it came from the
//! TOML parser, from serde, or from a cross-field rule checked afterwards.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The 1-based line holding byte `offset` of `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    line_of_bytes(text.as_bytes(), offset)
}

/// As `line_of`, for a file that is not text yet (not UTF-8).
pub fn line_of_bytes(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The dotted path of the deepest key whose key or value covers `offset`
/// (`listener[1].addr`), or `None` when the offset is outside every key.
pub fn key_at(doc: &Spanned<DeTable<'_>>, offset: usize) -> Option<String> {
    let mut path = String::new();
    walk_table(doc.get_ref(), offset, &mut path).then_some(path)
}

// Table spans may cover only a `[header]`, not the body below it, so every
// child is searched rather than only those whose parent span covers `offset`.
fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (key, value) in table.iter() {
        let mark = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        if walk_value(value.get_ref(), offset, path)
            || key.span().contains(&offset)
            || value.span().contains(&offset)
        {
            return true;
        }
        path.truncate(mark);
    }
    false
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut String) -> bool {
    match value {
        DeValue::Table(t) => walk_table(t, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mark = path.len();
                path.push_str(&format!("[{i}]"));
                if walk_value(item.get_ref(), offset, path) || item.span().contains(&offset) {
                    return true;
                }
                path.truncate(mark);
            }
            false
        }
        _ => false,
    }
}

/// The span of the value at `path` (segments are keys or array indexes), or
/// of its nearest ancestor present in the file.
pub fn span_of(doc: &Spanned<DeTable<'_>>, path: &[&str]) -> Option<Range<usize>> {
    let mut best = None;
    let mut table = Some(doc.get_ref());
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    for seg in path {
        let next = match (table, current) {
            (Some(t), _) => t.get(*seg),
            (None, Some(v)) => match (v.get_ref(), seg.parse::<usize>()) {
                (DeValue::Array(items), Ok(i)) => items.get(i),
                (DeValue::Table(t), _) => t.get(*seg),
                _ => None,
            },
            (None, None) => None,
        };
        let Some(value) = next else { break };
        best = Some(value.span());
        table = None;
        current = Some(value);
        if let DeValue::Table(t) = value.get_ref() {
            table = Some(t);
        }
    }
    best
}

/// Of the `|`-separated dotted keys a rule across keys names
/// (`"tokens.refresh_ttl|tokens.access_ttl"`), the first one the file
/// sets, and where; else the first key and the span of its nearest
/// ancestor. So the error names the key the person wrote, on its line.
pub fn first_set(doc: &Spanned<DeTable<'_>>, keys: &str) -> (String, Option<Range<usize>>) {
    for key in keys.split('|') {
        let path = segments(key);
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        if is_set(doc, &refs) {
            return (key.to_string(), span_of(doc, &refs));
        }
    }
    let first = keys.split('|').next().unwrap_or(keys);
    let path = segments(first);
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    (first.to_string(), span_of(doc, &refs))
}

/// The segments of a dotted key: `listener[1].addr` is `listener`, `1`,
/// `addr`.
pub fn segments(key: &str) -> Vec<String> {
    key.split(['.', '[', ']']).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Whether every segment of `path` is in the file.
fn is_set(doc: &Spanned<DeTable<'_>>, path: &[&str]) -> bool {
    let mut value: Option<&DeValue<'_>> = None;
    for seg in path {
        let next = match value {
            None => doc.get_ref().get(*seg),
            Some(DeValue::Table(t)) => t.get(*seg),
            Some(DeValue::Array(items)) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            Some(_) => None,
        };
        let Some(next) = next else { return false };
        value = Some(next.get_ref());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nstate_dir = \"/x\"\n\n[[listener]]\nkind = \"http\"\n\n[[listener]]\nkind = \"unix\"\npath = \"/s\"\n";

    #[test]
    fn finds_keys_inside_arrays_of_tables() {
        let doc = DeTable::parse(TEXT).unwrap();
        let at = TEXT.find("/s").unwrap();
        assert_eq!(key_at(&doc, at).as_deref(), Some("listener[1].path"));
        let span = span_of(&doc, &["listener", "1", "path"]).unwrap();
        assert_eq!(line_of(TEXT, span.start), 9);
        let span = span_of(&doc, &["server", "state_dir"]).unwrap();
        assert_eq!(line_of(TEXT, span.start), 2);
    }

    #[test]
    fn missing_keys_fall_back_to_the_nearest_ancestor() {
        let doc = DeTable::parse(TEXT).unwrap();
        let span = span_of(&doc, &["server", "public_url"]).unwrap();
        assert_eq!(line_of(TEXT, span.start), 1);
        assert!(span_of(&doc, &["tokens", "algorithm"]).is_none());
    }

    #[test]
    fn a_rule_across_keys_names_the_one_the_file_sets() {
        let doc = DeTable::parse(TEXT).unwrap();
        let (key, span) = first_set(&doc, "server.public_url|listener[1].path");
        assert_eq!((key.as_str(), line_of(TEXT, span.unwrap().start)), ("listener[1].path", 9));
        let (key, span) = first_set(&doc, "server.public_url|server.key_file");
        assert_eq!((key.as_str(), line_of(TEXT, span.unwrap().start)), ("server.public_url", 1));
    }
}
