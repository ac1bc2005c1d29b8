//! Placeholder until the scan benchmark lands.
fn main() {}
