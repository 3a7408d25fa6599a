//! crosspod controller core: configuration, token auth, the store (SQLite or PostgreSQL),
//! allocators (VLAN, IP, MAC), and the Tricircle pod API and Neutron v2.0 API servers.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod ipam;
pub mod mac;
pub mod openapi;
pub mod store;
pub mod vlan_pool;
