//! Deterministic, realistic query records for benchmarks and tests: the same settings always
//! give the same records, byte for byte, on every machine (a small xoshiro256** generator seeded
//! through SplitMix64, nothing from the environment, no wall clock).
//!
//! What the records look like:
//! - SQL from a few dozen shapes (point selects, joins with WHERE/GROUP BY, CTE reports,
//!   single-row and INSERT … SELECT inserts, updates, deletes, DDL, COPY, driver chatter such as
//!   `BEGIN` or `SET`), some multi-line, some with single and double quotes, some with Chinese,
//!   Japanese or accented text in literals and identifiers; about 200 bytes on average.
//! - 20 databases and 50 users, both long-tailed (a few databases and service users carry most
//!   of the traffic); every session keeps its database and user, and what it runs depends on
//!   the user (application, BI, ETL or people typing by hand).
//! - Durations log-normal per statement shape: most under 100 ms, a tail to minutes.
//! - About 5% running, about 3% failed with a PostgreSQL/Greenplum error message, a few percent
//!   with an `auto_explain`-style plan (JSON and text), mostly the slow ones.
//! - Start times spread evenly over the span (in order), so every hour holds records.
//! - `query_id` is `<session start, epoch seconds>-<session id>-<command number>`, unique per
//!   execution and roughly increasing, like the identifiers the engine logs.

use chrono::{DateTime, Datelike, Duration, SecondsFormat, Timelike, Utc};
use gpdiag_core::{QueryRecord, QueryStatus};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;

/// Records per run when nothing else is asked: 30 days of a busy instance (about 14,000 an hour).
pub const DEFAULT_COUNT: u64 = 10_000_000;
pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_DAYS: u32 = 30;
pub const DEFAULT_INSTANCE: &str = "gp-bench0000";
/// The first record's start time: fixed, so the output never depends on when it is generated.
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

/// Everything that determines the records.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub count: u64,
    pub instance: String,
    pub start: DateTime<Utc>,
    pub span: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            count: DEFAULT_COUNT,
            instance: DEFAULT_INSTANCE.into(),
            start: DateTime::parse_from_rfc3339(DEFAULT_START)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::UNIX_EPOCH),
            span: Duration::days(i64::from(DEFAULT_DAYS)),
        }
    }
}

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: tiny, fast, and its output is
/// fixed by its definition rather than by a crate version.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`; the multiply-shift bias is far below anything measured here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `pick` for small `Copy` items, by value.
    pub fn choose<T: Copy>(&mut self, items: &[T]) -> T {
        *self.pick(items)
    }

    /// Log-uniform whole number in `[lo, hi]` (`1 <= lo <= hi`).
    pub fn log_uniform(&mut self, lo: i64, hi: i64) -> i64 {
        let (a, b) = ((lo as f64).ln(), ((hi + 1) as f64).ln());
        ((a + (b - a) * self.unit()).exp() as i64).clamp(lo, hi)
    }
}

/// A fixed discrete distribution, sampled by binary search over cumulative weights.
#[derive(Debug, Clone)]
struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let mut total = 0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = rng.below(total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}

/// The 20 databases, busiest first.
pub const DATABASES: [&str; 20] = [
    "dw_prod",
    "analytics",
    "sales",
    "app_orders",
    "marketing",
    "finance",
    "logistics",
    "crm",
    "reporting",
    "etl_staging",
    "inventory",
    "ads",
    "user_profile",
    "risk",
    "billing",
    "iot_metrics",
    "hr",
    "audit",
    "sandbox",
    "archive_2024",
];

/// Service users first (they run most statements), then people. Of the services, the first
/// three are applications, the next four BI tools and the last three ETL.
const SERVICE_USERS: [&str; 10] = [
    "app_orders_rw",
    "app_checkout",
    "api_gateway",
    "bi_reader",
    "quickbi",
    "tableau_svc",
    "superset",
    "etl_loader",
    "dataworks_sync",
    "airflow",
];

const PEOPLE: [&str; 40] = [
    "zhang_wei",
    "li_na",
    "wang_fang",
    "liu_yang",
    "chen_jing",
    "yang_lei",
    "zhao_min",
    "huang_li",
    "zhou_tao",
    "wu_xia",
    "xu_bo",
    "sun_hui",
    "ma_jun",
    "zhu_lin",
    "hu_qiang",
    "guo_mei",
    "he_ping",
    "lin_yu",
    "tanaka_h",
    "suzuki_k",
    "sato_y",
    "watanabe_m",
    "kim_jisoo",
    "park_minho",
    "nguyen_an",
    "mueller_j",
    "schmidt_a",
    "garcia_l",
    "martin_c",
    "rossi_g",
    "silva_p",
    "smith_j",
    "johnson_e",
    "brown_d",
    "taylor_s",
    "wilson_r",
    "lee_k",
    "patel_r",
    "dba_admin",
    "gpadmin",
];

/// All 50 users, service users first.
pub fn users() -> Vec<&'static str> {
    SERVICE_USERS.iter().chain(PEOPLE.iter()).copied().collect()
}

/// Keywords that realistically occur in the generated SQL (table names of the templates), with
/// one that needs Unicode case folding and one in Chinese.
pub const KEYWORDS: [&str; 6] = [
    "orders",
    "customers",
    "page_views",
    "payments",
    "Order_Items",
    "销售明细",
];

/// What a session mostly runs, from its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Etl,
    App,
    Bi,
    Person,
}

