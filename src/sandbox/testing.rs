//! Support for the sandbox's unit tests: a sandbox on `127.0.0.1:0` ([`Running`]) with a client
//! that logs in, fetches and follows next links, and small data sets. Tests only: the
//! integration tests have their own support in `tests/it/`.

use std::sync::Arc;

use hyper::header;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::data::SandboxData;
use super::options::{SANDBOX_PASSWORD, SANDBOX_USERNAME, SandboxOptions};
use super::server::run;
use crate::error::Result;

/// A sandbox on 127.0.0.1:0, stopped (and checked to stop cleanly) by [`Running::stop`].
pub(super) struct Running {
    pub(super) base: Url,
    pub(super) http: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    pub(super) async fn start(options: SandboxOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(listener, options, async {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            stop,
            task,
        }
    }

    pub(super) async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }

    pub(super) fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    pub(super) async fn login_with(&self, body: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/auth/token"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub(super) async fn token(&self) -> String {
        let body = json!({"username": SANDBOX_USERNAME, "password": SANDBOX_PASSWORD});
        let reply = self.login_with(&body.to_string()).await;
        assert_eq!(reply.status(), 200);
        let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub(super) async fn get(&self, url: Url, token: Option<&str>) -> (u16, String) {
        let mut request = self.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let reply = request.send().await.unwrap();
        let content_type = reply.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/json");
        (reply.status().as_u16(), reply.text().await.unwrap())
    }

    /// Follows next links from `first`; returns each page's body text.
    pub(super) async fn walk(&self, first: Url, token: &str) -> Vec<String> {
        let mut pages = Vec::new();
        let mut url = Some(first);
        while let Some(current) = url.take() {
            let (status, body) = self.get(current.clone(), Some(token)).await;
            assert_eq!(status, 200, "{current}: {body}");
            let page: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(next) = page["links"]["next"]
                .as_str()
                .filter(|next| !next.is_empty())
            {
                url = Some(current.join(next).unwrap());
            }
            pages.push(body);
            assert!(pages.len() < 100, "pagination does not end");
        }
        pages
    }
}

pub(super) fn options_with(data: SandboxData) -> SandboxOptions {
    SandboxOptions {
        data: Arc::new(data),
        ..SandboxOptions::default()
    }
}

/// The rows of a page as their raw JSON text.
pub(super) fn page_rows(body: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        data: Data<'a>,
    }
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        rows: Vec<&'a RawValue>,
    }
    let page: Page = serde_json::from_str(body).unwrap();
    page.data
        .rows
        .iter()
        .map(|row| row.get().to_owned())
        .collect()
}

pub(super) fn raw_texts(rows: &[Box<RawValue>]) -> Vec<String> {
    rows.iter().map(|row| row.get().to_owned()).collect()
}

/// A data set on disk: one pending report, one completed with six odd rows.
pub(super) fn odd_dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let reports =
        r#"[{"id": "r_done", "status": "completed"}, {"id": "r_wait", "status": "pending"}, 42]"#;
    std::fs::write(dir.path().join("reports.json"), reports).unwrap();
    std::fs::create_dir(dir.path().join("completed-reports")).unwrap();
    let rows = "[1, \"two\", null, {\"a\": [1, 2]},\n [], 1.50]";
    std::fs::write(dir.path().join("completed-reports/r_done.json"), rows).unwrap();
    std::fs::write(dir.path().join("completed-reports/notes.txt"), "not data").unwrap();
    dir
}
