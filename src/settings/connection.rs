//! The connection: where the API is, how to log in, and the retry and rate limits. Secrets are
//! read here, once, from the environment variables and files the input names, and go straight
//! into [`Secret`]; an unset variable or an unreadable file is an error that names the field,
//! never a value.

use std::path::PathBuf;

use reqwest::Url;

use super::field::{self, Field};
use super::{Api, Origin, checked, invalid};
use crate::error::Result;
use crate::secret::Secret;
use crate::source::auth::Credentials;
use crate::source::client::{Connection, DEFAULT_API_BASE, Limits};

/// The connection as given, unchecked.
#[derive(Debug, Default)]
pub struct ConnectionInput {
    /// Run against the in-process sandbox (nothing else is read).
    pub sandbox: bool,
    /// The API base URL [default: the Kargo API].
    pub api_base: Option<String>,
    /// The login endpoint [default: `{api_base}/v1/auth/token`].
    pub auth_url: Option<String>,
    pub username: Option<Given>,
    pub password: Option<Given>,
    /// A ready bearer token, used instead of a login when present.
    pub token: Option<Given>,
}

/// A value as given, with the field that gave it: the text itself, an environment variable
/// holding it, or a file holding it.
#[derive(Debug, Clone)]
pub struct Given {
    pub field: Field,
    pub from: ValueSource,
}

/// Where a [`Given`] value is.
#[derive(Debug, Clone)]
pub enum ValueSource {
    Text(String),
    /// An environment variable; unset (or empty) is an error when `required`, else as if the
    /// value were not given.
    Env {
        var: String,
        required: bool,
    },
    /// A file; its one line break at the end is dropped.
    File(PathBuf),
}

impl Given {
    /// The text of `field`.
    pub fn text(field: Field, text: impl Into<String>) -> Self {
        Given {
            field,
            from: ValueSource::Text(text.into()),
        }
    }

    /// Environment variable `var` of `field`.
    pub fn env(field: Field, var: impl Into<String>, required: bool) -> Self {
        Given {
            field,
            from: ValueSource::Env {
                var: var.into(),
                required,
            },
        }
    }

    /// The file at `path` of `field`.
    pub fn file(field: Field, path: PathBuf) -> Self {
        Given {
            field,
            from: ValueSource::File(path),
        }
    }
}

/// The retry and rate limits as given, unchecked; `None` is not given.
#[derive(Debug, Default, Clone, Copy)]
pub struct LimitsInput {
    pub retries: Option<i64>,
    pub retry_max_time_secs: Option<f64>,
    pub max_requests_per_second: Option<f64>,
}

/// The API of a connection, without limits (see [`limits`]).
pub fn api(origin: &dyn Origin, input: &ConnectionInput) -> Result<Api> {
    if input.sandbox {
        return Ok(Api::Sandbox(Limits::default()));
    }
    let api_base = http_url(
        origin,
        field::API_BASE,
        input.api_base.as_deref().unwrap_or(DEFAULT_API_BASE),
    )?;
    let credentials = credentials(origin, input, &api_base)?;
    Ok(Api::Remote(Box::new(Connection::new(
        api_base,
        credentials,
    ))))
}

/// The retry and rate limits, checked; those not given are `None`.
pub fn limits(origin: &dyn Origin, input: &LimitsInput) -> Result<Limits> {
    Ok(Limits {
        retries: checked(origin, field::RETRIES, input.retries, Limits::check_retries)?,
        retry_max_time: checked(
            origin,
            field::RETRY_MAX_TIME,
            input.retry_max_time_secs,
            Limits::check_retry_time,
        )?,
        max_requests_per_second: checked(
            origin,
            field::MAX_REQUESTS_PER_SECOND,
            input.max_requests_per_second,
            Limits::check_rate,
        )?,
    })
}

/// A token when one is given, else a login with a username and a password.
fn credentials(
    origin: &dyn Origin,
    input: &ConnectionInput,
    api_base: &Url,
) -> Result<Credentials> {
    if let Some(token) = value(origin, input.token.as_ref())? {
        return Ok(Credentials::Token(Secret::new(token.trim())));
    }
    let Some(username) = value(origin, input.username.as_ref())? else {
        let name = |field| origin.name(field);
        return Err(origin.error(
            field::USERNAME,
            format!(
                "no credentials: set {} or {}, or {} with {} or {} (or {})",
                name(field::TOKEN_ENV),
                name(field::TOKEN_FILE),
                name(field::USERNAME),
                name(field::PASSWORD_ENV),
                name(field::PASSWORD_FILE),
                name(field::SANDBOX),
            ),
        ));
    };
    let password = value(origin, input.password.as_ref())?.ok_or_else(|| {
        origin.error(
            field::PASSWORD_ENV,
            format!(
                "no password for user {username:?}: set {} or {}",
                origin.name(field::PASSWORD_ENV),
                origin.name(field::PASSWORD_FILE)
            ),
        )
    })?;
    let auth_url = match &input.auth_url {
        Some(url) => http_url(origin, field::AUTH_URL, url)?,
        None => default_auth_url(api_base),
    };
    Ok(Credentials::Login {
        auth_url,
        username,
        password: Secret::new(password),
    })
}

