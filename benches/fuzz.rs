//! The fuzz properties of `tests/it/fuzz/` (parser, Discord options, the
//! three signature verifiers, the config and command-file loaders, the
//! redactor), run longer than `cargo test` runs them: each first at its
//! test case count (the baseline, measured in this run), then at
//! `DECKHAND_FUZZ_SCALE` times that (default 10). It prints cases, time and
//! the cost per case of the long run against the baseline's, and fails
//! like a test when a property does. Run with `cargo bench --bench fuzz`.

use std::time::{Duration, Instant};

#[path = "../tests/it/fuzz/mod.rs"]
mod fuzz;

/// What `tests/it/fuzz/` takes from the integration tests' `support`.
mod support {
    use std::path::PathBuf;

    use serde_json::Value;

    /// A JSON fixture under `tests/fixtures/`.
    pub fn fixture_json(relative: &str) -> Value {
        let path = workspace::repo_root().join("tests/fixtures").join(relative);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
    }

    pub mod workspace {
        use super::PathBuf;

        /// The repository root.
        pub fn repo_root() -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        }
    }
}

fn main() {
    let scale: u32 = std::env::var("DECKHAND_FUZZ_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .unwrap_or(10);
    println!("fuzz bench: every property at its cargo-test count, then {scale}x that");
    println!(
        "{:<22} {:>8} {:>10} {:>9} {:>10} {:>10} {:>7}",
        "property", "cases", "test ms", "cases", "long ms", "µs/case", "ratio"
    );
    let mut total_cases = 0_u64;
    let mut total = Duration::ZERO;
    for property in fuzz::PROPERTIES {
        let baseline = timed(property.run, property.cases);
        let long_cases = property.cases * scale;
        let long = timed(property.run, long_cases);
        let per_case =
            |elapsed: Duration, cases: u32| elapsed.as_secs_f64() * 1e6 / f64::from(cases);
        let ratio = per_case(long, long_cases) / per_case(baseline, property.cases);
        println!(
            "{:<22} {:>8} {:>10.0} {:>9} {:>10.0} {:>10.1} {:>7.2}",
            property.name,
            property.cases,
            baseline.as_secs_f64() * 1e3,
            long_cases,
            long.as_secs_f64() * 1e3,
            per_case(long, long_cases),
            ratio
        );
        total_cases += u64::from(long_cases);
        total += long;
    }
    println!(
        "long run: {total_cases} cases in {:.1} s, every property held",
        total.as_secs_f64()
    );
}

fn timed(run: fn(u32), cases: u32) -> Duration {
    let started = Instant::now();
    run(cases);
    started.elapsed()
}
