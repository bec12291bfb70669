//! Reading an answer's body: whole, or, for a request that allows it, only its first bytes
//! once it grows past a size, the rest being read as the caller consumes it
//! ([`BodyRest::next_chunk`]). A report sent as one huge page then never sits whole in memory.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::runtime::Handle;

use crate::error::{PageLocation, Result};

/// The part of a body not read yet.
pub struct BodyRest {
    response: Mutex<Option<reqwest::Response>>,
    handle: Handle,
    at: PageLocation,
}

impl std::fmt::Debug for BodyRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyRest").field("at", &self.at).finish()
    }
}

impl BodyRest {
    /// The next piece of the body, `None` at its end. Blocking: call it from a blocking
    /// thread. A body cut off on the way is an [`Error::Http`] without a status, naming the
    /// page, as when a whole body is cut off.
    pub fn next_chunk(&self) -> Result<Option<Bytes>> {
        let mut response = self.response.lock().unwrap_or_else(|p| p.into_inner());
        let Some(reading) = response.as_mut() else {
            return Ok(None);
        };
        match self.handle.block_on(reading.chunk()) {
            Ok(Some(chunk)) => Ok(Some(chunk)),
            Ok(None) => {
                *response = None;
                Ok(None)
            }
            Err(e) => {
                *response = None;
                Err(super::client::transport_http_error(&self.at, e))
            }
        }
    }
}

/// Reads `response`'s body whole or, when it grows past `stream_from` bytes, up to there:
/// then the rest comes from the returned [`BodyRest`].
pub async fn read_body(
    mut response: reqwest::Response,
    stream_from: Option<usize>,
    at: &PageLocation,
) -> std::result::Result<(Bytes, Option<BodyRest>), reqwest::Error> {
    let Some(limit) = stream_from else {
        return Ok((response.bytes().await?, None));
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            let rest = BodyRest {
                response: Mutex::new(Some(response)),
                handle: Handle::current(),
                at: at.clone(),
            };
            return Ok((body.freeze(), Some(rest)));
        }
    }
    Ok((body.freeze(), None))
}
