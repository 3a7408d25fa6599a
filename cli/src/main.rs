//! crosspod: the operator's command line.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("crosspod: not yet implemented")
}
