//! `kargo-export sandbox`: its flags checked into [`SandboxOptions`], and the server run until
//! Ctrl-C.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Url;

use crate::cli::{LastLinkArg, LinkStyleArg, SandboxArgs};
use crate::error::{Error, Result};
use crate::sandbox::request_log::RequestLog;
use crate::sandbox::{Faults, LastLink, LinkStyle, SandboxData, SandboxOptions};

/// Serves until Ctrl-C, after printing where.
pub async fn serve(addr: SocketAddr, options: SandboxOptions) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Sandbox(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Sandbox(format!("no local address: {e}")))?;
    println!(
        "sandbox listening on http://{bound} (username {:?}, password {:?})",
        options.username, options.password
    );
    crate::sandbox::run(listener, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// The checked options of `kargo-export sandbox`, and the address to listen on.
pub fn options(args: &SandboxArgs) -> Result<(SocketAddr, SandboxOptions)> {
    let mut data = match &args.data {
        Some(dir) => SandboxData::load(dir)?,
        None => SandboxData::embedded(),
    };
    if args.page_size == 0 {
        return Err(Error::Usage("--page-size must be at least 1".into()));
    }
    let specs = args
        .synthetic
        .iter()
        .map(|spec| crate::sandbox::synthetic::parse_spec(spec))
        .collect::<Result<Vec<_>>>()?;
    // Checked before rendering anything, since rendering a large report takes a while.
    let mut seen = HashSet::new();
    if let Some((id, _)) = specs.iter().find(|(id, _)| !seen.insert(id)) {
        return Err(Error::Usage(format!(
            "--synthetic names report {id:?} twice"
        )));
    }
    let prerender = crate::sandbox::Prerender {
        page_size: args.page_size,
        gzip: args.gzip,
    };
    for (id, rows) in specs {
        let report = crate::sandbox::synthetic::SyntheticReport::new(rows, args.seed)
            .with_order(args.synthetic_order);
        data.add_synthetic(&id, report, Some(prerender))?;
    }
    let link_style = match args.link_style {
        LinkStyleArg::Absolute => LinkStyle::Absolute,
        LinkStyleArg::RootRelative => LinkStyle::RootRelative,
        LinkStyleArg::QueryRelative => LinkStyle::QueryRelative,
    };
    let fail_status = hyper::StatusCode::from_u16(args.fail_status)
        .ok()
        .filter(|status| status.is_client_error() || status.is_server_error())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--fail-status must be an error status (400-599), found {}",
                args.fail_status
            ))
        })?;
    let faults = Faults {
        fail_first: args.fail_first,
        fail_page: args.fail_page,
        fail_status,
        fail_requests: args.fail_request.clone(),
        retry_after: sandbox_retry_after(&args.retry_after)?,
        truncate_every: args.truncate_every,
        malformed_every: args.malformed_every,
        stall_first: args.stall_first,
        loop_at: args.loop_at,
    };
    let next_origin = args
        .next_origin
        .as_deref()
        .map(|raw| {
            Url::parse(raw)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                .map(|url| url.origin().ascii_serialization())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--next-origin must be an http(s) URL such as http://127.0.0.1:9000, found {raw:?}"
                    ))
                })
        })
        .transpose()?;
    Ok((
        args.addr,
        SandboxOptions {
            data: Arc::new(data),
            page_size: args.page_size,
            link_style,
            last_link: match args.last_link {
                LastLinkArg::Absent => LastLink::Absent,
                LastLinkArg::Null => LastLink::Null,
                LastLinkArg::Empty => LastLink::Empty,
            },
            token_ttl_secs: args.token_ttl,
            faults,
            next_origin,
            request_log: match &args.request_log {
                Some(path) => Some(Arc::new(RequestLog::create(path)?)),
                None => None,
            },
            submit: crate::sandbox::submit::SubmitOptions {
                complete_after: std::time::Duration::from_millis(args.complete_after_ms),
                fail: args.fail_submissions,
                id_key: args.submit_id_key.clone(),
                numeric_ids: args.submit_numeric_ids,
                ..Default::default()
            },
            gzip: args.gzip,
            ..SandboxOptions::default()
        },
    ))
}

/// `--retry-after`: delay-seconds or an HTTP date as the header, or `none` for no header.
fn sandbox_retry_after(value: &str) -> Result<Option<hyper::header::HeaderValue>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let valid = value.parse::<u64>().is_ok() || chrono::DateTime::parse_from_rfc2822(value).is_ok();
    valid
        .then(|| hyper::header::HeaderValue::from_str(value).ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--retry-after must be seconds, an HTTP date or none, found {value:?}"
            ))
        })
}
