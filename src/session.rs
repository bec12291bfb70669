//! An API session: a client for the configured API, or for an in-process sandbox started on a
//! free loopback port (`--sandbox`), and the report list read through it. The report list is
//! an endpoint like any other ([`Endpoint::preset`] of `GET /v1/reports`): its pages are
//! followed by the same [`Pagination`] and read by the same general page reader
//! ([`endpoint::for_each_row`]) as an export's, keeping each row's raw JSON.

use reqwest::Url;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::error::{Error, Result, redact_url};
use crate::sandbox::{self, SANDBOX_PASSWORD, SANDBOX_USERNAME, SandboxOptions};
use crate::settings::Api;
use crate::source::auth::Credentials;
use crate::source::client::{ApiClient, Connection};
use crate::source::endpoint::{self, Endpoint};
use crate::source::paginate::Pagination;
use crate::source::reports::{ReportFields, ReportList};

/// Every report request, read with `fields` (see [`ReportFields`]).
pub async fn list_reports(api: &Api, fields: &ReportFields) -> Result<ReportList> {
    let session = ApiSession::start(api).await?;
    report_requests(&session.client, fields).await
}

/// Every report request (all pages of `GET /v1/reports`), read with `fields`; each keeps the
/// raw JSON the API sent. A page that is not in the API's shape is an [`Error::Page`] (one
/// without rows at `$.data.rows` names the keys it has); a listing with rows but no
/// recognisable id is an [`Error::ReportList`].
pub async fn report_requests(client: &ApiClient, fields: &ReportFields) -> Result<ReportList> {
    let list = Endpoint::preset(client.endpoint(&["v1", "reports"]));
    let mut rows: Vec<Box<RawValue>> = Vec::new();
    let mut pages = Pagination::new(list.url.clone(), list.paging.clone());
    while let Some((url, at)) = pages.next_page() {
        let page = client.fetch(&list.request, &url, &at).await?;
        let end = endpoint::for_each_row(&list, &page, &at, |row| {
            rows.push(row.to_owned());
            Ok(())
        })?;
        crate::progress::page(end.rows as u64, page.body.len() as u64);
        pages.advance(&url, &end, &at)?;
    }
    ReportList::read(redact_url(&list.url), rows, fields)
}

/// An API client, plus the in-process sandbox it talks to when `--sandbox` is given.
pub(crate) struct ApiSession {
    pub(crate) client: ApiClient,
    _sandbox: Option<oneshot::Sender<()>>,
}

impl ApiSession {
    pub(crate) async fn start(api: &Api) -> Result<Self> {
        match api {
            Api::Remote(connection) => Ok(ApiSession {
                client: ApiClient::new(connection)?,
                _sandbox: None,
            }),
            Api::Sandbox(limits) => {
                let (connection, stop) = start_sandbox(SandboxOptions::default()).await?;
                Ok(ApiSession {
                    client: ApiClient::new(&connection.with_limits(*limits))?,
                    _sandbox: Some(stop),
                })
            }
        }
    }
}

/// Starts a sandbox serving `options` on a free loopback port and returns a connection that
/// logs in to it; it stops when the returned sender is dropped.
pub async fn start_sandbox(options: SandboxOptions) -> Result<(Connection, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Sandbox(format!("cannot bind 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Sandbox(format!("no local address: {e}")))?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sandbox::run(listener, options, async move {
        let _ = stopped.await;
    }));
    let api_base =
        Url::parse(&format!("http://{addr}")).map_err(|e| Error::Sandbox(e.to_string()))?;
    let auth_url = api_base
        .join("/v1/auth/token")
        .map_err(|e| Error::Sandbox(e.to_string()))?;
    let connection = Connection::new(
        api_base,
        Credentials::Login {
            auth_url,
            username: SANDBOX_USERNAME.to_string(),
            password: crate::secret::Secret::new(SANDBOX_PASSWORD),
        },
    );
    Ok((connection, stop))
}
