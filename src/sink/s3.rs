//! S3-compatible destinations (`s3://bucket/prefix`): AWS S3, MinIO, Ceph, Cloudflare R2.
//!
//! This module owns what is specific to S3: building `object_store`'s `AmazonS3` from the
//! standard `AWS_*` environment, the cheap check of the bucket before any page is fetched, and
//! turning S3 failures into one short line without the XML body (an S3 error body may echo the
//! signed request, session token included). Writing, staging and committing are the same code
//! as for a local directory ([`super::Destination`]): files are streamed as multipart uploads
//! to `_staging/<run>/...tmp` and published by server-side copy at commit. The one S3-only step
//! of a commit is aborting the unfinished uploads a killed run of the report left behind.
//!
//! Configuration (read by `AmazonS3Builder::from_env`): `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION` (default
//! `us-east-1`), `AWS_ENDPOINT_URL` (MinIO, Ceph, R2, ...), `AWS_ALLOW_HTTP=true` for an
//! `http://` endpoint, and `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true` for virtual-hosted
//! addressing; the default is path-style (`{endpoint}/{bucket}/{key}`), which MinIO-like
//! servers need and AWS still serves.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// The store the preflight check uses gives up after this many retries...
const CHECK_RETRIES: usize = 2;
/// ...or this long, so a wrong endpoint fails in seconds, not after the default 3 minutes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the presigned ListMultipartUploads request stays valid, and may take.
const LISTING_TIMEOUT: Duration = Duration::from_secs(30);

/// What an `s3://` destination needs besides its data store as `dyn ObjectStore`: the bucket
/// check, and the multipart API for uploads a killed run left.
#[derive(Clone)]
pub(super) struct S3Target {
    /// The data store itself.
    data: Arc<AmazonS3>,
    /// The data store's configuration with short retries, for [`S3Target::check`].
    probe: Arc<dyn ObjectStore>,
    bucket: String,
    /// The endpoint as configured, or `AWS` for the default.
    endpoint: String,
}

impl S3Target {
    /// Parses `s3://bucket/prefix` (or `s3a://`) and builds the store from the environment;
    /// returns the data store (default retries: 10 attempts, 3 minutes), the prefix inside the
    /// bucket (`Path::ROOT` for the whole bucket) and the target. Nothing is sent yet.
    pub fn open(out: &str) -> Result<(Arc<dyn ObjectStore>, Path, Self)> {
        let (bucket, root) = parse_url(out)?;
        crate::tls::install();
        let builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        // AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL, as in the builder.
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
            .unwrap_or_else(|| "AWS".to_owned());
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if endpoint.starts_with("http://") && !allow_http {
            return Err(Error::Usage(format!(
                "output {out:?}: endpoint {endpoint} is plain http; set AWS_ALLOW_HTTP=true to allow it"
            )));
        }
        let build = |builder: AmazonS3Builder| {
            builder.build().map_err(|e| {
                Error::Usage(format!(
                    "output {out:?}: cannot configure S3 (endpoint {endpoint}): {}",
                    clean_message(&e)
                ))
            })
        };
        let probe = build(builder.clone().with_retry(RetryConfig {
            max_retries: CHECK_RETRIES,
            retry_timeout: CHECK_TIMEOUT,
            ..RetryConfig::default()
        }))?;
        let data = Arc::new(build(builder)?);
        let target = Self {
            data: Arc::clone(&data),
            probe: Arc::new(probe),
            bucket,
            endpoint,
        };
        Ok((data, root, target))
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Lists the first page under `root`: one request that fails when the endpoint is
    /// unreachable, the credentials are wrong or the bucket does not exist.
    pub async fn check(&self, root: &Path, display: &str) -> Result<()> {
        let prefix = (!root.is_root()).then_some(root);
        let first = self.probe.list(prefix).next().await;
        match first {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(Error::Destination {
                dest: format!("{display}, endpoint {}", self.endpoint),
                reason: check_reason(&e, &self.bucket),
            }),
        }
    }

    /// Aborts the multipart uploads under `prefix` (a full store path) whose key `abort`
    /// accepts: uploads a killed run left, which no listing shows but S3 bills. Reads one
    /// ListMultipartUploads page (1,000 uploads; the rest go at the next commit). Best effort:
    /// failures are logged.
    pub async fn abort_uploads(&self, prefix: &Path, abort: impl Fn(&Path) -> bool) {
        let uploads = match self.list_uploads(prefix).await {
            Ok(uploads) => uploads,
            Err(e) => {
                tracing::warn!(prefix = %prefix, error = %e, "listing unfinished uploads failed");
                return;
            }
        };
        for (key, id) in uploads.into_iter().filter(|(key, _)| abort(key)) {
            match self.data.abort_multipart(&key, &id).await {
                Ok(()) => tracing::debug!(key = %key, "aborted an upload of an earlier run"),
                Err(e) => {
                    tracing::warn!(key = %key, error = %clean_message(&e), "aborting an upload failed")
                }
            }
        }
    }

    /// `(key, upload id)` of the unfinished uploads under `prefix`, through a presigned
    /// ListMultipartUploads request (`object_store` has no call for it). Errors never show the
    /// presigned URL, which carries a signature and any session token.
    async fn list_uploads(
        &self,
        prefix: &Path,
    ) -> std::result::Result<Vec<(Path, String)>, String> {
        let options = SignedUrlOptions::new()
            .with_query([("uploads", String::new()), ("prefix", format!("{prefix}/"))]);
        let url = self
            .data
            .signed_url_opts(reqwest::Method::GET, &Path::ROOT, LISTING_TIMEOUT, &options)
            .await
            .map_err(|e| clean_message(&e))?;
        let client = crate::tls::http_client()
            .timeout(LISTING_TIMEOUT)
            .build()
            .map_err(|e| e.without_url().to_string())?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !status.is_success() {
            let code = xml_tag(&body, "Code").unwrap_or_default();
            return Err(format!("ListMultipartUploads answered {status} {code}"));
        }
        Ok(body
            .split("<Upload>")
            .skip(1)
            .filter_map(|upload| {
                let key = unescape_xml(xml_tag(upload, "Key")?);
                let id = unescape_xml(xml_tag(upload, "UploadId")?);
                Some((Path::parse(key).ok()?, id))
            })
            .collect())
    }
}

/// The text of the first `<name>...</name>` in `xml`, trimmed.
fn xml_tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find('<')?;
    Some(xml[start..start + len].trim())
}

