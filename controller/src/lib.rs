//! crosspod controller core: configuration, token auth, the store (SQLite or PostgreSQL),
//! allocators (VLAN, IP, MAC), and the Tricircle pod API and Neutron v2.0 API servers.
//!
//! Layout, meant to grow (routers, floating IPs, jobs, the agent API):
//! - [`config`]: flags > `CROSSPOD_*` env > `--config` TOML > defaults.
//! - [`auth`]: the tokens file (`TOKEN PROJECT ROLES`), re-read when it changes.
//! - [`keystone`]: Keystone as the authentication backend (token validation, bounded cache).
//! - [`error`]: [`error::StoreError`] for the store, [`error::DomainError`] rendered in
//!   Neutron's `{"NeutronError": ...}` shape.
//! - [`store`]: one [`store::Store`] over sqlx `Any` (SQLite or PostgreSQL), migrations, one
//!   module per resource; allocation uniqueness is a database constraint.
//! - [`service`]: the domain layer between HTTP and the store (rules and policy per resource;
//!   [`service::quotas`] so far).
//! - [`ipam`], [`vlan_pool`], [`mac`]: pure allocation helpers.
//! - [`api`]: the two listeners ([`api::start`]); [`api::pods`] and [`api::neutron`] (one
//!   module per collection plus [`api::neutron::query`] for filters/sorting/paging).
//! - [`openapi`]: the `/openapi.json` document.
//!
//! Embedding (tests, benchmarks, a future all-in-one binary):
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use clap::Parser;
//! let config = controller::config::Args::parse_from(["x", "--neutron-port", "0", "--tricircle-port", "0"]).resolve()?;
//! let running = controller::api::start(config).await?;
//! println!("Neutron API on {}", running.neutron_addr);
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod config;
pub mod core;
pub mod error;
pub mod failover;
pub mod failpoint;
pub mod intent;
pub mod ipam;
pub mod jobs;
pub mod keystone;
pub mod mac;
pub mod metrics;
pub mod naming;
pub mod realize;
pub mod run;
pub mod service;
pub mod store;
pub mod vlan_pool;
