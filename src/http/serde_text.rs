//! What serde's error texts say, read once for bodies (`json`) and query
//! strings (`query`): serde reports a misspelt or doubled key only in
//! words ("unknown field `x`, expected one of `a`, `b`"), and both
//! extractors turn those words into the same field and message.

use super::problem::echoable;

/// A key the type does not take, and the keys it does.
pub struct UnknownKey {
    /// The key as the client sent it, or empty when it may not be told
    /// back (not `echoable`): the answer then names the place, not the key.
    pub key: String,
    /// The keys the type takes, in serde's order.
    pub expected: Vec<String>,
}

impl UnknownKey {
    /// The message for `key`, naming the alternatives: `noun` is "field"
    /// for a body, "parameter" for a query.
    pub fn message(&self, noun: &str) -> String {
        match self.expected.is_empty() {
            true => format!("is not a {noun} here (this call takes no {noun}s)"),
            false => format!("is not a {noun} here (the {noun}s are {})", self.expected.join(", ")),
        }
    }
}

/// serde's "unknown field `x`, expected …", from a type that denies
/// unknown fields.
pub fn unknown_key(message: &str) -> Option<UnknownKey> {
    let rest = message.strip_prefix("unknown field `")?;
    // The key is the client's and may hold a backtick; the list is ours.
    let (key, expected) =
        rest.rsplit_once("`, expected ").or_else(|| rest.rsplit_once("`, there are no fields"))?;
    let key = if echoable(key) && !key.is_empty() { key.to_string() } else { String::new() };
    // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`";
    // serde_json then appends " at line L column C".
    let listed = expected.split(" at line ").next().unwrap_or(expected);
    let expected = listed
        .split([',', ' '])
        .filter(|w| w.len() > 2 && w.starts_with('`') && w.ends_with('`'))
        .map(|w| w.trim_matches('`').to_string())
        .collect();
    Some(UnknownKey { key, expected })
}

/// serde's "duplicate field `x`": only a key the type takes can be given
/// twice, so it is always one of ours and safe to tell back.
pub fn duplicate_key(message: &str) -> Option<&str> {
    message.strip_prefix("duplicate field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_serdes_expected_list_is_read() {
        let read = |m: &str| unknown_key(m).map(|u| (u.key, u.expected.join(",")));
        let one = "unknown field `x`, expected `a`";
        assert_eq!(read(one), Some(("x".into(), "a".into())));
        let two = "unknown field `x`, expected `a` or `b` at line 1 column 9";
        assert_eq!(read(two), Some(("x".into(), "a,b".into())));
        let many = "unknown field `statuss`, expected one of `status`, `roles`, `unlock`";
        assert_eq!(read(many), Some(("statuss".into(), "status,roles,unlock".into())));
        let none = "unknown field `x`, there are no fields at line 1 column 5";
        assert_eq!(read(none), Some(("x".into(), String::new())));
        let quoted = "unknown field `a`, expected `b``, expected `a`";
        assert_eq!(read(quoted), Some(("a`, expected `b`".into(), "a".into())));
        let hidden = "unknown field `\u{1b}[31m`, expected `a`";
        assert_eq!(read(hidden), Some((String::new(), "a".into())));
        assert_eq!(read("missing field `a`"), None);
        assert_eq!(duplicate_key("duplicate field `status` at line 1 column 30"), Some("status"));
    }

    #[test]
    fn a_key_past_what_may_be_told_back_is_not_told() {
        let long = format!("unknown field `{}`, expected `a`", "k".repeat(500));
        assert_eq!(unknown_key(&long).map(|u| u.key), Some(String::new()));
    }
}
