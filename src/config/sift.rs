//! Reads the file's shape naming every key serde refuses, not only the
//! first: serde stops at the first unknown key or wrong type, so a file
//! with three would take three tries of `check-config`. After each
//! refusal the document is read again without the refused key (its
//! default stands in), until it reads or nothing more can be taken out.

use std::borrow::Cow;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::RawConfig;
use super::locate::{key_at, segments};

/// More than this many refusals in one file is a file of another kind;
/// each costs one more reading of it.
const MOST_REFUSALS: usize = 50;

/// A key serde refused: its dotted path, where in the text, and why.
pub struct Refusal {
    pub key: String,
    pub offset: usize,
    pub reason: String,
}

pub struct Sifted {
    /// The file without its refused keys, read; `None` when a refusal
    /// could not be placed on a key to take out.
    pub raw: Option<RawConfig>,
    pub refused: Vec<Refusal>,
    /// The keys taken out, so the rules checked afterwards do not refuse
    /// the default that stood in for one.
    taken_out: Vec<String>,
}

impl Sifted {
    /// Whether a rule's fault about `keys` (`|`-separated) is about a key
    /// taken out or inside one: it judged a default, not the file.
    pub fn stood_in(&self, keys: &str) -> bool {
        keys.split('|').any(|key| self.taken_out.iter().any(|out| key == out || is_inside(key, out)))
    }

    pub fn taken_out(&self) -> &[String] {
        &self.taken_out
    }
}

/// Deserializes `doc`, taking out each refused key and trying again.
pub fn sift(doc: &Spanned<DeTable<'_>>) -> Sifted {
    sift_without(doc, &[])
}

/// As `sift`, with `keys` taken out first (the keys a rule refused, so
/// the files the rest of the file names can still be checked).
pub fn sift_without(doc: &Spanned<DeTable<'_>>, keys: &[String]) -> Sifted {
    let mut work = doc.clone();
    let taken_out = keys.iter().filter_map(|k| take_out(work.get_mut(), k)).collect();
    let mut sifted = Sifted { raw: None, refused: Vec::new(), taken_out };
    for _ in 0..MOST_REFUSALS {
        let error = match RawConfig::deserialize(Deserializer::from(work.clone())) {
            Ok(raw) => {
                sifted.raw = Some(raw);
                return sifted;
            }
            Err(error) => error,
        };
        let offset = error.span().map_or(0, |s| s.start);
        let key = key_at(&work, offset);
        // A table missing a field that was taken out of it (`kind` of a
        // listener whose kind was refused) is that refusal again; missing
        // another (`host` beside a refused `hots`) is a fault of its own.
        let follows = key.as_deref().zip(missing_field(error.message())).is_some_and(|(k, field)| {
            sifted.taken_out.iter().any(|out| out.strip_prefix(k) == Some(&format!(".{field}")))
        });
        if !follows {
            let each = key.as_deref().map(|k| refused_elements(&work, k)).unwrap_or_default();
            if each.is_empty() {
                let shown = key.clone().unwrap_or_else(|| "(top level)".into());
                sifted.refused.push(Refusal { key: shown, offset, reason: error.message().to_string() });
            }
            sifted.refused.extend(each);
        }
        let taken = key.filter(|_| error.span().is_some()).and_then(|k| take_out(work.get_mut(), &k));
        match taken {
            Some(taken) => sifted.taken_out.push(taken),
            None => return sifted,
        }
    }
    sifted
}

/// Each element of the list of values at `key` that is refused on its
/// own, at its own place: serde stops at a list's first bad element, and
/// an operator's list (`allowlist`, `trusted_hosts`) may hold several.
/// Empty when `key` is no such list, when the list itself is refused (an
/// empty one too: `http = [1, 2]`), or when none is refused alone.
fn refused_elements(work: &Spanned<DeTable<'_>>, key: &str) -> Vec<Refusal> {
    let mut probe = work.clone();
    let items: Vec<_> = match value_at_mut(probe.get_mut(), key) {
        Some(DeValue::Array(items)) if items.len() > 1 && items.iter().all(|i| is_scalar(i.get_ref())) => {
            items.iter().cloned().collect()
        }
        _ => return Vec::new(),
    };
    if refused_as(&mut probe, key, None).is_some() {
        return Vec::new();
    }
    let refused = items.into_iter().filter_map(|item| {
        let offset = item.span().start;
        let reason = refused_as(&mut probe, key, Some(item))?;
        Some(Refusal { key: key.to_string(), offset, reason })
    });
    refused.collect()
}

