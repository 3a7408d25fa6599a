//! `/v2.0/{networks,subnets,ports,routers,floatingips,subnetpools}/{id}/tags[/{tag}]` (Neutron's
//! `standard-attr-tag` and `tag-creation`), and the `tags` attribute of create bodies.
//!
//! | method and path     | does                               | answers       |
//! | ------------------- | ---------------------------------- | ------------- |
//! | `GET .../tags`      | the tags                           | 200 `{"tags"}` |
//! | `PUT .../tags`      | replace them (`{"tags": [...]}`)   | 200 `{"tags"}` |
//! | `POST .../tags`     | add these (`{"tags": [...]}`)      | 200 `{"tags"}` |
//! | `DELETE .../tags`   | remove every tag                   | 204           |
//! | `GET .../tags/T`    | whether it has T                   | 204 / 404     |
//! | `PUT .../tags/T`    | add T                              | 201           |
//! | `DELETE .../tags/T` | remove T                           | 204 / 404     |

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::Body;
use crate::api::{json as respond, method_not_allowed, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::tags;
use crate::store::Tagged;

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    kind: Tagged,
    id: &str,
    rest: &[&str],
) -> Result<Response, DomainError> {
    match rest {
        [] => match ctx.method {
            Method::GET => {
                let t = tags::get(app, who, kind, id).await?;
                Ok(respond(StatusCode::OK, &json!({ "tags": t })))
            }
            Method::PUT => {
                let t = tags::replace(app, who, kind, id, &tags_body(ctx)?).await?;
                Ok(respond(StatusCode::OK, &json!({ "tags": t })))
            }
            Method::POST => {
                let t = tags::add(app, who, kind, id, &tags_body(ctx)?).await?;
                Ok(respond(StatusCode::OK, &json!({ "tags": t })))
            }
            Method::DELETE => {
                tags::clear(app, who, kind, id).await?;
                Ok(no_content())
            }
            _ => Err(method_not_allowed(ctx)),
        },
        [tag] => {
            let tag = percent_decode(tag)?;
            match ctx.method {
                Method::GET => {
                    tags::check(app, who, kind, id, &tag).await?;
                    Ok(no_content())
                }
                Method::PUT => {
                    tags::add_one(app, who, kind, id, &tag).await?;
                    Ok(axum::response::IntoResponse::into_response(
                        StatusCode::CREATED,
                    ))
                }
                Method::DELETE => {
                    tags::remove_one(app, who, kind, id, &tag).await?;
                    Ok(no_content())
                }
                _ => Err(method_not_allowed(ctx)),
            }
        }
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}

/// The tags of one resource, for its rendering.
pub(crate) async fn of(app: &App, kind: Tagged, id: &str) -> Result<Vec<String>, DomainError> {
    Ok(app.store.tags_of(kind, id).await?)
}

/// The tags of every resource of a kind, for rendering a list.
pub(crate) async fn all(app: &App, kind: Tagged) -> Result<TagsById, DomainError> {
    Ok(TagsById(app.store.tags_by_id(kind).await?))
}

/// Tags by resource id.
pub(crate) struct TagsById(std::collections::HashMap<String, Vec<String>>);

impl TagsById {
    /// The tags of `id` (none when it has none).
    pub(crate) fn get(&self, id: &str) -> &[String] {
        self.0.get(id).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// `{"tags": ["a", "b"]}`, nothing else.
fn tags_body(ctx: &Ctx) -> Result<Vec<String>, DomainError> {
    let invalid = || DomainError::invalid_input("tags", "the body must be {\"tags\": [...]}");
    let v: Value = serde_json::from_slice(&ctx.body).map_err(|_| invalid())?;
    let Value::Object(m) = v else {
        return Err(invalid());
    };
    let mut b = Body::new(m);
    let t = create_tags(&mut b)?.ok_or_else(invalid)?;
    b.finish()?;
    Ok(t)
}

/// The `tags` of a create body (validated; `None` when absent or null).
pub(crate) fn create_tags(b: &mut Body) -> Result<Option<Vec<String>>, DomainError> {
    if let Some(Value::Null) = b.peek("tags") {
        b.raw("tags");
        return Ok(None);
    }
    let t = b.string_list("tags")?;
    if let Some(t) = &t {
        tags::validate_tags(t)?;
    }
    Ok(t)
}

/// 400 for `tags` in an update body: they change through `.../tags` only, as in Neutron.
pub(crate) fn refuse_in_update(b: &Body, collection: &str) -> Result<(), DomainError> {
    if b.has("tags") {
        return Err(DomainError::bad_request(format!(
            "Cannot update read-only attribute tags: use PUT /v2.0/{collection}/{{id}}/tags"
        )));
    }
    Ok(())
}

/// A path segment as sent (`%2F`, `%20`...), decoded; 400 when it is not UTF-8.
fn percent_decode(seg: &str) -> Result<String, DomainError> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| DomainError::invalid_input("tag", "the tag in the path is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_path_segments() {
        assert_eq!(super::percent_decode("a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(super::percent_decode("100%").unwrap(), "100%");
        assert_eq!(super::percent_decode("%E2%82%AC").unwrap(), "€");
        assert!(super::percent_decode("%FF").is_err());
    }
}
