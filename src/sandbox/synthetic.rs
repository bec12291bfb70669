//! Synthetic ad-delivery reports of any size, for benchmarks and load tests.
//!
//! A [`SyntheticReport`] is a pure function of `(rows, seed, order)`: row `i` is generated from
//! its own small PRNG seeded with `(seed, i)`, so any page can be rendered on its own, in any
//! order, on any thread, and the same seed and order always give the same bytes. Rows look like
//! the bundled `delivery_by_day` sample with one more column (22 keys), with the cardinalities of
//! a real delivery report: dates over 30 days, 100 advertisers, 3,000 campaigns (some names with
//! accents, CJK, emoji or an escaped quote), 30,000 line items (uniform: a 2,000,000-row report
//! holds all of them, a 200,000-row one nearly all), 5,000 site domains (popular ones first; a
//! 2,000,000-row report holds ~4,990 of them), 4 device types, 40 countries (weighted, from ~27%
//! for US to ~0.4%) with 1 to 6 regions each and ~3% null, conversions null for the advertisers
//! without conversion tracking (~30% of rows), floats with 2 to 6 decimals and RFC 3339 UTC
//! timestamps. A row is about 490 bytes of compact JSON (2,000,000 rows: ~0.98 GB).
//!
//! The [`Order`] decides only the dates: [`Order::Sorted`] spreads them evenly and in order (rows
//! grouped by day, as a report sorted by date), [`Order::Random`] draws each row's day from its
//! own PRNG (every page holds rows of almost every day, as a report sorted by campaign). Every
//! other value of row `i` is the same in both orders.
//!
//! This module only makes row text. Serving it (pages, links, pre-rendering, gzip) is the job
//! of [`super`]; the `--synthetic ID=ROWS` and `--synthetic-order` flags are read in
//! [`crate::settings`].

use std::fmt::Write as _;
use std::ops::Range;

use chrono::{Days, NaiveDate};

use crate::error::{Error, Result};

/// Days the rows of a synthetic report are spread over, from [`FIRST_DAY`].
pub const DAYS: u64 = 30;
/// The first day of every synthetic report.
pub const FIRST_DAY: (i32, u32, u32) = (2025, 3, 1);
/// Most rows one synthetic report may have (pre-rendered pages stay in memory: ~490 B a row).
pub const MAX_ROWS: u64 = 20_000_000;

const ADVERTISERS: usize = 100;
const CAMPAIGNS_PER_ADVERTISER: usize = 30;
const LINE_ITEMS_PER_CAMPAIGN: usize = 10;
/// Distinct site domains: [`SITE_FIRST`] x [`SITE_SECOND`] names (2,000), each under up to
/// three top-level domains.
const SITES: usize = 5_000;

