//! Runs the SQL given as arguments over an empty tenant and prints the JSON results: a quick way
//! to see parse errors, EXPLAIN plans and function results.
//! `cargo run -p corral-query --example query -- "select conv('ff', 16, 2)"`

fn main() {
    let sql = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let results = corral_query::run(
        &corral_query::Database::new(),
        &sql,
        &[],
        &corral_query::Limits::default(),
        "dev",
    );
    match serde_json::to_string_pretty(&results) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("{e}"),
    }
}