/// Undoes XML's five predefined entities (S3 escapes keys with them).
fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `s3://bucket/prefix` -> the bucket and the prefix as a store path.
fn parse_url(out: &str) -> Result<(String, Path)> {
    let usage = |why: &str| Error::Usage(format!("output {out:?}: {why}"));
    let url = reqwest::Url::parse(out).map_err(|e| usage(&format!("not a valid URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // The URL is not echoed: it holds a secret.
        return Err(Error::Usage(
            "the output URL holds credentials; use s3://bucket/prefix with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(usage("expected s3://bucket/prefix without '?' or '#'"));
    }
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| usage("expected s3://bucket/prefix, found no bucket"))?;
    let root = Path::from_url_path(url.path())
        .map_err(|e| usage(&format!("invalid prefix {:?}: {e}", url.path())))?;
    Ok((bucket.to_owned(), root))
}

/// An S3 failure reduced to one safe line: the text before any XML body, then the body's
/// `<Code>` and `<Message>` (never the rest, which may echo the signed request).
#[derive(Debug)]
struct S3Failure(String);

impl std::fmt::Display for S3Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for S3Failure {}

/// Replaces `e`'s message by [`clean_message`], keeping its kind (`NotFound` stays
/// `NotFound`, so callers that tolerate missing objects still do).
pub(super) fn sanitize(e: object_store::Error) -> object_store::Error {
    let source = Box::new(S3Failure(clean_message(&e)));
    match e {
        object_store::Error::NotFound { path, .. } => {
            object_store::Error::NotFound { path, source }
        }
        object_store::Error::PermissionDenied { path, .. } => {
            object_store::Error::PermissionDenied { path, source }
        }
        object_store::Error::Unauthenticated { path, .. } => {
            object_store::Error::Unauthenticated { path, source }
        }
        _ => object_store::Error::Generic {
            store: "S3",
            source,
        },
    }
}

/// Why the bucket check failed, in plain words first: a missing bucket, refused credentials,
/// an endpoint that does not answer; then the S3 code and message or the transport error.
fn check_reason(e: &object_store::Error, bucket: &str) -> String {
    let text = clean_message(e);
    let detail = |text: &str| {
        text.rfind(" (")
            .map_or(String::new(), |at| text[at..].to_owned())
    };
    if text.contains("NoSuchBucket") {
        format!("bucket {bucket:?} does not exist{}", detail(&text))
    } else if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || text.contains("status code: 403")
        || text.contains("status code: 401")
    {
        format!(
            "access to bucket {bucket:?} denied{}; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN",
            detail(&text)
        )
    } else if !text.contains("status code") {
        format!("cannot reach the endpoint: {text}")
    } else {
        text
    }
}

/// The innermost useful text of `e` on one line, without an XML body; the body's `<Code>`
/// and `<Message>` are appended in parentheses.
pub(super) fn clean_message(e: &dyn std::error::Error) -> String {
    let text = e.to_string();
    let full = text.trim_start_matches("Generic S3 error: ");
    let Some(at) = full.find('<') else {
        return full.to_owned();
    };
    let head = full[..at].trim_end().trim_end_matches(':').trim_end();
    match (xml_tag(full, "Code"), xml_tag(full, "Message")) {
        (Some(code), Some(message)) => format!("{head} ({code}: {message})"),
        (Some(code), None) => format!("{head} ({code})"),
        _ => head.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_bucket_and_prefix() {
        let (bucket, root) = parse_url("s3://my-bucket/exports/kargo/").unwrap();
        assert_eq!(
            (bucket.as_str(), root.as_ref()),
            ("my-bucket", "exports/kargo")
        );
        let (bucket, root) = parse_url("s3a://b").unwrap();
        assert_eq!((bucket.as_str(), root.as_ref()), ("b", ""));
        let (_, root) = parse_url("s3://b/with%20space/x").unwrap();
        assert_eq!(
            root.parts()
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>(),
            ["with space", "x"]
        );
        for bad in [
            "s3:///prefix",
            "s3://key:secret@b/p",
            "s3://b/p?x=1",
            "s3://b/a//c",
        ] {
            assert!(matches!(parse_url(bad), Err(Error::Usage(_))), "{bad}");
        }
        let err = parse_url("s3://key:secret@b/p").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn xml_entities_in_keys_are_undone() {
        assert_eq!(
            unescape_xml("a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos; &amp;lt;"),
            "a&b <c> \"d\" 'e' &lt;"
        );
        assert_eq!(xml_tag("<Upload><Key> k </Key></Upload>", "Key"), Some("k"));
        assert_eq!(xml_tag("<Upload></Upload>", "Key"), None);
    }

    #[test]
    fn xml_bodies_are_cut_to_code_and_message() {
        let body = "Error performing GET http://h/b in 2ms - Server returned non-2xx status code: \
            403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature does not match.</Message>\
            <CanonicalRequest>x-amz-security-token:TOKEN123</CanonicalRequest></Error>";
        let e = S3Failure(body.to_owned());
        let text = clean_message(&e);
        assert_eq!(
            text,
            "Error performing GET http://h/b in 2ms - Server returned non-2xx status code: \
             403 Forbidden (SignatureDoesNotMatch: The request signature does not match.)"
        );
        let plain = S3Failure("connection refused".into());
        assert_eq!(clean_message(&plain), "connection refused");
    }

    #[test]
    fn sanitize_keeps_the_kind_and_check_reasons_are_plain() {
        let denied = || {
            object_store::Error::PermissionDenied {
            path: "p".into(),
            source: Box::new(S3Failure(
                "403 Forbidden: <Error><Code>InvalidAccessKeyId</Code><Message>No such key.</Message></Error>".into(),
            )),
        }
        };
        assert!(matches!(
            sanitize(denied()),
            object_store::Error::PermissionDenied { .. }
        ));
        assert_eq!(
            check_reason(&denied(), "b"),
            "access to bucket \"b\" denied (InvalidAccessKeyId: No such key.); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN"
        );
        let missing = object_store::Error::Generic {
            store: "S3",
            source: Box::new(S3Failure(
                "404 Not Found: <Code>NoSuchBucket</Code><Message>Gone.</Message>".into(),
            )),
        };
        assert_eq!(
            check_reason(&missing, "b"),
            "bucket \"b\" does not exist (NoSuchBucket: Gone.)"
        );
        let listing = object_store::Error::Generic {
            store: "S3",
            source: Box::new(S3Failure(
                "GET - Server returned non-2xx status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code>"
                    .into(),
            )),
        };
        assert!(
            check_reason(&listing, "b")
                .starts_with("access to bucket \"b\" denied (SignatureDoesNotMatch)"),
            "{}",
            check_reason(&listing, "b")
        );
        let refused = object_store::Error::Generic {
            store: "S3",
            source: Box::new(S3Failure("HTTP error: error sending request".into())),
        };
        assert_eq!(
            check_reason(&refused, "b"),
            "cannot reach the endpoint: HTTP error: error sending request"
        );
        let gone = object_store::Error::NotFound {
            path: "p".into(),
            source: Box::new(S3Failure("404".into())),
        };
        assert!(matches!(
            sanitize(gone),
            object_store::Error::NotFound { .. }
        ));
    }
}