const ADVERTISER_FIRST: [&str; 10] = [
    "Acme", "Maison", "Sakura", "Bright", "Bäcker", "Blue", "Copper", "Fjord", "Gold", "Nova",
];
const ADVERTISER_SECOND: [&str; 10] = [
    "Wear", "Lumière", "Tea", "Tel", "Müller", "Auto", "Foods", "Shop", "Trips", "Bank",
];
const CAMPAIGN_THEMES: [&str; 12] = [
    "Spring",
    "Summer",
    "Fall",
    "Q4",
    "Été",
    "Printemps",
    "東京",
    "夏",
    "Año Nuevo",
    "Rentrée",
    "Launch",
    "Promo",
];
const CAMPAIGN_PRODUCTS: [&str; 14] = [
    "Gear",
    "Sale 🌞",
    "Crème",
    "Matcha 🍵",
    "5G",
    "Jackets",
    "Deals",
    "Sampling",
    "Lift",
    "Always On",
    "Retarget",
    "Ñandú",
    "ビール",
    "\"Best\" Deals",
];
const SITE_FIRST: [&str; 40] = [
    "news", "sky", "food", "sport", "trip", "tech", "cash", "games", "music", "autos", "health",
    "style", "kids", "video", "local", "sci", "home", "pets", "books", "anime", "daily", "metro",
    "city", "world", "shop", "coin", "yard", "film", "comic", "fit", "golf", "surf", "ski", "cars",
    "bikes", "chef", "wine", "jobs", "homes", "deals",
];
const SITE_SECOND: [&str; 50] = [
    "hub", "now", "wire", "zone", "post", "times", "daily", "go", "live", "world", "guide", "spot",
    "box", "feed", "cast", "one", "line", "net", "base", "lab", "star", "sun", "mail", "press",
    "tv", "buzz", "click", "view", "fm", "talk", "land", "stop", "fan", "club", "deck", "mag",
    "page", "site", "desk", "cafe", "bay", "port", "town", "ville", "pro", "grid", "loop", "path",
    "pulse", "wave",
];
const SITE_TLDS: [&str; 8] = ["com", "net", "org", "io", "de", "fr", "jp", "tv"];
const SIZES: [&str; 8] = [
    "300x250", "728x90", "160x600", "320x50", "300x600", "970x250", "336x280", "320x480",
];
const DEVICES: [&str; 4] = ["desktop", "mobile", "tablet", "ctv"];
const CURRENCIES: [&str; 4] = ["USD", "USD", "EUR", "GBP"];
/// Country, weight (per 1,027 non-null rows) and regions.
const COUNTRIES: [(&str, u32, &[&str]); 40] = [
    (
        "US",
        280,
        &["Texas", "Ohio", "Iowa", "Utah", "New York", "Florida"],
    ),
    ("GB", 80, &["England", "Wales", "Scotland"]),
    ("DE", 70, &["Bayern", "Berlin", "Hessen"]),
    ("FR", 60, &["Île-de-France", "Bretagne", "Corse"]),
    ("JP", 55, &["東京都", "大阪府"]),
    ("BR", 45, &["São Paulo", "Bahia"]),
    ("CA", 45, &["Ontario", "Québec"]),
    ("AU", 35, &["Victoria", "Tasmania"]),
    ("ES", 35, &["Madrid", "Aragón"]),
    ("IT", 30, &["Lazio", "Puglia"]),
    ("MX", 30, &["Jalisco", "Sonora"]),
    ("IN", 30, &["Goa", "Kerala"]),
    ("KR", 20, &["서울"]),
    ("NL", 20, &["Utrecht", "Zeeland"]),
    ("SE", 15, &["Skåne", "Uppsala"]),
    ("PL", 15, &["Mazowieckie", "Śląskie"]),
    ("BE", 12, &["Vlaanderen", "Wallonie"]),
    ("CH", 12, &["Zürich", "Genève"]),
    ("AT", 10, &["Wien", "Tirol"]),
    ("NO", 10, &["Oslo", "Vestland"]),
    ("DK", 10, &["Hovedstaden"]),
    ("FI", 8, &["Uusimaa"]),
    ("IE", 8, &["Leinster", "Munster"]),
    ("PT", 8, &["Lisboa", "Porto"]),
    ("AR", 8, &["Córdoba", "Mendoza"]),
    ("CL", 6, &["Santiago", "Biobío"]),
    ("CO", 6, &["Antioquia", "Bogotá"]),
    ("ZA", 6, &["Gauteng", "Limpopo"]),
    ("NZ", 6, &["Auckland", "Otago"]),
    ("SG", 6, &["Singapore"]),
    ("HK", 5, &["Kowloon"]),
    ("TW", 5, &["臺北市"]),
    ("TH", 5, &["Bangkok", "Phuket"]),
    ("ID", 5, &["Jawa Barat", "Bali"]),
    ("PH", 5, &["Cebu", "Davao"]),
    ("TR", 5, &["İstanbul", "Ankara"]),
    ("AE", 4, &["Dubai", "Abu Dhabi"]),
    ("IL", 4, &["Tel Aviv", "Haifa"]),
    ("CZ", 4, &["Praha", "Brno"]),
    ("GR", 4, &["Attikí", "Kríti"]),
];
/// Share of rows whose country (and region) is null.
const NULL_COUNTRY: f64 = 0.03;
/// Share of advertisers without conversion tracking (their rows have null conversions).
const NO_CONVERSIONS: f64 = 0.3;