/// Why the list at `key` is refused when it holds `only` (or nothing).
fn refused_as<'i>(
    probe: &mut Spanned<DeTable<'i>>,
    key: &str,
    only: Option<Spanned<DeValue<'i>>>,
) -> Option<String> {
    *value_at_mut(probe.get_mut(), key)? = DeValue::Array(only.into_iter().collect());
    let error = RawConfig::deserialize(Deserializer::from(probe.clone())).err()?;
    let at = key_at(probe, error.span()?.start)?;
    (at == key || is_inside(&at, key)).then(|| error.message().to_string())
}

fn is_scalar(value: &DeValue<'_>) -> bool {
    !matches!(value, DeValue::Table(_) | DeValue::Array(_))
}

/// The value at dotted `key` (`defense.allowlist`, `listener[0].addr`).
fn value_at_mut<'a, 'i>(table: &'a mut DeTable<'i>, key: &str) -> Option<&'a mut DeValue<'i>> {
    let path = segments(key);
    let (first, rest) = path.split_first()?;
    let mut value = table.get_mut(first.as_str())?.get_mut();
    for segment in rest {
        value = match value {
            DeValue::Table(t) => t.get_mut(segment.as_str())?.get_mut(),
            DeValue::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?.get_mut(),
            _ => return None,
        };
    }
    Some(value)
}

/// The field serde's "missing field `kind`" names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// Whether dotted key `inner` lies inside `outer` (`listener[0].kind`
/// inside `listener[0]` and `listener`).
fn is_inside(inner: &str, outer: &str) -> bool {
    inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with(['.', '[']))
}

/// Takes `key` out of `table`, and says what went: for an element of an
/// array the whole array goes, so no rule judges a list cut short (its
/// bad elements were each told already: `refused_elements`) — except a
/// `[[listener]]`, which a neutral one stands in for, so the others'
/// faults are still told in the same run; a table whose part named is
/// not there goes whole too.
fn take_out(table: &mut DeTable<'_>, key: &str) -> Option<String> {
    let path = segments(key);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    if let ["listener", index] = path[..]
        && stand_in_for_listener(table, index)
    {
        return Some(format!("listener[{index}]"));
    }
    let depth = take_out_of_table(table, &path)?;
    Some(path[..depth].iter().enumerate().fold(String::new(), |mut taken, (i, segment)| {
        match (i, segment.parse::<usize>()) {
            (0, _) => taken.push_str(segment),
            (_, Ok(index)) => taken.push_str(&format!("[{index}]")),
            (_, Err(_)) => taken.push_str(&format!(".{segment}")),
        }
        taken
    }))
}

/// Puts a listener no rule refuses (plain HTTP on loopback, port 0, so
/// never "there already") in the place of `listener[index]`. It only ever
/// stands in a config that was refused: the rules about it are not told
/// (`stood_in`), and only the files the rest names are checked on it.
fn stand_in_for_listener(table: &mut DeTable<'_>, index: &str) -> bool {
    let item = table.get_mut("listener").map(|v| v.get_mut()).and_then(|listeners| match listeners {
        DeValue::Array(items) => index.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    });
    let Some(item) = item else { return false };
    let at = item.span().start..item.span().start;
    let mut neutral = DeTable::new();
    for (key, value) in [("kind", "http"), ("addr", "127.0.0.1:0")] {
        let value = DeValue::String(Cow::Borrowed(value));
        neutral.insert(Spanned::new(at.clone(), Cow::Borrowed(key)), Spanned::new(at.clone(), value));
    }
    *item = Spanned::new(item.span(), DeValue::Table(neutral));
    true
}

/// How many segments of `path` name what was taken out.
fn take_out_of_table(table: &mut DeTable<'_>, path: &[&str]) -> Option<usize> {
    match path {
        [] => None,
        [last] => table.remove(*last).map(|_| 1),
        [first, rest @ ..] => {
            match table.get_mut(*first).and_then(|value| take_out_of_value(value.get_mut(), rest)) {
                Some(depth) => Some(depth + 1),
                None => table.remove(*first).map(|_| 1),
            }
        }
    }
}

