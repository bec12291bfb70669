//! The API of a jobs file's `[connection]` section. Secrets are read here, once, from the
//! environment variables and files the section names, and go straight into [`Secret`]; an
//! unset variable or an unreadable file is a usage error that names the field, never a value.

use std::path::PathBuf;

use super::file::ConnectionSpec;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::settings::Api;
use crate::source::auth::Credentials;
use crate::source::client::Connection;
use crate::source::client::DEFAULT_API_BASE;

/// The API of a `[connection]` section; secrets come from the variables and files it names.
pub fn api(spec: &ConnectionSpec) -> Result<Api> {
    let api_base = crate::settings::http_url(
        "api_base",
        spec.api_base.as_deref().unwrap_or(DEFAULT_API_BASE),
    )?;
    let credentials = if let Some(token) = secret(&spec.token_env, &spec.token_file, "token")? {
        Credentials::Token(token)
    } else {
        let username = match (&spec.username, &spec.username_env) {
            (Some(name), _) => name.clone(),
            (None, Some(var)) => env_value(var, "username_env")?,
            (None, None) => {
                return Err(Error::Usage(
                    "jobs file [connection]: no credentials: set token_env or token_file, or \
                     username with password_env or password_file (or sandbox = true)"
                        .into(),
                ));
            }
        };
        let password = secret(&spec.password_env, &spec.password_file, "password")?
            .ok_or_else(|| {
                Error::Usage(format!(
                    "jobs file [connection]: no password for user {username:?}: set password_env or password_file"
                ))
            })?;
        let auth_url = match &spec.auth_url {
            Some(url) => crate::settings::http_url("auth_url", url)?,
            None => crate::settings::default_auth_url(&api_base),
        };
        Credentials::Login {
            auth_url,
            username,
            password,
        }
    };
    Ok(Api::Remote(Box::new(Connection::new(
        api_base,
        credentials,
    ))))
}

/// The secret in environment variable `var` or file `path` (without its line break).
fn secret(var: &Option<String>, path: &Option<PathBuf>, what: &str) -> Result<Option<Secret>> {
    if let Some(var) = var {
        return env_value(var, &format!("{what}_env")).map(|v| Some(Secret::new(v)));
    }
    let Some(path) = path else { return Ok(None) };
    Secret::from_file(path)
        .map(Some)
        .map_err(|e| Error::Usage(format!("jobs file [connection]: {what}_file: {e}")))
}

fn env_value(var: &str, field: &str) -> Result<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "jobs file [connection]: {field} names {var}, which is not set"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(spec: &ConnectionSpec) -> String {
        match api(spec) {
            Err(Error::Usage(message)) => message,
            Err(other) => panic!("not a usage error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn secrets_come_from_files_or_named_variables() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok-1\n").unwrap();
        let spec = ConnectionSpec {
            api_base: Some("https://api.example".into()),
            token_file: Some(token),
            ..ConnectionSpec::default()
        };
        let Ok(Api::Remote(connection)) = api(&spec) else {
            panic!("no remote API");
        };
        assert_eq!(connection.api_base.as_str(), "https://api.example/");
        let Credentials::Token(secret) = connection.credentials() else {
            panic!("not a token");
        };
        assert_eq!(secret.expose(), "tok-1");

        let password = dir.path().join("pw");
        std::fs::write(&password, "p\n").unwrap();
        let spec = ConnectionSpec {
            username: Some("svc".into()),
            password_file: Some(password.clone()),
            ..ConnectionSpec::default()
        };
        let Ok(Api::Remote(connection)) = api(&spec) else {
            panic!("no remote API");
        };
        let Credentials::Login {
            auth_url,
            username,
            password,
        } = connection.credentials()
        else {
            panic!("not a login");
        };
        assert_eq!(
            auth_url.as_str(),
            "https://datasharingapi.prod.kargo.com/v1/auth/token"
        );
        assert_eq!((username.as_str(), password.expose()), ("svc", "p"));
    }

    #[test]
    fn missing_secrets_name_the_field() {
        let unset = ConnectionSpec {
            username: Some("svc".into()),
            password_env: Some("KARGO_EXPORT_TEST_NEVER_SET".into()),
            ..ConnectionSpec::default()
        };
        assert!(
            usage(&unset)
                .contains("password_env names KARGO_EXPORT_TEST_NEVER_SET, which is not set"),
            "{}",
            usage(&unset)
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let spec = ConnectionSpec {
            username: Some("svc".into()),
            password_file: Some(empty),
            ..ConnectionSpec::default()
        };
        assert!(usage(&spec).contains("password_file"), "{}", usage(&spec));
        assert!(usage(&ConnectionSpec::default()).contains("no credentials"));
        let no_password = ConnectionSpec {
            username: Some("svc".into()),
            ..ConnectionSpec::default()
        };
        assert!(usage(&no_password).contains("no password for user \"svc\""));
    }
}
