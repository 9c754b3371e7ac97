//! Text compared the way a person searching expects: `latch_fold(text)` in
//! SQL and `fold` in Rust give the same form, so a search for "Émile" finds
//! the name "ÉMILE" and one typed with a combining accent.
//!
//! SQLite's own `lower()` and `LIKE` fold ASCII letters only, so without
//! this a name with a capital outside ASCII was not found by its own
//! spelling: `lower('Émile')` stays `Émile` while the needle became `émile`.

use std::borrow::Cow;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use unicode_normalization::UnicodeNormalization;

/// Unicode compatibility form (NFKC), then lower case.
pub fn fold(text: &str) -> String {
    let composed: Cow<'_, str> = if unicode_normalization::is_nfkc(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    };
    composed.to_lowercase()
}

/// Makes `latch_fold(text)` callable on `c`. Direct-only: a schema (a view,
/// a trigger, an index) in a database file from elsewhere cannot call it.
pub fn install(c: &Connection) -> rusqlite::Result<()> {
    let flags =
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_DIRECTONLY;
    c.create_scalar_function("latch_fold", 1, flags, |ctx| {
        Ok(ctx.get::<Option<String>>(0)?.map(|t| fold(&t)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_and_rust_fold_alike() {
        let c = Connection::open_in_memory().unwrap();
        install(&c).unwrap();
        for text in ["ÉMILE Zola", "E\u{301}mile", "Ｚｏｌａ", "ann"] {
            let in_sql: String = c.query_row("SELECT latch_fold(?1)", [text], |r| r.get(0)).unwrap();
            assert_eq!(in_sql, fold(text));
        }
        assert_eq!(fold("ÉMILE"), fold("E\u{301}mile"));
        assert_eq!(fold("Ｚｏｌａ"), "zola");
        let null: Option<String> = c.query_row("SELECT latch_fold(NULL)", [], |r| r.get(0)).unwrap();
        assert_eq!(null, None);
    }
}
