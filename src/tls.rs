//! TLS for every HTTPS connection of the process (the API, S3): rustls with the `ring` crypto
//! provider, installed once as the process default before any HTTP client is built. `ring` is
//! the lighter provider to build (no C toolchain or CMake run, unlike aws-lc-rs) and serves the
//! same TLS 1.2 and 1.3 suites; certificates are still checked against the system's roots by
//! rustls-platform-verifier (reqwest's and object_store's default).

/// Installs the `ring` provider as the process default, once; later calls do nothing.
pub fn install() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder for a process whose TLS provider is installed.
pub fn http_client() -> reqwest::ClientBuilder {
    install();
    reqwest::Client::builder()
}