/// How the rows of a synthetic report are ordered, which decides their dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Order {
    /// Rows grouped by day, in order: the days spread evenly over the rows, so a page holds one
    /// day or two.
    #[default]
    Sorted,
    /// Each row's day drawn from its own PRNG (uniform over the 30 days): every page holds rows
    /// of almost every day, as in a report sorted by campaign rather than by date.
    Random,
}

impl Order {
    /// `sorted` or `random`, as the `--synthetic-order` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sorted => "sorted",
            Self::Random => "random",
        }
    }
}

/// A synthetic completed report: `rows` deterministic rows from `seed`, in an [`Order`].
///
/// ```
/// # use kargo_export::sandbox::synthetic::{Order, SyntheticReport};
/// let report = SyntheticReport::new(10, 7);
/// let mut page = String::new();
/// report.write_rows(0..10, &mut page);
/// assert_eq!(page.matches("\"advertiser_id\":").count(), 10);
/// let shuffled = SyntheticReport::new(10, 7).with_order(Order::Random);
/// assert_eq!(shuffled.order(), Order::Random);
/// ```
#[derive(Debug, Clone)]
pub struct SyntheticReport {
    rows: u64,
    seed: u64,
    order: Order,
    tables: std::sync::Arc<Tables>,
}

/// Dimension values drawn once per report; strings are stored as ready JSON literals.
#[derive(Debug)]
struct Tables {
    advertisers: Vec<Advertiser>,
    /// `advertiser index * CAMPAIGNS_PER_ADVERTISER + n` -> (campaign_id, name literal).
    campaigns: Vec<(u64, String)>,
    sites: Vec<String>,
    /// `"2025-03-01"`, ... for every day and the day after the last (for `last_updated_at`).
    dates: Vec<String>,
    /// Cumulative weights of [`COUNTRIES`].
    country_weights: Vec<u32>,
    regions: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Advertiser {
    id: u64,
    name: String,
    currency: &'static str,
    tracks_conversions: bool,
}

impl SyntheticReport {
    /// A report of `rows` rows generated from `seed`, in [`Order::Sorted`].
    pub fn new(rows: u64, seed: u64) -> Self {
        Self {
            rows,
            seed,
            order: Order::Sorted,
            tables: std::sync::Arc::new(Tables::new(seed)),
        }
    }

    /// The same report with its rows in `order` (only the dates change).
    pub fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// The order of the rows.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Number of rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The seed the rows are generated from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The ISO date of row `index`.
    pub fn date_of(&self, index: u64) -> &str {
        let mut rng = fastrand::Rng::with_seed(mix(self.seed, index));
        &self.tables.dates[self.day_of(index, &mut rng)]
    }

    /// The first and the last day of the report, as its listing states them: the days of the
    /// first and the last row in [`Order::Sorted`], all 30 days in [`Order::Random`].
    pub fn date_range(&self) -> (&str, &str) {
        let last = self.rows.saturating_sub(1);
        match self.order {
            Order::Sorted => (self.date_of(0), self.date_of(last)),
            Order::Random => (&self.tables.dates[0], &self.tables.dates[DAYS as usize - 1]),
        }
    }

    /// The day (0-based) of row `index`; `rng` is the row's fresh PRNG, whose first draw is the
    /// day in [`Order::Random`] and is made (and dropped) in [`Order::Sorted`] too, so every
    /// other value of the row is the same in both orders.
    fn day_of(&self, index: u64, rng: &mut fastrand::Rng) -> usize {
        let drawn = rng.usize(..DAYS as usize);
        // `index < rows <= MAX_ROWS`, so the product fits easily; clamped past the end.
        let spread = u128::from(index) * u128::from(DAYS) / u128::from(self.rows.max(1));
        match self.order {
            Order::Random => drawn,
            Order::Sorted => (spread as u64).min(DAYS - 1) as usize,
        }
    }

