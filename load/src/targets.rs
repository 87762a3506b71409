//! What each scenario asks the gateway: the routes, their query strings and the client address
//! a request claims.
//!
//! The closed loop (goose) and the open loop draw their requests from the same [`Plan`], so a
//! scenario means the same traffic in both modes.

use std::net::{IpAddr, Ipv4Addr};

use clap::ValueEnum;
use rand::Rng;
use rand::seq::IndexedRandom;

/// A load scenario, named as SPEC section 11 names its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// A weighted mix of main page, category pages 1–10, item detail and search.
    Browse,
    /// One 20-row category page, the same every time: served from the cache.
    CategoryCached,
    /// Search with distinct keywords and filters every request: never served from the cache.
    SearchUncached,
    /// Item detail over the seeded id range (counts a view).
    Detail,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Browse => "browse",
            Scenario::CategoryCached => "category-cached",
            Scenario::SearchUncached => "search-uncached",
            Scenario::Detail => "detail",
        }
    }

    /// The routes of the scenario with their weights (share of requests).
    pub fn routes(self) -> &'static [(Route, u32)] {
        match self {
            // Browsing is mostly listing and opening items; the main page and the search box
            // are each a tenth.
            Scenario::Browse => &[
                (Route::Main, 10),
                (Route::Category, 40),
                (Route::Detail, 40),
                (Route::Search, 10),
            ],
            Scenario::CategoryCached => &[(Route::CategoryCached, 1)],
            Scenario::SearchUncached => &[(Route::Search, 1)],
            Scenario::Detail => &[(Route::Detail, 1)],
        }
    }
}

/// One kind of request; its name labels the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `GET /api/items/main`.
    Main,
    /// `GET /api/items?category=…&sort=…&page=1..=10&size=20`.
    Category,
    /// `GET /api/items?category=EYE&sort=SALES&page=1&size=20`, always the same.
    CategoryCached,
    /// `GET /api/items/{id}`.
    Detail,
    /// `GET /api/items?keyword=…` with varied filters.
    Search,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Main => "main",
            Route::Category => "category",
            Route::CategoryCached => "category-cached",
            Route::Detail => "detail",
            Route::Search => "search",
        }
    }
}

/// The path of [`Route::CategoryCached`]; `nginx-baseline.sh` captures this page's bytes.
pub const CACHED_CATEGORY_PATH: &str = "/api/items?category=EYE&sort=SALES&page=1&size=20";

const CATEGORIES: [&str; 9] = [
    "EYE",
    "BONE",
    "BRAIN",
    "INTESTINE",
    "LIVER",
    "SKIN",
    "ANTIOXIDANT",
    "FATIGUE",
    "ETC",
];

const SORTS: [&str; 8] = [
    "SALES",
    "NEWEST",
    "PRICE_H",
    "PRICE_L",
    "DISCOUNT_RATE_H",
    "DISCOUNT_RATE_L",
    "REVIEW_COUNT",
    "STAR_AVG",
];

/// Words that occur in the seeded product names (services/catalog/src/domain/demo.rs), so a
/// search finds rows, plus a few that match nothing, as real search boxes see.
const KEYWORDS: [&str; 28] = [
    "루테인",
    "칼슘",
    "오메가3",
    "유산균",
    "밀크씨슬",
    "콜라겐",
    "비타민C",
    "홍삼",
    "멀티비타민",
    "블루베리",
    "아스타잔틴",
    "보스웰리아",
    "포스파티딜세린",
    "은행잎",
    "식이섬유",
    "헛개",
    "히알루론산",
    "코엔자임",
    "엽산",
    "셀레늄",
    "쏘팔메토",
    "글루코사민",
    "비오틴",
    "골드",
    "프리미엄",
    "gold",
    "마카",
    "프로폴리스",
];

/// Brands of the seeded items.
const BRANDS: [&str; 8] = [
    "종근당",
    "뉴트리원",
    "고려은단",
    "정관장",
    "솔가",
    "GNC",
    "나우푸드",
    "닥터린",
];

/// One request to send.
#[derive(Debug, Clone)]
pub struct Target {
    pub route: Route,
    /// Path and query, to append to the host.
    pub path: String,
    /// Sent as `X-Forwarded-For`: counted as the client when the gateway trusts that header
    /// (behind the Envoy edge); the embedded fleet uses the TCP peer instead (see
    /// [`loopback_source`]).
    pub client_ip: Ipv4Addr,
}

/// The traffic of one scenario against a catalog of `items` items.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    /// Item ids 1..=items exist (the fleet's seed numbers them from 1).
    pub items: u32,
    /// How many distinct client addresses requests claim.
    pub client_ips: u32,
}

impl Plan {
    /// The next request, with the route drawn by the scenario's weights.
    pub fn next(&self, rng: &mut impl Rng) -> Target {
        let routes = self.scenario.routes();
        let total: u32 = routes.iter().map(|(_, weight)| weight).sum();
        let mut pick = rng.random_range(0..total);
        let mut route = routes[0].0;
        for &(candidate, weight) in routes {
            if pick < weight {
                route = candidate;
                break;
            }
            pick -= weight;
        }
        self.next_of(route, rng)
    }