fn take_out_of_value(value: &mut DeValue<'_>, path: &[&str]) -> Option<usize> {
    match (value, path) {
        (DeValue::Table(table), _) => take_out_of_table(table, path),
        (DeValue::Array(items), [index, rest @ ..]) if !rest.is_empty() => {
            let item = index.parse::<usize>().ok().and_then(|i| items.get_mut(i))?;
            take_out_of_value(item.get_mut(), rest).map(|depth| depth + 1)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Vec<String> {
        let doc = DeTable::parse(text).unwrap();
        sift(&doc).refused.into_iter().map(|r| format!("{}: {}", r.key, r.reason)).collect()
    }

    #[test]
    fn every_refused_key_is_named_once() {
        let text = "[http]\nfoo = 1\nmax_body = 12.5\n[tokens]\naccess_ttl = \"5y\"\n[[listener]]\nkind = \"htps\"\naddr = \"127.0.0.1:1\"\n[nope]\n";
        let found = refused(text);
        assert_eq!(found.len(), 5, "{found:#?}");
        for key in ["http.foo:", "http.max_body:", "tokens.access_ttl:", "listener[0].kind:", "nope:"] {
            assert!(found.iter().any(|f| f.starts_with(key)), "{key} in {found:#?}");
        }
        assert!(
            !found.iter().any(|f| f.contains("missing field")),
            "a refused kind is not missing too: {found:#?}"
        );
    }

    #[test]
    fn every_refused_element_of_a_list_is_told_at_its_line() {
        let text = "[defense]\nallowlist = [\n  \"10.0.0.0/8\",\n  \"nope\",\n  \"1.2.3.4/99\",\n]\n\
            trusted_proxies = [\"x\"]\n";
        let sifted = sift(&DeTable::parse(text).unwrap());
        let told: Vec<(&str, usize)> = sifted
            .refused
            .iter()
            .map(|r| (r.key.as_str(), super::super::locate::line_of(text, r.offset)))
            .collect();
        assert_eq!(
            told,
            [("defense.allowlist", 4), ("defense.allowlist", 5), ("defense.trusted_proxies", 7)]
        );
        assert!(sifted.refused[0].reason.contains("\"nope\""), "{}", sifted.refused[0].reason);
        assert!(sifted.refused[1].reason.contains("1.2.3.4/99"), "{}", sifted.refused[1].reason);
        assert!(sifted.stood_in("defense.allowlist"), "the list's rules judge no list cut short");
        // A list where none may stand is told once, not once an element.
        assert_eq!(refused("[[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:1\"\n[http]\ntrusted_hosts = [\"a\"]\nmax_body = [1, 2]\n").len(), 1);
    }

    #[test]
    fn a_missing_field_is_told_unless_it_was_taken_out() {
        let found = refused("[[listener]]\nknd = \"http\"\naddr = \"127.0.0.1:1\"\n");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("listener[0].knd: unknown field"), "{found:#?}");
        assert!(found[1].starts_with("listener[0]: missing field `kind`"), "{found:#?}");
    }

    #[test]
    fn a_file_without_faults_reads_whole() {
        let doc = DeTable::parse("[http]\nmax_body = \"1MiB\"\n").unwrap();
        let sifted = sift(&doc);
        assert!(sifted.refused.is_empty());
        assert_eq!(sifted.raw.map(|r| r.http.max_body.0), Some(1024 * 1024));
    }

    #[test]
    fn what_is_taken_out_is_named_as_it_went() {
        let text = "[http]\nfoo = 1\n[[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:1\"\n";
        let mut doc = DeTable::parse(text).unwrap();
        assert_eq!(take_out(doc.get_mut(), "http.foo").as_deref(), Some("http.foo"));
        assert_eq!(take_out(doc.get_mut(), "listener[0].kind").as_deref(), Some("listener[0].kind"));
        // An element alone cannot go: its whole array does; a listener
        // has a neutral one stand in for it.
        assert_eq!(take_out(doc.get_mut(), "listener[0]").as_deref(), Some("listener[0]"));
        assert_eq!(take_out(doc.get_mut(), "listener[1]").as_deref(), Some("listener"), "no such element");
        assert_eq!(take_out(doc.get_mut(), "listener[0]"), None, "nothing left to take");
    }

    #[test]
    fn rules_about_a_key_taken_out_are_not_told() {
        let doc = DeTable::parse("[tokens]\naccess_ttl = 5\nrefresh_ttl = \"1s\"\n").unwrap();
        let sifted = sift(&doc);
        assert!(sifted.stood_in("tokens.refresh_ttl|tokens.access_ttl"));
        assert!(!sifted.stood_in("tokens.refresh_ttl"));
        assert!(!sifted.stood_in("tokens"));
    }

    #[test]
    fn a_refused_listener_leaves_the_others_judged() {
        let text = "[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:1\"\n\
            [[listener]]\nkind = \"htps\"\naddr = \"127.0.0.1:2\"\n\
            [[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:3\"\nmetrics = \"yes\"\n";
        let sifted = sift(&DeTable::parse(text).unwrap());
        let keys: Vec<&str> = sifted.refused.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["listener[1].kind", "listener[2].metrics"]);
        assert!(sifted.stood_in("listener[1].addr") && !sifted.stood_in("listener[0].addr"));
        let listeners = sifted.raw.and_then(|raw| raw.listeners).map(|l| l.len());
        assert_eq!(listeners, Some(3), "the good one is still there to be judged");
    }
}