    /// Appends rows `range` as JSON objects separated by commas (no brackets).
    pub fn write_rows(&self, range: Range<u64>, out: &mut String) {
        for index in range.clone() {
            if index > range.start {
                out.push(',');
            }
            self.write_row(index, out);
        }
    }

    /// Appends row `index` as one compact JSON object with 22 keys.
    pub fn write_row(&self, index: u64, out: &mut String) {
        let tables = &*self.tables;
        let mut rng = fastrand::Rng::with_seed(mix(self.seed, index));
        let day = self.day_of(index, &mut rng);

        let line_item =
            rng.usize(..ADVERTISERS * CAMPAIGNS_PER_ADVERTISER * LINE_ITEMS_PER_CAMPAIGN);
        let campaign = line_item / LINE_ITEMS_PER_CAMPAIGN;
        let advertiser = &tables.advertisers[campaign / CAMPAIGNS_PER_ADVERTISER];
        let (campaign_id, campaign_name) = &tables.campaigns[campaign];
        let line_item_id = campaign_id * 10 + (line_item % LINE_ITEMS_PER_CAMPAIGN) as u64;
        // 1 to 4 creatives per line item, each with a size of its own.
        let creative = rng.u64(1..=4);
        let creative_id = line_item_id * 10 + creative;
        let size = SIZES[(creative_id % SIZES.len() as u64) as usize];
        // Popular sites first: the smaller of two draws.
        let site = rng.usize(..SITES).min(rng.usize(..SITES));
        let device = DEVICES[rng.usize(..DEVICES.len())];
        let country = (rng.f64() >= NULL_COUNTRY).then(|| {
            let pick = rng.u32(..*tables.country_weights.last().unwrap_or(&1));
            let at = tables.country_weights.partition_point(|&w| w <= pick);
            let at = at.min(COUNTRIES.len() - 1);
            let regions = &tables.regions[at];
            (COUNTRIES[at].0, &regions[rng.usize(..regions.len())])
        });

        let impressions = (lognormal(&mut rng, 6.3, 1.1) as u64).max(1);
        let viewable = (impressions as f64 * uniform(&mut rng, 0.38, 0.82)) as u64;
        let clicks = (impressions as f64 * uniform(&mut rng, 0.0005, 0.02)) as u64;
        let conversions = advertiser
            .tracks_conversions
            .then(|| (clicks as f64 * uniform(&mut rng, 0.0, 0.12)) as u64);
        let decimals = rng.u32(2..=6);
        let cpm_target = uniform(&mut rng, 0.8, 14.0);
        let spend_scaled =
            (impressions as f64 * cpm_target / 1000.0 * 10f64.powi(decimals as i32)).round() as u64;
        let spend = spend_scaled as f64 / 10f64.powi(decimals as i32);
        let cpm_scaled = (spend / impressions as f64 * 1000.0 * 1e4).round() as u64;
        let ctr_scaled = (clicks as f64 / impressions as f64 * 1e6).round() as u64;
        let first_seen = rng.u32(..3 * 3600);
        let updated = rng.u32(2 * 3600..8 * 3600);

        out.push_str("{\"date\":\"");
        out.push_str(&tables.dates[day]);
        out.push_str("\",\"advertiser_id\":");
        push_u64(out, advertiser.id);
        out.push_str(",\"advertiser_name\":");
        out.push_str(&advertiser.name);
        out.push_str(",\"campaign_id\":");
        push_u64(out, *campaign_id);
        out.push_str(",\"campaign_name\":");
        out.push_str(campaign_name);
        out.push_str(",\"line_item_id\":");
        push_u64(out, line_item_id);
        out.push_str(",\"creative_id\":");
        push_u64(out, creative_id);
        out.push_str(",\"creative_size\":\"");
        out.push_str(size);
        out.push_str("\",\"site_domain\":");
        out.push_str(&tables.sites[site]);
        out.push_str(",\"device_type\":\"");
        out.push_str(device);
        match country {
            Some((code, region)) => {
                out.push_str("\",\"country\":\"");
                out.push_str(code);
                out.push_str("\",\"region\":");
                out.push_str(region);
            }
            None => out.push_str("\",\"country\":null,\"region\":null"),
        }
        out.push_str(",\"impressions\":");
        push_u64(out, impressions);
        out.push_str(",\"viewable_impressions\":");
        push_u64(out, viewable);
        out.push_str(",\"clicks\":");
        push_u64(out, clicks);
        out.push_str(",\"conversions\":");
        match conversions {
            Some(n) => push_u64(out, n),
            None => out.push_str("null"),
        }
        out.push_str(",\"spend\":");
        push_decimal(out, spend_scaled, decimals);
        out.push_str(",\"currency\":\"");
        out.push_str(advertiser.currency);
        out.push_str("\",\"cpm\":");
        push_decimal(out, cpm_scaled, 4);
        out.push_str(",\"ctr\":");
        push_decimal(out, ctr_scaled, 6);
        out.push_str(",\"first_seen_at\":\"");
        push_timestamp(out, &tables.dates[day], first_seen);
        out.push_str("\",\"last_updated_at\":\"");
        push_timestamp(out, &tables.dates[day + 1], updated);
        out.push_str("\"}");
    }
}

impl Tables {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(mix(seed, u64::MAX));
        let literal = |text: &str| serde_json::Value::from(text).to_string();
        let advertisers: Vec<Advertiser> = (0..ADVERTISERS)
            .map(|k| Advertiser {
                id: 10_000 + k as u64 * 97 + rng.u64(..90),
                name: literal(&format!(
                    "{} {}",
                    ADVERTISER_FIRST[k % ADVERTISER_FIRST.len()],
                    ADVERTISER_SECOND
                        [(k / ADVERTISER_FIRST.len() * 3 + k) % ADVERTISER_SECOND.len()]
                )),
                currency: CURRENCIES[rng.usize(..CURRENCIES.len())],
                tracks_conversions: rng.f64() >= NO_CONVERSIONS,
            })
            .collect();
        let campaigns = (0..ADVERTISERS * CAMPAIGNS_PER_ADVERTISER)
            .map(|k| {
                let theme = CAMPAIGN_THEMES[rng.usize(..CAMPAIGN_THEMES.len())];
                let product = CAMPAIGN_PRODUCTS[rng.usize(..CAMPAIGN_PRODUCTS.len())];
                // A third of the campaigns are named by their product alone.
                let name = if rng.usize(..3) == 0 {
                    product.to_owned()
                } else {
                    format!("{theme} {product}")
                };
                (40_000 + k as u64 * 13, literal(&name))
            })
            .collect();
        // Site `k` is name `k % NAMES` under the name's own first top-level domain moved on by
        // `k / NAMES`: fewer than `SITE_TLDS.len()` moves, so every site is a distinct domain.
        const NAMES: usize = SITE_FIRST.len() * SITE_SECOND.len();
        let first_tlds: Vec<usize> = (0..NAMES).map(|_| rng.usize(..SITE_TLDS.len())).collect();
        let sites = (0..SITES)
            .map(|k| {
                let name = k % NAMES;
                let first = SITE_FIRST[name % SITE_FIRST.len()];
                let second = SITE_SECOND[name / SITE_FIRST.len()];
                let tld = SITE_TLDS[(first_tlds[name] + k / NAMES) % SITE_TLDS.len()];
                literal(&format!("{first}{second}.{tld}"))
            })
            .collect();
        let (year, month, day) = FIRST_DAY;
        let first = NaiveDate::from_ymd_opt(year, month, day).expect("FIRST_DAY is a valid date");
        let dates = (0..=DAYS)
            .map(|d| (first + Days::new(d)).format("%Y-%m-%d").to_string())
            .collect();
        let country_weights = COUNTRIES
            .iter()
            .scan(0, |sum, (_, weight, _)| {
                *sum += weight;
                Some(*sum)
            })
            .collect();
        let regions = COUNTRIES
            .iter()
            .map(|(_, _, regions)| regions.iter().map(|r| literal(r)).collect())
            .collect();
        Self {
            advertisers,
            campaigns,
            sites,
            dates,
            country_weights,
            regions,
        }
    }
}

