//! Route installation benchmark (filled in below).
fn main() {}