    /// The next request of `route`.
    pub fn next_of(&self, route: Route, rng: &mut impl Rng) -> Target {
        let path = match route {
            Route::Main => "/api/items/main".to_owned(),
            Route::CategoryCached => CACHED_CATEGORY_PATH.to_owned(),
            Route::Category => query(&[
                ("category", pick(&CATEGORIES, rng).to_owned()),
                ("sort", pick(&SORTS, rng).to_owned()),
                ("page", rng.random_range(1..=10u32).to_string()),
                ("size", "20".to_owned()),
            ]),
            Route::Detail => format!("/api/items/{}", rng.random_range(1..=self.items.max(1))),
            Route::Search => self.search(rng),
        };
        Target {
            route,
            path,
            client_ip: client_address(rng.random_range(0..self.client_ips.max(1))),
        }
    }

    /// A search no earlier request asked for (with overwhelming probability): a keyword and a
    /// price window with random bounds, so the cache key differs every time, plus some of the
    /// other filters and any sort.
    fn search(&self, rng: &mut impl Rng) -> String {
        let min_price = rng.random_range(0..60_000u32);
        let max_price = min_price + rng.random_range(20_000..200_000u32);
        let mut pairs = vec![
            ("keyword", pick(&KEYWORDS, rng).to_owned()),
            ("minPrice", min_price.to_string()),
            ("maxPrice", max_price.to_string()),
            ("sort", pick(&SORTS, rng).to_owned()),
        ];
        if rng.random_bool(0.3) {
            pairs.push(("category", pick(&CATEGORIES, rng).to_owned()));
        }
        if rng.random_bool(0.2) {
            pairs.push(("brand", pick(&BRANDS, rng).to_owned()));
        }
        if rng.random_bool(0.3) {
            pairs.push(("onSale", "true".to_owned()));
        }
        pairs.push(("page", rng.random_range(1..=3u32).to_string()));
        pairs.push(("size", "20".to_owned()));
        query(&pairs)
    }
}

fn pick<'a>(values: &'a [&'a str], rng: &mut impl Rng) -> &'a str {
    values.choose(rng).copied().unwrap_or_default()
}

fn query(pairs: &[(&str, String)]) -> String {
    // Korean keywords must be percent-encoded; serde_urlencoded does it as browsers do.
    let encoded = serde_urlencoded::to_string(pairs).unwrap_or_default();
    format!("/api/items?{encoded}")
}

/// The `index`-th claimed client address, in 10.0.0.0/8 so it never names a real host.
pub fn client_address(index: u32) -> Ipv4Addr {
    let [_, b, c, d] = (index + 1).to_be_bytes();
    Ipv4Addr::new(10, b, c, d)
}

/// The `index`-th loopback source address (127.0.0.2 onwards). Linux routes all of
/// 127.0.0.0/8 to the loopback interface, so binding a client's sockets to one of these makes
/// the embedded gateway (which does not trust `X-Forwarded-For`) see distinct peers.
pub fn loopback_source(index: u32) -> IpAddr {
    let [_, b, c, d] = (index + 2).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

/// Whether the target host is this machine's loopback, where [`loopback_source`] works.
pub fn is_loopback_host(host: &str) -> bool {
    let rest = host
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let authority = rest.split('/').next().unwrap_or_default();
    let name = authority
        .rsplit_once(':')
        .map_or(authority, |(name, _)| name);
    name == "localhost" || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn plan(scenario: Scenario) -> Plan {
        Plan {
            scenario,
            items: 40_000,
            client_ips: 256,
        }
    }

    #[test]
    fn browse_follows_the_weights() {
        let mut rng = SmallRng::seed_from_u64(7);
        let plan = plan(Scenario::Browse);
        let mut counts: HashMap<Route, u32> = HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(plan.next(&mut rng).route).or_default() += 1;
        }
        for (route, share) in [
            (Route::Main, 0.1),
            (Route::Category, 0.4),
            (Route::Detail, 0.4),
            (Route::Search, 0.1),
        ] {
            let seen = f64::from(counts[&route]) / 10_000.0;
            assert!((seen - share).abs() < 0.02, "{route:?}: {seen}");
        }
    }

    #[test]
    fn searches_are_distinct_and_encoded() {
        let mut rng = SmallRng::seed_from_u64(1);
        let plan = plan(Scenario::SearchUncached);
        let paths: HashSet<String> = (0..2_000).map(|_| plan.next(&mut rng).path).collect();
        assert!(paths.len() > 1_990, "only {} distinct", paths.len());
        assert!(paths.iter().all(|path| path.is_ascii()));
        assert!(paths.iter().all(|path| path.contains("keyword=")));
    }

    #[test]
    fn detail_ids_stay_in_the_seeded_range() {
        let mut rng = SmallRng::seed_from_u64(3);
        let plan = Plan {
            items: 5,
            ..plan(Scenario::Detail)
        };
        for _ in 0..200 {
            let path = plan.next(&mut rng).path;
            let id: u32 = path.trim_start_matches("/api/items/").parse().unwrap();
            assert!((1..=5).contains(&id));
        }
    }

    #[test]
    fn cached_category_is_one_page() {
        let mut rng = SmallRng::seed_from_u64(5);
        let plan = plan(Scenario::CategoryCached);
        assert!((0..50).all(|_| plan.next(&mut rng).path == CACHED_CATEGORY_PATH));
    }

    #[test]
    fn addresses() {
        assert_eq!(client_address(0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(client_address(256), Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(loopback_source(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(is_loopback_host("http://127.0.0.1:8080"));
        assert!(is_loopback_host("http://localhost:8080/"));
        assert!(!is_loopback_host("http://gateway:8080"));
    }
}