/// Parses a `--synthetic` value: `ID=ROWS`, ROWS a count that may use `_` or `,` separators.
pub fn parse_spec(text: &str) -> Result<(String, u64)> {
    let usage = |reason: &str| Error::Usage(format!("--synthetic {text:?}: {reason}"));
    let (id, rows) = text
        .split_once('=')
        .ok_or_else(|| usage("expected ID=ROWS, e.g. bench=2000000"))?;
    let id = id.trim();
    if id.is_empty() || id.contains('/') || id.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(usage(
            "the report id must be non-empty, without '/', spaces or control characters",
        ));
    }
    let digits: String = rows
        .trim()
        .chars()
        .filter(|c| !matches!(c, '_' | ','))
        .collect();
    let rows: u64 = digits
        .parse()
        .map_err(|_| usage("ROWS must be a non-negative integer"))?;
    if rows > MAX_ROWS {
        return Err(usage(&format!("at most {MAX_ROWS} rows per report")));
    }
    Ok((id.to_owned(), rows))
}

/// A well-spread 64-bit seed for row `index` (SplitMix64's finaliser over both inputs).
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uniform(rng: &mut fastrand::Rng, low: f64, high: f64) -> f64 {
    low + rng.f64() * (high - low)
}

/// `exp(N(mu, sigma))`, the normal draw by Box-Muller.
fn lognormal(rng: &mut fastrand::Rng, mu: f64, sigma: f64) -> f64 {
    let u1 = 1.0 - rng.f64(); // (0, 1]
    let u2 = rng.f64();
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (mu + sigma * normal).exp()
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

/// `scaled / 10^decimals` in its shortest form with at least one decimal (`12.5`, `3.0`), like
/// a JSON encoder writes a rounded float.
fn push_decimal(out: &mut String, scaled: u64, decimals: u32) {
    let unit = 10u64.pow(decimals);
    push_u64(out, scaled / unit);
    out.push('.');
    let mut fraction = scaled % unit;
    let mut width = decimals as usize;
    while width > 1 && fraction.is_multiple_of(10) {
        fraction /= 10;
        width -= 1;
    }
    let _ = write!(out, "{fraction:0width$}");
}

/// `<date>THH:MM:SSZ` for `seconds` after midnight.
fn push_timestamp(out: &mut String, date: &str, seconds: u32) {
    let two = |out: &mut String, n: u32| {
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    out.push_str(date);
    out.push('T');
    two(out, seconds / 3600 % 24);
    out.push(':');
    two(out, seconds / 60 % 60);
    out.push(':');
    two(out, seconds % 60);
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    fn rows_of(report: &SyntheticReport, range: Range<u64>) -> Vec<serde_json::Value> {
        let mut text = String::from("[");
        report.write_rows(range, &mut text);
        text.push(']');
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let text = |rows, seed, range: Range<u64>| {
            let mut out = String::new();
            SyntheticReport::new(rows, seed).write_rows(range, &mut out);
            out
        };
        assert_eq!(text(1000, 7, 0..1000), text(1000, 7, 0..1000));
        assert_ne!(text(1000, 7, 0..1000), text(1000, 8, 0..1000));
        // Any slice renders on its own exactly as inside the whole.
        let whole = text(1000, 7, 0..1000);
        let parts = [text(1000, 7, 0..400), text(1000, 7, 400..1000)].join(",");
        assert_eq!(whole, parts);
    }

    #[test]
    fn rows_have_22_keys_and_the_expected_shape() {
        let report = SyntheticReport::new(20_000, 3);
        let rows = rows_of(&report, 0..20_000);
        let mut null_countries = 0;
        let mut null_conversions = 0;
        let mut distinct: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
        for row in &rows {
            let object = row.as_object().unwrap();
            assert_eq!(object.len(), 22, "{row}");
            for key in [
                "impressions",
                "viewable_impressions",
                "clicks",
                "line_item_id",
            ] {
                assert!(row[key].is_u64(), "{key}: {row}");
            }
            for key in ["spend", "cpm", "ctr"] {
                assert!(row[key].is_f64(), "{key}: {row}");
            }
            assert!(row["viewable_impressions"].as_u64() <= row["impressions"].as_u64());
            for key in ["first_seen_at", "last_updated_at"] {
                let text = row[key].as_str().unwrap();
                assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{text}");
                assert!(text.ends_with('Z'));
            }
            null_countries += usize::from(row["country"].is_null());
            assert_eq!(row["country"].is_null(), row["region"].is_null());
            null_conversions += usize::from(row["conversions"].is_null());
            for key in [
                "advertiser_id",
                "campaign_id",
                "line_item_id",
                "site_domain",
                "device_type",
                "country",
            ] {
                distinct
                    .entry(key)
                    .or_default()
                    .insert(row[key].to_string());
            }
        }
        let share = |n: usize| n as f64 / rows.len() as f64;
        assert!(
            (0.02..0.04).contains(&share(null_countries)),
            "{null_countries}"
        );
        assert!(
            (0.1..0.5).contains(&share(null_conversions)),
            "{null_conversions}"
        );
        let count = |key: &str| distinct[key].len();
        assert_eq!(count("advertiser_id"), 100);
        assert_eq!(count("device_type"), 4);
        // 40 countries and null.
        assert_eq!(count("country"), 41);
        // 20,000 rows draw ~2,996 of the 3,000 campaigns, ~14,600 of the 30,000 line items and
        // ~4,375 of the 5,000 sites.
        assert!(
            (2_900..=3_000).contains(&count("campaign_id")),
            "{}",
            count("campaign_id")
        );
        let line_items = count("line_item_id");
        assert!((13_500..=15_500).contains(&line_items), "{line_items}");
        let sites = count("site_domain");
        assert!((4_000..=4_700).contains(&sites), "{sites}");
        let names: String = rows
            .iter()
            .map(|r| r["campaign_name"].to_string())
            .collect();
        assert!(names.contains('é') && names.contains('東') && names.contains('🌞'));
        assert!(names.contains("\\\"Best\\\""));
    }

    #[test]
    fn dates_cover_30_days_in_order() {
        let report = SyntheticReport::new(3_001, 1);
        let rows = rows_of(&report, 0..3_001);
        let dates: Vec<&str> = rows.iter().map(|r| r["date"].as_str().unwrap()).collect();
        assert!(
            dates.windows(2).all(|w| w[0] <= w[1]),
            "rows are grouped by day"
        );
        let days: HashSet<&str> = dates.iter().copied().collect();
        assert_eq!(days.len(), 30);
        assert_eq!(dates[0], "2025-03-01");
        assert_eq!(*dates.last().unwrap(), "2025-03-30");
        assert_eq!(report.date_of(3_000), "2025-03-30");
        // Fewer rows than days: still in order, never past the last day.
        let few = rows_of(&SyntheticReport::new(7, 1), 0..7);
        assert!(
            few.windows(2)
                .all(|w| w[0]["date"].as_str() <= w[1]["date"].as_str())
        );
    }

    #[test]
    fn every_site_is_a_distinct_domain() {
        let tables = Tables::new(5);
        let sites: HashSet<&String> = tables.sites.iter().collect();
        assert_eq!(sites.len(), SITES);
        assert!(sites.iter().all(|site| site.contains('.')));
    }

    #[test]
    fn random_order_mixes_the_days_on_every_page_and_keeps_the_rest() {
        let rows = 20_000;
        let sorted = SyntheticReport::new(rows, 11);
        let random = SyntheticReport::new(rows, 11).with_order(Order::Random);
        let text = |report: &SyntheticReport, range: Range<u64>| {
            let mut out = String::new();
            report.write_rows(range, &mut out);
            out
        };
        // Deterministic per seed and order, and any slice renders on its own.
        let again = SyntheticReport::new(rows, 11).with_order(Order::Random);
        assert_eq!(text(&random, 0..2_000), text(&again, 0..2_000));
        assert_eq!(
            text(&random, 0..2_000),
            [text(&random, 0..700), text(&random, 700..2_000)].join(",")
        );
        let other_seed = SyntheticReport::new(rows, 12).with_order(Order::Random);
        assert_ne!(text(&random, 0..2_000), text(&other_seed, 0..2_000));
        assert_ne!(text(&random, 0..2_000), text(&sorted, 0..2_000));

        // Every page of 1,000 rows holds all or nearly all of the 30 days, the report all of them
        // about evenly; a sorted page holds one or two.
        let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
        for page in 0..rows / 1_000 {
            let range = page * 1_000..(page + 1) * 1_000;
            let days: HashSet<String> = rows_of(&random, range.clone())
                .iter()
                .map(|row| row["date"].as_str().unwrap().to_owned())
                .collect();
            assert!(days.len() >= 28, "page {page}: {} days", days.len());
            for day in days {
                *per_day.entry(day).or_default() += 1;
            }
            let sorted_days: HashSet<String> = rows_of(&sorted, range)
                .iter()
                .map(|row| row["date"].as_str().unwrap().to_owned())
                .collect();
            assert!(sorted_days.len() <= 2, "{sorted_days:?}");
        }
        assert_eq!(per_day.len(), 30);
        assert_eq!(random.date_range(), ("2025-03-01", "2025-03-30"));
        assert_eq!(
            SyntheticReport::new(7, 1).date_range(),
            ("2025-03-01", "2025-03-26")
        );

        // date_of agrees with the rows, and only the dates differ between the orders.
        let random_rows = rows_of(&random, 0..rows);
        let sorted_rows = rows_of(&sorted, 0..rows);
        for (i, (mut a, mut b)) in random_rows.into_iter().zip(sorted_rows).enumerate() {
            assert_eq!(a["date"], random.date_of(i as u64));
            assert_eq!(b["date"], sorted.date_of(i as u64));
            let shift = |row: &mut serde_json::Value| {
                let object = row.as_object_mut().unwrap();
                for key in ["date", "first_seen_at", "last_updated_at"] {
                    object.remove(key);
                }
            };
            shift(&mut a);
            shift(&mut b);
            assert_eq!(a, b, "row {i}");
        }
    }

    #[test]
    fn rows_are_about_490_bytes() {
        for order in [Order::Sorted, Order::Random] {
            let report = SyntheticReport::new(10_000, 42).with_order(order);
            let mut text = String::new();
            report.write_rows(0..10_000, &mut text);
            let per_row = text.len() as f64 / 10_000.0;
            assert!((470.0..510.0).contains(&per_row), "{order:?}: {per_row}");
        }
    }

    #[test]
    fn decimals_are_written_like_a_json_encoder() {
        let text = |scaled, decimals| {
            let mut out = String::new();
            push_decimal(&mut out, scaled, decimals);
            out
        };
        assert_eq!(text(457_210, 5), "4.5721");
        assert_eq!(text(1200, 2), "12.0");
        assert_eq!(text(5, 6), "0.000005");
        assert_eq!(text(0, 4), "0.0");
        let mut out = String::new();
        push_u64(&mut out, 0);
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, format!("0{}", u64::MAX));
    }

    #[test]
    fn specs_parse_and_are_checked() {
        assert_eq!(
            parse_spec("bench=2000000").unwrap(),
            ("bench".into(), 2_000_000)
        );
        assert_eq!(parse_spec("b=2_000_000").unwrap().1, 2_000_000);
        assert_eq!(parse_spec("b=0").unwrap().1, 0);
        for bad in ["bench", "=5", "a/b=5", "b=-1", "b=x", "b=20000001", "a b=3"] {
            let err = parse_spec(bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}");
        }
    }
}
