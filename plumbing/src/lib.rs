//! Node plumbing: network namespaces, links, addresses, routes, NAT and probes.
