//! The OpenAPI document: what each route's annotation says, plus the
//! answers every route can give because of what stands in front of its
//! handler (the token check, the body and deadline limits, the
//! extractors of paths, queries, headers and bodies, the store), so that
//! the document lists every status code a route can answer, and the
//! constraints the server enforces on what it takes ([`constraints`]).

pub mod constraints;

use utoipa::OpenApi as _;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response;
use utoipa::openapi::{OpenApi, RefOr};

use crate::error::PROBLEM_JSON;

/// The service's OpenAPI document, served at `/openapi.json`.
pub fn document() -> OpenApi {
    let mut doc = crate::ApiDoc::openapi();
    for (path, item) in doc.paths.paths.iter_mut() {
        let in_path = path.contains('{');
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_common_answers(operation, in_path);
            constraints::parameters(path, operation);
        }
    }
    if let Some(components) = doc.components.as_mut() {
        constraints::bodies(components);
    }
    doc
}

/// Adds the answers of the layers in front of the handler that the
/// operation does not describe itself.
fn add_common_answers(operation: &mut Operation, in_path: bool) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let with_body = operation.request_body.is_some();
    let with_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
    let mut answers = vec![
        ("400", "A malformed path parameter, query or header."),
        ("408", "Not done within the request deadline."),
        ("500", "An unexpected failure (logged with the request id)."),
        (
            "503",
            "A dependency (the database, Redis, the payment gateway) is unavailable.",
        ),
    ];
    if secured {
        answers.push(("401", "No bearer token, or an invalid or expired one."));
        answers.push(("403", "The token's role may not use this route."));
    }
    if in_path {
        answers.push(("404", "No such resource for this caller."));
    }
    if with_body {
        answers.push((
            "413",
            "The body is over the route's size limit (read and discarded).",
        ));
        answers.push(("415", "The body is not of the media type the route takes."));
        answers.push((
            "422",
            "The body is not what the route takes (syntax, types, values).",
        ));
    }
    if with_query && !with_body {
        answers.push((
            "422",
            "A query parameter out of its range (e.g. a page size, a reason's length).",
        ));
    }
    for (code, description) in answers {
        operation
            .responses
            .responses
            .entry(code.to_owned())
            .or_insert_with(|| RefOr::T(problem(description)));
    }
}

/// A problem+json answer.
fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(None::<RefOr<utoipa::openapi::schema::Schema>>),
    );
    response
}
