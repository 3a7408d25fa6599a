//! The route templates both APIs serve, for metrics labels: a request is labelled by the
//! template its path matches (`/v2.0/ports/{id}`), every other path by [`UNMATCHED`], so
//! junk paths cannot grow `/metrics`. Keep in step with the handlers' `match`es; a template
//! listed here but not (yet) served only labels its 404s.

/// The label of every path no template matches.
pub const UNMATCHED: &str = "unmatched";

/// Neutron API templates; `{…}` matches any one segment.
const NEUTRON: &[&str] = &[
    "/",
    "/openapi",
    "/v2.0",
    "/v2.0/extensions",
    "/v2.0/extensions/{alias}",
    "/v2.0/availability_zones",
    "/v2.0/networks",
    "/v2.0/networks/{id}",
    "/v2.0/subnets",
    "/v2.0/subnets/{id}",
    "/v2.0/subnetpools",
    "/v2.0/subnetpools/{id}",
    "/v2.0/subnetpools/{id}/add_prefixes",
    "/v2.0/subnetpools/{id}/remove_prefixes",
    "/v2.0/address-scopes",
    "/v2.0/address-scopes/{id}",
    "/v2.0/ports",
    "/v2.0/ports/{id}",
    "/v2.0/security-groups",
    "/v2.0/security-groups/{id}",
    "/v2.0/security-group-rules",
    "/v2.0/security-group-rules/{id}",
    "/v2.0/routers",
    "/v2.0/routers/{id}",
    "/v2.0/agents",
    "/v2.0/agents/{id}",
    "/v2.0/network-ip-availabilities",
    "/v2.0/network-ip-availabilities/{id}",
    "/v2.0/routers/{id}/add_router_interface",
    "/v2.0/routers/{id}/add_extraroutes",
    "/v2.0/routers/{id}/remove_extraroutes",
    "/v2.0/routers/{id}/remove_router_interface",
    "/v2.0/floatingips",
    "/v2.0/floatingips/{id}",
    "/v2.0/quotas",
    "/v2.0/quotas/{project_id}",
    "/v2.0/quotas/{project_id}/details",
    "/v2.0/networks/{id}/tags",
    "/v2.0/networks/{id}/tags/{tag}",
    "/v2.0/subnets/{id}/tags",
    "/v2.0/subnets/{id}/tags/{tag}",
    "/v2.0/ports/{id}/tags",
    "/v2.0/ports/{id}/tags/{tag}",
    "/v2.0/routers/{id}/tags",
    "/v2.0/routers/{id}/tags/{tag}",
    "/v2.0/floatingips/{id}/tags",
    "/v2.0/floatingips/{id}/tags/{tag}",
    "/v2.0/subnetpools/{id}/tags",
    "/v2.0/subnetpools/{id}/tags/{tag}",
    "/v2.0/security-groups/{id}/tags",
    "/v2.0/security-groups/{id}/tags/{tag}",
];

/// Tricircle API templates (pods, agents, jobs, routings, metrics); fixed segments before
/// `{…}` ones, since the first match wins.
const TRICIRCLE: &[&str] = &[
    "/",
    "/openapi",
    "/metrics",
    "/v1.0/pods",
    "/v1.0/pods/{id}",
    "/v1.0/agents",
    "/v1.0/agents/{node}",
    "/v1.0/agents/{node}/desired",
    "/v1.0/agents/{node}/status",
    "/v1.0/resync",
    "/v1.0/routers/{id}/realized",
    "/v1.0/routers/{id}/placement",
    "/v1.0/jobs",
    "/v1.0/jobs/detail",
    "/v1.0/jobs/schemas",
    "/v1.0/jobs/{id}",
    "/v1.0/routings",
    "/v1.0/routings/{id}",
];

/// The template `path` matches on `api` (`"neutron"` or `"tricircle"`), or [`UNMATCHED`].
/// Paths are read as the handlers read them: a trailing `/` and a `.json` suffix ignored.
pub fn template(api: &str, path: &str) -> &'static str {
    let table = match api {
        "neutron" => NEUTRON,
        "tricircle" | "agent" => TRICIRCLE,
        _ => return UNMATCHED,
    };
    let trimmed = path.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".json").unwrap_or(trimmed);
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    table
        .iter()
        .find(|t| {
            let tsegs: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
            tsegs.len() == segs.len()
                && tsegs
                    .iter()
                    .zip(&segs)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .copied()
        .unwrap_or(UNMATCHED)
}

/// The method as a label: the standard ones by name, any extension method as `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_templates_or_unmatched() {
        assert_eq!(
            template(
                "neutron",
                "/v2.0/ports/3f0c9a1e-6b2d-4a8e-9c1f-000000000001.json"
            ),
            "/v2.0/ports/{id}"
        );
        assert_eq!(
            template("neutron", "/v2.0/routers/r1/add_router_interface"),
            "/v2.0/routers/{id}/add_router_interface"
        );
        assert_eq!(
            template("tricircle", "/v1.0/agents/node1/desired/"),
            "/v1.0/agents/{node}/desired"
        );
        assert_eq!(
            template("neutron", "/v2.0/floatingips/f1/tags/red%2Fblue"),
            "/v2.0/floatingips/{id}/tags/{tag}"
        );
        assert_eq!(
            template("neutron", "/v2.0/subnets/s1/tags/"),
            "/v2.0/subnets/{id}/tags"
        );
        assert_eq!(template("tricircle", "/"), "/");
        assert_eq!(
            template("tricircle", "/v1.0/jobs/detail"),
            "/v1.0/jobs/detail"
        );
        assert_eq!(template("tricircle", "/v1.0/jobs/x"), "/v1.0/jobs/{id}");
        assert_eq!(
            template("tricircle", "/v1.0/routings/42"),
            "/v1.0/routings/{id}"
        );
        assert_eq!(template("neutron", "/v2.0/ports/a/b/c"), UNMATCHED);
        assert_eq!(template("neutron", "/v1.0/pods"), UNMATCHED);
        assert_eq!(template("tricircle", "/x\"y\\z%0A"), UNMATCHED);
        assert_eq!(
            method_label(&axum::http::Method::from_bytes(b"JUNK").unwrap()),
            "other"
        );
    }
}