fn profile_of(user: usize) -> Profile {
    match user {
        0..=2 => Profile::App,
        3..=6 => Profile::Bi,
        7..=9 => Profile::Etl,
        _ => Profile::Person,
    }
}

/// The statement shapes. Their order is the column order of `PROFILE_WEIGHTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Utility,
    PointSelect,
    JoinReport,
    PageViews,
    InsertRow,
    InsertSelect,
    Update,
    Delete,
    Ddl,
    Copy,
    ChineseReport,
    JapaneseLookup,
    OrmSelect,
    CteReport,
    Catalog,
    ProductSearch,
    Payments,
}

const SHAPES: [Shape; 17] = [
    Shape::Utility,
    Shape::PointSelect,
    Shape::JoinReport,
    Shape::PageViews,
    Shape::InsertRow,
    Shape::InsertSelect,
    Shape::Update,
    Shape::Delete,
    Shape::Ddl,
    Shape::Copy,
    Shape::ChineseReport,
    Shape::JapaneseLookup,
    Shape::OrmSelect,
    Shape::CteReport,
    Shape::Catalog,
    Shape::ProductSearch,
    Shape::Payments,
];

/// Relative frequency of each shape (in `SHAPES` order) per profile.
const PROFILE_WEIGHTS: [[u64; 17]; 4] = [
    // Etl: loads, transforms, housekeeping.
    [30, 2, 2, 2, 4, 14, 8, 6, 12, 12, 2, 0, 0, 2, 2, 0, 2],
    // App: driver chatter and short OLTP-ish statements.
    [8, 20, 0, 0, 14, 0, 10, 2, 0, 0, 0, 3, 20, 0, 0, 3, 10],
    // Bi: reports.
    [12, 4, 18, 12, 0, 0, 0, 0, 0, 1, 10, 5, 4, 10, 2, 8, 4],
    // Person: a bit of everything.
    [10, 10, 10, 6, 3, 3, 4, 3, 6, 3, 6, 5, 3, 6, 8, 6, 2],
];

/// Log-normal duration per shape: median in milliseconds and sigma of the logarithm.
fn duration_model(shape: Shape) -> (f64, f64) {
    match shape {
        Shape::Utility => (0.4, 0.9),
        Shape::PointSelect => (3.0, 1.0),
        Shape::JoinReport => (70.0, 1.4),
        Shape::PageViews => (45.0, 1.3),
        Shape::InsertRow => (4.0, 0.8),
        Shape::InsertSelect => (1500.0, 1.3),
        Shape::Update => (15.0, 1.4),
        Shape::Delete => (40.0, 1.6),
        Shape::Ddl => (25.0, 1.6),
        Shape::Copy => (4000.0, 1.2),
        Shape::ChineseReport => (50.0, 1.3),
        Shape::JapaneseLookup => (12.0, 1.2),
        Shape::OrmSelect => (6.0, 1.0),
        Shape::CteReport => (900.0, 1.3),
        Shape::Catalog => (30.0, 0.9),
        Shape::ProductSearch => (25.0, 1.2),
        Shape::Payments => (4.0, 1.0),
    }
}

/// Longest duration generated: three hours.
const MAX_DURATION_MS: i64 = 3 * 3600 * 1000;

const RUNNING_SHARE: f64 = 0.05;
const ERROR_SHARE: f64 = 0.03;

/// Sessions open at any time; each record goes to one of them.
const ACTIVE_SESSIONS: usize = 48;
/// Mean statements per session.
const SESSION_LENGTH: f64 = 25.0;

#[derive(Debug, Clone)]
struct Session {
    id: u64,
    started_secs: i64,
    database: usize,
    user: usize,
    commands: u64,
    remaining: u64,
}

/// The record source: an iterator of `count` records in start-time order.
pub struct Generator {
    settings: Settings,
    rng: Rng,
    index: u64,
    start_ms: i64,
    span_ms: i64,
    databases: Weighted,
    users: Vec<&'static str>,
    user_weights: Weighted,
    shapes: [Weighted; 4],
    sessions: Vec<Session>,
    next_session: u64,
}