/// The text of a given value; `None` when it is not given, or is empty.
pub fn value(origin: &dyn Origin, given: Option<&Given>) -> Result<Option<String>> {
    let Some(given) = given else { return Ok(None) };
    let text = match &given.from {
        ValueSource::Text(text) => text.clone(),
        ValueSource::Env { var, required } => {
            match origin.env(var).filter(|v| !v.trim().is_empty()) {
                Some(value) => value,
                None if *required => {
                    return Err(invalid(
                        origin,
                        given.field,
                        format!("names {var}, which is not set"),
                    ));
                }
                None => return Ok(None),
            }
        }
        ValueSource::File(path) => Secret::from_file(path)
            .map_err(|e| origin.error(given.field, format!("{}: {e}", origin.name(given.field))))?
            .expose()
            .to_owned(),
    };
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// `{api_base}/v1/auth/token`, the login endpoint when none is given.
fn default_auth_url(api_base: &Url) -> Url {
    let mut url = api_base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["v1", "auth", "token"]);
    }
    url
}

/// An http(s) URL with a host and without a query string or credentials.
fn http_url(origin: &dyn Origin, field: Field, text: &str) -> Result<Url> {
    let url = Url::parse(text.trim())
        .map_err(|e| invalid(origin, field, format!("{text:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            origin,
            field,
            format!("{text:?} must be an http(s) URL with a host"),
        ));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            origin,
            field,
            "must not carry a query string or credentials",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A jobs-file-like origin over a fixed environment: fields are keys.
    struct Keys(&'static [(&'static str, &'static str)]);

    impl Origin for Keys {
        fn name(&self, field: Field) -> &'static str {
            field.key
        }
        fn error(&self, _field: Field, message: String) -> Error {
            Error::Usage(message)
        }
        fn env(&self, var: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| value.to_string())
        }
    }

    fn usage(origin: &dyn Origin, input: &ConnectionInput) -> String {
        match api(origin, input) {
            Err(Error::Usage(message)) => message,
            Err(other) => panic!("not a usage error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn api_urls_must_be_plain_http() {
        assert!(http_url(&super::super::Flags, field::API_BASE, "https://h.example").is_ok());
        for bad in ["ftp://h", "not a url", "https://h?token=x", "https://u:p@h"] {
            let err = http_url(&super::super::Flags, field::API_BASE, bad).unwrap_err();
            assert!(
                matches!(&err, Error::Usage(m) if m.starts_with("--api-base")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secrets_come_from_files_or_named_variables() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok-1\n").unwrap();
        let input = ConnectionInput {
            api_base: Some("https://api.example".into()),
            token: Some(Given::file(field::TOKEN_FILE, token)),
            ..ConnectionInput::default()
        };
        let Ok(Api::Remote(connection)) = api(&Keys(&[]), &input) else {
            panic!("no remote API");
        };
        assert_eq!(connection.api_base.as_str(), "https://api.example/");
        let Credentials::Token(secret) = connection.credentials() else {
            panic!("not a token");
        };
        assert_eq!(secret.expose(), "tok-1");

        let input = ConnectionInput {
            username: Some(Given::env(field::USERNAME_ENV, "USER_VAR", true)),
            password: Some(Given::env(field::PASSWORD_ENV, "PW_VAR", true)),
            ..ConnectionInput::default()
        };
        let Ok(Api::Remote(connection)) =
            api(&Keys(&[("USER_VAR", "svc"), ("PW_VAR", " p ")]), &input)
        else {
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
        assert_eq!((username.as_str(), password.expose()), ("svc", " p "));
    }

    #[test]
    fn password_file_loses_only_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, " s3cret \n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), " s3cret ");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            Secret::from_file(&path)
                .unwrap_err()
                .ends_with("pw is empty")
        );
    }

    #[test]
    fn missing_secrets_name_the_field_as_each_source_spells_it() {
        let unset = ConnectionInput {
            username: Some(Given::text(field::USERNAME, "svc")),
            password: Some(Given::env(field::PASSWORD_ENV, "NEVER_SET", true)),
            ..ConnectionInput::default()
        };
        let message = usage(&Keys(&[]), &unset);
        assert!(
            message.contains("password_env names NEVER_SET, which is not set"),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let input = ConnectionInput {
            username: Some(Given::text(field::USERNAME, "svc")),
            password: Some(Given::file(field::PASSWORD_FILE, empty)),
            ..ConnectionInput::default()
        };
        assert!(usage(&Keys(&[]), &input).starts_with("password_file: "));
        assert!(usage(&super::super::Flags, &input).starts_with("--password-file: "));
        let none = ConnectionInput::default();
        assert_eq!(
            usage(&Keys(&[]), &none),
            "no credentials: set token_env or token_file, or username with password_env or \
             password_file (or sandbox = true)"
        );
        assert_eq!(
            usage(&super::super::Flags, &none),
            "no credentials: set KARGO_TOKEN or --token-file, or KARGO_USERNAME with \
             KARGO_PASSWORD or --password-file (or --sandbox)"
        );
        let no_password = ConnectionInput {
            username: Some(Given::text(field::USERNAME, "svc")),
            password: Some(Given::env(field::PASSWORD_ENV, "NEVER_SET", false)),
            ..ConnectionInput::default()
        };
        assert_eq!(
            usage(&super::super::Flags, &no_password),
            "no password for user \"svc\": set KARGO_PASSWORD or --password-file"
        );
    }
}
