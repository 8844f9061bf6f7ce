//! Errors as clients expect them: OpenAI's `{"error": {message, type,
//! param, code}}` on `/v1/*`, text-embeddings-inference's `{"error",
//! "error_type"}` elsewhere.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API's error shape to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI (`/v1/*`).
    OpenAi,
    /// text-embeddings-inference (`/embed`, `/tokenize`, …).
    Tei,
}

impl Flavor {
    /// The flavor of a request path.
    pub fn of_path(path: &str) -> Flavor {
        if path.starts_with("/v1/") {
            Flavor::OpenAi
        } else {
            Flavor::Tei
        }
    }
}

/// What went wrong, independent of the error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The body is not JSON.
    Syntax,
    /// JSON of the wrong shape, or a value out of range.
    Validation,
    /// No input at all, or an input that tokenizes to nothing.
    Empty,
    /// An input or the request has more tokens than allowed, or the body is
    /// larger than the limit.
    TooLarge,
    /// The queue is full.
    Overloaded,
    /// The server is shutting down.
    Unavailable,
    /// Missing or wrong API key.
    Unauthorized,
    /// No such route.
    NotFound,
    /// The route exists, but not for this method.
    MethodNotAllowed,
    /// The request body did not arrive in time.
    Timeout,
    /// Inference failed.
    Backend,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The API whose shape to use.
    pub flavor: Flavor,
    /// What went wrong.
    pub kind: Kind,
    /// A message that names what is wrong.
    pub message: String,
    /// The request field at fault (OpenAI's `param`).
    pub param: Option<&'static str>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(flavor: Flavor, kind: Kind, message: impl Into<String>) -> Self {
        ApiError {
            flavor,
            kind,
            message: message.into(),
            param: None,
        }
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match (self.kind, self.flavor) {
            (Kind::Syntax | Kind::Empty, _) | (Kind::Validation, Flavor::OpenAi) => {
                StatusCode::BAD_REQUEST
            }
            (Kind::Validation, Flavor::Tei) => StatusCode::UNPROCESSABLE_ENTITY,
            (Kind::TooLarge, _) => StatusCode::PAYLOAD_TOO_LARGE,
            (Kind::Overloaded, _) => StatusCode::TOO_MANY_REQUESTS,
            (Kind::Unavailable, _) => StatusCode::SERVICE_UNAVAILABLE,
            (Kind::Unauthorized, _) => StatusCode::UNAUTHORIZED,
            (Kind::NotFound, _) => StatusCode::NOT_FOUND,
            (Kind::MethodNotAllowed, _) => StatusCode::METHOD_NOT_ALLOWED,
            (Kind::Timeout, _) => StatusCode::REQUEST_TIMEOUT,
            (Kind::Backend, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn openai_type(&self) -> (&'static str, Option<&'static str>) {
        match self.kind {
            Kind::Syntax | Kind::Validation | Kind::Empty => ("invalid_request_error", None),
            Kind::TooLarge => ("invalid_request_error", Some("context_length_exceeded")),
            Kind::Overloaded => ("rate_limit_exceeded", Some("rate_limit_exceeded")),
            Kind::Unavailable => ("server_error", Some("shutting_down")),
            Kind::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
            Kind::NotFound => ("invalid_request_error", Some("not_found")),
            Kind::MethodNotAllowed => ("invalid_request_error", Some("method_not_allowed")),
            Kind::Timeout => ("invalid_request_error", Some("timeout")),
            Kind::Backend => ("server_error", None),
        }
    }

    fn tei_type(&self) -> &'static str {
        match self.kind {
            Kind::Syntax
            | Kind::Validation
            | Kind::TooLarge
            | Kind::NotFound
            | Kind::MethodNotAllowed
            | Kind::Timeout => "validation",
            Kind::Empty => "empty",
            Kind::Overloaded => "overloaded",
            Kind::Unavailable => "unhealthy",
            Kind::Unauthorized => "unauthorized",
            Kind::Backend => "backend",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self.flavor {
            Flavor::OpenAi => {
                let (kind, code) = self.openai_type();
                json!({"error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": code,
                }})
            }
            Flavor::Tei => json!({"error": self.message, "error_type": self.tei_type()}),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if self.kind == Kind::Unauthorized {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Maps a library error on user input to an API error.
pub fn from_kiln(flavor: Flavor, e: &crate::Error) -> ApiError {
    use crate::Error as E;
    use crate::grammar::GrammarError;
    let kind = match e {
        E::Empty => Kind::Empty,
        E::TooLong { .. } | E::PromptTooLong { .. } => Kind::TooLarge,
        E::Template(_) | E::BadRole(_) => Kind::Validation,
        E::BadDim { .. }
        | E::UnknownTask { .. }
        | E::BadToken { .. }
        | E::Tokenizer(_)
        | E::BadChunkSpan { .. }
        | E::BadChunking { .. } => Kind::Validation,
        // A grammar that cannot be followed part way is the server's
        // failure; one that cannot be compiled is the request's.
        E::Grammar(g) => match g {
            GrammarError::DeadEnd { .. } | GrammarError::Rejected { .. } => Kind::Backend,
            _ => Kind::Validation,
        },
        _ => Kind::Backend,
    };
    let param = match e {
        E::BadDim { .. } => Some("dimensions"),
        E::UnknownTask { .. } => Some("prompt_name"),
        E::BadChunkSpan { .. } | E::BadChunking { .. } => Some("chunking"),
        _ => None,
    };
    ApiError {
        flavor,
        kind,
        message: e.to_string(),
        param,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_flavor() {
        let v = |f| ApiError::new(f, Kind::Validation, "x").status();
        assert_eq!(v(Flavor::OpenAi), StatusCode::BAD_REQUEST);
        assert_eq!(v(Flavor::Tei), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            ApiError::new(Flavor::Tei, Kind::Overloaded, "x").status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(Flavor::of_path("/v1/embeddings"), Flavor::OpenAi);
        assert_eq!(Flavor::of_path("/embed"), Flavor::Tei);
    }

    #[test]
    fn grammar_errors_are_the_request_s_unless_found_part_way() {
        use crate::grammar::GrammarError;
        let unsupported = crate::Error::Grammar(GrammarError::Unsupported {
            keyword: "pattern".into(),
            path: "#".into(),
            reason: "r".into(),
        });
        let e = from_kiln(Flavor::OpenAi, &unsupported);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message.contains("pattern"), "{}", e.message);
        let dead = crate::Error::Grammar(GrammarError::DeadEnd { generated: 3 });
        assert_eq!(
            from_kiln(Flavor::OpenAi, &dead).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
