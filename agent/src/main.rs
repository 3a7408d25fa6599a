//! crosspod-agent.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("crosspod-agent: not yet implemented")
}