impl Generator {
    pub fn new(settings: Settings) -> Self {
        let mut rng = Rng::new(settings.seed);
        // Long tails: the busiest database sees about 18 times what the quietest sees.
        let databases = Weighted::new((0..DATABASES.len()).map(|k| 10_000 / (k as u64 + 1)));
        let users = users();
        // Service users by a 1/k law, people far below them but all present.
        let user_weights = Weighted::new((0..users.len()).map(|k| {
            if k < SERVICE_USERS.len() {
                40_000 / (k as u64 + 1)
            } else {
                2_000 / ((k - SERVICE_USERS.len()) as u64 / 4 + 1)
            }
        }));
        let shapes = PROFILE_WEIGHTS.map(|w| Weighted::new(w.iter().copied()));
        let start_ms = settings.start.timestamp_millis();
        let span_ms = settings.span.num_milliseconds().max(1);
        let next_session = 20_000 + rng.below(10_000);
        let mut generator = Self {
            settings,
            rng,
            index: 0,
            start_ms,
            span_ms,
            databases,
            users,
            user_weights,
            shapes,
            sessions: Vec::with_capacity(ACTIVE_SESSIONS),
            next_session,
        };
        for _ in 0..ACTIVE_SESSIONS {
            // The first sessions began at some point before the span.
            let started = start_ms / 1000 - generator.rng.range(0, 3600);
            let session = generator.new_session(started);
            generator.sessions.push(session);
        }
        generator
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn new_session(&mut self, started_secs: i64) -> Session {
        self.next_session += 1 + self.rng.below(6);
        let remaining = 1 + (-(1.0 - self.rng.unit()).ln() * (SESSION_LENGTH - 1.0)) as u64;
        Session {
            id: self.next_session,
            started_secs,
            database: self.databases.sample(&mut self.rng),
            user: self.user_weights.sample(&mut self.rng),
            commands: 0,
            remaining,
        }
    }

    fn record(&mut self) -> QueryRecord {
        let i = self.index;
        self.index += 1;
        // Evenly spread over the span, in order, with jitter inside each record's slot.
        let slot = (i as f64 + self.rng.unit()) / self.settings.count.max(1) as f64;
        let start_ms = self.start_ms + (slot * self.span_ms as f64) as i64;
        let start_time = DateTime::from_timestamp_millis(start_ms).unwrap_or(DateTime::UNIX_EPOCH);

        let s = self.rng.below(ACTIVE_SESSIONS as u64) as usize;
        if self.sessions[s].remaining == 0 {
            self.sessions[s] = self.new_session(start_ms.div_euclid(1000));
        }
        let session = &mut self.sessions[s];
        session.remaining -= 1;
        session.commands += 1;
        let (session_id, started, commands) = (session.id, session.started_secs, session.commands);
        let (database, user) = (session.database, session.user);

        let profile = profile_of(user) as usize;
        let shape = SHAPES[self.shapes[profile].sample(&mut self.rng)];
        let sql = Sql::new(&mut self.rng, start_time).render(shape);

        let (median, sigma) = duration_model(shape);
        let mut duration_ms =
            ((median.ln() + sigma * self.rng.normal()).exp() as i64).clamp(0, MAX_DURATION_MS);
        // The long tail: a few statements of any shape wait on locks or spill to disk.
        if self.rng.chance(0.004) {
            duration_ms =
                (duration_ms + self.rng.log_uniform(10_000, 900_000)).min(MAX_DURATION_MS);
        }
        let running = self.rng.chance(RUNNING_SHARE);
        let error = (!running && self.rng.chance(ERROR_SHARE)).then(|| self.error_message(shape));
        let rows = if running || error.is_some() {
            None
        } else {
            self.rows(shape)
        };
        let has_plan = !matches!(shape, Shape::Utility | Shape::Ddl)
            && self
                .rng
                .chance(if duration_ms >= 1000 { 0.4 } else { 0.01 });
        let (plan_json, plan_text) = if has_plan {
            let (json, text) = plan(&mut self.rng, &sql, shape, duration_ms, rows);
            (Some(json), Some(text))
        } else {
            (None, None)
        };
        QueryRecord {
            instance: self.settings.instance.clone(),
            query_id: format!("{started}-{session_id}-{commands}"),
            session_id: session_id.to_string(),
            database: DATABASES[database].to_owned(),
            user: self.users[user].to_owned(),
            start_time,
            duration_ms,
            status: if running {
                QueryStatus::Running
            } else {
                QueryStatus::Finished
            },
            error,
            sql,
            plan_json,
            plan_text,
            rows,
            source: if running {
                "pg_stat_activity".into()
            } else {
                "csvlog".into()
            },
            ..Default::default()
        }
    }

    fn rows(&mut self, shape: Shape) -> Option<i64> {
        let r = &mut self.rng;
        Some(match shape {
            Shape::Utility | Shape::Ddl => return None,
            Shape::PointSelect | Shape::Payments => r.range(0, 4),
            Shape::InsertRow => 1,
            Shape::JoinReport | Shape::ChineseReport | Shape::OrmSelect => r.log_uniform(1, 100),
            Shape::PageViews | Shape::ProductSearch | Shape::JapaneseLookup | Shape::Catalog => {
                r.range(0, 51)
            }
            Shape::CteReport => r.log_uniform(1, 200),
            Shape::InsertSelect | Shape::Copy => r.log_uniform(1_000, 20_000_000),
            Shape::Update | Shape::Delete => r.log_uniform(1, 500_000) - 1,
        })
    }

    fn error_message(&mut self, shape: Shape) -> String {
        let r = &mut self.rng;
        match r.below(14) {
            0 => "canceling statement due to user request".into(),
            1 => "canceling statement due to statement timeout".into(),
            2 => format!(
                "relation \"staging.orders_{}\" does not exist",
                r.range(20250101, 20251231)
            ),
            3 => "duplicate key value violates unique constraint \"orders_pkey\"".into(),
            4 => "division by zero".into(),
            5 => format!(
                "permission denied for table {}",
                r.pick(&["salaries", "payments", "customers"])
            ),
            6 => "column \"totl_amount\" does not exist".into(),
            7 => "could not serialize access due to concurrent update".into(),
            8 => format!(
                "Canceling query because of high VMEM usage. Used: {}MB, available {}MB, red zone: 7372MB",
                r.range(7400, 8192),
                r.range(100, 800)
            ),
            9 => "invalid input syntax for type integer: \"N/A\"".into(),
            10 if shape != Shape::Copy => "syntax error at or near \"FORM\"".into(),
            10 => "missing data for column \"created_at\" (seg3 10.0.0.14:6001 pid=31877)".into(),
            11 => "deadlock detected".into(),
            12 => "value too long for type character varying(64)".into(),
            _ => "关系 \"销售明细_旧\" 不存在".into(),
        }
    }
}

impl Iterator for Generator {
    type Item = QueryRecord;

