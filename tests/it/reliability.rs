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

/// A small xorshift for the checks that vary per run: each prints its
/// seed, so a failure can be replayed.
pub struct Dice {
    seed: u64,
    state: u64,
}

impl Dice {
    /// From `seed` (a replay), else from the clock.
    pub fn seeded(seed: Option<u64>) -> Dice {
        let clock = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let seed = seed.unwrap_or_else(|| clock() as u64) | 1;
        Dice { seed, state: seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
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
