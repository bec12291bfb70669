//! S3 test support for `s3`: the S3-compatible server the tests export to, the environment that
//! points the binary at it, a bucket per test read back through the S3 API (keys, sizes, ETags,
//! multipart uploads in progress, whole prefixes downloaded to a temp dir so the Parquet reads
//! like a local dataset) and a proxy that breaks or holds back one part of every multipart upload.
//! It holds no test: the scenarios and their data stay in `s3`, and what other themes share
//! (`assert_no_secret`, reading a dataset or a manifest back) in `util`.
//!
//! The server: `KARGO_TEST_S3_ENDPOINT` when set (`.ci/run` starts one), otherwise a moto
//! server this test binary starts once on a free port and that exits when the binary does (it
//! waits for its stdin to close). Without moto the tests fail and say what to install.
//! Credential checks need a server that verifies signatures: a second moto with
//! `INITIAL_NO_AUTH_ACTION_COUNT=0`, always started here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use crate::runs::*;
use crate::util::*;

/// What `.ci/run` installs; named in the failure when moto is missing.
const MOTO: &str = "moto[server]==5.2.1";
/// An S3 endpoint to use instead of starting moto here.
const ENDPOINT_ENV: &str = "KARGO_TEST_S3_ENDPOINT";
/// Credentials moto accepts when it does not verify signatures.
const KEY_ID: &str = "kargo-test-key";
const SECRET_KEY: &str = "s3-secret-value-never-shown";
const SESSION_TOKEN: &str = "s3-session-token-never-shown";
/// The Kargo token of [`offline_api`].
const OFFLINE_TOKEN: &str = "kargo-token-never-shown";
/// What must never show in the output of a command from [`with_s3`] or [`offline_api`].
pub const S3_SECRETS: [&str; 3] = [SECRET_KEY, SESSION_TOKEN, OFFLINE_TOKEN];

/// `command` with the S3 environment of the test server and nothing inherited from `AWS_*`.
pub fn with_s3(mut command: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ALLOW_HTTP", "true");
    command
}

/// [`run`] with the S3 environment and the endpoint key.
pub fn run_s3(file: &Path, extra: &[&str]) -> (Output, Value) {
    run_in(with_endpoint_key(with_s3(binary())), file, extra)
}

/// The binary with an API that is never reached: the destination check must fail first.
pub fn offline_api() -> Command {
    let mut command = binary();
    command
        .args(["--api-base", &closed_port_url()])
        .env("KARGO_TOKEN", OFFLINE_TOKEN);
    command
}

/// `http://127.0.0.1:PORT` where nothing listens.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A bucket of its own for one test, on the plain (no signature check) server.
pub struct Bucket {
    name: String,
    pub store: AmazonS3,
}

impl Bucket {
    pub fn create(label: &str) -> Bucket {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("kargo-{label}-{}-{n}", std::process::id());
        let status = runtime().block_on(async {
            kargo_export::tls::http_client()
                .build()
                .unwrap()
                .put(format!("{}/{name}", endpoint()))
                .send()
                .await
                .expect("create bucket")
                .status()
        });
        assert!(status.is_success(), "creating bucket {name}: {status}");
        kargo_export::tls::install();
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint())
            .with_bucket_name(&name)
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET_KEY)
            .with_region("us-east-1")
            .with_allow_http(true)
            .build()
            .unwrap();
        Bucket { name, store }
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.name)
    }

    /// Every object's key and size, sorted.
    pub fn sizes(&self) -> Vec<(String, u64)> {
        let mut objects: Vec<(String, u64)> = runtime()
            .block_on(self.store.list(None).try_collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|o| (o.location.to_string(), o.size))
            .collect();
        objects.sort();
        objects
    }

    /// Every object's key, ETag and last-modified time, sorted: what a rewrite changes.
    pub fn objects(&self) -> Vec<(String, Option<String>, String)> {
        let mut objects: Vec<_> = runtime()
            .block_on(self.store.list(None).try_collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|o| {
                (
                    o.location.to_string(),
                    o.e_tag,
                    o.last_modified.to_rfc3339(),
                )
            })
            .collect();
        objects.sort();
        objects
    }

    /// The bytes of object `key`.
    pub fn get(&self, key: &str) -> Bytes {
        runtime().block_on(async {
            let got = self.store.get(&ObjectPath::from(key)).await.unwrap();
            got.bytes().await.unwrap()
        })
    }

    /// Every object's key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.sizes().into_iter().map(|(k, _)| k).collect()
    }

    /// Asserts that no multipart upload is left in progress and no `_staging` object is left.
    pub fn assert_no_leftovers(&self) {
        assert_eq!(
            self.uploads(),
            Vec::<String>::new(),
            "orphan multipart uploads"
        );
        let keys = self.keys();
        assert!(!keys.iter().any(|k| k.contains("_staging")), "{keys:?}");
    }

    /// Downloads every object under `prefix` into a temp dir, keeping relative keys as paths,
    /// so the tests read the dataset as they read a local one.
    pub fn download(&self, prefix: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = ObjectPath::from(prefix);
        runtime().block_on(async {
            let objects: Vec<_> = self.store.list(Some(&root)).try_collect().await.unwrap();
            for object in objects {
                let bytes = self
                    .store
                    .get(&object.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let rel: Vec<_> = object.location.prefix_match(&root).unwrap().collect();
                let path = rel
                    .iter()
                    .fold(dir.path().to_path_buf(), |p, part| p.join(part.as_ref()));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
        });
        dir
    }

    /// Keys of the multipart uploads in progress (ListMultipartUploads).
    pub fn uploads(&self) -> Vec<String> {
        let body = runtime().block_on(async {
            kargo_export::tls::http_client()
                .build()
                .unwrap()
                .get(format!("{}/{}?uploads", endpoint(), self.name))
                .send()
                .await
                .expect("list uploads")
                .text()
                .await
                .unwrap()
        });
        assert!(body.contains("ListMultipartUploadsResult"), "{body}");
        body.split("<Upload>")
            .skip(1)
            .map(|upload| {
                let key = upload
                    .split("<Key>")
                    .nth(1)
                    .and_then(|k| k.split("</Key>").next());
                key.unwrap_or_default().to_owned()
            })
            .collect()
    }
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The plain S3 endpoint: `KARGO_TEST_S3_ENDPOINT`, or a moto started once for this binary.
pub fn endpoint() -> &'static str {
    static PLAIN: OnceLock<String> = OnceLock::new();
    PLAIN.get_or_init(|| match std::env::var(ENDPOINT_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => start_moto(false),
    })
}

/// A moto that verifies signatures (no key is valid: it has no IAM users).
pub fn auth_endpoint() -> &'static str {
    static AUTH: OnceLock<String> = OnceLock::new();
    AUTH.get_or_init(|| start_moto(true))
}