    fn next(&mut self) -> Option<QueryRecord> {
        (self.index < self.settings.count).then(|| self.record())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.settings.count - self.index).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Renders one statement; dates in it are near the record's start time (`day_of`), as real
/// queries ask about recent days.
struct Sql<'a> {
    rng: &'a mut Rng,
    at: DateTime<Utc>,
    out: String,
}

const REGIONS: [&str; 8] = [
    "华东",
    "华南",
    "华北",
    "西南",
    "East",
    "West",
    "Île-de-France",
    "関東",
];
const CUSTOMER_NAMES: [(&str, &str, &str, &str); 10] = [
    ("O''Brien", "Dublin", "IE", "obrien"),
    ("张伟", "上海", "CN", "zhangwei"),
    ("山田太郎", "東京", "JP", "yamada"),
    ("José Núñez", "Sevilla", "ES", "jnunez"),
    ("Zoë Müller", "München", "DE", "zmueller"),
    ("D''Angelo", "Roma", "IT", "dangelo"),
    ("François Lefèvre", "Paris", "FR", "flefevre"),
    ("Nguyễn Văn An", "Hà Nội", "VN", "nguyen"),
    ("Smith", "London", "GB", "smith"),
    ("李娜", "杭州", "CN", "lina"),
];
const PRODUCT_WORDS: [&str; 10] = [
    "café",
    "crème brûlée",
    "jalapeño",
    "抹茶",
    "ラーメン",
    "chair",
    "lamp",
    "Kinderwagen",
    "naïve art",
    "羽绒服",
];
const STREETS: [&str; 6] = [
    "Rue de l''Église, Paris",
    "幸福路, 杭州市",
    "Hauptstraße, Berlin",
    "Main St, Springfield",
    "銀座通り, 東京都",
    "O''Connell Street, Dublin",
];
const STATUSES: [&str; 5] = ["pending", "paid", "shipped", "delivered", "cancelled"];

impl<'a> Sql<'a> {
    fn new(rng: &'a mut Rng, at: DateTime<Utc>) -> Self {
        Self {
            rng,
            at,
            out: String::with_capacity(256),
        }
    }

