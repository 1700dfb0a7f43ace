//! The HTTP API: routes, replies (JSON, errors as `{"error": "..."}`), the bearer token.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::AsyncReadExt;

use super::jobs::{self, OUTPUTS};
use super::request;
use super::runner::{Refusal, Shared};

pub fn router(sh: Arc<Shared>, token: Option<String>) -> Router {
    let max_body = sh.max_body;
    let routes = Router::new()
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/files/{name}", get(file))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route: the API is under /v1/jobs",
            )
        })
        .with_state(sh)
        .layer(DefaultBodyLimit::max(max_body));
    match token {
        // Outermost, so a request without the token is refused before its body is read.
        Some(token) => {
            let token: Arc<str> = token.into();
            routes.layer(middleware::from_fn(move |req: Request, next: Next| {
                let token = token.clone();
                async move { authorize(&token, req, next).await }
            }))
        }
        None => routes,
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|e| e.to_string()) + "\n";
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

fn refused(r: Refusal, id: &str) -> Response {
    match r {
        Refusal::Full(n) => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("the queue is full ({n} jobs waiting or running); try again later"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            resp
        }
        Refusal::NotFound => not_found(id),
        Refusal::Finished(state) => error(
            StatusCode::CONFLICT,
            &format!("job {id} has already ended ({})", state_name(state)),
        ),
        Refusal::Storage(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the server could not store the job: {e}"),
        ),
    }
}

fn state_name(state: jobs::State) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no job {id}"))
}

async fn submit(State(sh): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = sh.max_body;
            return error(
                r.status(),
                &format!("the request body is larger than {limit} bytes"),
            );
        }
        Err(r) => return error(r.status(), &r.body_text()),
    };
    // Checking paths and storing the record touch the disk: off the runtime's threads.
    let store = sh.clone();
    let submitted = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let spec = request::parse(&body, &store.root)?;
        Ok(store.submit(spec))
    })
    .await;
    let submitted = match submitted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match submitted {
        Ok(job) => {
            let mut resp = json(StatusCode::ACCEPTED, &serde_json::json!({ "id": job.id }));
            if let Ok(at) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
                resp.headers_mut().insert(header::LOCATION, at);
            }
            resp
        }
        Err(r) => refused(r, ""),
    }
}

async fn list(State(sh): State<Arc<Shared>>) -> Response {
    #[derive(serde::Serialize)]
    struct List {
        jobs: Vec<jobs::Job>,
    }
    json(StatusCode::OK, &List { jobs: sh.list() })
}

async fn show(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match sh.get(&id) {
        Some(job) => json(StatusCode::OK, &job),
        None => not_found(&id),
    }
}

async fn cancel(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match sh.cancel(&id) {
        Ok(job) => json(StatusCode::OK, &job),
        Err(r) => refused(r, &id),
    }
}

async fn file(State(sh): State<Arc<Shared>>, Path((id, name)): Path<(String, String)>) -> Response {
    let Some(job) = sh.get(&id) else {
        return not_found(&id);
    };
    // Only the fixed output names: a name never reaches the file system otherwise.
    let Some((name, kind)) = OUTPUTS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = OUTPUTS.iter().map(|(n, _)| *n).collect();
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "no output {name:?}; a job's outputs are {}",
                names.join(", ")
            ),
        );
    };
    if job.state != jobs::State::Done {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "job {id} has no outputs ({}); they exist once it is done",
                state_name(job.state)
            ),
        );
    }
    let path = sh.store.dir(&job.id).join("out").join(name);
    let opened = match tokio::fs::File::open(&path).await {
        Ok(f) => f.metadata().await.map(|m| (f, m.len())),
        Err(e) => Err(e),
    };
    let Ok((f, len)) = opened else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("job {id} has no {name} (written by an older run or removed)"),
        );
    };
    // Streamed in 64 KiB pieces: coords.safetensors of a large model does not fit in memory.
    let chunks = futures_util::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0; 64 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

async fn authorize(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "send the server's token as `Authorization: Bearer <token>`",
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

/// Compares in time independent of where the bytes differ, so timing does not reveal the
/// token a prefix at a time (only its length, which a long random token need not hide).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
        assert!(!super::same(b"", b"a"));
    }
}