/// Runs moto on a free port; it stops when its stdin closes, which happens when this test
/// binary exits (the child handle is leaked on purpose, so the pipe stays open until then).
fn start_moto(verify_signatures: bool) -> String {
    const SCRIPT: &str = r#"
import sys
try:
    from moto.server import ThreadedMotoServer
except ImportError as e:
    print("moto missing:", e, flush=True)
    sys.exit(3)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;
    let mut command = Command::new("python3");
    command
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if verify_signatures {
        command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
    }
    let missing = |why: String| -> ! {
        panic!("the S3 tests need moto: pip install '{MOTO}' (or set {ENDPOINT_ENV}); {why}")
    };
    let mut child: Child = command
        .spawn()
        .unwrap_or_else(|e| missing(format!("python3: {e}")));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Ok(port) = line.trim().parse::<u16>() else {
        missing(format!("moto said {line:?}"))
    };
    std::mem::forget(child);
    format!("http://127.0.0.1:{port}")
}

/// What the proxy does to the targeted part of every multipart upload.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answers `400 InvalidRequest` (a client error: not retried).
    Refuse,
    /// Forwards it after this long.
    Delay(Duration),
}

/// An HTTP proxy in front of the S3 server that applies a [`Fault`] to part `part` of every
/// multipart upload and forwards everything else unchanged.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub endpoint: String,
    state: Arc<ProxyState>,
    _runtime: tokio::runtime::Runtime,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    /// `partNumber=N&`, matched against the query followed by `&`.
    part: String,
    fault: Fault,
    /// Requests for the targeted part so far.
    hits: AtomicU32,
}

impl FaultProxy {
    pub fn start(upstream: &str, part: u32, fault: Fault) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            client: kargo_export::tls::http_client().build().unwrap(),
            part: format!("partNumber={part}&"),
            fault,
            hits: AtomicU32::new(0),
        });
        let shared = Arc::clone(&state);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let service = hyper::service::service_fn(move |request| {
                    let state = Arc::clone(&state);
                    async move { state.handle(request).await }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        FaultProxy {
            endpoint,
            state,
            _runtime: runtime,
        }
    }

    /// Requests for the targeted part so far.
    pub fn hits(&self) -> u32 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Waits (at most a minute) until the targeted part has been sent.
    pub fn wait_for_hit(&self) {
        let started = Instant::now();
        while self.hits() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the targeted part was never sent"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl ProxyState {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
        let query = format!("{}&", request.uri().query().unwrap_or(""));
        if request.method() == hyper::Method::PUT && query.contains(&self.part) {
            self.hits.fetch_add(1, Ordering::SeqCst);
            match self.fault {
                Fault::Refuse => {
                    // Read the part first: answering while the client still sends it can
                    // reset the connection, which the client then sees instead of the 400.
                    let _ = request.into_body().collect().await;
                    let body = "<?xml version=\"1.0\"?><Error><Code>InvalidRequest</Code>\
                        <Message>injected failure</Message></Error>";
                    let response = hyper::Response::builder()
                        .status(400)
                        .body(Full::new(Bytes::from_static(body.as_bytes())));
                    return Ok(response.unwrap());
                }
                Fault::Delay(delay) => tokio::time::sleep(delay).await,
            }
        }
        let url = format!("{}{}", self.upstream, request.uri());
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let mut headers = parts.headers;
        headers.remove(hyper::header::HOST);
        let answer = self
            .client
            .request(parts.method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let mut response = hyper::Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if name != hyper::header::TRANSFER_ENCODING {
                response = response.header(name, value);
            }
        }
        let bytes = answer.bytes().await.unwrap();
        Ok(response.body(Full::new(bytes)).unwrap())
    }
}