    fn render(mut self, shape: Shape) -> String {
        let r = &mut *self.rng;
        let o = &mut self.out;
        match shape {
            Shape::Utility => o.push_str(r.pick::<&str>(&[
                "BEGIN",
                "COMMIT",
                "ROLLBACK",
                "SELECT 1",
                "SET search_path TO analytics, public",
                "SET statement_timeout = '5min'",
                "SHOW optimizer",
                "SET optimizer = off",
                "DISCARD ALL",
                "SELECT version()",
                "SELECT current_database(), current_user",
                "SET application_name = 'DataWorks'",
            ])),
            Shape::PointSelect => match r.below(3) {
                0 => {
                    let _ = write!(
                        o,
                        "SELECT o.order_id, o.customer_id, o.status, o.total_amount, o.currency, o.shipping_address, o.created_at, o.updated_at \
                         FROM orders o WHERE o.order_id = {} AND o.tenant_id = {}",
                        r.range(1_000_000, 99_999_999),
                        r.range(1, 500)
                    );
                }
                1 => {
                    let (_, _, _, login) = r.pick(&CUSTOMER_NAMES);
                    let _ = write!(
                        o,
                        "SELECT customer_id, name, email, phone, city, country, loyalty_tier, created_at FROM customers WHERE lower(email) = '{login}{}@example.com' LIMIT 1",
                        r.range(1, 9999)
                    );
                }
                _ => {
                    let _ = write!(
                        o,
                        "SELECT product_id, sku, name, category, price, stock FROM products WHERE sku = 'SKU-{:06}' AND active",
                        r.range(0, 999_999)
                    );
                }
            },
            Shape::JoinReport => {
                let days = r.range(1, 8);
                let region = r.pick(&REGIONS);
                let limit = r.pick(&[20, 50, 100, 500]);
                let _ = write!(
                    o,
                    "SELECT c.region, date_trunc('day', o.created_at) AS day, count(*) AS orders, sum(o.total_amount) AS revenue\n\
                     FROM orders o\n\
                     JOIN customers c ON c.customer_id = o.customer_id\n\
                     WHERE o.created_at >= '{}' AND o.created_at < '{}' AND c.region = '{region}' AND o.status <> 'cancelled'\n\
                     GROUP BY 1, 2\n\
                     ORDER BY revenue DESC\n\
                     LIMIT {limit}",
                    day_of(self.at, days),
                    day_of(self.at, 0),
                );
            }
            Shape::PageViews => {
                let hour = self.at.hour();
                let _ = write!(
                    o,
                    "SELECT page_path, count(*) AS views, count(DISTINCT user_id) AS visitors, avg(load_ms)::numeric(10,1) AS avg_load \
                     FROM page_views WHERE view_time >= '{} {hour:02}:00:00' AND view_time < '{} {hour:02}:59:59' \
                     AND country IN ('CN', 'JP', 'DE') GROUP BY page_path HAVING count(*) > {} ORDER BY views DESC LIMIT 50",
                    day_of(self.at, 0),
                    day_of(self.at, 0),
                    r.range(10, 1000)
                );
            }
            Shape::InsertRow => {
                if r.chance(0.6) {
                    let _ = write!(
                        o,
                        "INSERT INTO orders (order_id, customer_id, status, total_amount, currency, shipping_address, created_at) \
                         VALUES ({}, {}, 'pending', {}.{:02}, 'CNY', '{} {}', '{}')",
                        r.range(1_000_000, 99_999_999),
                        r.range(1, 5_000_000),
                        r.range(1, 20_000),
                        r.range(0, 100),
                        r.range(1, 300),
                        r.pick(&STREETS),
                        self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    );
                } else {
                    let (name, city, country, login) = r.pick(&CUSTOMER_NAMES);
                    let _ = write!(
                        o,
                        "INSERT INTO customers (customer_id, name, email, city, country) VALUES ({}, '{name}', '{login}{}@example.com', '{city}', '{country}')",
                        r.range(1, 5_000_000),
                        r.range(1, 9999)
                    );
                }
            }
            Shape::InsertSelect => {
                let back = r.range(1, 3);
                let _ = write!(
                    o,
                    "INSERT INTO daily_sales_summary (sale_date, region, product_id, quantity, revenue)\n\
                     SELECT o.created_at::date, c.region, i.product_id, sum(i.quantity), sum(i.quantity * i.unit_price)\n\
                     FROM orders o\n\
                     JOIN order_items i ON i.order_id = o.order_id\n\
                     JOIN customers c ON c.customer_id = o.customer_id\n\
                     WHERE o.created_at >= '{}' AND o.created_at < '{}'\n\
                     GROUP BY 1, 2, 3",
                    day_of(self.at, back),
                    day_of(self.at, back - 1),
                );
            }
            Shape::Update => {
                if r.chance(0.5) {
                    let n = r.range(1, 8);
                    let _ = write!(
                        o,
                        "UPDATE orders SET status = '{}', updated_at = now() WHERE order_id IN (",
                        r.pick(&STATUSES)
                    );
                    for k in 0..n {
                        if k > 0 {
                            o.push_str(", ");
                        }
                        let _ = write!(o, "{}", r.range(1_000_000, 99_999_999));
                    }
                    o.push(')');
                } else {
                    let _ = write!(
                        o,
                        "UPDATE inventory SET quantity = quantity - {}, updated_at = now() WHERE product_id = {} AND warehouse = '{}'",
                        r.range(1, 20),
                        r.range(1, 200_000),
                        r.pick(&["HZ-01", "SH-02", "東京-1", "FRA-3"])
                    );
                }
            }
            Shape::Delete => match r.below(3) {
                0 => {
                    let _ = write!(
                        o,
                        "DELETE FROM user_events WHERE event_time < '{}'::date - interval '90 days'",
                        day_of(self.at, 0)
                    );
                }
                1 => {
                    let _ = write!(
                        o,
                        "DELETE FROM \"购物车\" WHERE \"用户ID\" = {} AND \"更新时间\" < now() - interval '30 days'",
                        r.range(1, 5_000_000)
                    );
                }
                _ => {
                    let _ = write!(
                        o,
                        "DELETE FROM order_items WHERE order_id = {} AND line_no > {}",
                        r.range(1_000_000, 99_999_999),
                        r.range(1, 10)
                    );
                }
            },
            Shape::Ddl => {
                let d = compact_day_of(self.at, 0);
                match r.below(9) {
                    0 => {
                        let _ = write!(
                            o,
                            "CREATE TABLE IF NOT EXISTS staging.orders_{d} (LIKE public.orders INCLUDING DEFAULTS) \
                             WITH (appendonly=true, orientation=column, compresstype=zstd, compresslevel=5) DISTRIBUTED BY (order_id)"
                        );
                    }
                    1 => {
                        let _ = write!(o, "DROP TABLE IF EXISTS staging.orders_{d}");
                    }
                    2 => o.push_str("ALTER TABLE customers ADD COLUMN IF NOT EXISTS loyalty_tier text DEFAULT 'bronze'"),
                    3 => o.push_str("CREATE INDEX IF NOT EXISTS orders_customer_idx ON orders (customer_id, created_at)"),
                    4 => {
                        let _ = write!(o, "TRUNCATE TABLE staging.page_views_{d}");
                    }
                    5 => o.push_str(r.pick::<&str>(&[
                        "ANALYZE orders",
                        "ANALYZE page_views",
                        "VACUUM ANALYZE order_items",
                    ])),
                    6 => o.push_str("COMMENT ON TABLE \"销售明细\" IS '销售明细表（按日分区），来源：DataWorks 每日同步'"),
                    7 => o.push_str("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO bi_reader, quickbi"),
                    _ => {
                        let _ = write!(
                            o,
                            "ALTER TABLE page_views ADD PARTITION p{d} START ('{}') END ('{}')",
                            day_of(self.at, 0),
                            day_of(self.at, -1)
                        );
                    }
                }
            }
            Shape::Copy => {
                let d = compact_day_of(self.at, 1);
                if r.chance(0.7) {
                    let _ = write!(
                        o,
                        "COPY staging.orders_{d} (order_id, customer_id, status, total_amount, currency, created_at) \
                         FROM '/data/import/orders/orders_{d}_part{:02}.csv' WITH (FORMAT csv, HEADER true, DELIMITER ',', NULL '')",
                        r.range(0, 16)
                    );
                } else {
                    let _ = write!(
                        o,
                        "COPY (SELECT * FROM page_views WHERE view_time::date = '{}') TO STDOUT WITH (FORMAT csv, HEADER)",
                        day_of(self.at, 1)
                    );
                }
            }
            Shape::ChineseReport => {
                let _ = write!(
                    o,
                    "SELECT \"商品名称\", \"地区\", sum(\"销售额\") AS \"总销售额\", count(*) AS \"订单数\"\n\
                     FROM \"销售明细\"\n\
                     WHERE \"销售日期\" BETWEEN '{}' AND '{}' AND \"地区\" = '{}'\n\
                     GROUP BY \"商品名称\", \"地区\"\n\
                     ORDER BY \"总销售额\" DESC\n\
                     LIMIT {}",
                    day_of(self.at, 7),
                    day_of(self.at, 0),
                    r.pick(&["华东", "华南", "华北", "西南"]),
                    r.pick(&[10, 20, 100])
                );
            }
            Shape::JapaneseLookup => {
                let _ = write!(
                    o,
                    "SELECT 顧客ID, 氏名, メールアドレス, 登録日 FROM 顧客マスタ WHERE 氏名 LIKE '{}%' AND 登録日 >= '{}' ORDER BY 登録日 DESC LIMIT 100",
                    r.pick(&["田中", "佐藤", "鈴木", "高橋", "渡辺"]),
                    day_of(self.at, r.range(1, 365))
                );
            }
            Shape::OrmSelect => {
                let _ = write!(
                    o,
                    "SELECT \"t0\".\"Id\", \"t0\".\"UserId\", \"t0\".\"SessionId\", \"t0\".\"EventType\", \"t0\".\"Payload\", \"t0\".\"CreatedAt\" FROM \"AppEvents\" AS \"t0\" \
                     WHERE \"t0\".\"UserId\" = {} AND \"t0\".\"EventType\" = '{}' ORDER BY \"t0\".\"CreatedAt\" DESC LIMIT 20",
                    r.range(1, 5_000_000),
                    r.pick(&["checkout", "login", "add_to_cart", "view"])
                );
            }
            Shape::CteReport => {
                let _ = write!(
                    o,
                    "WITH paid AS (\n    \
                         SELECT p.order_id, sum(p.amount) AS paid_amount, max(p.paid_at) AS last_paid_at\n    \
                         FROM payments p\n    \
                         WHERE p.paid_at >= '{}' AND p.status = 'succeeded'\n    \
                         GROUP BY p.order_id\n\
                     ), late AS (\n    \
                         SELECT o.order_id, o.customer_id, o.total_amount - coalesce(paid.paid_amount, 0) AS outstanding\n    \
                         FROM orders o LEFT JOIN paid ON paid.order_id = o.order_id\n    \
                         WHERE o.created_at < '{}'::date - interval '{} days'\n\
                     )\n\
                     SELECT c.customer_id, c.name, c.country, sum(late.outstanding) AS outstanding\n\
                     FROM late JOIN customers c ON c.customer_id = late.customer_id\n\
                     WHERE late.outstanding > 0\n\
                     GROUP BY c.customer_id, c.name, c.country\n\
                     ORDER BY outstanding DESC\n\
                     LIMIT 200",
                    day_of(self.at, 90),
                    day_of(self.at, 0),
                    r.pick(&[15, 30, 60])
                );
            }
            Shape::Catalog => o.push_str(r.pick::<&str>(&[
                "SELECT n.nspname AS schema, c.relname AS table, pg_total_relation_size(c.oid) AS bytes FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY bytes DESC LIMIT 50",
                "SELECT pid, usename, datname, state, now() - query_start AS running_for, left(query, 100) \
                 FROM pg_stat_activity WHERE state <> 'idle' ORDER BY running_for DESC",
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' ORDER BY ordinal_position",
            ])),
            Shape::ProductSearch => {
                let _ = write!(
                    o,
                    "SELECT product_id, name, category, price FROM products WHERE name ILIKE '%{}%' AND category <> 'Kids'' Toys' ORDER BY price LIMIT 50",
                    r.pick(&PRODUCT_WORDS)
                );
            }
            Shape::Payments => {
                let _ = write!(
                    o,
                    "SELECT p.payment_id, p.order_id, p.amount, p.currency, p.method, p.status, p.provider_ref, p.paid_at FROM payments p \
                     WHERE p.order_id = {} AND p.status IN ('succeeded', 'pending') ORDER BY p.paid_at DESC",
                    r.range(1_000_000, 99_999_999)
                );
            }
        }
        self.out
    }
}

fn day_of(at: DateTime<Utc>, back: i64) -> String {
    let d = (at - Duration::days(back)).date_naive();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

fn compact_day_of(at: DateTime<Utc>, back: i64) -> String {
    let d = (at - Duration::days(back)).date_naive();
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// The relations a plan scans, from the statement's shape.
fn plan_relations(shape: Shape) -> (&'static str, Option<&'static str>) {
    match shape {
        Shape::JoinReport => ("orders", Some("customers")),
        Shape::InsertSelect => ("order_items", Some("orders")),
        Shape::CteReport => ("payments", Some("orders")),
        Shape::PageViews | Shape::Copy => ("page_views", None),
        Shape::ChineseReport => ("销售明细", None),
        Shape::JapaneseLookup => ("顧客マスタ", None),
        Shape::OrmSelect => ("AppEvents", None),
        Shape::ProductSearch => ("products", None),
        Shape::Payments => ("payments", None),
        Shape::Update | Shape::PointSelect | Shape::InsertRow => ("orders", None),
        Shape::Delete => ("user_events", None),
        Shape::Catalog => ("pg_class", Some("pg_namespace")),
        Shape::Utility | Shape::Ddl => ("orders", None),
    }
}

/// An `auto_explain` plan (JSON as it logs it, and the text form) whose times add up to the
/// duration.
fn plan(
    rng: &mut Rng,
    sql: &str,
    shape: Shape,
    duration_ms: i64,
    rows: Option<i64>,
) -> (String, String) {
    let total = duration_ms.max(1) as f64;
    let out_rows = rows.unwrap_or(0);
    let (outer, inner) = plan_relations(shape);
    let scanned = rng.log_uniform(1_000, 50_000_000);
    let scan_time = total * (0.4 + 0.3 * rng.unit());
    let segments = 4;
    let scan = |relation: &str, time: f64, rows: i64| {
        serde_json::json!({
            "Node Type": "Seq Scan",
            "Relation Name": relation,
            "Alias": relation,
            "Startup Cost": 0.0,
            "Total Cost": (rows as f64 * 0.01).round(),
            "Plan Rows": rows,
            "Actual Startup Time": 0.05,
            "Actual Total Time": round3(time),
            "Actual Rows": rows,
            "Actual Loops": 1
        })
    };
    let mut text = String::with_capacity(512);
    let top = match inner {
        Some(inner) => {
            let small = rng.log_uniform(100, 1_000_000);
            let hash_time = total * 0.1;
            let join_time = total * 0.95;
            let _ = write!(
                text,
                "Gather Motion {segments}:1  (slice1; segments: {segments})  (actual time={:.3}..{:.3} rows={out_rows} loops=1)\n\
                 \x20 ->  Hash Join  (actual time={:.3}..{:.3} rows={out_rows} loops=1)\n\
                 \x20       ->  Seq Scan on {outer}  (actual time=0.050..{:.3} rows={scanned} loops=1)\n\
                 \x20       ->  Hash  (actual time={:.3}..{:.3} rows={small} loops=1)\n\
                 \x20             ->  Broadcast Motion {segments}:{segments}  (slice2; segments: {segments})  (actual time=0.100..{:.3} rows={small} loops=1)\n\
                 \x20                   ->  Seq Scan on {inner}  (actual time=0.040..{:.3} rows={small} loops=1)\n",
                total * 0.02,
                total,
                total * 0.05,
                join_time,
                scan_time,
                hash_time,
                hash_time,
                hash_time * 0.9,
                hash_time * 0.6,
            );
            serde_json::json!({
                "Node Type": "Gather Motion",
                "Senders": segments,
                "Receivers": 1,
                "Slice": 1,
                "Actual Startup Time": round3(total * 0.02),
                "Actual Total Time": round3(total),
                "Actual Rows": out_rows,
                "Actual Loops": 1,
                "Plans": [{
                    "Node Type": "Hash Join",
                    "Parent Relationship": "Outer",
                    "Join Type": "Inner",
                    "Actual Startup Time": round3(total * 0.05),
                    "Actual Total Time": round3(join_time),
                    "Actual Rows": out_rows,
                    "Actual Loops": 1,
                    "Plans": [
                        scan(outer, scan_time, scanned),
                        {
                            "Node Type": "Hash",
                            "Parent Relationship": "Inner",
                            "Actual Startup Time": round3(hash_time),
                            "Actual Total Time": round3(hash_time),
                            "Actual Rows": small,
                            "Actual Loops": 1,
                            "Plans": [{
                                "Node Type": "Broadcast Motion",
                                "Senders": segments,
                                "Receivers": segments,
                                "Slice": 2,
                                "Actual Startup Time": 0.1,
                                "Actual Total Time": round3(hash_time * 0.9),
                                "Actual Rows": small,
                                "Actual Loops": 1,
                                "Plans": [scan(inner, hash_time * 0.6, small)]
                            }]
                        }
                    ]
                }]
            })
        }
        None => {
            let _ = write!(
                text,
                "Gather Motion {segments}:1  (slice1; segments: {segments})  (actual time={:.3}..{:.3} rows={out_rows} loops=1)\n\
                 \x20 ->  Seq Scan on {outer}  (actual time=0.050..{:.3} rows={scanned} loops=1)\n",
                total * 0.02,
                total,
                scan_time,
            );
            serde_json::json!({
                "Node Type": "Gather Motion",
                "Senders": segments,
                "Receivers": 1,
                "Slice": 1,
                "Actual Startup Time": round3(total * 0.02),
                "Actual Total Time": round3(total),
                "Actual Rows": out_rows,
                "Actual Loops": 1,
                "Plans": [scan(outer, scan_time, scanned)]
            })
        }
    };
    let planning = round3(0.2 + rng.unit() * 3.0);
    let _ = write!(
        text,
        "Planning time: {planning:.3} ms\nOptimizer: {}\nExecution time: {total:.3} ms",
        if rng.chance(0.8) {
            "Pivotal Optimizer (GPORCA)"
        } else {
            "Postgres query optimizer"
        }
    );
    let json = serde_json::json!({
        "Query Text": sql,
        "Plan": top,
        "Planning Time": planning,
        "Execution Time": round3(total)
    });
    (json.to_string(), text)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One line of `gpdiag records import`'s JSON-lines format (`JsonRecord` in
/// `crates/ingest/src/import.rs`), field for field.
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    query_id: &'a str,
    session_id: &'a str,
    database: &'a str,
    user: &'a str,
    start_time: String,
    duration_ms: i64,
    status: &'a str,
    error: Option<&'a str>,
    sql: &'a str,
    plan_json: Option<&'a str>,
    plan_text: Option<&'a str>,
    rows: Option<i64>,
    source: &'a str,
}

/// Writes `record` as one JSON line. With `with_instance` the line names its instance, so
/// `gpdiag records import --instance` refuses it for any other instance.
pub fn write_json_line(
    out: &mut impl Write,
    record: &QueryRecord,
    with_instance: bool,
) -> std::io::Result<()> {
    let line = JsonLine {
        instance: with_instance.then_some(record.instance.as_str()),
        query_id: &record.query_id,
        session_id: &record.session_id,
        database: &record.database,
        user: &record.user,
        start_time: record
            .start_time
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        duration_ms: record.duration_ms,
        status: record.status.as_str(),
        error: record.error.as_deref(),
        sql: &record.sql,
        plan_json: record.plan_json.as_deref(),
        plan_text: record.plan_text.as_deref(),
        rows: record.rows,
        source: &record.source,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn settings(count: u64, seed: u64) -> Settings {
        Settings {
            seed,
            count,
            ..Settings::default()
        }
    }

    fn lines(s: Settings) -> Vec<u8> {
        let mut out = Vec::new();
        for record in Generator::new(s) {
            write_json_line(&mut out, &record, false).unwrap();
        }
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let a = lines(settings(20_000, 7));
        assert_eq!(a, lines(settings(20_000, 7)));
        assert_ne!(a, lines(settings(20_000, 8)));
    }

    #[test]
    fn records_look_like_a_busy_instance() {
        let count = 60_000;
        let s = settings(count, DEFAULT_SEED);
        let (start, end) = (s.start, s.start + s.span);
        let records: Vec<QueryRecord> = Generator::new(s).collect();
        assert_eq!(records.len() as u64, count);

        let avg_sql = records.iter().map(|r| r.sql.len()).sum::<usize>() as f64 / count as f64;
        assert!((150.0..=250.0).contains(&avg_sql), "average SQL {avg_sql}");
        let dbs: HashSet<_> = records.iter().map(|r| r.database.as_str()).collect();
        assert_eq!(dbs.len(), 20);
        let users: HashSet<_> = records.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(users.len(), 50);
        let ids: HashSet<_> = records.iter().map(|r| r.query_id.as_str()).collect();
        assert_eq!(ids.len(), records.len(), "query ids are unique");
        let sessions: HashSet<_> = records.iter().map(|r| r.session_id.as_str()).collect();
        assert!(sessions.len() > 1_000, "{} sessions", sessions.len());

        let share = |f: &dyn Fn(&QueryRecord) -> bool| {
            records.iter().filter(|r| f(r)).count() as f64 / count as f64
        };
        let running = share(&|r| r.status == QueryStatus::Running);
        assert!((0.04..0.06).contains(&running), "running {running}");
        let failed = share(&|r| r.error.is_some());
        assert!((0.02..0.04).contains(&failed), "failed {failed}");
        let planned = share(&|r| r.plan_json.is_some());
        assert!((0.01..0.08).contains(&planned), "with a plan {planned}");
        assert!(records
            .iter()
            .all(|r| r.plan_json.is_some() == r.plan_text.is_some()));
        let fast = share(&|r| r.duration_ms < 100);
        assert!((0.7..0.95).contains(&fast), "under 100 ms {fast}");
        assert!(records.iter().any(|r| r.duration_ms >= 60_000), "a tail");
        assert!(share(&|r| r.sql.contains('\n')) > 0.02, "multi-line");
        assert!(share(&|r| r.sql.contains('"')) > 0.02, "double quotes");
        assert!(share(&|r| r.sql.contains("''")) > 0.002, "escaped quotes");
        assert!(share(&|r| !r.sql.is_ascii()) > 0.03, "non-ASCII");
        for keyword in KEYWORDS {
            let found = share(&|r| gpdiag_core::record::contains_case_insensitive(&r.sql, keyword));
            assert!(found > 0.01, "keyword {keyword}: {found}");
        }

        assert!(records
            .windows(2)
            .all(|w| w[0].start_time <= w[1].start_time));
        assert!(records[0].start_time >= start && records[records.len() - 1].start_time < end);
        // Every hour of the span has records.
        let hours: HashSet<i64> = records
            .iter()
            .map(|r| (r.start_time - start).num_hours())
            .collect();
        assert_eq!(hours.len() as i64, (end - start).num_hours());
        // Plans are what the product reads.
        let with_plan = records.iter().find(|r| r.plan_json.is_some()).unwrap();
        assert_ne!(
            gpdiag_core::plan::sorted_metrics(with_plan.plan_json.as_deref()),
            "[]"
        );
    }

    #[test]
    fn json_lines_are_what_records_import_reads() {
        let s = settings(3_000, 3);
        let records: Vec<QueryRecord> = Generator::new(s.clone()).collect();
        let mut out = Vec::new();
        for r in &records {
            write_json_line(&mut out, r, true).unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let store = gpdiag_store::SqliteStore::open(path.to_str().unwrap())
                .await
                .unwrap();
            let report = gpdiag_ingest::import::import(
                std::io::Cursor::new(out),
                &s.instance,
                &store,
                gpdiag_ingest::import::OnBadLine::Stop,
                |_| {},
            )
            .await
            .unwrap();
            assert!(report.bad_lines.is_empty(), "{:?}", report.bad_lines);
            assert_eq!(report.imported, records.len() as u64);
            use gpdiag_store::Store;
            for r in records.iter().step_by(7) {
                let back = store.get_record(&r.instance, &r.query_id).await.unwrap();
                assert_eq!(back.as_ref(), Some(r));
            }
        });
    }

    #[test]
    fn the_generator_is_uniform_enough() {
        let mut rng = Rng::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[rng.below(10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (9_500..10_500).contains(&b)),
            "{buckets:?}"
        );
        let w = Weighted::new([1, 0, 3]);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[w.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
    }
}
