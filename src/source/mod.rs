//! The HTTP side of an export: login ([`auth`]), authenticated requests ([`client`]) with
//! their retries ([`retry`]) and the back-off gate and rate limit every request of the process
//! passes ([`gate`]), what to fetch and how to read it ([`endpoint`]: the templates and the
//! report list are presets of a manual endpoint, and every page is read by its one general
//! reader), following pages ([`paginate`]), fetching pages ahead while earlier ones are
//! processed ([`readahead`]), the one-pass decoder that the export's pages of the API's own
//! shape take instead, straight into a [`crate::decode::RowDecoder`] ([`extract`], checked
//! against the general reader), the paths and formats the general reader reads ([`jsonpath`],
//! [`formats`]), and the typed reading of report requests ([`reports`]). Nothing outside this
//! module knows about HTTP status codes or tokens.

pub mod auth;
pub mod body;
pub mod client;
pub mod endpoint;
pub mod extract;
pub mod formats;
pub mod gate;
pub mod jsonpath;
pub mod paginate;
pub mod readahead;
pub mod reports;
pub mod retry;
pub mod stream;
