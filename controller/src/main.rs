//! crosspod-controller.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("crosspod-controller: not yet implemented")
}
