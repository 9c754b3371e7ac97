//! Reads the file's shape naming every key serde refuses, not only the
//! first: serde stops at the first unknown key or wrong type, so a file
//! with three would take three tries of `check-config`. After each
//! refusal the document is read again without the refused key (its
//! default stands in), until it reads or nothing more can be taken out.

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
}

/// Deserializes `doc`, taking out each refused key and trying again.
pub fn sift(doc: &Spanned<DeTable<'_>>) -> Sifted {
    let mut work = doc.clone();
    let mut sifted = Sifted { raw: None, refused: Vec::new(), taken_out: Vec::new() };
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
        // listener whose kind was refused) is that refusal again.
        let follows = key.as_deref().is_some_and(|k| sifted.taken_out.iter().any(|out| is_inside(out, k)));
        if !follows {
            let shown = key.clone().unwrap_or_else(|| "(top level)".into());
            sifted.refused.push(Refusal { key: shown, offset, reason: error.message().to_string() });
        }
        let removable = error.span().is_some() && key.as_deref().is_some_and(|k| take_out(work.get_mut(), k));
        match key {
            Some(key) if removable => sifted.taken_out.push(key),
            _ => return sifted,
        }
    }
    sifted
}

/// Whether dotted key `inner` lies inside `outer` (`listener[0].kind`
/// inside `listener[0]` and `listener`).
fn is_inside(inner: &str, outer: &str) -> bool {
    inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with(['.', '[']))
}

/// Takes `key` out of `table`. An element of an array cannot be taken
/// out alone (toml's array is a fixed slice here), so the whole array
/// goes; so does a table whose part named is not there.
fn take_out(table: &mut DeTable<'_>, key: &str) -> bool {
    let path = segments(key);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    take_out_of_table(table, &path)
}

fn take_out_of_table(table: &mut DeTable<'_>, path: &[&str]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(*last).is_some(),
        [first, rest @ ..] => {
            let inside = table.get_mut(*first).is_some_and(|value| take_out_of_value(value.get_mut(), rest));
            inside || table.remove(*first).is_some()
        }
    }
}

fn take_out_of_value(value: &mut DeValue<'_>, path: &[&str]) -> bool {
    match (value, path) {
        (DeValue::Table(table), _) => take_out_of_table(table, path),
        (DeValue::Array(items), [index, rest @ ..]) if !rest.is_empty() => index
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .is_some_and(|item| take_out_of_value(item.get_mut(), rest)),
        _ => false,
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
    fn a_file_without_faults_reads_whole() {
        let doc = DeTable::parse("[http]\nmax_body = \"1MiB\"\n").unwrap();
        let sifted = sift(&doc);
        assert!(sifted.refused.is_empty());
        assert_eq!(sifted.raw.map(|r| r.http.max_body.0), Some(1024 * 1024));
    }

    #[test]
    fn rules_about_a_key_taken_out_are_not_told() {
        let doc = DeTable::parse("[tokens]\naccess_ttl = 5\nrefresh_ttl = \"1s\"\n").unwrap();
        let sifted = sift(&doc);
        assert!(sifted.stood_in("tokens.refresh_ttl|tokens.access_ttl"));
        assert!(!sifted.stood_in("tokens.refresh_ttl"));
        assert!(!sifted.stood_in("tokens"));
    }
}
