//! The reliability suite's report: each check prints a small table and
//! writes it to `target/reliability/NAME.md`; `.ci/run` prints them all
//! at the end, so a green run still shows its figures.

use std::fmt::Write as _;

/// The `p` quantile (0.0–1.0) of an ascending slice; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A Markdown table with a title.
pub struct Table {
    text: String,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Table {
        let mut text = format!("### {title}\n\n| {} |\n|", columns.join(" | "));
        text.push_str(&"---|".repeat(columns.len()));
        text.push('\n');
        Table { text }
    }

    pub fn row(&mut self, cells: &[&str]) {
        let _ = writeln!(self.text, "| {} |", cells.join(" | "));
    }

    /// Prints the table and writes it to `target/reliability/{name}.md`.
    pub fn publish(&self, name: &str) {
        println!("\n{}", self.text);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.md")), &self.text);
    }
}
