//! crosspod-agent: the per-node reconciler. It watches its node's desired state from the
//! controller and makes Open vSwitch (through OVSDB) and Linux (through rtnetlink and nftables)
//! match it, changing only the difference and only what it owns.

pub mod bind;
pub mod config;
pub mod controller_client;
pub mod daemon;
pub mod dhcp;
pub mod firewall;
pub mod flowsync;
pub mod intent;
pub mod linux_backend;
pub mod liveness;
pub mod metrics;
pub mod ovs_plan;
pub mod ovsdb_backend;
pub mod ra;
pub mod reconciler;
pub mod sd_notify;
pub mod tunnel;
pub mod validate;
